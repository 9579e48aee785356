"""Judging messages in worker processes: the strict parse and the Ed25519 check of each
envelope are independent of every other envelope, so they can use the other cores.

    pool = JudgePool(workers, devices)     # workers=0: judged in this process
    pending = pool.submit(messages, now)   # returns at once; the workers start judging
    judgements = pending.result()          # one per message, in the messages' order

What stays in the ingest thread, in arrival order: the chain half (duplicates, forks,
links, against the stored record), storing, and acknowledging after the commit. A
worker only ever turns `(topic, payload)` into a `Judgement` (verifying.judge, the same
function as in-process): it holds no state but the registry, so losing one loses
nothing. If a worker dies (killed, out of memory) the pool is started again and the
batch is judged in this process, so the batch is stored whole and in order all the same.

The registry is handed to the workers when they start; when it changes (the file is
re-read, `cabinetctl device add`) the pool is replaced, so a worker never judges with
an older registry than the ingest thread's.

Workers are started by a fork server (not `fork`: this process runs paho's and
uvicorn's threads), which imports the verifier once; each worker costs one Python
process (~25 MB resident) and its start ~0.2 s here, a few seconds on a Raspberry Pi.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import structlog

from central.ingest.verifying import Judgement, judge
from central.registry import Device

log = structlog.get_logger("central.ingest")
Message = tuple[str, bytes]  # (topic, payload)

# The registry of this worker process (set once by the pool's initializer).
_devices: Mapping[str, Device] = {}


def auto_workers(cpus: int | None = None) -> int:
    """`workers = "auto"`: none on one or two cores, else one per core beyond the second,
    at most two. The ingest process (paho's threads, storing, the web app) keeps about a
    core busy by itself; on the 2-core test machine a worker added ~10 % CPU per envelope
    (pickling, the executor's threads) and no throughput that stood out of the noise."""
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(0, min(2, cpus - 2))


def _install(devices: Mapping[str, Device]) -> None:
    global _devices
    _devices = devices
    # Stopping is the parent's to do (it shuts the pool down, and a killed parent's
    # workers end when their pipe closes): a Ctrl-C or systemd's SIGTERM to the whole
    # group must not kill a worker first and show as a worker that died.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A worker blocked on its task queue never sees its parent die (every worker holds
    # the queue's writing end too), so it watches the parent's sentinel: a SIGKILLed
    # `serve` leaves no worker behind holding memory.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)  # nothing to save: a worker holds no state but the registry


def _judge_chunk(messages: Sequence[Message], received_ms: int) -> list[Judgement]:
    return [judge(topic, payload, _devices, received_ms) for topic, payload in messages]


class Pending:
    """A batch being judged: `result()` waits for it (in the batch's order)."""

    def __init__(
        self,
        pool: JudgePool,
        messages: Sequence[Message],
        received_ms: int,
        parts: list[Future[list[Judgement]]] | None,
        executor: ProcessPoolExecutor | None = None,
    ) -> None:
        self._pool = pool
        self._executor = executor
        self._messages = messages
        self._received_ms = received_ms
        self._parts = parts

    def result(self) -> list[Judgement]:
        if self._parts is not None:
            try:
                return [item for part in self._parts for item in part.result()]
            except (BrokenProcessPool, CancelledError):
                self._pool.broken(self._executor)
        devices = self._pool.devices()
        return [judge(t, p, devices, self._received_ms) for t, p in self._messages]


class JudgePool:
    def __init__(
        self,
        workers: int,
        devices: Callable[[], Mapping[str, Device]],
        *,
        smallest_shared: int = 16,
    ) -> None:
        self.workers = workers
        self.devices = devices
        # a batch this small (e.g. an alarm) is judged at once here: a round trip to a
        # worker would cost more than the judging
        self.smallest_shared = smallest_shared
        self.restarts = 0
        self._executor: ProcessPoolExecutor | None = None
        self._registry: Mapping[str, Device] | None = None

    def start(self) -> None:
        """Start the workers now (the first batch must not wait for them to start)."""
        if self.workers > 0:
            executor = self._pool_for(self.devices())
            try:
                for started in [executor.submit(_judge_chunk, [], 0) for _ in range(self.workers)]:
                    started.result()
            except BrokenProcessPool:  # judged in-process until a pool starts
                self.broken(executor)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def submit(
        self, messages: Sequence[Message], received_ms: int, *, here: bool = False
    ) -> Pending:
        """Start judging `messages`; `here`: in this process, when `result()` is called."""
        if here or self.workers == 0 or len(messages) < self.smallest_shared:
            return Pending(self, messages, received_ms, None)
        executor = self._pool_for(self.devices())
        size = -(-len(messages) // self.workers)
        try:
            parts = [
                executor.submit(_judge_chunk, messages[i : i + size], received_ms)
                for i in range(0, len(messages), size)
            ]
        except BrokenProcessPool:
            self.broken(executor)
            parts = None
        return Pending(self, messages, received_ms, parts, executor)

    def broken(self, executor: ProcessPoolExecutor | None) -> None:
        """A worker of `executor` died: the next batch gets a fresh pool (this one is
        judged here). Two batches may have been in the broken pool: only the first to
        notice replaces it, never the fresh pool a later batch is already in."""
        if executor is None or executor is not self._executor:
            return
        log.error("ingest.worker_died", workers=self.workers)
        self.restarts += 1
        executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None

    def _pool_for(self, devices: Mapping[str, Device]) -> ProcessPoolExecutor:
        if self._executor is not None and devices is self._registry:
            return self._executor
        if self._executor is not None:  # the registry was re-read
            self._executor.shutdown(wait=False)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["central.ingest.workers"])
        self._executor = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_install, initargs=(devices,)
        )
        self._registry = devices
        return self._executor
