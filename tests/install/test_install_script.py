"""scripts/install-pi.sh into a throwaway root-like prefix on this host (no container).

The slow proof on aarch64 is `scripts/test.sh --target arm64`; this catches a broken
script in every CI run: layout, modes, the user and its groups, the skeleton, the key
made once, the unit enabled, an upgrade that keeps everything, an uninstall that keeps
the record, a dry run that changes nothing. Debian packages and the pcsc extra (a
compile) are left out (--no-apt --extras ""): the host's test setup already has them.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.realparts import require_binary

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-pi.sh"
EXAMPLE = ROOT / "config" / "examples" / "agent.toml"
USER = "cabinet-agent"


def install(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", str(SCRIPT), "--prefix", str(prefix), "--no-apt", "--extras", "", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def passwd(prefix: Path) -> dict[str, list[str]]:
    lines = (prefix / "etc/passwd").read_text().splitlines()
    return {line.split(":")[0]: line.split(":") for line in lines}


def groups_of(prefix: Path, user: str) -> set[str]:
    found = set()
    for line in (prefix / "etc/group").read_text().splitlines():
        name, _, _, members = line.split(":")
        if user in members.split(","):
            found.add(name)
    return found


def printed_pubkey(output: str) -> str:
    (key,) = re.findall(r"^  pubkey (\S+)$", output, re.M)
    return key


def snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int, int]]:
    out = {}
    for path in paths:
        info = path.stat()
        out[path] = (path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if os.geteuid() != 0:
        pytest.fail("the install script test runs as root (it creates users in the prefix)")
    require_binary("systemd-sysusers", "systemd")
    prefix = tmp_path_factory.mktemp("target")
    (prefix / "boot/firmware").mkdir(parents=True)  # a Raspberry Pi OS boot partition
    (prefix / "boot/firmware/config.txt").write_text("[all]\n")
    done = install(prefix, "--device", "cab-t1", "--site", "lab")
    return prefix, done.stdout


def test_the_agent_is_installed_in_its_own_venv_under_opt(installed: tuple[Path, str]) -> None:
    prefix, output = installed
    agent = prefix / "opt/cabinet-agent/venv/bin/cabinet-agent"
    version = subprocess.run([agent, "--version"], capture_output=True, text=True, check=True)
    assert "cabinet-agent" in version.stdout and version.stdout.split()[-1] in output
    assert (prefix / "opt/cabinet-agent/docs/install-pi.md").is_file()


def test_a_cabinet_gets_the_agents_packages_and_not_the_centres(
    installed: tuple[Path, str],
) -> None:
    # structlog imports rich and greenlet whenever they are installed: ~4 MB of the
    # agent's memory on a Pi for nothing it uses (pyproject's `central` extra).
    prefix, _ = installed
    python = prefix / "opt/cabinet-agent/venv/bin/python"
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])"
    centre_only = ("rich", "greenlet", "sqlalchemy", "fastapi", "uvicorn", "psycopg")
    found = subprocess.run(
        [python, "-c", probe % (centre_only,)], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"
    ctl = subprocess.run(
        [prefix / "opt/cabinet-agent/venv/bin/cabinetctl", "--version"],
        capture_output=True,
        text=True,
    )
    assert ctl.returncode == os.EX_UNAVAILABLE
    assert ctl.stderr.splitlines() == [
        "cabinetctl: the centre's packages are not installed (rich is missing): "
        "pip install 'cabinet-agent[central]'"
    ]


def test_the_service_user_has_no_login_and_only_its_device_groups(
    installed: tuple[Path, str],
) -> None:
    prefix, _ = installed
    user = passwd(prefix)[USER]
    assert user[5:] == ["/var/lib/cabinet-agent", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000  # a system user
    assert groups_of(prefix, USER) == {"gpio", "dialout"}


def test_state_is_private_and_the_device_key_belongs_to_the_agent(
    installed: tuple[Path, str],
) -> None:
    prefix, output = installed
    uid = int(passwd(prefix)[USER][2])
    state = prefix / "var/lib/cabinet-agent"
    key = state / "device.key"
    assert (stat.S_IMODE(state.stat().st_mode), state.stat().st_uid) == (0o700, uid)
    assert (stat.S_IMODE(key.stat().st_mode), key.stat().st_uid) == (0o600, uid)
    from agent.wire.key_files import read_key

    assert read_key(key).public.to_text() == printed_pubkey(output)
    tls = (prefix / "etc/cabinet-agent/tls").stat()
    assert (stat.S_IMODE(tls.st_mode), tls.st_uid, tls.st_gid) == (
        0o750,
        0,
        int(passwd(prefix)[USER][3]),
    )


def test_the_unit_is_installed_and_enabled(installed: tuple[Path, str]) -> None:
    prefix, _ = installed
    unit = prefix / "etc/systemd/system/cabinet-agent.service"
    assert unit.read_bytes() == (ROOT / "systemd/cabinet-agent.service").read_bytes()
    wants = prefix / "etc/systemd/system/multi-user.target.wants/cabinet-agent.service"
    assert os.readlink(wants) == "/etc/systemd/system/cabinet-agent.service"


def test_the_skeleton_is_wired_like_the_example_and_check_config_says_what_is_left(
    installed: tuple[Path, str],
) -> None:
    prefix, _ = installed
    config = prefix / "etc/cabinet-agent/agent.toml"
    skeleton = tomllib.loads(config.read_text())
    assert (skeleton["device"], skeleton["site"]) == ("cab-t1", "lab")
    assert skeleton["hardware"] == tomllib.loads(EXAMPLE.read_text())["hardware"]
    done = subprocess.run(
        [prefix / "opt/cabinet-agent/venv/bin/cabinet-agent", "check-config", config],
        capture_output=True,
        text=True,
        env={**os.environ, "CABINET_STATE_DIR": str(prefix / "var/lib/cabinet-agent")},
    )
    assert done.returncode == 78
    left = [line.split(": ")[1] for line in done.stderr.splitlines()[1:]]
    expected = ["keys.central_pubkey", "broker.url", "broker.ca_file", "broker.cert_file"]
    expected += ["broker.key_file"]
    assert left[: len(expected)] == expected
    # Only what this test left out: python3-lgpio (a Pi's package) and pyscard (--extras "").
    assert set(left[len(expected) :]) <= {"hardware.gpio.pin_factory", "hardware.readers"}


def test_an_upgrade_keeps_config_key_and_outbox(installed: tuple[Path, str]) -> None:
    prefix, first_output = installed
    config = prefix / "etc/cabinet-agent/agent.toml"
    config.write_text(config.read_text() + "# edited on site\n")
    state = prefix / "var/lib/cabinet-agent"
    (state / "outbox.db").write_bytes(b"the record of the cabinet")
    (prefix / "etc/cabinet-agent/tls/client.key").write_text("tls key")
    kept = [
        config,
        state / "device.key",
        state / "outbox.db",
        prefix / "etc/cabinet-agent/tls/client.key",
    ]
    before = snapshot(kept)
    again = install(prefix, "--device", "another-name")
    assert snapshot(kept) == before
    assert printed_pubkey(again.stdout) == printed_pubkey(first_output)
    assert "kept" in again.stdout and "(never overwritten)" in again.stdout
    # The firmware line that holds the output pins low from power-on, added exactly once.
    boot = (prefix / "boot/firmware/config.txt").read_text().splitlines()
    assert boot.count("gpio=12,16,24,25,26=op,dl") == 1


def test_uninstall_removes_the_software_and_keeps_the_record(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the install script test runs as root")
    install(tmp_path, "--device", "cab-t2")
    record = [
        tmp_path / "var/lib/cabinet-agent/device.key",
        tmp_path / "etc/cabinet-agent/agent.toml",
    ]
    before = snapshot(record)
    install(tmp_path, "--uninstall")
    assert not (tmp_path / "opt/cabinet-agent").exists()
    assert not (tmp_path / "etc/systemd/system/cabinet-agent.service").exists()
    assert not (
        tmp_path / "etc/systemd/system/multi-user.target.wants/cabinet-agent.service"
    ).exists()
    assert snapshot(record) == before
    assert USER in passwd(tmp_path)  # still owns the record


def test_a_dry_run_changes_nothing(tmp_path: Path) -> None:
    done = install(tmp_path / "untouched", "--dry-run")
    assert not (tmp_path / "untouched").exists()
    assert "would run: systemd-sysusers" in done.stdout
    assert "would write" in done.stdout and "agent.toml" in done.stdout
