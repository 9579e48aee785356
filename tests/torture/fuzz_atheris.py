"""Coverage-guided fuzzing (atheris, i.e. libFuzzer) of the agent's trust boundaries, with
the properties of tests/torture/fuzz_checks.py. Long mode; from the project root:

    .venv/bin/pip install atheris      # not a runtime dependency; wheels for x86_64/aarch64
    .venv/bin/python -m tests.torture.fuzz_atheris serial  -atheris_runs=1000000 -max_len=512
    .venv/bin/python -m tests.torture.fuzz_atheris command -atheris_runs=100000
    .venv/bin/python -m tests.torture.fuzz_atheris policy  -atheris_runs=10000

Any other libFuzzer option may follow (-max_total_time=600, -jobs=2, a corpus dir...).
Without a corpus dir it starts from genuine seeds (valid frames, signed commands, the
example policy signed and plain), written to a temporary directory. A failed property
or any exception is a crash: libFuzzer prints it, saves the input as crash-*, exits 1.
`pytest --long tests/torture/test_atheris_long.py` runs the three with those counts.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import atheris
import structlog

# Every refusal is logged; at thousands of inputs a second that is all one would see.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

with atheris.instrument_imports(include=["firmware_bridge", "agent", "config", "rules"]):
    from firmware_bridge import messages as m
    from firmware_bridge.protocol import Frame, encode
    from tests.torture import fuzz_checks as checks

COMMAND_NAMES = [*checks.COMMAND_NAMES, "x"]


def serial(data: bytes) -> None:
    # The first byte says how many cut points follow; the rest is the line's bytes.
    count = data[0] % 9 if data else 0
    checks.check_serial(data[1 + count :], data[1 : 1 + count])


_commands: checks.CommandTarget | None = None


def command(data: bytes) -> None:
    global _commands
    if _commands is None:
        _commands = checks.CommandTarget()
    name = COMMAND_NAMES[data[0] % len(COMMAND_NAMES)] if data else "x"
    _commands.check(name, data[1:])


_policies: checks.PolicyTarget | None = None


def policy(data: bytes) -> None:
    global _policies
    if _policies is None:
        _policies = checks.PolicyTarget()
    mode = data[0] if data else 0
    _policies.check(data[1:], ".toml" if mode & 1 else ".json", bool(mode & 2))


TARGETS = {"serial": serial, "command": command, "policy": policy}


def seeds(target: str) -> list[bytes]:
    if target == "serial":
        sample = [
            Frame(0, m.Heartbeat(1234, 0)),
            Frame(1, m.Door(True)),
            Frame(2, m.Leak(False)),
            Frame(0, m.Ack(7)),
            Frame(3, m.Info(1, 0, 2, 0, 1, 500)),
        ]
        return [b"\x00" + b"".join(encode(f) for f in sample)] + [
            b"\x02\x40\x80" + encode(f) for f in sample
        ]
    if target == "command":
        out = []
        for doc in checks.seed_commands():
            out.append(bytes([COMMAND_NAMES.index(doc["name"])]) + json.dumps(doc).encode())
        return out
    root = checks.ROOT / "examples" / "policy.toml"
    return [
        b"\x00" + json.dumps(checks.signed_policy()).encode(),
        b"\x03" + root.read_bytes(),
        b"\x01" + root.read_bytes(),
    ]


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        names = "|".join(TARGETS)
        sys.exit(f"usage: python -m tests.torture.fuzz_atheris {names} [libFuzzer options]")
    target, options = argv[1], argv[2:]
    if not any(not option.startswith("-") for option in options):
        corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
        for i, seed in enumerate(seeds(target)):
            (corpus / f"seed-{i}").write_bytes(seed)
        options.append(str(corpus))
    atheris.Setup([argv[0], *options], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
