"""A cabinet on real backends for end-to-end tests of `cabinet-agent run` (in-process).

The real `Daemon` runs in a thread with whatever mix of backends agent.toml asks for:

- GPIO on gpiozero's MockFactory, with `ContactPin`s that model the wiring: a closed
  contact holds its line at the contact's level, an open one lets the pull resistor
  decide (MockPin alone lets the pull resistor win at set-up, so an NC door loop would
  read "open" the moment the driver claims the line);
- readers A and B on pcscd + vpcd (tests/drivers/pcsc_stack.py), cards put down by the test;
- scales and VOC on a pymodbus RTU server behind a pty (tests/drivers/modbus_bench.py);
- a real mosquitto, and a signed policy (a real cabinet refuses an unsigned one).

What the cabinet did is read back from the outbox (tests/hardware/observe.py), which
holds exactly what is published; the GPIO wiring is modelled in tests/hardware/wiring.py.
"""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.daemon import Daemon, RunOptions
from agent.wire import SigningKey, sign_policy, verify_chain
from agent.wire.key_files import write_new_key
from config.agent import load_agent_config
from config.policy import Policy
from tests.drivers.modbus_bench import LineTap, SimulatedDevices
from tests.hardware.observe import InputTap, OutboxView, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = ROOT / "examples" / "policy.toml"
DEVICE = "cab-chem-0042"  # the example policy's cabinet
SITE = "lab"

# People and cards of examples/policy.toml.
KEEPER = ("p-1001", "04A1B2C3D4E5F6")
USER = ("p-1002", "04FFEEDDCCBBAA")
USER_SECOND_CARD = "04FFEEDDCCBB01"  # p-1002's other card

# GPIO lines (BCM numbers; 2 and 3 carry fixed pull-ups on the mock board: not used).
DOOR, TAMPER, LEAK = 5, 13, 6
RELAY, FAN, BUZZER, LED_GREEN, LED_RED = 17, 27, 22, 23, 24

# The RS-485 bus: one scale board (unit 1, two slots) and a VOC sensor (unit 2).
SCALES_UNIT, VOC_UNIT = 1, 2
SCALE_ADDRESS = {3: 0, 4: 2}  # slot -> first of its two holding registers (10 mg units)
SILENT_AFTER_S = 1

# The example policy made quick enough for tests; everything else as shipped.
FAST = {
    "access": {"pair_window_s": 4, "unlock_s": 3},
    "inventory": {"settle_s": 1},
    "environment": {"voc_hold_s": 1},
}


def fast_policy() -> Policy:
    data = tomllib.loads(EXAMPLE_POLICY.read_text(encoding="utf-8"))
    for section, values in FAST.items():
        data[section].update(values)
    return Policy.model_validate(data)


def book_gross(policy: Policy, slot: int) -> int:
    box = policy.container_in_slot(slot)
    assert box is not None, f"no container in slot {slot}"
    return box.tare_mg + box.mass_mg


def write_signed_policy(path: Path, policy: Policy, central: SigningKey) -> Path:
    """What `cabinetctl policy sign` writes: the policy document signed by the centre."""
    path.write_text(json.dumps(sign_policy(policy.to_document(), central)), encoding="utf-8")
    return path


# --- agent.toml ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Backends:
    """Which backend drives which part; rendered into agent.toml's [hardware]."""

    gpio: bool = True
    gpio_outputs: bool = True  # lock relay, fan, buzzer, LEDs on GPIO lines
    readers: bool = False
    modbus_port: str | None = None
    sim: bool = False
    bridge_port: str | None = None
    bridge_outputs: tuple[str, ...] = ()

    def toml(self) -> str:
        parts: list[str] = []
        if self.gpio:
            parts.append(
                "[hardware.gpio]\n"
                'pin_factory = "mock"\n'
                "debounce_ms = 5\n"
                "# NC loops to ground on pull-ups: closed while all is well\n"
                f"door = {{ pin = {DOOR}, normally_closed = true }}\n"
                f"tamper = {{ pin = {TAMPER}, normally_closed = true }}\n"
                "# NO float switch to ground: closes when wet\n"
                f"leak = {{ pin = {LEAK} }}\n"
            )
            if self.gpio_outputs:
                parts.append(
                    f"lock_relay = {{ pin = {RELAY} }}\n"
                    f"fan = {{ pin = {FAN} }}\n"
                    f"buzzer = {{ pin = {BUZZER} }}\n"
                    f"led_green = {{ pin = {LED_GREEN} }}\n"
                    f"led_red = {{ pin = {LED_RED}, active_high = false }}\n"
                )
        if self.readers:
            parts.append('[hardware.readers]\nbackend = "pcsc"\npoll_timeout_ms = 200\n')
        if self.modbus_port is not None:
            parts.append(
                "[hardware.modbus]\n"
                f'port = "{self.modbus_port}"\n'
                "baudrate = 115200\n"
                "timeout_ms = 100\n"
                "period_ms = 100\n"
                "median_of = 3\n"
                f"silent_after_s = {SILENT_AFTER_S}\n"
            )
            for slot, address in SCALE_ADDRESS.items():
                parts.append(
                    "[[hardware.modbus.scales]]\n"
                    f"slot = {slot}\nunit = {SCALES_UNIT}\naddress = {address}\n"
                    "words = 2\nscale_num = 10\nmax_value = 5000000\n"
                )
            parts.append(
                "[hardware.modbus.voc]\n"
                f"unit = {VOC_UNIT}\naddress = 0\n"
                'table = "input"\nwords = 1\nscale_num = 100\nmax_value = 1000000\n'
            )
        if self.bridge_port is not None:
            outputs = ", ".join(f'"{name}"' for name in self.bridge_outputs)
            parts.append(f'[hardware.bridge]\nport = "{self.bridge_port}"\noutputs = [{outputs}]\n')
        if self.sim:
            parts.append("[hardware.sim]\nenabled = true\n")
        return "\n".join(parts)


