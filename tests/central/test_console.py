"""The live screen renders what a person must see: open alarms first, problems loudly."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from agent.wire import VerifyKey
from central.chain import Timing
from central.console import Display, render
from central.policy_tools import load_policy_quietly
from central.registry import Device, Registry
from central.store_arg import Names
from central.timefmt import zone
from central.watch import WatchState, json_line
from tests.central.cabinet import DAY0_MS, FakeCabinet

POLICY = Path(__file__).parents[2] / "examples" / "policy.toml"
SHANGHAI = Display(zone("Asia/Shanghai"), Names(None, load_policy_quietly(POLICY)))


def watching(cab: FakeCabinet) -> WatchState:
    device = Device(cab.device, cab.site, "", VerifyKey.from_text(cab.pubkey))
    return WatchState(Registry(Path("d.toml"), {cab.device: device}), timing=Timing(grace_ms=0))


def screen_of(state: WatchState, width: int = 120, height: int = 40) -> str:
    console = Console(record=True, width=width, height=height, color_system=None)
    screen = render(
        state,
        SHANGHAI,
        now_ms=DAY0_MS + 90_000,
        broker="mqtt://b:1883",
        connected=True,
        height=height,
    )
    console.print(screen)
    return console.export_text()


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
    acked = cab.emit(
        "command.applied", {"name": "ack", "nonce": "n", "alarm": "A2", "by": "p-1003"}
    )
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

    screen = screen_of(state)
    top = screen.index("Open alarms: 2")
    assert top < screen.index("Problems") < screen.index("Event log")
    a1, a2 = screen.index("A1"), screen.index("A2 ")
    assert a1 < a2  # the unacknowledged one first
    assert "NOT ACKED" in screen[a1 - 60 : a1 + 60] and "leak" in screen
    assert "acked by Wang Fang (p-1003)" in screen[a2 : a2 + 60]
    assert "since (Asia/Shanghai)" in screen and "2026-11-22 17:00:00+08:00" in screen
    assert "cab-1 online" in screen
    assert "90s" in screen  # how long the leak has been open
    assert "bad signature" in screen
    assert "missing (resend asked): cab-1 seq 5" in screen
    assert '"problem": "gap: seq 5..5 missing, resend asked (attempt 1)"' in json_line(resends[0])


def test_the_newest_event_stays_on_screen_when_lines_are_long() -> None:
    cab = FakeCabinet()
    state = watching(cab)
    for i in range(60):
        env = cab.emit("env.reading", {"voc_ppb": i, "note": "x" * 300})
        state.on_message(cab.topic(env), env.payload, DAY0_MS)
    screen = screen_of(state, width=80, height=30)
    assert "#60 " in screen and "#59 " in screen
    assert len(screen.splitlines()) <= 30


def test_the_log_shows_people_by_name_grams_and_local_time() -> None:
    cab = FakeCabinet()
    state = watching(cab)
    withdrawal = {
        "session": "S1-1",
        "persons": ["p-1001", "p-1002"],
        "slot": 3,
        "container": "c-NaCN-01",
        "amount_mg": 25000,
        "book_mg": 475500,
        "approval": None,
    }
    env = cab.emit("inventory.withdrawal", withdrawal, at_ms=DAY0_MS + 25_000)
    state.on_message(cab.topic(env), env.payload, DAY0_MS)
    screen = screen_of(state, width=200)
    line = next(row for row in screen.splitlines() if "inventory.withdrawal" in row)
    assert "17:00:25" in line  # 09:00:25Z in Shanghai
    assert "persons=[Zhang Wei (p-1001), Li Na (p-1002)]" in line
    assert "amount=25.000 g" in line and "book=475.500 g" in line
    assert "_mg" not in line
