"""The usage ledger (领用记录) and the daily reconciliation (账物相符), from verified events."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.wire import SigningKey
from central.cli import cli
from tests.central.cabinet import FakeCabinet, write_registry

ROOT = Path(__file__).parents[2]
POLICY = ROOT / "examples" / "policy.toml"
DAY = Path(__file__).parent / "data" / "scripted_day.jsonl"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def replayed_day(tmp_path: Path) -> tuple[Path, Path]:
    """The scripted day run through the real agent core (`cabinet-agent replay`)."""
    agent = shutil.which("cabinet-agent", path=str(Path(sys.executable).parent))
    assert agent, "cabinet-agent console script is not installed in the venv"
    key = SigningKey.generate()
    key_file = tmp_path / "device.key"
    key_file.write_text(key.to_text())
    key_file.chmod(0o600)
    done = subprocess.run(
        [agent, "replay", str(DAY), "--policy", str(POLICY), "--key", str(key_file)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    events = tmp_path / "day.jsonl"
    events.write_bytes(done.stdout)
    cabinet = FakeCabinet("cab-chem-0042", "chem", key)
    return events, write_registry(tmp_path / "devices.toml", cabinet)


def test_export_of_a_scripted_day_matches_the_expected_ledger_rows(
    tmp_path: Path, replayed_day: tuple[Path, Path]
) -> None:
    events, registry = replayed_day
    store = tmp_path / "ledger.db"
    imported = run("import", str(events), "--store", str(store), "--registry", str(registry))
    assert imported.exit_code == 0, imported.output
    result = run(
        "export",
        "--store",
        str(store),
        "--since",
        "2026-11-22",
        "--until",
        "2026-11-23",
        "--policy",
        str(POLICY),
        "--registry",
        str(registry),
    )
    assert result.exit_code == 0, result.output
    got = [
        {
            k: r[k]
            for k in (
                "time_utc",
                "cabinet",
                "action",
                "person_1",
                "person_1_name",
                "person_2",
                "person_2_name",
                "container",
                "container_name",
                "cas",
                "amount_g",
                "book_g",
                "approval",
                "approval_max_mg",
                "approver",
                "purpose",
                "access_mode",
                "alarms",
            )
        }
        for r in rows(result.output)
    ]
    assert got == [
        {
            "time_utc": "2026-11-22T09:00:25.000Z",
            "cabinet": "cab-chem-0042",
            "action": "withdrawal",
            "person_1": "p-1001",
            "person_1_name": "Zhang Wei",
            "person_2": "p-1002",
            "person_2_name": "Li Na",
            "container": "c-NaCN-01",
            "container_name": "sodium cyanide",
            "cas": "143-33-9",
            "amount_g": "25.000",
            "book_g": "475.000",
            "approval": "none",
            "approval_max_mg": "",
            "approver": "",
            "purpose": "",
            "access_mode": "local",
            "alarms": "",
        },
        {
            "time_utc": "2026-11-22T10:00:35.000Z",
            "cabinet": "cab-chem-0042",
            "action": "withdrawal",
            "person_1": "p-1003",
            "person_1_name": "Wang Fang",
            "person_2": "p-1002",
            "person_2_name": "Li Na",
            "container": "c-KMnO4-01",
            "container_name": "potassium permanganate",
            "cas": "7722-64-7",
            "amount_g": "20.000",
            "book_g": "230.000",
            "approval": "scenario-line-8",
            "approval_max_mg": "10000",
            "approver": "p-1001",
            "purpose": "permanganate titration",
            "access_mode": "local",
            "alarms": "mass_mismatch:A1-1",
        },
        {
            "time_utc": "2026-11-22T11:00:35.000Z",
            "cabinet": "cab-chem-0042",
            "action": "return",
            "person_1": "p-1003",
            "person_1_name": "Wang Fang",
            "person_2": "p-1001",
            "person_2_name": "Zhang Wei",
            "container": "c-NaCN-01",
            "container_name": "sodium cyanide",
            "cas": "143-33-9",
            "amount_g": "10.000",
            "book_g": "485.000",
            "approval": "none",
            "approval_max_mg": "",
            "approver": "",
            "purpose": "",
            "access_mode": "remote",
            "alarms": "",
        },
    ]
    as_json = run("export", "--store", str(store), "--format", "json", "--registry", str(registry))
    parsed = json.loads(as_json.output)
    assert [r["amount_mg"] for r in parsed] == [25000, 20000, 10000]
    assert parsed[0]["site"] == "chem" and parsed[0]["session"] == "S1-1"
    later = run(
        "export",
        "--store",
        str(store),
        "--since",
        "2026-11-22T10:00:00Z",
        "--until",
        "2026-11-22T11:00:00Z",
        "--registry",
        str(registry),
    )
    assert [r["amount_g"] for r in rows(later.output)] == ["20.000"]


def test_daily_report_reconciles_book_and_scale_and_lists_open_alarms(
    tmp_path: Path, replayed_day: tuple[Path, Path]
) -> None:
    events, registry = replayed_day
    store = tmp_path / "ledger.db"
    run("import", str(events), "--store", str(store), "--registry", str(registry))
    result = run(
        "report",
        "daily",
        "--store",
        str(store),
        "--date",
        "2026-11-22",
        "--format",
        "json",
        "--policy",
        str(POLICY),
        "--registry",
        str(registry),
    )
    assert result.exit_code == 1  # an alarm is still open: attention needed
    report = json.loads(result.output)
    lines = {c["container"]: c for c in report["containers"]}
    assert lines["c-NaCN-01"] | {} == lines["c-NaCN-01"]
    assert {
        k: lines["c-NaCN-01"][k]
        for k in (
            "book_mg",
            "snapshot_mass_mg",
            "difference_mg",
            "status",
            "taken_today_mg",
            "returned_today_mg",
        )
    } == {
        "book_mg": 485000,
        "snapshot_mass_mg": 485000,
        "difference_mg": 0,
        "status": "OK",
        "taken_today_mg": 25000,
        "returned_today_mg": 10000,
    }
    assert lines["c-KMnO4-01"]["status"] == "OK" and lines["c-KMnO4-01"]["book_mg"] == 230000
    assert [(a["kind"], a["alarm"], a["acked"]) for a in report["open_alarms"]] == [
        ("mass_mismatch", "A1-1", False)
    ]
    assert report["open_alarms"][0]["age_h"] == 13  # raised 10:00:45, the day ends 24:00
    assert [(r["record"], r["persons"], r["detail"]) for r in report["records"]] == [
        ("stocktake", "p-1001, p-1003", "all ok")
    ]
    text = run(
        "report",
        "daily",
        "--store",
        str(store),
        "--date",
        "2026-11-22",
        "--registry",
        str(registry),
    ).output
    assert "ATTENTION NEEDED" in text and "NOT ACKED" in text and "485.000" in text


def test_mismatch_overdue_and_ack_show_in_the_daily_report(tmp_path: Path) -> None:
    cab = FakeCabinet("cab-1", "lab")
    t = 1_795_334_400_000  # 2026-11-22T08:00Z
    cab.emit(
        "inventory.withdrawal",
        {
            "session": "S1",
            "persons": ["a", "b"],
            "slot": 1,
            "container": "c-1",
            "cas": "1-1-1",
            "amount_mg": 5000,
            "book_mg": 95000,
            "approval": None,
        },
        at_ms=t,
    )
    cab.emit(
        "inventory.snapshot",
        {
            "slots": [
                {"slot": 1, "container": "c-1", "mass_mg": 90000, "book_mg": 95000},
                {"slot": 2, "container": "c-2", "mass_mg": 50000, "book_mg": 50000},
            ]
        },
        at_ms=t + 1000,
    )
    cab.emit(
        "inventory.removed",
        {"slot": 2, "container": "c-2", "session": "S2", "persons": ["a", "b"]},
        at_ms=t + 2000,
    )
    cab.emit(
        "alarm.raised",
        {"alarm": "A9", "kind": "overdue_return", "container": "c-2"},
        at_ms=t + 3000,
    )
    cab.emit("command.applied", {"name": "ack", "nonce": "n", "alarm": "A9"}, at_ms=t + 4000)
    events = tmp_path / "e.jsonl"
    events.write_bytes(cab.jsonl())
    registry = write_registry(tmp_path / "devices.toml", cab)
    store = tmp_path / "ledger.db"
    assert (
        run("import", str(events), "--store", str(store), "--registry", str(registry)).exit_code
        == 0
    )
    result = run(
        "report",
        "daily",
        "--store",
        str(store),
        "--date",
        "2026-11-22",
        "--format",
        "json",
        "--registry",
        str(registry),
    )
    report = json.loads(result.output)
    status = {c["container"]: (c["status"], c["difference_mg"]) for c in report["containers"]}
    assert status == {"c-1": ("MISMATCH", -5000), "c-2": ("OVERDUE", 0)}
    assert report["open_alarms"][0]["acked"] is True


def test_import_is_all_or_nothing_and_export_re_verifies_the_ledger(tmp_path: Path) -> None:
    cab = FakeCabinet()
    cab.emit(
        "inventory.withdrawal",
        {
            "session": "S1",
            "persons": ["a", "b"],
            "slot": 1,
            "container": "c-1",
            "amount_mg": 1,
            "book_mg": 2,
            "approval": None,
        },
    )
    cab.emit("door.closed", {"session": "S1"})
    registry = write_registry(tmp_path / "devices.toml", cab)
    store = tmp_path / "ledger.db"
    gap = tmp_path / "gap.jsonl"
    gap.write_bytes(cab.jsonl([cab.envelopes[1]]) + FakeCabinet().jsonl([]))
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(cab.envelopes[0].payload + b"\n" + b"{broken\n")
    refused = run("import", str(partial), "--store", str(store), "--registry", str(registry))
    assert refused.exit_code == 1 and "nothing imported: FAIL: line 2" in refused.output
    full = tmp_path / "full.jsonl"
    full.write_bytes(cab.jsonl())
    assert (
        run("import", str(full), "--store", str(store), "--registry", str(registry)).exit_code == 0
    )
    again = run("import", str(full), "--store", str(store), "--registry", str(registry))
    assert "0 new events" in again.output
    ok = run("verify", str(store), "--registry", str(registry))
    assert ok.output == "2 events, devices 1, OK\n"
    with sqlite3.connect(store) as db:  # someone edits the amount in the ledger file
        payload = db.execute("SELECT payload FROM events WHERE seq = 1").fetchone()[0]
        db.execute(
            "UPDATE events SET payload = ? WHERE seq = 1",
            (payload.replace(b'"amount_mg":1', b'"amount_mg":0'),),
        )
    tampered = run("export", "--store", str(store), "--registry", str(registry))
    assert tampered.exit_code == 1
    assert "cab-1 seq 1 does not verify (bad signature): the ledger was altered" in tampered.output
