"""`cabinetctl policy check|sign`: every mistake named with its line and key; signing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.wire import SigningKey, open_signed_policy
from central.cli import cli
from config.loading import load_model
from config.policy import Policy

EXAMPLE = Path(__file__).parents[2] / "examples" / "policy.toml"

GOOD = """\
version = 7
issued_at = "2026-11-22T08:00:00Z"
cabinet = "cab-1"

[access]
pair = "keeper+any"

[[person]]
id = "p-1"
name = "Zhang Wei"
roles = ["keeper"]
cards = ["04A1B2C3D4E5F6"]

[[person]]
id = "p-2"
name = "Li Na"
roles = ["user"]
cards = ["04FFEEDDCCBBAA"]

[[container]]
id = "c-1"
slot = 3
name = "sodium cyanide"
cas = "143-33-9"
class = "highly_toxic"
tare_mg = 182000
mass_mg = 500000

[[container]]
id = "c-2"
slot = 4
tare_mg = 150000
mass_mg = 250000
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "central.key"
    key.write_text(SigningKey.generate().to_text())
    key.chmod(0o600)
    return {"CABINETCTL_REGISTRY": str(tmp_path / "devices.toml"), "CABINETCTL_KEY": str(key)}


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner(env=env).invoke(cli, list(args))


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_policy_passes(tmp_path: Path, env: dict[str, str]) -> None:
    result = run(env, "policy", "check", str(write(tmp_path, GOOD)))
    assert result.exit_code == 0, result.output
    assert "OK: version 7 for cabinet cab-1, 2 persons, 2 containers" in result.output


def test_the_shipped_example_passes(env: dict[str, str]) -> None:
    assert run(env, "policy", "check", str(EXAMPLE)).exit_code == 0


MISTAKES = [
    # (what the regulation forbids, edit of GOOD, line, key, words)
    (
        "duplicate person id",
        ('id = "p-2"', 'id = "p-1"'),
        15,
        "person[1].id",
        "duplicate person id",
    ),
    (
        "a card on two persons",
        ('cards = ["04FFEEDDCCBBAA"]', 'cards = ["04A1B2C3D4E5F6"]'),
        18,
        "person[1].cards",
        "card ...E5F6 is also on person 'p-1'",
    ),
    (
        "a container on two slots",
        ('id = "c-2"', 'id = "c-1"'),
        30,
        "container[1].id",
        "already in slot 3",
    ),
    (
        "two containers in one slot",
        ("slot = 4", "slot = 3"),
        31,
        "container[1].slot",
        "slot 3 already holds 'c-1'",
    ),
    (
        "an unknown role",
        ('roles = ["user"]', 'roles = ["admin"]'),
        17,
        "person[1].roles[0]",
        "unknown role 'admin'",
    ),
]


@pytest.mark.parametrize(
    ("why", "edit", "line", "key", "words"), MISTAKES, ids=[m[0] for m in MISTAKES]
)
def test_each_mistake_is_named_with_line_and_key(
    tmp_path: Path,
    env: dict[str, str],
    why: str,
    edit: tuple[str, str],
    line: int,
    key: str,
    words: str,
) -> None:
    path = write(tmp_path, GOOD.replace(*edit))
    result = run(env, "policy", "check", str(path))
    assert result.exit_code == 78, result.output
    assert result.output.startswith(f"{path}:{line}: {key}: "), result.output
    assert words in result.output
    assert "Traceback" not in result.output
    assert (
        path.read_text().splitlines()[line - 1].split("=")[0].strip()
        == key.split(".")[-1].split("[")[0]
    )


def test_all_mistakes_are_listed_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    text = GOOD
    for _, edit, *_ in MISTAKES:
        text = text.replace(*edit)
    result = run(env, "policy", "check", str(write(tmp_path, text)))
    assert result.exit_code == 78
    keys = [line.split(": ")[1] for line in result.output.splitlines()]
    assert {
        "person[1].id",
        "person[1].cards",
        "person[1].roles[0]",
        "container[1].id",
        "container[1].slot",
    } <= set(keys)


def test_a_version_not_above_the_last_signed_is_refused(
    tmp_path: Path, env: dict[str, str]
) -> None:
    first = write(tmp_path, GOOD)
    signed = tmp_path / "v7.json"
    assert run(env, "policy", "sign", str(first), "--out", str(signed)).exit_code == 0
    state = json.loads((tmp_path / "devices.policy-versions.json").read_text())
    assert state["cabinets"]["cab-1"]["version"] == 7

    # The very same document may be signed again (same bytes: Ed25519 is deterministic).
    again = run(env, "policy", "sign", str(first))
    assert again.exit_code == 0, again.output
    changed = write(tmp_path, GOOD.replace('name = "Li Na"', 'name = "Li Na (PhD)"'), "p2.toml")
    result = run(env, "policy", "check", str(changed))
    assert result.exit_code == 78
    assert result.output.startswith(f"{changed}:1: version: version 7 is not above 7, signed for")
    lower = write(tmp_path, GOOD.replace("version = 7", "version = 6"), "p3.toml")
    with_previous = run(env, "policy", "check", str(lower), "--previous", str(signed))
    assert with_previous.exit_code == 78
    assert f"{lower}:1: version: version 6 is not above 7 ({signed})" in with_previous.output
    higher = write(tmp_path, GOOD.replace("version = 7", "version = 8"), "p4.toml")
    assert run(env, "policy", "check", str(higher)).exit_code == 0


def test_a_wildcard_policy_must_be_above_every_cabinet(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(env, "policy", "sign", str(write(tmp_path, GOOD))).exit_code == 0
    wildcard = write(tmp_path, GOOD.replace('cabinet = "cab-1"', 'cabinet = "*"'), "all.toml")
    result = run(env, "policy", "check", str(wildcard))
    assert result.exit_code == 78 and "signed for cabinet 'cab-1'" in result.output
    other = write(tmp_path, GOOD.replace('cabinet = "cab-1"', 'cabinet = "cab-2"'), "two.toml")
    assert run(env, "policy", "check", str(other)).exit_code == 0


def test_sign_writes_what_the_agent_accepts(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, GOOD)
    result = CliRunner(env=env).invoke(cli, ["policy", "sign", str(path)])
    assert result.exit_code == 0, result.output
    signed = json.loads(result.stdout)
    key = SigningKey.from_text(Path(env["CABINETCTL_KEY"]).read_text())
    inner = open_signed_policy(signed, key.public)
    assert inner == load_model(Policy, path).to_document()
    assert Policy.model_validate(inner).person[0].name == "Zhang Wei"


def test_sign_needs_the_key_and_a_valid_policy(tmp_path: Path, env: dict[str, str]) -> None:
    no_key = {**env, "CABINETCTL_KEY": ""}
    result = CliRunner(env=no_key).invoke(cli, ["policy", "sign", str(write(tmp_path, GOOD))])
    assert result.exit_code == 1 and "needs the central key" in result.output
    broken = write(tmp_path, GOOD.replace("version = 7", 'version = "seven"'), "bad.toml")
    result = run(env, "policy", "sign", str(broken))
    assert result.exit_code == 78 and f"{broken}:1: version:" in result.output
    assert not (tmp_path / "devices.policy-versions.json").exists()


def test_not_toml_and_missing_file_are_one_line_errors(tmp_path: Path, env: dict[str, str]) -> None:
    result = run(env, "policy", "check", str(write(tmp_path, "version = = 3\n")))
    assert result.exit_code == 78 and ":1: not valid TOML" in result.output
    result = run(env, "policy", "check", str(tmp_path / "none.toml"))
    assert result.exit_code == 78 and "file not found" in result.output
