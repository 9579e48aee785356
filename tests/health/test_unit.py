"""systemd/cabinet-agent.service as systemd itself reads it, with no systemd running.

This container has no systemd as PID 1, and the unit's ExecStart lives in an install tree
that does not exist here. `systemd-analyze verify --root=DIR` loads units from DIR and
looks executables up inside it, so the test builds a throwaway root holding the host's
stock units (the unit's dependencies: sysinit.target, pcscd.socket, ...), this unit
byte-for-byte and an executable stub at the ExecStart path. The unit is never edited
for the test. `security --offline=true` needs no manager at all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.realparts import require_binary

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "cabinet-agent.service"
SYSUSERS = REPO / "systemd" / "cabinet-agent.sysusers.conf"
TMPFILES = REPO / "systemd" / "cabinet-agent.tmpfiles.conf"
EXEC_START = "/opt/cabinet-agent/venv/bin/cabinet-agent"
MAX_EXPOSURE = 2.5


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> values in order (units repeat keys such as DeviceAllow=)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def analyze() -> str:
    return require_binary("systemd-analyze", "systemd")


def fake_root(tmp: Path, unit_text: str, with_binary: bool = True) -> Path:
    root = tmp / "root"
    stock = next(
        (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()),
        None,
    )
    assert stock is not None, "no stock systemd units on this host"
    shutil.copytree(stock, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/cabinet-agent.service").write_text(unit_text)
    if with_binary:
        binary = root / EXEC_START.lstrip("/")
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\nexit 0\n")
        binary.chmod(0o755)
    return root


def verify(root: Path) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [analyze(), "verify", f"--root={root}", "--man=no", "cabinet-agent.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Only complaints about this unit count; stock units on some hosts have their own.
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "cabinet-agent" in line]
    return proc.returncode, ours


def exposure(unit: Path) -> tuple[int, float, str]:
    proc = subprocess.run(
        [
            analyze(),
            "security",
            "--offline=true",
            f"--threshold={int(MAX_EXPOSURE * 10)}",  # the threshold is in tenths
            str(unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return proc.returncode, float(match.group(1)), proc.stdout


def test_systemd_accepts_the_unit_as_written(tmp_path: Path) -> None:
    code, complaints = verify(fake_root(tmp_path, UNIT.read_text()))
    assert code == 0 and complaints == []


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    # The check above is only worth something if, here without PID 1, it still fails on
    # a typo and on a missing program.
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter")
    _, complaints = verify(fake_root(tmp_path / "typo", broken))
    assert any("protect system" in c.lower() for c in complaints), complaints

    code, complaints = verify(fake_root(tmp_path / "nobin", UNIT.read_text(), False))
    assert code != 0
    assert any("not executable" in c for c in complaints), complaints


def test_exposure_is_at_most_2_5() -> None:
    code, score, report = exposure(UNIT)
    assert score <= MAX_EXPOSURE, report
    assert code == 0, report


def test_the_exposure_check_fails_an_unhardened_unit(tmp_path: Path) -> None:
    bare = tmp_path / "cabinet-agent.service"
    bare.write_text(f"[Service]\nType=notify\nExecStart={EXEC_START}\n")
    code, score, _ = exposure(bare)
    assert score > MAX_EXPOSURE
    assert code != 0


def test_the_unit_keeps_the_daemon_contract() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["Service.ExecStart"] == [f"{EXEC_START} run --config /etc/cabinet-agent/agent.toml"]
    assert s["Service.Type"] == ["notify"]
    assert s["Service.NotifyAccess"] == ["main"]
    assert s["Service.Restart"] == ["always"]
    # ... except after exit 78 (EX_CONFIG): a refusal to start is not restarted in a loop.
    assert s["Service.RestartPreventExitStatus"] == ["78"]
    assert s["Service.WatchdogSec"] and s["Service.RestartSec"]
    # "SIGTERM -> exit 0 within 5 s": SIGTERM is what stops it, with room before SIGKILL.
    assert s["Service.KillSignal"] == ["SIGTERM"]
    stop_s = int(s["Service.TimeoutStopSec"][0].removesuffix("s"))
    assert 5 < stop_s <= 30
    assert s["Service.User"] == ["cabinet-agent"]
    assert s["Service.StateDirectory"] == ["cabinet-agent"]
    assert s["Service.ConfigurationDirectory"] == ["cabinet-agent"]
    assert set(s["Service.SupplementaryGroups"][0].split()) >= {"gpio", "dialout"}
    assert "char-gpiochip rw" in s["Service.DeviceAllow"]


def test_the_seccomp_filter_lets_clocksync_read_the_kernel_clock() -> None:
    # glibc's adjtimex() is the clock_adjtime system call, which @system-service leaves
    # out; without it every clock_ok stamp would come back "unknown".
    allowed = unit_settings(UNIT.read_text())["Service.SystemCallFilter"]
    added = {name for entry in allowed if not entry.startswith("~") for name in entry.split()}
    assert {"clock_adjtime", "adjtimex"} <= added
    assert not any("clock_adjtime" in entry for entry in allowed if entry.startswith("~"))
    assert "Service.ProtectClock" not in unit_settings(UNIT.read_text())


def test_sysusers_and_tmpfiles_create_the_user_and_a_private_state_dir(
    tmp_path: Path,
) -> None:
    sysusers = require_binary("systemd-sysusers", "systemd")
    tmpfiles = require_binary("systemd-tmpfiles", "systemd")
    if os.geteuid() != 0:
        pytest.skip("creating a directory owned by another user needs root")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run(
        [sysusers, f"--root={root}", "-"],
        input=SYSUSERS.read_text(),
        text=True,
        check=True,
        capture_output=True,
        timeout=30,
    )
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/passwd").read_text().splitlines()
    }
    user = passwd["cabinet-agent"]
    assert user[5:] == ["/var/lib/cabinet-agent", "/usr/sbin/nologin"]

    subprocess.run(
        [tmpfiles, f"--root={root}", "--create", "-"],
        input=TMPFILES.read_text(),
        text=True,
        check=True,
        capture_output=True,
        timeout=30,
    )
    state = (root / "var/lib/cabinet-agent").stat()
    assert (state.st_uid, state.st_gid) == (int(user[2]), int(user[3]))
    assert state.st_mode & 0o777 == 0o700
