"""Mixes of backends in one agent.toml: what `cabinet-agent run` accepts, and what it refuses.

Any part may come from any backend, but each output (lock relay, fan, buzzer, LEDs) must
have exactly one driver: two drivers switching one lock would fight, so such a mix is a
configuration error (exit 78, EX_CONFIG) before anything is switched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.wire import SigningKey
from tests.drivers.conftest import CardMaker
from tests.hardware.conftest import AgentMaker
from tests.hardware.observe import wait_until
from tests.hardware.rig import (
    DOOR,
    EXAMPLE_POLICY,
    KEEPER,
    LED_RED,
    RELAY,
    ROOT,
    USER,
    Backends,
    write_agent_toml,
)
from tests.hardware.wiring import CabinetPins
from tests.support.broker import Broker

pytestmark = pytest.mark.realpart

EX_CONFIG = 78


class CliRun:
    """`cabinet-agent run` as a child: exits by itself (refused) or reports daemon.ready."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CABINET_")}
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def outcome(self, timeout: float = 20) -> int | None:
        """The exit code if it refused to run; None if it started (then it is stopped)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if any('"daemon.ready"' in line for line in list(self.lines)):
                self.proc.terminate()
                self.proc.wait(10)
                self._reader.join(5)
                return None
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"neither refused nor ready in {timeout} s:\n{self.output}")
            time.sleep(0.02)
        self._reader.join(5)
        return self.proc.returncode


@pytest.fixture
def pty_port() -> Iterator[str]:
    """A serial port for the MCU bridge that nothing answers on (a pty)."""
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.fixture
def run_cli(tmp_path: Path, broker: Broker, central_key: SigningKey) -> Callable[..., CliRun]:
    def run(backends: Backends, policy: Path) -> CliRun:
        config = write_agent_toml(tmp_path, broker.url, backends, central_key.public.to_text())
        return CliRun("--config", str(config), "--policy", str(policy))

    return run


def test_real_readers_and_gpio_contacts_unlock_the_simulated_cabinet(
    agent: AgentMaker, healthy_cabinet: CabinetPins, card: CardMaker
) -> None:
    """sim (outputs, scales, VOC) + pcsc readers + GPIO contacts only, plain TOML policy.

    A simulated cabinet may take examples/policy.toml unsigned; its lock is the sim's.
    """
    pins = healthy_cabinet
    cabinet = agent(
        Backends(gpio=True, gpio_outputs=False, readers=True, sim=True),
        readers=True,
        policy_file=EXAMPLE_POLICY,
    )
    sim = cabinet.daemon.sim.cabinet
    outbox = cabinet.outbox
    assert outbox.wait_for("policy.applied")["data"]["version"] == 7

    card("A", KEEPER[1]).present()
    outbox.wait_for("access.pending", person=KEEPER[0], reader="A")
    card("B", USER[1]).present()
    granted = outbox.wait_for("access.granted")
    assert granted["data"]["persons"] == [KEEPER[0], USER[0]]
    session = granted["data"]["session"]
    wait_until(lambda: sim.outputs.get("lock") is True, 5, "the simulated lock released")

    pins.line(DOOR).open_contact()  # the real door contact, on the simulated cabinet
    locked = outbox.wait_for("lock.locked", session=session)
    assert locked["data"]["reason"] == "door_opened"
    wait_until(lambda: sim.outputs.get("lock") is False, 5, "the simulated lock engaged")
    assert sim.outputs.get("fan") is True
    pins.line(DOOR).close_contact()
    outbox.wait_for("door.closed", session=session)
    assert [on for name, on in sim.output_log if name == "lock"].count(True) == 1
    assert not outbox.alarms("door_forced")
    assert pins.line(RELAY).levels() == [False], "no GPIO relay claimed: line 17 untouched"


def test_a_real_cabinet_refuses_an_unsigned_policy(run_cli: Callable[..., CliRun]) -> None:
    run = run_cli(Backends(gpio=True), EXAMPLE_POLICY)
    assert run.outcome() == EX_CONFIG, run.output
    assert "only accepted by the simulated cabinet" in run.output
    assert "Traceback" not in run.output


def test_lock_relay_on_gpio_and_on_the_mcu_bridge_is_a_config_error(
    run_cli: Callable[..., CliRun], signed_policy: Path, pty_port: str
) -> None:
    backends = Backends(gpio=True, bridge_port=pty_port, bridge_outputs=("lock",))
    run = run_cli(backends, signed_policy)
    code = run.outcome()
    assert "output 'lock' is wired to both gpio and bridge" in run.output
    assert "Traceback" not in run.output, run.output
    assert code == EX_CONFIG


def test_lock_relay_on_gpio_and_the_simulated_cabinet_is_a_config_error(
    run_cli: Callable[..., CliRun],
) -> None:
    run = run_cli(Backends(gpio=True, sim=True), EXAMPLE_POLICY)
    code = run.outcome()
    assert code == EX_CONFIG, f"started with two lock drivers:\n{run.output[-2000:]}"
    assert "'lock' is wired to both gpio and sim" in run.output


def test_check_config_reports_an_output_wired_to_two_drivers(tmp_path: Path, pty_port: str) -> None:
    backends = Backends(gpio=True, bridge_port=pty_port, bridge_outputs=("lock", "fan"))
    config = write_agent_toml(tmp_path, "mqtt://127.0.0.1:1883", backends)
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == EX_CONFIG, done.stdout
    assert "'lock' is wired to both gpio and bridge" in done.stderr


def test_an_alarm_open_at_start_lights_the_red_led(
    agent: AgentMaker, healthy_cabinet: CabinetPins, ntp_synced: Callable[[bool], None]
) -> None:
    ntp_synced(False)
    cabinet = agent(Backends(gpio=True))
    cabinet.outbox.wait_for("alarm.raised", kind="clock_unsynced")
    red = healthy_cabinet.line(LED_RED)  # active-low: lit when the line is low
    wait_until(lambda: not red.state, 3, "red LED lit for the open clock_unsynced alarm")
