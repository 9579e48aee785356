"""systemd/cabinet-central.service as systemd reads it (imitating tests/health/test_unit.py).

`systemd-analyze verify --root=DIR` on a throwaway root with the host's stock units, this
unit byte for byte and a stub at the ExecStart path; `security --offline=true` for the
exposure score, held to the agent unit's bound.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.health.test_unit import MAX_EXPOSURE, analyze, exposure, unit_settings

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "cabinet-central.service"
EXEC = "/opt/cabinet-central/venv/bin/cabinet-central"


def _verify(tmp: Path, text: str) -> tuple[int, list[str]]:
    root = tmp / "root"
    stock = next(
        p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(stock, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/cabinet-central.service").write_text(text)
    binary = root / EXEC.lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    proc = subprocess.run(
        [analyze(), "verify", f"--root={root}", "--man=no", "cabinet-central.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "cabinet-central" in line]
    return proc.returncode, ours


def test_systemd_accepts_the_central_unit_as_written(tmp_path: Path) -> None:
    assert _verify(tmp_path, UNIT.read_text()) == (0, [])
    _, complaints = _verify(
        tmp_path / "typo", UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=x")
    )
    assert complaints  # the check above can fail


def test_the_central_unit_is_as_hardened_as_the_agents() -> None:
    code, score, report = exposure(UNIT)
    assert score <= MAX_EXPOSURE, report
    assert code == 0, report


def test_the_central_unit_runs_serve_and_does_not_restart_a_bad_configuration() -> None:
    s = unit_settings(UNIT.read_text())
    config = "--config /etc/cabinet-central/central.toml"
    # serve refuses a bad configuration itself (exit 78); an ExecStartPre's refusal would
    # be restarted for ever, RestartPreventExitStatus= only covers the main process.
    assert "Service.ExecStartPre" not in s
    assert s["Service.ExecStart"] == [f"{EXEC} serve {config} --log-format json"]
    assert s["Service.Restart"] == ["always"]
    assert s["Service.RestartPreventExitStatus"] == ["78"]
    assert s["Service.User"] == ["cabinet-central"]
    assert s["Service.StateDirectory"] == ["cabinet-central"]
    assert s["Service.StateDirectoryMode"] == ["0700"]
