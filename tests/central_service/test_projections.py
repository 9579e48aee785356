"""What the record means: alarms across boots, books, sessions, ledger, 账物相符."""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.store import Store
from tests.central.cabinet import DAY0_MS, FakeCabinet
from tests.central_service.conftest import Feed

Feeder = Callable[..., Feed]
POLICY = {
    "version": 7,
    "person": [
        {"id": "p-1001", "name": "张伟"},
        {"id": "p-1002", "name": "Li Na"},
        {"id": "p-2001", "name": "Wang Fang"},
    ],
    "container": [{"id": "c-NaCN-01", "name": "sodium cyanide", "class": "highly_toxic"}],
}
PAIR = ["p-1001", "p-1002"]


def a_day_at_the_cabinet(cab: FakeCabinet) -> None:
    """Boot 1: a withdrawal under an approval, a return, an alarm; boot 2: ack and clear."""
    cab.emit("system.started", {"version": "1", "boot": 1, "resumed_from_seq": 0})
    cab.emit(
        "command.applied",
        {
            "name": "approve_withdrawal",
            "nonce": "n-1",
            "reason": None,
            "args": {
                "container": "c-NaCN-01",
                "max_mg": 6000,
                "persons": PAIR,
                "by": "p-2001",
                "purpose": "titration",
                "until_ms": DAY0_MS + 10**7,
            },
        },
    )
    cab.emit(
        "access.pending", {"person": "p-1001", "reader": "A", "expires_at_ms": DAY0_MS + 30000}
    )
    cab.emit(
        "access.granted",
        {"persons": PAIR, "readers": ["A", "B"], "mode": "local", "session": "s-1"},
    )
    cab.emit("door.opened", {"session": "s-1"})
    cab.emit(
        "inventory.withdrawal",
        {
            "session": "s-1",
            "persons": PAIR,
            "slot": 3,
            "container": "c-NaCN-01",
            "cas": "143-33-9",
            "amount_mg": 5000,
            "book_mg": 495000,
            "approval": {"nonce": "n-1", "max_mg": 6000},
            "purpose": None,
        },
    )
    cab.emit("door.closed", {"session": "s-1"})
    cab.emit("alarm.raised", {"alarm": "A1-1", "kind": "mass_unexplained", "slot": 3})
    cab.emit(
        "inventory.return",
        {
            "session": None,
            "persons": PAIR,
            "slot": 3,
            "container": "c-NaCN-01",
            "cas": "143-33-9",
            "amount_mg": 1000,
            "book_mg": 496000,
            "approval": None,
            "purpose": None,
        },
    )
    cab.boot = 2
    cab.emit("system.started", {"version": "1", "boot": 2, "resumed_from_seq": 9})
    cab.emit(
        "alarm.acknowledged",
        {"alarm": "A1-1", "kind": "mass_unexplained", "by": "p-2001", "comment": "看过了"},
    )
    cab.emit(
        "inventory.adjusted",
        {
            "container": "c-NaCN-01",
            "slot": 3,
            "book_before_mg": 496000,
            "book_after_mg": 495800,
            "delta_mg": -200,
            "reason": "evaporation",
            "persons": PAIR,
            "alarm": "A1-1",
            "comment": None,
        },
    )
    cab.emit("alarm.cleared", {"alarm": "A1-1", "kind": "mass_unexplained", "reason": "resolved"})
    cab.emit(
        "inventory.snapshot",
        {"slots": [{"slot": 3, "container": "c-NaCN-01", "mass_mg": 677700, "book_mg": 495800}]},
    )
    cab.emit(
        "system.heartbeat",
        {"uptime_s": 60, "outbox_unsent": 4, "oldest_unsent_age_s": 3, "uplink": "up"},
    )


def test_an_alarm_raised_in_one_boot_acknowledged_and_cleared_in_the_next(
    store: Store, feed: Feeder
) -> None:
    cab = FakeCabinet()
    a_day_at_the_cabinet(cab)
    feed(cab).send(cab)
    assert store.alarms(state="open") == []
    (alarm,) = store.alarms(state="all", device=cab.device)
    assert (alarm.alarm, alarm.kind, alarm.acked_by, alarm.ack_comment, alarm.clear_reason) == (
        "A1-1",
        "mass_unexplained",
        "p-2001",
        "看过了",
        "resolved",
    )
    assert alarm.details == {"slot": 3}
    steps = store.alarm_history(cab.device, "A1-1")
    assert [(s.what, s.by, s.comment) for s in steps] == [
        ("raised", None, None),
        ("acknowledged", "p-2001", "看过了"),
        ("cleared", None, "resolved"),
    ]
    (cabinet,) = store.cabinets()
    assert (cabinet.boot, cabinet.last_seq, cabinet.open_alarms) == (2, 15, 0)
    assert (cabinet.outbox_unsent, cabinet.last_heartbeat_ms) == (4, cab.envelopes[-1].fields["ts"])


