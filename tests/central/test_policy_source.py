"""Where cabinetctl finds the cabinet's policy it checks persons against: --policy or
CABINETCTL_POLICY, a file or a directory of them (the newest for the cabinet), a signed
one only if it verifies, and a warning when a newer version has been signed since."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent.wire import SigningKey, sign_policy
from central.cli import cli
from tests.central.fake_device import FakeDevice
from tests.central.test_live import Setup, device, setup  # noqa: F401 (fixtures)

pytestmark = pytest.mark.realpart


def test_the_newest_policy_for_the_cabinet_in_a_directory_judges_the_persons(
    setup: Setup,  # noqa: F811
    device: FakeDevice,  # noqa: F811
) -> None:
    runner = CliRunner(env=setup.env)
    policies = setup.tmp / "policies"
    policies.mkdir()
    text = setup.policy.read_text()
    (policies / "any-v7.toml").write_text(text.replace('cabinet = "cab-1"', 'cabinet = "*"'))
    # Version 8 for cab-1, signed: Li Na (p-1002) has been made a keeper.
    v8 = policies / "cab-1-v8.toml"
    v8.write_text(
        text.replace("version = 7", "version = 8").replace(
            'roles = ["user"]', 'roles = ["keeper"]', 1
        )
    )
    signed = runner.invoke(
        cli, ["policy", "sign", str(v8), "--out", str(policies / "cab-1-v8.json")]
    )
    assert signed.exit_code == 0, signed.output
    v8.unlink()
    (policies / "other-v9.toml").write_text(
        text.replace("version = 7", "version = 9").replace('cabinet = "cab-1"', 'cabinet = "cab-2"')
    )
    stock = ["stocktake", "--device", "cab-1", "--person", "p-1002", "--person", "p-1001"]
    taken = runner.invoke(cli, [*stock, "--policy", str(policies)])
    assert taken.exit_code == 0, taken.output
    assert "WARNING" not in taken.stderr
    assert device.commands[-1]["args"]["persons"] == ["p-1002", "p-1001"]

    # A version 9 for cab-1 has since been signed: the directory's 8 may be out of date.
    v9 = setup.tmp / "cab-1-v9.toml"
    v9.write_text(text.replace("version = 7", "version = 9"))
    assert (
        runner.invoke(
            cli, ["policy", "sign", str(v9), "--out", str(setup.tmp / "v9.json")]
        ).exit_code
        == 0
    )
    again = runner.invoke(cli, [*stock, "--policy", str(policies)])
    assert again.exit_code == 0, again.output
    assert (
        "WARNING: " in again.stderr
        and "cab-1-v8.json is policy version 8, but version 9" in again.stderr
    )

    forged = policies / "cab-1-v10.json"
    forged.write_text(
        json.dumps(sign_policy({"version": 10, "cabinet": "cab-1"}, SigningKey.generate()))
    )
    refused = runner.invoke(cli, [*stock, "--policy", str(policies)])
    assert refused.exit_code == 1 and "not signed by this central key" in refused.stderr
    forged.unlink()
    nothing = setup.tmp / "empty"
    nothing.mkdir()
    none_there = runner.invoke(cli, [*stock, "--policy", str(nothing)])
    assert none_there.exit_code == 1 and "no policy for cabinet 'cab-1' in" in none_there.stderr
    both = runner.invoke(cli, [*stock, "--unchecked", "--policy", str(v9)])
    assert both.exit_code == 1 and "contradict" in both.stderr
    # CABINETCTL_POLICY set in the profile does not stand in the way of --unchecked.
    unchecked = runner.invoke(cli, [*stock, "--unchecked"])
    assert unchecked.exit_code == 0 and "WARNING: --unchecked" in unchecked.stderr
