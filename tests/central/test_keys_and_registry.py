from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from agent.wire import SigningKey, VerifyKey
from central.cli import cli
from tests.central.cabinet import FakeCabinet


def run(*args: str, **kw: object) -> object:
    return CliRunner().invoke(cli, list(args), **kw)  # type: ignore[arg-type]


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    out = tmp_path / "central.key"
    result = CliRunner().invoke(cli, ["keygen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = SigningKey.from_text(out.read_text())
    assert result.output == f"pubkey {key.public.to_text()}\n"
    assert VerifyKey.from_text(result.output).to_text() == key.public.to_text()


def test_keygen_refuses_to_overwrite_an_existing_key(tmp_path: Path) -> None:
    out = tmp_path / "central.key"
    out.write_text("precious\n")
    result = CliRunner().invoke(cli, ["keygen", "--out", str(out)])
    assert result.exit_code == 1
    assert "already exists" in result.output and "Traceback" not in result.output
    assert out.read_text() == "precious\n"


def test_keygen_into_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path / "no" / "k")])
    assert result.exit_code == 1
    assert result.output.startswith("cabinetctl: cannot create")


def test_device_add_list_replace_remove(tmp_path: Path) -> None:
    reg = tmp_path / "devices.toml"
    a, b = FakeCabinet("cab-a", "chem"), FakeCabinet("cab-b", "bio")
    runner = CliRunner(env={"CABINETCTL_REGISTRY": str(reg)})
    r = runner.invoke(
        cli,
        [
            "device",
            "add",
            "cab-a",
            "--pubkey",
            a.pubkey,
            "--site",
            "chem",
            "--name",
            'Room 114 "north"',
        ],
    )
    assert r.exit_code == 0, r.output
    key_file = tmp_path / "b.pub"
    key_file.write_text(f"pubkey {b.pubkey}\n")
    r = runner.invoke(cli, ["device", "add", "cab-b", "--pubkey", str(key_file), "--site", "bio"])
    assert r.exit_code == 0, r.output
    listed = runner.invoke(cli, ["device", "list"]).output
    assert "cab-a" in listed and a.pubkey in listed and 'Room 114 "north"' in listed
    assert b.pubkey in listed
    again = runner.invoke(cli, ["device", "add", "cab-a", "--pubkey", b.pubkey, "--site", "x"])
    assert again.exit_code == 1 and "already registered" in again.output
    r = runner.invoke(
        cli, ["device", "add", "cab-a", "--pubkey", b.pubkey, "--site", "x", "--replace"]
    )
    assert r.exit_code == 0
    assert b.pubkey in runner.invoke(cli, ["device", "list"]).output.split("cab-a")[1]
    assert runner.invoke(cli, ["device", "remove", "cab-b"]).exit_code == 0
    assert "cab-b" not in runner.invoke(cli, ["device", "list"]).output


def test_device_add_refuses_a_bad_key_or_site(tmp_path: Path) -> None:
    runner = CliRunner(env={"CABINETCTL_REGISTRY": str(tmp_path / "d.toml")})
    r = runner.invoke(cli, ["device", "add", "cab-a", "--pubkey", "nonsense", "--site", "s"])
    assert r.exit_code == 1 and "neither a public key" in r.output
    good = FakeCabinet().pubkey
    r = runner.invoke(cli, ["device", "add", "cab-a", "--pubkey", good, "--site", "a/b"])
    assert r.exit_code == 1 and "site" in r.output and "Traceback" not in r.output


def test_a_broken_registry_names_file_line_and_key(tmp_path: Path) -> None:
    reg = tmp_path / "devices.toml"
    reg.write_text('[device."cab-a"]\npubkey = "abc"\nsite = "lab"\n')
    r = CliRunner().invoke(cli, ["device", "list", "--registry", str(reg)])
    assert r.exit_code == 78
    assert f"{reg}:2: device.cab-a.pubkey:" in r.output


def test_a_missing_registry_says_how_to_make_one(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["device", "list", "--registry", str(tmp_path / "nope.toml")])
    assert r.exit_code == 1 and "cabinetctl device add" in r.output


def test_a_central_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "central.key"
    key.write_text(SigningKey.generate().to_text())
    key.chmod(0o640)
    policy = Path(__file__).parents[2] / "examples" / "policy.toml"
    result = CliRunner(env={"CABINETCTL_REGISTRY": str(tmp_path / "d.toml")}).invoke(
        cli, ["policy", "sign", str(policy), "--key", str(key)]
    )
    assert result.exit_code == 1 and "readable by others (chmod 600 it)" in result.output