def test_the_ledger_names_both_persons_the_approver_and_the_purpose(
    store: Store, feed: Feeder
) -> None:
    cab = FakeCabinet()
    a_day_at_the_cabinet(cab)
    feed(cab).send(cab)
    store.set_policy_names(cab.device, POLICY)
    rows = store.ledger(device=cab.device)
    assert [(r.kind, r.amount_mg, r.book_mg) for r in rows] == [
        ("withdrawal", 5000, 495000),
        ("return", 1000, 496000),
        ("adjusted", -200, 495800),
    ]
    first = rows[0]
    assert (first.persons, first.approval, first.approver, first.purpose, first.name) == (
        tuple(PAIR),
        "n-1",
        "p-2001",
        "titration",
        "sodium cyanide",
    )
    assert [r.kind for r in store.ledger(person="p-2001")] == ["withdrawal"]
    assert store.ledger(container="other") == []
    assert store.ledger(since_ms=rows[1].ts_ms, until_ms=rows[2].ts_ms) == [rows[1]]
    assert store.person_name(cab.device, "p-1001") == "张伟"
    assert store.person_name(cab.device, "p-9") is None


def test_books_show_the_last_book_against_the_last_weighing(store: Store, feed: Feeder) -> None:
    cab = FakeCabinet()
    a_day_at_the_cabinet(cab)
    feed(cab).send(cab)
    store.set_policy_names("*", POLICY)
    (book,) = store.books(cab.device)
    assert (book.slot, book.container, book.cas, book.name, book.cls) == (
        3,
        "c-NaCN-01",
        "143-33-9",
        "sodium cyanide",
        "highly_toxic",
    )
    assert (book.book_mg, book.measured_mg, book.as_of_seq) == (495800, 677700, 14)


def test_sessions_and_first_badges(store: Store, feed: Feeder) -> None:
    cab = FakeCabinet()
    f = feed(cab)
    a_day_at_the_cabinet(cab)
    f.send(cab, *cab.envelopes[:3])
    (waiting,) = store.pending_approvals(now_ms=DAY0_MS)
    assert (waiting.person, waiting.reader) == ("p-1001", "A")
    assert store.pending_approvals(now_ms=DAY0_MS + 10**6) == []
    f.send(cab, *cab.envelopes[3:])
    assert store.pending_approvals(now_ms=DAY0_MS) == []
    (session,) = store.sessions(cab.device)
    assert (session.session, session.persons, session.mode) == ("s-1", tuple(PAIR), "local")
    assert session.closed_ms == cab.envelopes[6].fields["ts"]


def test_the_daily_reconciliation_counts_by_the_local_day(store: Store, feed: Feeder) -> None:
    cab = FakeCabinet()
    # 2026-11-22 23:30 in Shanghai is 15:30 UTC; 00:30 the next local day is 16:30 UTC
    late = int(datetime.datetime(2026, 11, 22, 15, 30, tzinfo=datetime.UTC).timestamp() * 1000)
    cab.emit(
        "inventory.withdrawal",
        {"container": "c-1", "slot": 1, "amount_mg": 100, "book_mg": 900, "persons": PAIR},
        at_ms=late,
    )
    cab.emit(
        "inventory.withdrawal",
        {"container": "c-1", "slot": 1, "amount_mg": 50, "book_mg": 850, "persons": PAIR},
        at_ms=late + 3600_000,
    )
    cab.emit(
        "inventory.snapshot",
        {"slots": [{"slot": 1, "container": "c-1", "mass_mg": 850, "book_mg": 850}]},
        at_ms=late + 3700_000,
    )
    feed(cab).send(cab)
    (first,) = store.daily(datetime.date(2026, 11, 22), "Asia/Shanghai")
    assert (first.opening_mg, first.withdrawn_mg, first.closing_mg, first.measured_mg) == (
        1000,
        100,
        900,
        None,
    )
    assert first.ok
    (second,) = store.daily(datetime.date(2026, 11, 23), "Asia/Shanghai")
    assert (second.opening_mg, second.withdrawn_mg, second.closing_mg, second.measured_mg) == (
        900,
        50,
        850,
        850,
    )
    (utc_day,) = store.daily(datetime.date(2026, 11, 22), "UTC")
    assert utc_day.withdrawn_mg == 150


def test_a_weighing_outside_tolerance_makes_the_day_not_ok(store: Store, feed: Feeder) -> None:
    cab = FakeCabinet()
    cab.emit(
        "inventory.snapshot",
        {"slots": [{"slot": 1, "container": "c-1", "mass_mg": 500000, "book_mg": 400000}]},
    )
    feed(cab).send(cab)
    day = datetime.datetime.fromtimestamp(DAY0_MS / 1000, datetime.UTC).date()
    (row,) = store.daily(day, "UTC")
    assert not row.ok and row.measured_mg == 500000


def _projections(store: Store, device: str) -> tuple[object, ...]:
    return (
        [dataclasses.replace(c, last_seen_ms=None) for c in store.cabinets()],
        store.alarms("all"),
        store.alarm_history(device, "A1-1"),
        store.books(),
        store.sessions(device),
        store.ledger(),
        store.pending_approvals(0),
    )


