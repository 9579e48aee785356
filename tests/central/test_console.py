"""The live screen renders what a person must see: open alarms first, problems loudly."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from agent.wire import VerifyKey
from central.chain import Timing
from central.console import render
from central.registry import Device, Registry
from central.watch import WatchState, json_line
from tests.central.cabinet import DAY0_MS, FakeCabinet


def test_the_screen_shows_alarms_status_problems_gaps_and_the_log() -> None:
    cab, impostor = FakeCabinet(), FakeCabinet()
    state = WatchState(
        Registry(
            Path("d.toml"), {"cab-1": Device("cab-1", "lab", "", VerifyKey.from_text(cab.pubkey))}
        ),
        timing=Timing(grace_ms=0),
    )
    raised = cab.emit("alarm.raised", {"alarm": "A1", "kind": "leak"}, at_ms=DAY0_MS)
    cab.emit("alarm.raised", {"alarm": "A2", "kind": "door_forced"})
    acked = cab.emit("command.applied", {"name": "ack", "nonce": "n", "alarm": "A2"})
    later = cab.emit("door.opened", {"session": None})
    forged = impostor.emit("alarm.cleared", {"alarm": "A1", "kind": "leak"})
    for env in (raised, cab.envelopes[1], acked):
        state.on_message(cab.topic(env), env.payload, DAY0_MS)
    state.on_message("cabinet/lab/cab-1/evt/alarm", forged.payload, DAY0_MS)
    state.on_message("cabinet/lab/cab-1/status", cab.status("online"), DAY0_MS)
    state.on_message(cab.topic(later), later.payload, DAY0_MS)  # seq 4: fine
    cab.emit("door.closed", {"session": None})
    sixth = cab.emit("door.opened", {"session": None})
    state.on_message(cab.topic(sixth), sixth.payload, DAY0_MS)  # seq 5 missing
    resends = state.tick(DAY0_MS).resends

    console = Console(record=True, width=120, height=40, color_system=None)
    console.print(render(state, now_ms=DAY0_MS + 90_000, broker="mqtt://b:1883", connected=True))
    screen = console.export_text()
    top = screen.index("Open alarms: 2")
    assert top < screen.index("Problems") < screen.index("Event log")
    a1, a2 = screen.index("A1"), screen.index("A2 ")
    assert a1 < a2  # the unacknowledged one first
    assert "NOT ACKED" in screen[a1 - 60 : a1 + 60] and "leak" in screen
    assert "acked" in screen[a2 : a2 + 30]
    assert "cab-1 online" in screen
    assert "90s" in screen  # how long the leak has been open
    assert "bad signature" in screen
    assert "missing (resend asked): cab-1 seq 5" in screen
    assert '"problem": "gap: seq 5..5 missing, resend asked (attempt 1)"' in json_line(resends[0])
