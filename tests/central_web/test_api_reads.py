"""The HTTP API's reads: every endpoint, who may call it, and bad input answered clearly."""

from __future__ import annotations

import csv
import io

import pytest

from central.web.settings import WebSettings
from tests.central_web.conftest import DEVICE, SECRET, WITHDRAWAL_MS

READS = [
    "/api/cabinets",
    "/api/alarms",
    f"/api/events?device={DEVICE}",
    "/api/books",
    "/api/ledger",
    "/api/quarantine",
    "/api/approvals",
    "/api/daily?day=2026-03-01",
    f"/api/sessions?device={DEVICE}",
    f"/api/alarms/{DEVICE}/A3-1/history",
]


def test_health_needs_no_login_and_says_ok(make_client):
    answer = make_client().get("/api/health")
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "ingest": "connected", "database": "ok"}


def test_health_is_503_when_the_database_is_down(make_client, record):
    record.down = True
    answer = make_client().get("/api/health")
    assert answer.status_code == 503
    assert answer.json() == {"ok": False, "ingest": "connected", "database": "down"}


def test_health_is_503_when_the_ingest_is_disconnected(record, gateway):
    from fastapi.testclient import TestClient

    from central.web.app import create_app

    settings = WebSettings(secret_key=SECRET, ingest_connected=lambda: False)
    answer = TestClient(create_app(record, gateway, settings)).get("/api/health")
    assert answer.status_code == 503
    assert answer.json()["ingest"] == "down"


@pytest.mark.parametrize("path", READS)
def test_every_read_refuses_a_caller_who_has_not_signed_in(make_client, path):
    answer = make_client().get(path)
    assert answer.status_code == 401
    assert "sign in" in answer.json()["error"]


@pytest.mark.parametrize("path", READS)
def test_an_auditor_reads_every_endpoint(make_client, path):
    assert make_client("audit", token=True).get(path).status_code == 200


def test_an_unknown_token_is_refused(make_client):
    client = make_client()
    answer = client.get("/api/cabinets", headers={"Authorization": "Bearer forged"})
    assert answer.status_code == 401


def test_cabinets_answer_exactly_the_contract_fields(make_client):
    rows = make_client("wang", token=True).get("/api/cabinets").json()
    assert rows[0] == {
        "device": DEVICE,
        "site": "lab",
        "online": True,
        "boot": 3,
        "last_seq": 120,
        "last_seen_ms": WITHDRAWAL_MS,
        "open_alarms": 1,
    }


def test_alarms_open_and_all_and_by_device(make_client, record):
    from tests.central_web.record import Alarm

    record.alarm_rows.append(
        Alarm(DEVICE, "A2-4", "door_held_open", 1, "p-1001", "关门", 5, "condition_gone")
    )
    client = make_client("wang", token=True)
    assert [a["alarm"] for a in client.get("/api/alarms").json()] == ["A3-1"]
    every = client.get(f"/api/alarms?state=all&device={DEVICE}").json()
    assert [a["alarm"] for a in every] == ["A3-1", "A2-4"]
    assert set(every[1]) == {
        "device",
        "alarm",
        "kind",
        "raised_ms",
        "acked_by",
        "ack_comment",
        "cleared_ms",
        "clear_reason",
    }
    assert every[1]["ack_comment"] == "关门"


def test_alarms_with_a_bad_state_or_unknown_device_are_4xx(make_client):
    client = make_client("wang", token=True)
    bad_state = client.get("/api/alarms?state=closed")
    assert bad_state.status_code == 422
    assert "state" in bad_state.json()["error"]
    unknown = client.get("/api/alarms?device=cab-nowhere")
    assert unknown.status_code == 404
    assert "cab-nowhere" in unknown.json()["error"]


def test_events_are_the_stored_bytes_unchanged(make_client, record):
    answer = make_client("audit", token=True).get(f"/api/events?device={DEVICE}")
    assert answer.status_code == 200
    assert answer.content == b"[" + b",".join(record.envelopes[DEVICE]) + b"]"
    assert answer.json()[0]["data"]["note"] == "签"


@pytest.mark.parametrize(
    "query",
    [
        "device=cab-chem-0042&from_seq=abc",
        "device=cab-chem-0042&limit=0",
        "from_seq=1",
        "device=cab-chem-0042&limit=100000",
    ],
)
def test_events_with_bad_paging_are_422(make_client, query):
    answer = make_client("audit", token=True).get(f"/api/events?{query}")
    assert answer.status_code == 422
    assert answer.json()["error"]


