"""The console app in process over a record the test fills (see record.py), and its clients."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.web.app import create_app
from central.web.settings import WebSettings
from tests.central_web.record import (
    Alarm,
    AlarmStep,
    Book,
    Cabinet,
    LedgerRow,
    MemoryRecord,
    Pending,
    Quarantined,
    RecordingGateway,
    SessionRow,
)
from tests.support.fixtures import broker_certs, make_broker  # noqa: F401

SECRET = "test-secret-key-0123456789"
DEVICE = "cab-chem-0042"
# 2026-03-01 09:30 in Shanghai is 01:30 UTC: local-time rendering must show 09:30
WITHDRAWAL_MS = int(datetime(2026, 3, 1, 1, 30, tzinfo=UTC).timestamp() * 1000)

ACCOUNTS = {
    # login: (policy person, role)
    "wang": ("p-3001", "operator"),
    "zhang": ("p-1001", "keeper"),
    "li": ("p-1003", "safety_officer"),
    "audit": ("p-4001", "auditor"),
    "root": ("p-9001", "admin"),
}
PASSWORD = "correct horse battery"


def fill(record: MemoryRecord) -> None:
    for login, (person, role) in ACCOUNTS.items():
        record.add_user(login, person, role, PASSWORD)
        record.add_token(login, f"token-{login}")
    record.names.update(
        {"p-1001": "张伟", "p-1002": "李娜", "p-1003": "李安全", "p-3001": "王值班"}
    )
    record.cabinet_rows.append(
        Cabinet(DEVICE, "lab", True, 3, 120, WITHDRAWAL_MS, 1, WITHDRAWAL_MS, 4)
    )
    record.cabinet_rows.append(
        Cabinet("cab-bio-0007", "bio", False, 1, 12, WITHDRAWAL_MS - 3_600_000, 0, None, None)
    )
    record.alarm_rows.append(Alarm(DEVICE, "A3-1", "mass_unexplained", WITHDRAWAL_MS))
    record.steps[(DEVICE, "A3-1")] = [AlarmStep(WITHDRAWAL_MS, "raised", None, None, 101)]
    record.envelopes[DEVICE] = [
        b'{"device":"cab-chem-0042","seq":1,"data":{"note":"\xe7\xad\xbe"}}',
        b'{"device":"cab-chem-0042","seq":2}',
    ]
    record.book_rows.append(
        Book(DEVICE, 3, "c-NaCN-01", "143-33-9", "氰化钠", "highly_toxic", 487_500, 487_400, 118)
    )
    record.session_rows[DEVICE] = [
        SessionRow("s-77", ["p-1001", "p-1002"], WITHDRAWAL_MS - 60_000, WITHDRAWAL_MS, "local")
    ]
    record.ledger_rows.append(
        LedgerRow(
            WITHDRAWAL_MS,
            DEVICE,
            "s-77",
            "withdrawal",
            "c-NaCN-01",
            "143-33-9",
            "氰化钠",
            12_500,
            487_500,
            ["p-1001", "p-1002"],
            None,
            None,
            "=实验课 HYPERLINK",
            117,
        )
    )
    record.quarantine_rows.append(
        Quarantined(DEVICE, 9, WITHDRAWAL_MS, "bad_signature", '{"seq":9}')
    )
    record.pending.append(Pending(DEVICE, "p-1002", "B", 4_102_444_800_000))  # year 2100


@pytest.fixture
def record() -> MemoryRecord:
    record = MemoryRecord()
    fill(record)
    return record


@pytest.fixture
def gateway() -> RecordingGateway:
    return RecordingGateway()


@pytest.fixture
def settings() -> WebSettings:
    return WebSettings(secret_key=SECRET)


@pytest.fixture
def make_client(
    record: MemoryRecord, gateway: RecordingGateway, settings: WebSettings
) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(login: str | None = None, token: bool = False, **kwargs: object) -> TestClient:
        app = create_app(record, gateway, settings)
        client = TestClient(app, raise_server_exceptions=False, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        if login is not None and token:
            client.headers["Authorization"] = f"Bearer token-{login}"
        elif login is not None:
            sign_in(client, login, PASSWORD)
        return client

    yield make
    for client in clients:
        client.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: TestClient, login: str, password: str, then: str = "/") -> Any:
    form = client.get("/login")
    return client.post(
        "/login",
        data={"username": login, "password": password, "csrf": csrf_of(form.text), "next": then},
        follow_redirects=False,
    )
