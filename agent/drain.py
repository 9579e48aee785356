"""The drain: which outbox event goes on the wire next, and what the broker's answers mean.

No paho, no sockets, no clock: the caller passes monotonic `now`, reads and marks go
through the outbox (`EventStore`), and `pump` is handed a `publish` callable that puts one
event on the wire and returns a handle for it (the MQTT message id), or None once the link
is gone. The caller reports each PUBACK by that handle. The uplink owns the rest.

The order (docs/protocol.md, "Delivery guarantees for events"): the backlog goes out in
seq order from a cursor, bounded by an in-flight window and paced by a token bucket.
Alarms overtake it, and may exceed the window by URGENT_EXTRA so a full window never
delays them. `resend` ranges go before the backlog. Acknowledged seqs are marked sent in
batches. Refused events (PUBACK >= 0x80) stay unsent and are retried with backoff by re-
reading the outbox from the lowest one; the tracker of refused events is bounded, and
those it has no room for stay unsent until the next full pass (a reconnect, or a sweep
once the tracker is half empty again).

After a lost connection nothing in flight counts: the cursor goes back to 0 and every
unsent event is read again (at-least-once; consumers dedupe by seq).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final, Protocol

import structlog

from agent import wire
from agent.backoff import RefusalTracker, TokenBucket
from agent.outbox import Stored
from rules.inputs import SensorFault, SensorRecovered

log = structlog.get_logger("uplink")

PAGE: Final = 500  # rows per outbox read
MARK_BATCH: Final = 256  # marks per transaction ...
MARK_EVERY_S: Final = 0.1  # ... or at least this often
URGENT_EXTRA: Final = 32  # alarms may exceed the window so a full window never delays them
URGENT_QUEUE: Final = 1000  # older alarms beyond this go with the backlog (still in the outbox)
FAULT_CHECK_EVERY_S: Final = 1.0  # `persisting` scans every refusal

Publish = Callable[[str, bytes], int | None]  # (type, payload) -> handle, None: link gone


class EventStore(Protocol):
    """What the drain needs of the outbox (agent.outbox.Outbox)."""

    @property
    def last_seq(self) -> int: ...

    def unsent(self, limit: int, after_seq: int) -> list[Stored]: ...

    def range(self, from_seq: int, to_seq: int) -> list[Stored]: ...

    def mark_sent(self, seqs: Iterable[int]) -> int: ...


class Drain:
    """Store-and-forward scheduling for one uplink.

    `notify` and `request` may be called from any thread (deque appends and one flag);
    everything else belongs to the uplink thread.
    """

    def __init__(
        self,
        store: EventStore,
        refusals: RefusalTracker,
        window: int,
        rate_per_s: float,
        now: float,
    ) -> None:
        self._store = store
        self._window = window
        self._bucket = TokenBucket(rate_per_s, max(window, rate_per_s / 20), now)
        self._urgent: deque[wire.Envelope] = deque(maxlen=URGENT_QUEUE)
        self._requests: deque[tuple[int, int]] = deque()
        self._backlog_maybe = True
        self.in_flight: dict[int, int] = {}  # handle -> seq; read-only outside
        self._in_flight_seqs: set[int] = set()
        self._cursor = 0  # highest seq the backlog has taken since the last rewind
        self._passed = 0  # highest seq the backlog has taken in this connection
        self._pending: deque[Stored] = deque()
        self._ahead: set[int] = set()  # alarms published before the backlog reached them
        self._resend: deque[tuple[int, int]] = deque()
        self._resend_rows: deque[Stored] = deque()
        self._acked: list[int] = []
        self._acked_since = 0.0
        self._refused = refusals
        self._overflowed = False  # refusals the tracker had no room for are in the outbox
        self._fault_posted = False
        self._last_fault_check = float("-inf")
        self.counts = {
            "published": 0,
            "acked": 0,
            "failed": 0,
            "republished": 0,
            "refused_untracked": 0,
            "mark_failed": 0,
        }

    # --- input from other threads -----------------------------------------------------

    def notify(self, envelopes: Iterable[wire.Envelope]) -> None:
        """New committed events: alarms overtake any backlog, the rest wait their turn."""
        self._urgent.extend(e for e in envelopes if e.fields.get("sev") == "alarm")
        self._backlog_maybe = True

    def request(self, from_seq: int, to_seq: int) -> None:
        """Publish [from_seq, to_seq] again (`resend` command), sent or not."""
        self._requests.append((from_seq, to_seq))

    # --- what the uplink thread reports -------------------------------------------------

    def stats(self) -> dict[str, int]:
        return {
            **self.counts,
            "in_flight": len(self.in_flight),
            "refused_pending": len(self._refused),
        }

    def acked(self, handle: int, now: float) -> None:
        """The broker took the event published as `handle` (PUBACK below 0x80)."""
        seq = self._answered(handle)
        if seq is None:
            return
        self.counts["acked"] += 1
        if not self._acked:
            self._acked_since = now
        self._acked.append(seq)
        if self._refused.accepted(seq):
            log.info("uplink.publish_accepted_after_refusal", seq=seq)

    def refused(self, handle: int, reason: str, now: float) -> None:
        """The broker refused it (MQTT 5 PUBACK >= 0x80, e.g. 0x87 Not authorized)."""
        seq = self._answered(handle)
        if seq is None:
            return
        self.counts["failed"] += 1
        self._ahead.discard(seq)
        refusal = self._refused.refuse(seq, reason, now)
        if refusal is None:
            self._untracked(seq, reason)
            return
        # One warning per event; the retries are summed up by uplink.refusals_persist.
        report = log.warning if refusal.attempts == 1 else log.debug
        report("uplink.publish_refused", seq=seq, reason=refusal.reason, attempts=refusal.attempts)

    def connection_lost(self, now: float) -> None:
        """Nothing in flight will be acknowledged now: all of it goes out again, in order."""
        self.flush_marks(now, force=True)
        self.in_flight.clear()
        self._in_flight_seqs.clear()
        self._passed = 0
        self._rewind(0)
        self._ahead.clear()
        if self._resend_rows:  # keep the unfinished part of a resend
            self._resend.appendleft((self._resend_rows[0].seq, self._resend_rows[-1].seq))
            self._resend_rows.clear()

    # --- scheduling -------------------------------------------------------------------

    def pump(self, now: float, publish: Publish) -> None:
        """Publish whatever is due now: alarms, then resends, then the backlog."""
        while self._urgent and len(self.in_flight) < self._window + URGENT_EXTRA:
            env = self._urgent.popleft()
            fresh = env.seq not in self._ahead and env.seq not in self._in_flight_seqs
            if env.seq > self._cursor and fresh:
                if not self._send(env.seq, env.type, env.payload, publish):
                    return
                self._ahead.add(env.seq)
        while self._requests:
            self._resend.append(self._requests.popleft())
        self._sweep_untracked(now)
        self._retry_refused(now)
        budget = min(self._window - len(self.in_flight), self._bucket.available(now))
        spent = 0
        while spent < budget:
            row = self._next_resend() or self._next_backlog(now)
            if row is None:
                break
            if not self._send(row.seq, row.type, row.payload, publish):
                break
            spent += 1
        self._bucket.spend(spent)

    def idle_s(self, now: float, longest: float) -> float:
        """How long the caller may wait on the network before the drain has work again."""
        if self._urgent and len(self.in_flight) < self._window + URGENT_EXTRA:
            return 0.0
        room = len(self.in_flight) < self._window
        if room and (self._backlog_maybe or self._pending or self._resend or self._requests):
            return min(longest, self._bucket.wait_s(now))
        timeout = longest if not self._acked else min(longest, MARK_EVERY_S)
        due = self._refused.next_due()
        return timeout if due is None else min(timeout, max(0.0, due - now))

    def flush_marks(self, now: float, force: bool) -> None:
        if not self._acked:
            return
        if force or len(self._acked) >= MARK_BATCH or now - self._acked_since >= MARK_EVERY_S:
            try:
                self._store.mark_sent(self._acked)
            except sqlite3.Error as exc:
                # Kept for the next try; at worst a restart republishes them (dedup by seq).
                self.counts["mark_failed"] += 1
                log.error("uplink.mark_failed", error=str(exc), count=len(self._acked))
                return
            self._acked = []

    def refusal_news(self, now: float) -> SensorFault | SensorRecovered | None:
        """SensorFault("uplink") once refusals persist, SensorRecovered once they are gone."""
        if now - self._last_fault_check < FAULT_CHECK_EVERY_S:
            return None
        self._last_fault_check = now
        if not self._refused and not self._overflowed:
            if self._fault_posted:
                self._fault_posted = False
                log.info("uplink.refusals_cleared")
                return SensorRecovered(sensor="uplink")
            return None
        oldest = self._refused.persisting(now)
        if oldest is None or self._fault_posted:
            return None
        seq, refusal = oldest
        self._fault_posted = True
        kind = "publish_not_authorized" if "authorized" in refusal.reason else "publish_refused"
        detail = (
            f"{kind}: {len(self._refused)} events refused by the broker "
            f"({refusal.reason}) since seq {seq}"
        )
        log.error("uplink.refusals_persist", refused=len(self._refused), oldest_seq=seq)
        return SensorFault(sensor="uplink", detail=detail)

    # --- internals --------------------------------------------------------------------

    def _answered(self, handle: int) -> int | None:
        seq = self.in_flight.pop(handle, None)
        if seq is not None:
            self._in_flight_seqs.discard(seq)
        return seq

    def _untracked(self, seq: int, reason: str) -> None:
        # Left unsent in the outbox; the next full pass (a reconnect, or the sweep once
        # the tracker has room again) publishes it again.
        self.counts["refused_untracked"] += 1
        log.debug("uplink.publish_refused", seq=seq, reason=reason, tracked=False)
        if not self._overflowed:
            self._overflowed = True
            log.error(
                "uplink.refusals_over_capacity",
                capacity=self._refused.capacity,
                seq=seq,
                reason=reason,
            )

    def _send(self, seq: int, event_type: str, payload: bytes, publish: Publish) -> bool:
        handle = publish(event_type, payload)
        if handle is None:
            return False
        self.in_flight[handle] = seq
        self._in_flight_seqs.add(seq)
        self.counts["published"] += 1
        return True

    def _retry_refused(self, now: float) -> None:
        due = []
        for seq in self._refused.pop_due(now):
            if not self._store.range(seq, seq):
                self._refused.accepted(seq)  # shed from the outbox meanwhile: nothing to send
            elif seq not in self._in_flight_seqs:
                due.append(seq)
        if due:
            # Retry refused events by re-reading the outbox from the lowest one; marks go
            # first, else events acked meanwhile would be re-read as unsent.
            self.flush_marks(now, force=True)
            self._rewind(min(self._cursor, min(due) - 1))

    def _sweep_untracked(self, now: float) -> None:
        # Half empty again (e.g. the ACL was fixed): one pass from the start gives the
        # events refused while the tracker was full their retry. Not at the first free
        # slot, or every acceptance would republish all of them.
        if not self._overflowed or len(self._refused) > self._refused.capacity // 2:
            return
        self._overflowed = False
        log.info("uplink.refusals_sweep", tracked=len(self._refused))
        self.flush_marks(now, force=True)
        self._passed = 0
        self._rewind(0)

    def _next_resend(self) -> Stored | None:
        while True:
            while not self._resend_rows and self._resend:
                lo, hi = self._resend.popleft()
                hi = min(hi, self._store.last_seq)  # a range past the end ends here
                if lo > hi:
                    continue
                top = min(hi, lo + PAGE - 1)
                self._resend_rows.extend(self._store.range(lo, top))
                if top < hi:
                    self._resend.appendleft((top + 1, hi))
            if not self._resend_rows:
                return None
            row = self._resend_rows.popleft()
            if row.seq not in self._in_flight_seqs:
                self.counts["republished"] += 1
                return row

    def _next_backlog(self, now: float) -> Stored | None:
        while True:
            if not self._pending:
                if not self._backlog_maybe:
                    return None
                self._backlog_maybe = False  # set before reading: a notify may race us
                rows = self._store.unsent(limit=PAGE, after_seq=self._cursor)
                if not rows:
                    return None
                self._backlog_maybe = True
                self._pending.extend(rows)
            row = self._pending.popleft()
            self._cursor = row.seq
            behind = row.seq <= self._passed
            if not behind:
                self._passed = row.seq
            if row.seq in self._ahead:
                self._ahead.discard(row.seq)
                continue
            if row.seq in self._in_flight_seqs or self._refused.waiting(row.seq, now):
                continue
            if behind and row.seq not in self._refused:
                # Behind the cursor, unsent, neither in flight nor a tracked refusal:
                # either it was acknowledged after this page was read (sending it again
                # would only make a duplicate) or it was refused while the tracker was
                # full (only a full pass retries those, so they cannot crowd out live
                # events).
                continue
            return row

    def _rewind(self, cursor: int) -> None:
        self._cursor = cursor
        self._pending.clear()
        self._backlog_maybe = True
