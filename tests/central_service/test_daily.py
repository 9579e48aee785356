"""The daily reconciliation (账物相符) as a pure function of ledger rows and weighings."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from central.projections.daily import Weighing, day_bounds, reconcile
from central.store.records import LedgerRow

DAY = datetime.date(2026, 11, 22)
START, END = day_bounds(DAY, "Asia/Shanghai")
SIGN = {"withdrawal": -1, "return": 1, "adjusted": 1, "disposed": -1}


def _rows(start_book: int, moves: list[tuple[str, int, int]]) -> list[LedgerRow]:
    """Consistent rows: each book is the previous one moved by the row's amount."""
    book, rows = start_book, []
    for seq, (kind, amount, ts) in enumerate(moves, start=1):
        book += SIGN[kind] * amount
        rows.append(
            LedgerRow(
                ts, "cab-1", None, kind, "c-1", None, None, amount, book, (), None, None, None, seq
            )
        )
    return rows


moves = st.lists(
    st.tuples(
        st.sampled_from(sorted(set(SIGN) - {"disposed"})),
        st.integers(0, 10_000),
        st.integers(START - 86_400_000, END + 86_400_000),
    ),
    max_size=30,
).map(lambda ms: sorted(ms, key=lambda m: m[2]))


@given(st.integers(0, 10**6), moves)
def test_consistent_books_always_reconcile_and_the_day_adds_up(
    start_book: int, moved: list[tuple[str, int, int]]
) -> None:
    rows = _rows(start_book, moved)
    out = reconcile(DAY, START, END, rows, [], {})
    if not [r for r in rows if r.ts_ms < END]:
        assert out == []
        return
    (day,) = out
    assert day.ok
    today = [r for r in rows if START <= r.ts_ms < END]
    assert day.withdrawn_mg == sum(r.amount_mg for r in today if r.kind == "withdrawal")
    before = [r for r in rows if r.ts_ms < START]
    expected_opening = before[-1].book_mg if before else start_book
    if before or today:
        assert day.opening_mg == expected_opening
    assert day.closing_mg == [r for r in rows if r.ts_ms < END][-1].book_mg


@given(st.integers(1, 10**6), st.integers(0, 10**6))
def test_a_weighing_agrees_within_the_larger_of_2_g_and_1_percent(book: int, measured: int) -> None:
    weighing = Weighing("cab-1", "c-1", START + 1, 1, measured, book)
    (day,) = reconcile(DAY, START, END, [], [weighing], {})
    assert day.ok == (abs(measured - book) <= max(2000, book // 100))


def test_a_book_that_jumps_without_a_movement_does_not_reconcile() -> None:
    rows = _rows(1000, [("withdrawal", 100, START + 1), ("withdrawal", 100, START + 2)])
    tampered = [rows[0], rows[1].__class__(**{**rows[1].__dict__, "book_mg": 500})]
    (day,) = reconcile(DAY, START, END, tampered, [], {})
    assert not day.ok and day.closing_mg == 500


@given(st.integers(1, 10**6), st.integers(-3 * 86_400_000, 86_400_000 - 1))
def test_only_a_weighing_of_that_day_confirms_the_stock(book: int, offset: int) -> None:
    # 账物相符 needs the stock looked at: books that agree with themselves are not enough,
    # and a weighing of an earlier day says nothing about this day's stock.
    weighing = Weighing("cab-1", "c-1", START + offset, 1, book, book)
    (day,) = reconcile(DAY, START, END, [], [weighing], {})
    assert day.ok
    assert day.weighed == (offset >= 0)
    assert day.measured_mg == (book if offset >= 0 else None)
    assert day.opening_mg == book and day.closing_mg == book


def _received_then_disposed(received_at: int, disposed_at: int) -> list[LedgerRow]:
    def row(ts: int, kind: str, amount: int, book: int, seq: int) -> LedgerRow:
        persons = ("p-1", "p-2")
        return LedgerRow(
            ts, "cab-1", None, kind, "c-1", None, None, amount, book, persons, None, None, None, seq
        )

    return [
        row(received_at, "received", 100_000, 100_000, 1),
        row(disposed_at, "disposed", 100_000, 0, 3),
    ]


def test_a_bottle_received_and_disposed_the_same_day_shows_no_stale_weighing() -> None:
    # The delivery weighed 100 g; the bottle left the same afternoon. Its closing book is
    # 0 and nothing of it is in the cabinet: the report must not show 100 g "weighed"
    # against a book of 0, nor call it "not weighed".
    rows = _received_then_disposed(START + 1000, START + 9000)
    delivery = Weighing("cab-1", "c-1", START + 1000, 2, 100_000, 100_000)
    (day,) = reconcile(DAY, START, END, rows, [delivery], {})
    assert (day.received_mg, day.disposed_mg, day.closing_mg) == (100_000, 100_000, 0)
    assert day.ok and day.weighed and day.measured_mg is None


def test_a_bottle_disposed_today_is_not_counted_as_unweighed_and_is_gone_tomorrow() -> None:
    rows = _received_then_disposed(START - 86_400_000, START + 9000)
    (day,) = reconcile(DAY, START, END, rows, [], {})
    assert day.ok and day.weighed and day.measured_mg is None and day.closing_mg == 0
    tomorrow = DAY + datetime.timedelta(days=1)
    start, end = day_bounds(tomorrow, "Asia/Shanghai")
    assert reconcile(tomorrow, start, end, rows, [], {}) == []


def test_a_delivery_weighing_off_its_book_still_fails_the_day_it_is_disposed() -> None:
    rows = _received_then_disposed(START + 1000, START + 9000)
    off = Weighing("cab-1", "c-1", START + 1000, 2, 90_000, 100_000)  # 10 g short
    (day,) = reconcile(DAY, START, END, rows, [off], {})
    assert not day.ok
