"""The ingest loop: take what the broker delivered, judge it, store it, then acknowledge.

One thread per `serve` process drains the client's queue in batches (up to `batch`
messages, or whatever arrived within a few milliseconds), has each message judged
(verifying.judge: here, or in `[ingest] workers` processes, workers.JudgePool), records
the batch in one transaction (store.record) and only then acknowledges the batch's
messages to the broker. With workers, batches are a pipeline of two: the workers judge
batch N + 1 while this thread stores batch N. Batches are stored in the order they were
taken (an alarm's batch, judged here at once, goes before). If the database
is unavailable the batch is kept and retried (with backoff, the process says
`database: down`) and nothing is acknowledged: killing the process at any instant loses
nothing it acknowledged.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from central.ingest.client import Incoming, IngestClient
from central.ingest.verifying import Judgement
from central.ingest.workers import JudgePool, Pending
from central.registry import Device
from central.store import Store
from central.store.recording import QUARANTINED, STORED, Presence, Rejected, Verified
from central.store.store import StoreUnavailable

log = structlog.get_logger("central.ingest")
GATHER_S = 0.005  # a batch waits this long for more messages: ~nothing for a lone alarm


class InOrderAcks:
    """Acknowledge in the order the broker delivered (MQTT 4.6), whatever order the
    batches were stored in: an alarm stored first waits for the messages before it."""

    def __init__(self, ack: Callable[[Incoming], None]) -> None:
        self._ack = ack
        self._next = 0
        self._finished: dict[int, Incoming | None] = {}

    def finished(self, messages: list[Incoming], *, stored: bool) -> None:
        for message in messages:
            self._finished[message.order] = message if stored else None
        while self._next in self._finished:
            done = self._finished.pop(self._next)
            if done is not None:  # not stored: never acknowledged, asked for again
                self._ack(done)
            self._next += 1


@dataclass
class Counters:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    batches: int = 0
    failures: int = 0


class Ingest:
    def __init__(
        self,
        clients: list[IngestClient],
        store: Store,
        devices: Callable[[], Mapping[str, Device]],
        *,
        batch: int = 500,
        workers: int = 0,
    ) -> None:
        self.clients = clients
        self.messages = clients[0].messages  # one queue, shared by every connection
        self.store = store
        self.devices = devices
        self.batch = batch
        self.counters = Counters()
        self.database_ok = True
        self.acks = {c.lane: InOrderAcks(c.ack) for c in clients}
        self.judges = JudgePool(workers, devices)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)

    def start(self) -> None:
        self.judges.start()
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self.judges.close()

    def _gather(self, wait_s: float = 0.2) -> list[Incoming]:
        try:
            first = self.messages.get(timeout=wait_s) if wait_s > 0 else self.messages.get_nowait()
        except queue.Empty:
            return []
        batch = [first]
        if first.rank == 0:
            return batch + self._more_alarms()
        deadline = time.monotonic() + GATHER_S
        while len(batch) < self.batch:
            try:
                batch.append(self.messages.get_nowait())
            except queue.Empty:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.001)
        return batch

    def _more_alarms(self) -> list[Incoming]:
        # An alarm's batch holds alarms only: it commits in milliseconds, not behind 500
        # envelopes of a backlog.
        alarms: list[Incoming] = []
        while True:
            try:
                message = self.messages.get_nowait()
            except queue.Empty:
                return alarms
            if message.rank != 0:
                self.messages.put(message)
                return alarms
            alarms.append(message)

    def _run(self) -> None:
        judging: tuple[list[Incoming], Pending] | None = None  # batch N + 1, in the workers
        while not self._stop.is_set():
            # with a batch in the workers, take only what is already queued: storing it
            # must not wait for more to arrive
            messages = self._gather(0.2 if judging is None else 0.0)
            if messages and messages[0].rank == 0:  # alarms: judged here, stored at once
                self._safely(
                    messages, self.judges.submit(self._topics(messages), _now_ms(), here=True)
                )
                continue
            taken = None
            if messages:
                taken = (messages, self.judges.submit(self._topics(messages), _now_ms()))
            if judging is not None:
                self._safely(*judging)
            judging = taken

    @staticmethod
    def _topics(messages: list[Incoming]) -> list[tuple[str, bytes]]:
        return [(m.topic, m.payload) for m in messages]

    def _safely(self, messages: list[Incoming], judged: Pending) -> None:
        try:
            self.store_judged(messages, judged.result())
        except Exception:  # a bug must not stop the ingest; unacknowledged = asked again
            self._finished(messages, stored=False)
            self.counters.failures += 1
            log.exception("ingest.batch_failed", messages=len(messages))

    def store_judged(self, messages: list[Incoming], judged: list[Judgement]) -> None:
        verified: list[Verified] = []
        rejected: list[Rejected] = []
        presence: list[Presence] = []
        for item in judged:
            if isinstance(item, Verified):
                verified.append(item)
            elif isinstance(item, Presence):
                presence.append(item)
            else:
                rejected.append(item)
        outcomes = self._record(verified, rejected, presence)
        if outcomes is None:
            return  # stopping with the database down: nothing acknowledged
        self._finished(messages, stored=True)
        self._count(verified, outcomes, rejected)

    def _finished(self, messages: list[Incoming], *, stored: bool) -> None:
        for lane, acks in self.acks.items():
            mine = [m for m in messages if m.lane == lane]
            if mine:
                acks.finished(mine, stored=stored)

    def _record(
        self, verified: list[Verified], rejected: list[Rejected], presence: list[Presence]
    ) -> list[str] | None:
        delay = 0.1
        while True:
            try:
                outcomes = self.store.record(verified, rejected, presence)
            except StoreUnavailable as exc:
                if self.database_ok:
                    log.error("database.down", error=exc.message, held=len(verified))
                self.database_ok = False
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)
                continue
            if not self.database_ok:
                log.info("database.back")
            self.database_ok = True
            return outcomes

    def _count(
        self, verified: list[Verified], outcomes: list[str], rejected: list[Rejected]
    ) -> None:
        self.counters.batches += 1
        for item, outcome in zip(verified, outcomes, strict=True):
            if outcome == STORED:
                self.counters.stored += 1
            elif outcome == QUARANTINED:
                self.counters.quarantined += 1
                log.warning(
                    "quarantined",
                    device=item.env["device"],
                    seq=item.env["seq"],
                    reason="chain or fork (see the quarantine)",
                )
            else:
                self.counters.duplicates += 1
        for bad in rejected:
            self.counters.quarantined += 1
            # loud, but never the payload itself: it may be an attacker's text
            log.warning(
                "quarantined", device=bad.device, seq=bad.seq, reason=bad.reason, topic=bad.topic
            )


def _now_ms() -> int:
    return int(time.time() * 1000)
