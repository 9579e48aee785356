"""Long mode: the atheris fuzzers with the issue's counts (≥ 1M serial inputs, ≥ 100k
MQTT payloads, ≥ 10k policy files). Each is the documented command of fuzz_atheris.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.realparts import require_module
from tests.torture.harness import ROOT

RUNS = {"serial": 1_000_000, "command": 100_000, "policy": 10_000}
# Two longest frames and some noise; libFuzzer's default 4 KiB inputs only slow the
# pure-Python decoder down (~2k inputs/s at 512 bytes, a million in ~9 min).
OPTIONS = {"serial": ["-max_len=512"], "command": [], "policy": []}


@pytest.mark.long
@pytest.mark.parametrize("target", sorted(RUNS))
def test_atheris_finds_no_crash(target: str, tmp_path) -> None:
    require_module("atheris", ".venv/bin/pip install atheris")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.torture.fuzz_atheris",
            target,
            f"-atheris_runs={RUNS[target]}",
            f"-artifact_prefix={tmp_path}/",
            *OPTIONS[target],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    tail = done.stderr[-3000:]
    assert done.returncode == 0, tail
    assert f"Done {RUNS[target]} " in done.stderr, tail
