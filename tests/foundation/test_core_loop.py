"""The live core loop (`Core.run`) as the daemon runs it: on its own thread, fed by `post`."""

from __future__ import annotations

import queue
import threading

from agent.clock import SystemClock
from agent.core import Core, CoreHooks
from agent.outbox import Outbox
from agent.wire import Envelope, SigningKey
from rules import inputs as i
from rules.cabinet import CabinetRules
from rules.effects import OutputName
from tests.rules.harness import KEEPER, USER, example_policy


def test_the_live_core_releases_the_lock_before_the_uplink_hears_of_the_grant(tmp_path):
    # Outputs first, then the uplink (agent.core.flush): a publish waits for a few pin
    # writes, never the relay for a publish. Both only after the commit.
    outbox = Outbox(tmp_path / "outbox.db", "cab-chem-0042", SigningKey.generate())
    seen: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
    core: Core

    def output(name: OutputName, on: bool) -> None:
        seen.put(("output:" + name, on))

    def committed(envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            seen.put((envelope.type, True))

    core = Core(
        CabinetRules("cab-chem-0042", "test"),
        outbox,
        SystemClock(),
        CoreHooks(apply_output=output, committed=committed),
    )
    core.process([i.Started("test", outbox.boot), i.PolicyLoaded(example_policy(), None, "file")])
    while not seen.empty():
        seen.get()
    stop = threading.Event()
    thread = threading.Thread(target=core.run, args=(stop,), daemon=True)
    thread.start()
    try:
        core.post(i.Badge("A", KEEPER))
        core.post(i.Badge("B", USER))
        observed = []
        # Outputs come first, then the uplink hears of the records (agent.core.flush).
        while "access.granted" not in [kind for kind, _ in observed]:
            try:
                observed.append(seen.get(timeout=5))
            except queue.Empty:
                raise AssertionError(f"no grant; saw {observed}") from None
        assert observed.index(("output:lock", True)) < observed.index(("access.granted", True))
    finally:
        stop.set()
        thread.join(5)
        outbox.close()
