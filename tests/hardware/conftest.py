"""Fixtures for the cabinet on real backends: pins, bus, keys, broker, readers.

The PC/SC stack and the broker come from the driver and support fixtures (imported, so
one pcscd serves the whole session and a missing real part fails in CI, skips outside).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero import Device

from agent.wire import SigningKey
from config.policy import Policy
from tests.drivers.conftest import card, pcscd, pcscd_session  # noqa: F401
from tests.hardware.rig import (
    DOOR,
    TAMPER,
    AgentUnderTest,
    Backends,
    ModbusBus,
    fast_policy,
    modbus_bus,
    write_agent_toml,
    write_signed_policy,
)
from tests.hardware.wiring import CabinetPins
from tests.support.broker import Broker
from tests.support.fixtures import broker_certs, make_broker, recorder  # noqa: F401

AgentMaker = Callable[..., AgentUnderTest]


@pytest.fixture
def pins() -> Iterator[CabinetPins]:
    """gpiozero's mock pins, shared with the agent's GPIO driver (pin_factory = "mock")."""
    factory = CabinetPins()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = None


@pytest.fixture
def healthy_cabinet(pins: CabinetPins) -> CabinetPins:
    """Door and enclosure shut (their NC loops closed), floor dry (float switch open)."""
    pins.line(DOOR).close_contact()
    pins.line(TAMPER).close_contact()
    return pins


@pytest.fixture
def policy() -> Policy:
    return fast_policy()


@pytest.fixture
def central_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def signed_policy(tmp_path: Path, policy: Policy, central_key: SigningKey) -> Path:
    return write_signed_policy(tmp_path / "policy.signed.json", policy, central_key)


@pytest.fixture
def bus(policy: Policy) -> Iterator[ModbusBus]:
    yield from modbus_bus(policy)


@pytest.fixture
def broker(make_broker: Callable[..., Broker]) -> Broker:  # noqa: F811
    return make_broker(tls=False)


@pytest.fixture
def ntp_synced(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """Whether the agent believes the wall clock is NTP-synchronised (default: yes).

    The host's real answer varies (containers usually say no, which opens a
    `clock_unsynced` alarm at start); the tests must not depend on it.
    """

    def set_synced(synced: bool) -> None:
        monkeypatch.setattr("agent.daemon.clock_synchronized", lambda: synced)

    set_synced(True)
    return set_synced


@pytest.fixture
def agent(
    tmp_path: Path,
    broker: Broker,
    central_key: SigningKey,
    signed_policy: Path,
    ntp_synced: Callable[[bool], None],
) -> Iterator[AgentMaker]:
    """`agent(Backends(...), readers=True, slots=(3, 4))` -> a started agent, signed policy.

    Every agent is stopped at teardown, and its whole record must verify (signatures,
    chain, contiguous seq) and end with `system.stopping`.
    """
    started: list[AgentUnderTest] = []

    def make(
        backends: Backends,
        *,
        readers: bool = False,
        slots: tuple[int, ...] = (),
        policy_file: Path | None = None,
    ) -> AgentUnderTest:
        config = write_agent_toml(tmp_path, broker.url, backends, central_key.public.to_text())
        under_test = AgentUnderTest(config, policy_file or signed_policy)
        started.append(under_test)
        return under_test.start(readers=readers, slots=slots)

    yield make
    for under_test in started:
        if under_test.running:
            under_test.stop()
        envelopes = under_test.verify_record()
        assert envelopes[-1]["type"] == "system.stopping"
