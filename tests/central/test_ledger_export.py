"""The usage ledger (领用记录) and the daily reconciliation (账物相符), from the centre's store.

The events are replayed through the real agent core (`cabinet-agent replay`), imported into
the store by the ingest's own judging and recording, and read back through its projections.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agent.wire import SigningKey
from central.cli import cli
from central.store import Store
from tests.central.cabinet import FakeCabinet, write_registry
from tests.central_service.postgres import PostgresCluster

ROOT = Path(__file__).parents[2]
POLICY = ROOT / "examples" / "policy.toml"
DAY = Path(__file__).parent / "data" / "scripted_day.jsonl"
FIVE_DOUBLES = Path(__file__).parent / "data" / "day_of_the_five_doubles.jsonl"
CHINESE_NAMES = {
    "Zhang Wei": "张伟",
    "Li Na": "李娜",
    "Wang Fang": "王芳",
    "sodium cyanide": "氰化钠",
}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def replay(tmp_path: Path, scenario: Path, policy: Path) -> tuple[Path, Path]:
    """`scenario` run through the real agent core; the events and a registry for them."""
    agent = shutil.which("cabinet-agent", path=str(Path(sys.executable).parent))
    assert agent, "cabinet-agent console script is not installed in the venv"
    key = SigningKey.generate()
    key_file = tmp_path / "device.key"
    key_file.write_text(key.to_text())
    key_file.chmod(0o600)
    done = subprocess.run(
        [agent, "replay", str(scenario), "--policy", str(policy), "--key", str(key_file)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    events = tmp_path / "day.jsonl"
    events.write_bytes(done.stdout)
    cabinet = FakeCabinet("cab-chem-0042", "chem", key)
    return events, write_registry(tmp_path / "devices.toml", cabinet)


@pytest.fixture
def replayed_day(tmp_path: Path) -> tuple[Path, Path]:
    return replay(tmp_path, DAY, POLICY)


@pytest.fixture
def chinese_policy(tmp_path: Path) -> Path:
    text = POLICY.read_text(encoding="utf-8")
    for english, chinese in CHINESE_NAMES.items():
        text = text.replace(f'name = "{english}"', f'name = "{chinese}"')
    path = tmp_path / "policy-zh.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def five_doubles_store(tmp_path: Path, chinese_policy: Path) -> tuple[Path, Path]:
    """A day of the five doubles, imported into a store: (store file, registry)."""
    events, registry = replay(tmp_path, FIVE_DOUBLES, chinese_policy)
    store = tmp_path / "central.db"
    imported = run("import", str(events), "--store", str(store), "--registry", str(registry))
    assert imported.exit_code == 0, imported.output
    # the names the centre knows from its policies directory (as `cabinet-central serve` does)
    with Store.open(f"sqlite:///{store}") as central:
        policy = tomllib.loads(chinese_policy.read_text(encoding="utf-8"))
        # version 8 (sent in the day's scene) adds the delivery of arsenic trioxide
        policy["container"].append({"id": "c-As2O3-01", "name": "三氧化二砷", "cas": "1327-53-3"})
        central.set_policy_names("cab-chem-0042", policy)
    return store, registry


def export(store: Path | str, registry: Path, *more: str) -> Result:
    return run("export", "--store", str(store), "--registry", str(registry), *more)


def test_export_of_a_scripted_day_shows_local_time_grams_and_names(
    tmp_path: Path, replayed_day: tuple[Path, Path]
) -> None:
    events, registry = replayed_day
    store = tmp_path / "central.db"
    imported = run("import", str(events), "--store", str(store), "--registry", str(registry))
    assert imported.exit_code == 0, imported.output
    day = ("--since", "2026-11-22", "--until", "2026-11-23")
    result = export(store, registry, *day, "--policy", str(POLICY))
    assert result.exit_code == 0, result.output
    keys = ("time", "action", "person_1_name", "person_2_name", "container_name", "cas")
    keys += ("amount_g", "book_g", "approval", "access_mode", "alarms")
    got = [{k: r[k] for k in keys} for r in rows(result.output)]
    assert got == [
        {
            "time": "2026-11-22 17:00:25+08:00",
            "action": "withdrawal",
            "person_1_name": "Zhang Wei",
            "person_2_name": "Li Na",
            "container_name": "sodium cyanide",
            "cas": "143-33-9",
            "amount_g": "25.000",
            "book_g": "475.000",
            "approval": "none",
            "access_mode": "local",
            "alarms": "",
        },
        {
            "time": "2026-11-22 18:00:35+08:00",
            "action": "withdrawal",
            "person_1_name": "Wang Fang",
            "person_2_name": "Li Na",
            "container_name": "potassium permanganate",
            "cas": "7722-64-7",
            "amount_g": "20.000",
            "book_g": "230.000",
            "approval": "scenario-line-8",
            "access_mode": "local",
            "alarms": "mass_mismatch:A1-1",
        },
        {
            "time": "2026-11-22 19:00:35+08:00",
            "action": "return",
            "person_1_name": "Wang Fang",
            "person_2_name": "Zhang Wei",
            "container_name": "sodium cyanide",
            "cas": "143-33-9",
            "amount_g": "10.000",
            "book_g": "485.000",
            "approval": "none",
            "access_mode": "remote",
            "alarms": "",
        },
    ]
    in_utc = export(store, registry, "--tz", "UTC", "--format", "json")
    parsed = json.loads(in_utc.output)
    assert [r["time"] for r in parsed][:1] == ["2026-11-22 09:00:25+00:00"]
    assert "amount_mg" not in parsed[0] and parsed[0]["site"] == "chem"
    an_hour = export(store, registry, "--since", "2026-11-22T18:00", "--until", "2026-11-22T19:00")
    assert [r["amount_g"] for r in rows(an_hour.output)] == ["20.000"]
    bad_zone = export(store, registry, "--tz", "Mars/Olympus")
    assert bad_zone.exit_code != 0 and "not a known time zone" in bad_zone.output


def test_export_csv_has_a_bom_chinese_names_purpose_and_approver(
    tmp_path: Path, five_doubles_store: tuple[Path, Path]
) -> None:
    store, registry = five_doubles_store
    out = tmp_path / "ledger.csv"
    result = export(store, registry, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    with out.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.DictReader(handle))
    withdrawal = next(r for r in table if r["action"] == "withdrawal")
    assert withdrawal["person_1_name"] == "张伟" and withdrawal["person_2_name"] == "李娜"
    assert withdrawal["container_name"] == "氰化钠"
    assert withdrawal["purpose"] == "滴定标准溶液，2号实验室"
    assert (withdrawal["approver"], withdrawal["approver_name"]) == ("p-1003", "王芳")
    assert withdrawal["approval"] == "scenario-line-2"
    assert withdrawal["amount_g"] == "18.000"
    adjusted = next(r for r in table if r["action"] == "adjusted")
    assert (adjusted["person_1_name"], adjusted["person_2_name"]) == ("张伟", "王芳")
    received = next(r for r in table if r["action"] == "received")
    assert (received["person_1_name"], received["person_2_name"]) == ("张伟", "李娜")
    assert (received["container"], received["container_name"]) == ("c-As2O3-01", "三氧化二砷")
    assert (received["amount_g"], received["book_g"], received["cas"]) == (
        "100.000",
        "100.000",
        "1327-53-3",
    )
    assert (received["approver"], received["approval"]) == ("", "none")  # no approval needed
    disposed = next(r for r in table if r["action"] == "disposed")
    assert (disposed["person_1"], disposed["person_2"]) == ("p-1001", "p-1002")
    assert (disposed["person_1_name"], disposed["person_2_name"]) == ("张伟", "李娜")
    assert (disposed["approver"], disposed["approver_name"]) == ("p-1003", "王芳")
    assert disposed["purpose"] == "包装破损，交危废处置单位"
    assert disposed["approval"] == "scenario-line-21"
    assert (disposed["amount_g"], disposed["book_g"]) == ("100.000", "0.000")


def test_daily_report_is_by_local_day_with_the_records_of_the_five_doubles(
    five_doubles_store: tuple[Path, Path],
) -> None:
    store, registry = five_doubles_store

    def report(day: str) -> dict[str, Any]:
        args = ("report", "daily", "--store", str(store), "--registry", str(registry))
        result = run(*args, "--date", day, "--format", "json")
        assert result.exit_code == 1, result.output  # a discrepancy is open: attention
        parsed: dict[str, Any] = json.loads(result.output)
        return parsed

    first = report("2026-11-22")
    assert first["tz"] == "Asia/Shanghai"
    assert [(r["record"], r["time"]) for r in first["records"]] == [
        ("adjusted", "2026-11-22 17:01:00+08:00"),
        ("received", "2026-11-22 17:03:35+08:00"),
        ("disposed", "2026-11-22 17:05:25+08:00"),
    ]
    adjusted, received, disposed = first["records"]
    assert adjusted["persons"] == "张伟, 王芳"
    assert (received["what"], received["amount_g"]) == ("c-As2O3-01 三氧化二砷", "100.000")
    assert (received["persons"], received["approver"], received["purpose"]) == (
        "张伟, 李娜",
        "",
        "",
    )
    assert (disposed["what"], disposed["amount_g"]) == ("c-As2O3-01 三氧化二砷", "100.000")
    assert (disposed["persons"], disposed["approver"]) == ("张伟, 李娜", "王芳")
    assert disposed["purpose"] == "包装破损，交危废处置单位"
    books = {c["container"]: c for c in first["containers"]}
    assert books["c-NaCN-01"]["withdrawn_g"] == "18.000"
    assert books["c-NaCN-01"]["closing_g"] == "482.000"
    assert not books["c-NaCN-01"]["weighed"] and books["c-NaCN-01"]["measured_g"] == ""
    delivered = books["c-As2O3-01"]  # in and out for good the same day: the book is empty
    assert (delivered["received_g"], delivered["disposed_g"]) == ("100.000", "100.000")
    assert (delivered["opening_g"], delivered["closing_g"], delivered["ok"]) == (
        "0.000",
        "0.000",
        True,
    )
    # 2026-11-22T17:00Z is already the 23rd in Shanghai: the stocktake is that day's record
    second = report("2026-11-23")
    (stocktake,) = second["records"]
    assert stocktake["record"] == "stocktake" and stocktake["time"].startswith("2026-11-23 01:00")
    assert stocktake["what"] == "2 slots, off: c-KMnO4-01"
    # the stocktake weighed both; the arsenic trioxide, gone for good, is no longer listed
    assert [c["container"] for c in second["containers"]] == ["c-KMnO4-01", "c-NaCN-01"]
    assert all(c["weighed"] for c in second["containers"])
    (open_one,) = second["open_discrepancies"]
    assert (open_one["kind"], open_one["alarm"]) == ("mass_unexplained", "A1-2")
    assert open_one["age"] == "30h58m"  # since 17:01:45 local on the 22nd, to the 23rd's end
    utc_day = run(
        "report",
        "daily",
        "--store",
        str(store),
        "--registry",
        str(registry),
        "--tz",
        "UTC",
        "--date",
        "2026-11-22",
        "--format",
        "json",
    )
    assert [r["record"] for r in json.loads(utc_day.output)["records"]] == [
        "adjusted",
        "received",
        "disposed",
        "stocktake",
    ]
    text = run(
        "report",
        "daily",
        "--store",
        str(store),
        "--registry",
        str(registry),
        "--date",
        "2026-11-23",
    ).output
    assert "ATTENTION NEEDED" in text and "Open discrepancies: 1" in text and "张伟" in text
    first_text = run(
        "report",
        "daily",
        "--store",
        str(store),
        "--registry",
        str(registry),
        "--date",
        "2026-11-22",
    ).output
    (line,) = [x for x in first_text.splitlines() if x.startswith("2026") and " disposed " in x]
    assert "张伟, 李娜" in line and "王芳" in line and line.endswith("包装破损，交危废处置单位")


def test_import_is_all_or_nothing_and_verify_finds_a_tampered_store(tmp_path: Path) -> None:
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
    store = tmp_path / "central.db"
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(cab.envelopes[0].payload + b"\n" + b"{broken\n")
    refused = run("import", str(partial), "--store", str(store), "--registry", str(registry))
    assert refused.exit_code == 1 and "nothing imported: FAIL: line 2" in refused.output
    full = tmp_path / "full.jsonl"
    full.write_bytes(cab.jsonl())
    first = run("import", str(full), "--store", str(store), "--registry", str(registry))
    assert first.exit_code == 0 and "2 new events" in first.output
    again = run("import", str(full), "--store", str(store), "--registry", str(registry))
    assert "0 new events" in again.output
    ok = run("verify", str(store), "--registry", str(registry))
    assert ok.output == "2 events, devices 1, OK\n"
    by_url = run("verify", f"sqlite:///{store}", "--registry", str(registry))
    assert by_url.output == "2 events, devices 1, OK\n"
    with sqlite3.connect(store) as db:  # someone edits the amount in the store's file
        payload = db.execute("SELECT payload FROM events WHERE seq = 1").fetchone()[0]
        db.execute(
            "UPDATE events SET payload = ? WHERE seq = 1",
            (payload.replace(b'"amount_mg":1', b'"amount_mg":0'),),
        )
    tampered = run("verify", str(store), "--registry", str(registry))
    assert tampered.exit_code == 1 and "FAIL" in tampered.output


def test_an_old_ledger_file_is_refused_and_carried_over_by_import(tmp_path: Path) -> None:
    cab = FakeCabinet()
    cab.emit("door.closed", {"session": None})
    registry = write_registry(tmp_path / "devices.toml", cab)
    old = tmp_path / "ledger.db"
    with sqlite3.connect(old) as db:  # the layout older cabinetctl versions wrote
        db.executescript(
            "CREATE TABLE events (device TEXT, seq INTEGER, ts INTEGER, type TEXT, sev TEXT,"
            " hash TEXT, received_ms INTEGER, note TEXT, payload BLOB,"
            " PRIMARY KEY (device, seq));"
            "CREATE TABLE problems (id INTEGER PRIMARY KEY, problem TEXT);"
        )
        env = cab.envelopes[0]
        db.execute(
            "INSERT INTO events VALUES (?, 1, 0, 'door.closed', 'info', '', 0, NULL, ?)",
            (cab.device, env.payload),
        )
    refused = export(old, registry)
    assert refused.exit_code == 1
    assert "ledger of an older cabinetctl" in refused.output
    assert f"cabinetctl import {old} --store NEW.db" in refused.output
    new = tmp_path / "central.db"
    carried = run("import", str(old), "--store", str(new), "--registry", str(registry))
    assert carried.exit_code == 0 and "1 new events" in carried.output, carried.output
    assert run("verify", str(new), "--registry", str(registry)).exit_code == 0


@pytest.mark.realpart
def test_export_and_report_read_a_postgresql_store_as_they_read_a_sqlite_one(
    tmp_path: Path, chinese_policy: Path, postgres: PostgresCluster
) -> None:
    events, registry = replay(tmp_path, FIVE_DOUBLES, chinese_policy)
    outputs = []
    for store in (str(tmp_path / "central.db"), postgres.new_database()):
        imported = run("import", str(events), "--store", store, "--registry", str(registry))
        assert imported.exit_code == 0, imported.output
        exported = export(store, registry, "--policy", str(chinese_policy))
        daily = run(
            "report",
            "daily",
            "--store",
            store,
            "--registry",
            str(registry),
            "--date",
            "2026-11-23",
            "--policy",
            str(chinese_policy),
        )
        verified = run("verify", store, "--registry", str(registry))
        assert verified.exit_code == 0, verified.output
        outputs.append((exported.output, daily.output, verified.output))
    assert outputs[0] == outputs[1]
    assert "滴定标准溶液" in outputs[1][0] and "stocktake" in outputs[1][1]
