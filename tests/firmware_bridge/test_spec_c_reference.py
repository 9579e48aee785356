"""The C code printed in docs/firmware-bridge.md computes what the Python codec computes.

A firmware engineer will copy those snippets; compiling them here keeps them honest.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

from firmware_bridge.protocol import cobs_encode, crc16_ccitt_false
from tests.realparts import require_binary

SPEC = Path(__file__).resolve().parents[2] / "docs" / "firmware-bridge.md"

HARNESS = r"""
#include <stdio.h>
#include <string.h>
/* One hex body per line in; "CRC COBS-HEX" per line out. */
int main(void) {
    char line[1024];
    while (fgets(line, sizeof line, stdin)) {
        uint8_t body[300], out[320];
        size_t n = 0;
        for (char *p = line; p[0] && p[1] && p[0] != '\n'; p += 2) {
            unsigned v; sscanf(p, "%2x", &v); body[n++] = (uint8_t)v;
        }
        size_t m = cobs_encode(body, n, out);
        printf("%04X ", crc16_ccitt_false(body, n));
        for (size_t i = 0; i < m; i++) printf("%02X", out[i]);
        printf("\n");
    }
    return 0;
}
"""


def sample_bodies() -> list[bytes]:
    rng = random.Random(20261122)
    bodies = [b"123456789", b"\x00", b"\x00\x00", bytes(range(1, 255)), bytes(range(1, 256))]
    bodies += [bytes(range(2, 256)) + b"\x00", bytes(range(0, 255))]
    for _ in range(200):
        size = rng.randint(1, 255)
        zeros = rng.random()  # from zero-heavy bodies to bodies with long zero-free runs
        body = bytes(0 if rng.random() < zeros else rng.randint(1, 255) for _ in range(size))
        bodies.append(body)
    return bodies


def test_c_snippets_of_the_spec_match_the_python_codec(tmp_path: Path) -> None:
    gcc = require_binary("gcc", "gcc")
    snippets = re.findall(r"```c\n(.*?)```", SPEC.read_text(encoding="utf-8"), re.S)
    assert len(snippets) >= 2, "the spec should print the CRC and COBS code in C"
    source = tmp_path / "spec.c"
    source.write_text(
        "#include <stdint.h>\n#include <stddef.h>\n" + "\n".join(snippets) + HARNESS,
        encoding="utf-8",
    )
    binary = tmp_path / "spec"
    subprocess.run(
        [gcc, "-std=c99", "-Wall", "-Werror", "-o", str(binary), str(source)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    bodies = sample_bodies()
    result = subprocess.run(
        [str(binary)],
        input="".join(b.hex() + "\n" for b in bodies),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    for body, line in zip(bodies, result.stdout.splitlines(), strict=True):
        crc, cobs = line.split(" ")
        assert int(crc, 16) == crc16_ccitt_false(body), body.hex()
        assert bytes.fromhex(cobs) == cobs_encode(body), body.hex()