def write_agent_toml(
    directory: Path, broker_url: str, backends: Backends, central_pubkey: str | None = None
) -> Path:
    """agent.toml plus a provisioned device key in `directory`/state."""
    state = directory / "state"
    state.mkdir(parents=True, exist_ok=True)
    if not (state / "device.key").exists():
        write_new_key(state / "device.key")
    keys = f'[keys]\ncentral_pubkey = "{central_pubkey}"\n' if central_pubkey else ""
    path = directory / "agent.toml"
    path.write_text(
        f'device = "{DEVICE}"\nsite = "{SITE}"\nstate_dir = "{state}"\nlog_format = "json"\n'
        f'[broker]\nurl = "{broker_url}"\nreconnect_min_s = 1\nreconnect_max_s = 2\n'
        f"{keys}\n{backends.toml()}",
        encoding="utf-8",
    )
    return path


# --- the agent under test ---------------------------------------------------------------------


@dataclass
class AgentUnderTest:
    """`Daemon(config, RunOptions).run()` in a thread, stopped like SIGTERM would."""

    config_file: Path
    policy_file: Path | None = None
    daemon: Daemon = field(init=False)
    inputs: InputTap = field(init=False)
    outbox: OutboxView = field(init=False)
    error: BaseException | None = field(init=False, default=None)
    exit_code: int | None = field(init=False, default=None)
    _thread: threading.Thread | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        config = load_agent_config(self.config_file)
        self.daemon = Daemon(config, RunOptions(self.config_file, self.policy_file))
        # Drivers get `core.post` when they start (in run()): put the tap there first.
        self.inputs = InputTap(self.daemon.core.post)
        self.daemon.core.post = self.inputs  # type: ignore[method-assign]
        self.outbox = OutboxView(config.state_dir / "outbox.db")

    def start(self, *, readers: bool = False, slots: tuple[int, ...] = ()) -> AgentUnderTest:
        """Run it; return once its drivers are up (readers watched, first weights in)."""
        self._thread = threading.Thread(target=self._run, name="agent-under-test", daemon=True)
        self._thread.start()
        wait_until(
            lambda: self.error is not None or self.outbox.of("system.started") != [],
            10,
            "system.started",
        )
        self._raise_if_failed()
        expected = len(self.daemon.config.hardware.model_fields_set)  # one driver per part
        wait_until(
            lambda: self.error is not None or len(self.daemon.drivers) >= expected,
            10,
            "drivers started",
        )
        self._raise_if_failed()
        if readers:
            wait_until(
                lambda: self.readers().live_readers() == {"A", "B"}, 10, "readers A and B live"
            )
        if slots:
            wait_until(lambda: set(slots) <= set(self.inputs.weights()), 10, "first weights")
        return self

    def _run(self) -> None:
        try:
            self.exit_code = self.daemon.run()
        except BaseException as exc:
            self.error = exc

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the daemon failed: {self.error!r}") from self.error

    def readers(self) -> Any:
        found = [d for d in self.daemon.drivers if d.name == "readers"]
        assert found, "no card readers configured"
        return found[0]

    def stop(self, timeout: float = 10.0) -> None:
        self.daemon.stop_requested.set()
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the daemon did not stop"
        self._raise_if_failed()
        assert self.exit_code == 0

    def verify_record(self) -> list[dict[str, Any]]:
        """Every committed envelope: signed by the device, chained, seq contiguous."""
        envelopes = self.outbox.envelopes()
        report = verify_chain(envelopes, self.daemon.key.public)
        assert report.ok, report.failures
        assert [e["seq"] for e in envelopes] == list(range(1, len(envelopes) + 1))
        return envelopes

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


# --- the RS-485 bus -----------------------------------------------------------------------------


class ModbusBus:
    """Scales and a VOC sensor answering on a pty, with values the test sets."""

    def __init__(self, policy: Policy) -> None:
        self.tap = LineTap()
        self.devices: SimulatedDevices | None = None
        self._values: dict[tuple[int, int], tuple[int, int]] = {}
        for slot in SCALE_ADDRESS:
            self.set_weight(slot, book_gross(policy, slot))
        self.set_voc(300)

    @property
    def agent_port(self) -> str:
        return self.tap.agent_port

    def power_on(self) -> None:
        devices = SimulatedDevices(self.tap.device_port, units=(SCALES_UNIT, VOC_UNIT))
        for (unit, address), (value, words) in self._values.items():
            devices.set(unit, address, value, words=words)
        devices.start()
        self.devices = devices

    def power_off(self) -> None:
        devices, self.devices = self.devices, None
        if devices is not None:
            devices.stop()

    def set_weight(self, slot: int, mg: int) -> None:
        assert mg % 10 == 0, "the scales count in 10 mg steps"
        self._set(SCALES_UNIT, SCALE_ADDRESS[slot], mg // 10, 2)

    def set_voc(self, ppb: int) -> None:
        assert ppb % 100 == 0, "the VOC sensor counts in 0.1 ppm steps"
        self._set(VOC_UNIT, 0, ppb // 100, 1)

    def _set(self, unit: int, address: int, raw: int, words: int) -> None:
        self._values[(unit, address)] = (raw, words)
        if self.devices is not None:
            self.devices.set(unit, address, raw, words=words)

    def close(self) -> None:
        self.power_off()
        self.tap.close()


def modbus_bus(policy: Policy) -> Iterator[ModbusBus]:
    bus = ModbusBus(policy)
    try:
        bus.power_on()
        yield bus
    finally:
        bus.close()
