"""The agent's own parts wired in one process for measuring: outbox, uplink, core, rules.

Nothing here is a stand-in: the outbox is the SQLite file with synchronous=FULL, the
uplink is `agent.uplink.Uplink` talking to the benchmark's mosquitto, the core is
`agent.core.Core` stepping `CabinetRules` under the example policy. The only addition is
`PubackProbe`, which timestamps the PUBACK of chosen seqs inside paho's callback, because
the uplink only reports acknowledgements as batched marks (up to 100 ms later).
"""

from __future__ import annotations

import bisect
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import __version__
from agent.clock import Clock, SystemClock
from agent.commands import CommandVerifier
from agent.core import Core, CoreHooks
from agent.nonces import NonceStore
from agent.outbox import Outbox
from agent.policy_source import read_policy_file
from agent.uplink import Uplink
from agent.wire import Envelope, SigningKey
from config.agent import AgentConfig, BrokerConfig
from rules.cabinet import CabinetRules
from rules.effects import OutputName
from rules.inputs import AnyInput, PolicyLoaded, Started

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "examples" / "policy.toml"
DEVICE = "cab-chem-0042"
SITE = "lab"
WINDOW = 64  # BrokerConfig's default in-flight window; the raw baseline uses the same
# The uplink's drain is rate-bounded (broker.drain_per_s, default 5000/s) so a backlog
# cannot saturate a cellular link. The benchmarks measure what the software can do, so
# they lift the bound; RESULTS.md says so next to the figures.
UNBOUNDED_DRAIN = 1_000_000


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class PubackProbe:
    """Counts successful event PUBACKs; timestamps (perf_counter) those of chosen seqs.

    It runs inside paho's callback on the uplink thread, so it does as little as it can:
    an increment, and a lock only for a watched seq or a waiter's target.
    """

    def __init__(self, uplink: Uplink) -> None:
        # Private parts of the uplink: its paho client and its mid -> seq map. If they
        # are renamed this fails loudly here rather than measuring nothing.
        client = uplink._client
        inflight: dict[int, int] = uplink._inflight
        inner: Any = client.on_publish
        if inner is None:
            raise RuntimeError("the uplink has no on_publish callback to wrap")
        self.watch: set[int] = set()
        self.record_all = False  # latency benchmarks: timestamp every event's PUBACK
        self.acked: dict[int, float] = {}
        self.events_acked = 0
        self._targets: list[int] = []  # counts that waiters wait for, lowest first
        self._cond = threading.Condition()

        def on_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any = None) -> None:
            seq = inflight.get(mid)
            if seq is not None and not reason.is_failure:
                self.events_acked += 1
                if self.record_all or seq in self.watch:
                    with self._cond:
                        self.acked[seq] = time.perf_counter()
                        self._cond.notify_all()
                elif self._targets and self.events_acked >= self._targets[0]:
                    with self._cond:
                        self._cond.notify_all()
            inner(c, userdata, mid, reason, props)

        client.on_publish = on_publish

    def wait(self, seq: int, timeout: float) -> float:
        """The PUBACK time of a watched seq (and forget it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while seq not in self.acked:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no PUBACK for seq {seq} within {timeout} s")
                self._cond.wait(left)
            return self.acked.pop(seq)

    def wait_count(self, count: int, timeout: float, abort: Callable[[], bool] = bool) -> None:
        """Until `count` events in all were acknowledged (or `abort()` says stop)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            bisect.insort(self._targets, count)
            try:
                while self.events_acked < count and not abort():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"{self.events_acked} of {count} PUBACKs in {timeout} s")
                    self._cond.wait(min(left, 0.5))
            finally:
                self._targets.remove(count)


@dataclass
class Agent:
    """One in-process agent; `close()` stops the threads and removes the state dir."""

    state_dir: Path
    outbox: Outbox
    uplink: Uplink
    nonces: NonceStore
    probe: PubackProbe
    core: Core | None = None
    core_thread: threading.Thread | None = None
    on_commit: list[Callable[[list[Envelope]], None]] = field(default_factory=list)
    on_output: list[Callable[[OutputName, bool], None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def committed(self, envelopes: list[Envelope]) -> None:
        for hook in self.on_commit:  # before notify: a hook may start watching a seq
            hook(envelopes)
        self.uplink.notify(envelopes)

    def output(self, name: OutputName, on: bool) -> None:
        for hook in self.on_output:
            hook(name, on)

    def start_core(self, clock: Clock | None = None) -> Core:
        """A live core under the example policy, its loop on its own thread as in `run`."""
        rules = CabinetRules(DEVICE, __version__)
        hooks = CoreHooks(apply_output=self.output, committed=self.committed)
        core = Core(rules, self.outbox, clock or SystemClock(), hooks)
        policy, _ = read_policy_file(POLICY, None, allow_plain=True)
        inputs: list[AnyInput] = [
            Started(__version__, self.outbox.boot),
            PolicyLoaded(policy, None, "file"),
        ]
        core.process(inputs)
        self.core = core
        self.core_thread = threading.Thread(
            target=core.run, args=(self._stop,), name="core", daemon=True
        )
        self.core_thread.start()
        return core

    def close(self) -> None:
        self._stop.set()
        if self.core_thread is not None:
            self.core_thread.join(5)
        self.uplink.stop(timeout=5)
        self.outbox.close()
        self.nonces.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def make_agent(
    broker_url: str, *, drain_per_s: int = UNBOUNDED_DRAIN, start_uplink: bool = True
) -> Agent:
    state = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    config = AgentConfig(
        device=DEVICE,
        site=SITE,
        state_dir=state,
        broker=BrokerConfig(
            url=broker_url,
            inflight=WINDOW,
            drain_per_s=drain_per_s,
            reconnect_min_s=1,
            reconnect_max_s=2,
        ),
    )
    key = SigningKey.generate()
    outbox = Outbox(state / "outbox.db", DEVICE, key)
    nonces = NonceStore(state / "nonces.db")
    verifier = CommandVerifier(DEVICE, SigningKey.generate().public, nonces)
    uplink = Uplink(
        config,
        outbox,
        pubkey=key.public.to_text(),
        version=__version__,
        boot=outbox.boot,
        post=lambda item: None,
        verifier=verifier,
    )
    agent = Agent(state, outbox, uplink, nonces, PubackProbe(uplink))
    if start_uplink:
        start(agent)
    return agent


def start(agent: Agent) -> None:
    agent.uplink.start()
    wait_until(lambda: agent.uplink.state == "connected", 15, "the uplink to connect")
