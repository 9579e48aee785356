"""Golden tests: every example scenario replays to its reviewed, expected record.

The expected files hold each event's type and data (timestamps are deterministic on
the virtual clock). After a deliberate change of behaviour, review the diff and
regenerate with CABINET_REGEN_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.wire import VerifyKey, verify_chain

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "examples" / "scenarios").glob("*.jsonl"))
EXPECTED = ROOT / "tests" / "golden" / "expected"


def replay(scenario: Path) -> tuple[list[dict], str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "replay",
            str(scenario),
            "--policy",
            str(ROOT / "examples" / "policy.toml"),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def comparable(events: list[dict]) -> list[dict]:
    out = []
    for event in events:
        data = {k: v for k, v in event["data"].items() if k != "version"}
        out.append(
            {"seq": event["seq"], "t_ms": event["mono"], "type": event["type"], "data": data}
        )
    return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.stem for s in SCENARIOS])
def test_example_scenario_replays_to_its_expected_record(scenario: Path) -> None:
    events, stderr = replay(scenario)
    pubkey = stderr.strip().splitlines()[-1]
    assert pubkey.startswith("pubkey ")
    report = verify_chain(events, VerifyKey.from_text(pubkey))
    assert report.ok, report.failures
    expected_file = EXPECTED / f"{scenario.stem}.json"
    got = comparable(events)
    if os.environ.get("CABINET_REGEN_GOLDEN"):
        EXPECTED.mkdir(exist_ok=True)
        expected_file.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(expected_file.read_text())


def test_every_rule_area_has_an_example_scenario() -> None:
    names = {s.stem for s in SCENARIOS}
    assert {
        "two_person_withdrawal",
        "one_person_alone_is_refused",
        "suspended_card_is_refused",
        "door_forced_and_held_open",
        "voc_alarm_with_ventilation",
        "leak_and_tamper",
        "brute_force_lockout",
        "mass_change_outside_a_session",
        "container_removed_and_overdue",
        "approved_withdrawal_exceeded",
        "remote_second_person",
        "silent_sensor_and_reader_fault",
        # docs/rules.md, "The cabinet remembers": one per rule of what survives a restart:
        "restart_keeps_the_books",
        "alarm_acknowledged_in_a_later_boot",
        "condition_gone_at_start",
        "session_across_a_restart",
        "lockout_across_a_restart",
        "approval_across_a_restart",
        "policy_kept_across_a_restart",
        "session_does_not_absorb_a_discrepancy",
        "discrepancy_resolved_by_two_persons",
        "stocktake_by_two_persons",
        "disposal_with_and_without_approval",
        "receiving_by_two_persons",
        "tap_out_after_a_session",
        "session_books_its_own_change_beside_a_discrepancy",
        "container_named_again_keeps_its_book",
        "resolve_before_the_weight_settles",
        "stocktake_finds_a_hidden_loss",
        "stocktake_and_tap_out_across_a_restart",
    } <= names


def test_every_example_scenario_is_cited_where_its_rule_is_explained() -> None:
    rules_doc = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    # demo.jsonl is the README's tour of the cabinet, not the example of one rule.
    uncited = [s.stem for s in SCENARIOS if s.stem != "demo" and f"`{s.stem}`" not in rules_doc]
    assert uncited == []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.stem for s in SCENARIOS])
def test_replay_piped_into_cabinetctl_verify_passes(scenario: Path, tmp_path: Path) -> None:
    key = tmp_path / "device.key"
    pub = subprocess.run(
        [sys.executable, "-m", "agent.cli", "keygen", "--out", str(key)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.strip()
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "replay",
            str(scenario),
            "--policy",
            str(ROOT / "examples" / "policy.toml"),
            "--key",
            str(key),
        ],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    verified = subprocess.run(
        [sys.executable, "-m", "central", "verify", "-", "--pubkey", pub],
        input=replayed.stdout,
        capture_output=True,
        cwd=ROOT,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    count = len(replayed.stdout.splitlines())
    assert verified.stdout.decode().strip() == f"{count} events, devices 1, OK"