def test_rebuild_from_scratch_gives_the_same_projections(store: Store, feed: Feeder) -> None:
    cab = FakeCabinet()
    a_day_at_the_cabinet(cab)
    feed(cab).send(cab)
    before = _projections(store, cab.device)
    assert store.rebuild() == len(cab.envelopes)
    assert _projections(store, cab.device) == before


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1))
def test_projections_do_not_depend_on_the_order_of_arrival(store: Store, seed: int) -> None:
    cab = FakeCabinet(device=f"cab-{seed}")
    a_day_at_the_cabinet(cab)
    f = Feed(store, cab)
    shuffled = list(cab.envelopes)
    random.Random(seed).shuffle(shuffled)
    duplicated = shuffled + random.Random(seed + 1).sample(shuffled, 4)
    f.send(cab, *duplicated)
    (alarm,) = store.alarms("all", device=cab.device)
    assert (alarm.acked_by, alarm.clear_reason) == ("p-2001", "resolved")
    assert [s.what for s in store.alarm_history(cab.device, "A1-1")] == [
        "raised",
        "acknowledged",
        "cleared",
    ]
    assert [(r.kind, r.book_mg, r.approver) for r in store.ledger(device=cab.device)] == [
        ("withdrawal", 495000, "p-2001"),
        ("return", 496000, None),
        ("adjusted", 495800, None),
    ]
    assert [c.last_seq for c in store.cabinets() if c.device == cab.device] == [15]
    assert store.events(cab.device, limit=100) == [e.payload for e in cab.envelopes]


def test_receipt_disposal_stocktake_and_tap_out_are_projected(store: Store, feed: Feeder) -> None:
    """The agent's receipt, disposal, stocktake and tap-out events, hand-signed here in the
    shapes it emits (docs/protocol.md, "Vocabulary"), each projected on its own; the same
    events from the real agent core are exported and reported end to end in
    tests/central/test_ledger_export.py (the day of the five doubles)."""
    cab = FakeCabinet()
    cab.emit(
        "access.granted",
        {
            "persons": PAIR,
            "readers": ["A", "B"],
            "mode": "remote",
            "session": "s-9",
            "approval": "n-7",
        },
    )
    cab.emit(
        "inventory.received",
        {
            "session": "s-9",
            "persons": PAIR,
            "slot": 4,
            "container": "c-KCN-02",
            "cas": "151-50-8",
            "expected_mg": 250000,
            "measured_mg": 249800,
            "book_mg": 249800,
        },
    )
    cab.emit(
        "command.applied",
        {
            # as the agent records an applied command: its args flat beside name and nonce
            "name": "approve_disposal",
            "nonce": "n-8",
            "reason": None,
            "container": "c-NaCN-01",
            "persons": PAIR,
            "by": "p-2001",
            "purpose": "expired stock",
            "until_ms": DAY0_MS + 10**7,
        },
    )
    cab.emit(
        "inventory.disposed",
        {
            "session": "s-9",
            "persons": PAIR,
            "slot": 3,
            "container": "c-NaCN-01",
            "cas": "143-33-9",
            "book_mg": 120000,
            "approval": {"nonce": "n-8", "by": "p-2001"},
            "purpose": "expired stock",
        },
    )
    cab.emit("access.closed", {"session": "s-9", "persons_out": PAIR, "complete": True})
    cab.emit(
        "inventory.stocktake",
        {
            "persons": PAIR,
            "all_ok": True,
            "slots": [
                {
                    "slot": 4,
                    "container": "c-KCN-02",
                    "measured_mg": 249700,
                    "book_mg": 249800,
                    "diff_mg": -100,
                    "ok": True,
                }
            ],
        },
    )
    cab.emit("access.pending", {"person": "p-1004", "reader": "A", "expires_at_ms": DAY0_MS})
    cab.emit("access.expired", {"person": "p-1004"})
    feed(cab).send(cab)
    rows = store.ledger(device=cab.device)
    assert [(r.kind, r.container, r.amount_mg, r.book_mg) for r in rows] == [
        ("received", "c-KCN-02", 249800, 249800),
        ("disposed", "c-NaCN-01", 120000, 0),
    ]
    assert (rows[1].approver, rows[1].purpose) == ("p-2001", "expired stock")
    (book,) = store.books(cab.device)  # the disposed container left the books
    assert (book.container, book.book_mg, book.measured_mg) == ("c-KCN-02", 249800, 249700)
    (session,) = store.sessions(cab.device)
    assert (session.mode, session.closed_ms) == ("remote", cab.envelopes[4].fields["ts"])
    assert store.pending_approvals(0) == []
    day = datetime.datetime.fromtimestamp(DAY0_MS / 1000, datetime.UTC).date()
    daily = {r.container: r for r in store.daily(day, "UTC")}
    assert (daily["c-KCN-02"].received_mg, daily["c-KCN-02"].ok) == (249800, True)
    assert (daily["c-NaCN-01"].disposed_mg, daily["c-NaCN-01"].closing_mg) == (120000, 0)
    assert daily["c-NaCN-01"].ok