def test_events_of_an_unknown_device_are_404(make_client):
    assert make_client("audit", token=True).get("/api/events?device=x").status_code == 404


def test_books_answer_the_contract_fields(make_client):
    rows = make_client("audit", token=True).get(f"/api/books?device={DEVICE}").json()
    assert rows == [
        {
            "device": DEVICE,
            "slot": 3,
            "container": "c-NaCN-01",
            "cas": "143-33-9",
            "book_mg": 487_500,
            "measured_mg": 487_400,
            "as_of_seq": 118,
        }
    ]


def test_ledger_json_by_local_days(make_client):
    client = make_client("audit", token=True)
    # 09:30 Shanghai on 2026-03-01 is inside that local day, though it is 01:30 UTC
    assert len(client.get("/api/ledger?since=2026-03-01&until=2026-03-01").json()) == 1
    assert client.get("/api/ledger?since=2026-03-02").json() == []
    assert client.get("/api/ledger?until=2026-02-28").json() == []
    row = client.get("/api/ledger?since=2026-03-01T01:00:00Z").json()[0]
    assert row["amount_mg"] == 12_500 and row["persons"] == ["p-1001", "p-1002"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("since=yesterday", "since 'yesterday'"),
        ("until=2026-13-01", "until '2026-13-01'"),
        ("since=2026-03-01T08:00:00", "time zone"),
        ("since=2026-03-02&until=2026-03-01", "before"),
        ("format=xlsx", "format"),
    ],
)
def test_ledger_bad_dates_are_400_with_a_clear_message(make_client, query, says):
    answer = make_client("audit", token=True).get(f"/api/ledger?{query}")
    assert answer.status_code in (400, 422)
    assert says in answer.json()["error"]
    assert "Traceback" not in answer.text


def test_ledger_csv_opens_in_a_spreadsheet_with_chinese_text(make_client):
    answer = make_client("audit", token=True).get("/api/ledger?format=csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads UTF-8, not GBK
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0][0] == "时间 (Asia/Shanghai)"
    withdrawal = rows[1]
    assert withdrawal[0] == "2026-03-01 09:30:00"
    assert withdrawal[2] == "领用"
    assert withdrawal[4] == "氰化钠"
    assert withdrawal[6] == "12.500"  # grams
    assert withdrawal[8] == "张伟 + 李娜"
    # free text never becomes a formula in the spreadsheet
    assert withdrawal[11] == "'=实验课 HYPERLINK"


def test_ledger_csv_in_english_when_asked(make_client):
    client = make_client("audit", token=True)
    client.cookies.set("lang", "en")
    text = client.get("/api/ledger?format=csv").content.decode("utf-8-sig")
    assert text.startswith("time (Asia/Shanghai),cabinet,kind")
    assert ",withdrawal," in text


def test_quarantine_says_why(make_client):
    rows = make_client("audit", token=True).get("/api/quarantine").json()
    assert rows[0]["reason"] == "bad_signature" and rows[0]["seq"] == 9


def test_daily_is_asked_for_the_local_day_in_the_configured_zone(make_client, record):
    import datetime

    client = make_client("audit", token=True)
    assert client.get("/api/daily?day=2026-03-01").status_code == 200
    assert record.daily_asked[-1] == (datetime.date(2026, 3, 1), "Asia/Shanghai")
    bad = client.get("/api/daily?day=03/01/2026")
    assert bad.status_code == 400 and "2026-03-01" in bad.json()["error"]


def test_a_database_outage_is_503_not_a_traceback(make_client, record):
    client = make_client("audit", token=True)
    record.down = True
    answer = client.get("/api/cabinets")
    assert answer.status_code == 503
    assert "database" in answer.json()["error"]
    assert "Traceback" not in answer.text


def test_openapi_is_served_and_lists_the_api(make_client):
    schema = make_client().get("/openapi.json").json()
    assert "/api/commands/{device}/{name}" in schema["paths"]
    assert "/api/ledger" in schema["paths"]


def test_polling_one_cabinets_alarms_does_not_list_every_cabinet(make_client, record):
    client = make_client("audit", token=True)
    assert client.get(f"/api/alarms?state=open&device={DEVICE}").json()
    assert client.get(f"/api/events?device={DEVICE}").json()
    assert record.cabinet_reads == 0  # the costly query runs only when nothing was found
    assert client.get("/api/alarms?device=cab-nowhere").status_code == 404
    assert record.cabinet_reads == 1
