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


def test_the_core_is_not_quiet_from_a_batch_until_its_outputs_are_applied(tmp_path):
    # The uplink defers to `quiet` (agent.uplink.Uplink.defer_to): it must be clear for
    # the whole of a decision, commit and relay included, and set again once it is done.
    outbox = Outbox(tmp_path / "outbox.db", "cab-chem-0042", SigningKey.generate())
    seen: queue.SimpleQueue[tuple[str, bool, bool]] = queue.SimpleQueue()
    core: Core

    def output(name: OutputName, on: bool) -> None:
        seen.put(("output:" + name, on, core.quiet.is_set()))

    def committed(envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            seen.put((envelope.type, True, core.quiet.is_set()))

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
        assert core.quiet.wait(5), "quiet while waiting for input"
        core.post(i.Badge("A", KEEPER))
        core.post(i.Badge("B", USER))
        observed = []
        # Outputs come first, then the uplink hears of the records (agent.core.flush).
        while "access.granted" not in [kind for kind, _, _ in observed]:
            try:
                observed.append(seen.get(timeout=5))
            except queue.Empty:
                raise AssertionError(f"no grant; saw {observed}") from None
        assert ("output:lock", True, False) in observed
        assert not any(quiet for _, _, quiet in observed), observed
        assert core.quiet.wait(5), "quiet again once the batch is applied"
    finally:
        stop.set()
        thread.join(5)
        outbox.close()
