"""The API over the real store (SQLite file): signed envelopes of a cabinet go through the
ingest's verification into the store, and the API answers from its projections, with
accounts and tokens as `cabinet-central user add` / `token create` make them."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central.store import Store
from central.web.app import create_app
from central.web.settings import WebSettings
from tests.central.cabinet import FakeCabinet
from tests.central_service.conftest import Feed
from tests.central_web.conftest import SECRET, sign_in
from tests.central_web.record import RecordingGateway

POLICY = {
    "version": 3,
    "person": [{"id": "p-1001", "name": "张伟"}, {"id": "p-1002", "name": "李娜"}],
    "container": [{"id": "c-NaCN-01", "name": "氰化钠", "class": "highly_toxic"}],
}


def a_withdrawal_and_an_alarm(cab: FakeCabinet) -> None:
    cab.emit("system.started", {"version": "1", "boot": 1, "resumed_from_seq": 0})
    cab.emit(
        "access.granted",
        {"persons": ["p-1001", "p-1002"], "readers": ["A", "B"], "mode": "local", "session": "s-1"},
    )
    cab.emit(
        "inventory.withdrawal",
        {
            "session": "s-1",
            "persons": ["p-1001", "p-1002"],
            "slot": 3,
            "container": "c-NaCN-01",
            "cas": "143-33-9",
            "amount_mg": 12_500,
            "book_mg": 487_500,
            "approval": None,
            "purpose": None,
        },
    )
    cab.emit("alarm.raised", {"alarm": "A1-1", "kind": "door_held_open"})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'central.db'}")
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def cabinet(store: Store) -> FakeCabinet:
    cab = FakeCabinet(device="cab-chem-0042")
    a_withdrawal_and_an_alarm(cab)
    feed = Feed(store, cab)
    store.set_policy_names(cab.device, POLICY)
    feed.send(cab)
    return cab


@pytest.fixture
def api(store: Store, cabinet: FakeCabinet) -> Iterator[TestClient]:
    store.add_user("zhang", "p-1001", "keeper", "a long enough password")
    token = store.create_token("zhang")
    client = TestClient(
        create_app(store, RecordingGateway(), WebSettings(secret_key=SECRET)),
        raise_server_exceptions=False,
    )
    client.headers["Authorization"] = f"Bearer {token}"
    yield client
    client.close()


def test_a_token_from_the_store_signs_in_and_a_wrong_one_does_not(api):
    assert api.get("/api/cabinets").status_code == 200
    assert api.get("/api/cabinets", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_the_cabinet_and_its_open_alarm_come_from_the_verified_record(api):
    cabinets = api.get("/api/cabinets").json()
    assert [(c["device"], c["last_seq"], c["open_alarms"]) for c in cabinets] == [
        ("cab-chem-0042", 4, 1)
    ]
    alarms = api.get("/api/alarms?state=open").json()
    assert [(a["alarm"], a["kind"], a["acked_by"]) for a in alarms] == [
        ("A1-1", "door_held_open", None)
    ]


def test_events_are_the_envelopes_byte_for_byte(api, cabinet):
    answer = api.get("/api/events?device=cab-chem-0042&from_seq=2&limit=2")
    assert answer.content == b"[" + b",".join(e.payload for e in cabinet.envelopes[1:3]) + b"]"


def test_the_ledger_csv_holds_the_withdrawal_by_name_in_grams(api):
    day = "2026-11-22"  # DAY0 09:00 UTC is 17:00 in Shanghai, the same local day
    answer = api.get(f"/api/ledger?format=csv&since={day}&until={day}")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert len(rows) == 2
    assert rows[1][2:9] == [
        "领用",
        "c-NaCN-01",
        "氰化钠",
        "143-33-9",
        "12.500",
        "487.500",
        "张伟 + 李娜",
    ]
    assert rows[1][0].startswith("2026-11-22 17:00")


def test_the_console_page_of_the_cabinet_shows_names_and_grams(store, cabinet):
    store.add_user("li", "p-1002", "auditor", "another long password")
    client = TestClient(create_app(store, RecordingGateway(), WebSettings(secret_key=SECRET)))
    assert sign_in(client, "li", "another long password").status_code == 303
    html = client.get("/cabinets/cab-chem-0042").text
    assert "张伟 + 李娜" in html
    assert "487.500 g" in html
    assert "记录已验证" in html
