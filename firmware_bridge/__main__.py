"""Run the reference MCU simulator on a fresh pty, for manual tests of an agent.

    python -m firmware_bridge --slots 1=682000,2=0 --failsafe-ms 3000

prints the pty path to give the agent (`[hardware.bridge] port = "/dev/pts/N"`), then
reads commands from stdin: `door open|closed`, `tamper open|closed`, `leak wet|dry`,
`weight SLOT MG`, `scale SLOT fault|ok`, `jam engaged|released|off`, `reboot`, `hang`,
`status`, `quit`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from firmware_bridge.mcu_firmware import McuFirmware
from firmware_bridge.mcu_sim import McuSimulator, PtyPair


def _slots(text: str) -> dict[int, int]:
    slots: dict[int, int] = {}
    for part in filter(None, text.split(",")):
        slot, _, mg = part.partition("=")
        slots[int(slot)] = int(mg or "0")
    return slots


def _commands(sim: McuSimulator) -> dict[str, Callable[[list[str]], None]]:
    jam = {"engaged": True, "released": False, "off": None}
    return {
        "door": lambda a: sim.set_door(a[0] == "open"),
        "tamper": lambda a: sim.set_tamper(a[0] == "open"),
        "leak": lambda a: sim.set_leak(a[0] == "wet"),
        "weight": lambda a: sim.set_weight(int(a[0]), int(a[1])),
        "scale": lambda a: sim.set_scale_fault(int(a[0]), a[1] == "fault"),
        "jam": lambda a: sim.jam_bolt(jam[a[0]]),
        "reboot": lambda a: sim.reboot(),
        "hang": lambda a: sim.hang(),
        "status": lambda a: print(
            f"relay={'on' if sim.relay_on else 'off'} failsafe={sim.failsafe_tripped} "
            f"status={sim.firmware.status()!r} "
            f"outputs={ {o.name.lower(): on for o, on in sim.outputs.items()} }"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge", description=__doc__)
    parser.add_argument("--slots", type=_slots, default={1: 0, 2: 0, 3: 0, 4: 0})
    parser.add_argument("--failsafe-ms", type=int, default=3000)
    parser.add_argument("--heartbeat-ms", type=int, default=500)
    parser.add_argument("--weights-ms", type=int, default=500)
    args = parser.parse_args(argv)
    pair = PtyPair()
    firmware = McuFirmware(
        slots=args.slots,
        failsafe_ms=args.failsafe_ms,
        heartbeat_ms=args.heartbeat_ms,
        weights_ms=args.weights_ms,
    )
    sim = McuSimulator(pair.master, firmware)
    commands = _commands(sim)
    print(f"MCU simulator on {pair.path}", flush=True)
    try:
        with sim:
            for line in sys.stdin:
                words = line.split()
                if not words:
                    continue
                if words[0] == "quit":
                    break
                action = commands.get(words[0])
                try:
                    if action is None:
                        raise KeyError(words[0])
                    action(words[1:])
                except (KeyError, IndexError, ValueError) as exc:
                    print(f"? {line.strip()} ({exc!r}); commands: {', '.join(commands)}, quit")
    except KeyboardInterrupt:
        pass
    finally:
        pair.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
