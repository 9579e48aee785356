"""The reference firmware's rules on a virtual clock: fail-secure at boot, arming, failsafe."""

from __future__ import annotations

from firmware_bridge.codes import FaultCode, LockCause, McuStatus, NackReason, OutputId
from firmware_bridge.mcu_firmware import McuFirmware
from firmware_bridge.messages import (
    Ack,
    Door,
    Fault,
    Heartbeat,
    Hello,
    Info,
    LockCommand,
    LockState,
    Message,
    Nack,
    OutputCommand,
    Weights,
)
from firmware_bridge.protocol import Decoder, Frame, encode


class Agent:
    """The agent's side, by hand: frames in, decoded frames out, ACKs for MCU reports."""

    def __init__(self, mcu: McuFirmware) -> None:
        self.mcu = mcu
        self.decoder = Decoder()
        self.seq = 0
        self.heard: list[Frame] = []

    def _take(self, data: bytes, now: int) -> list[Message]:
        """What the MCU said, in order, including what it said after each of our ACKs."""
        said: list[Message] = []
        for frame in [f for f in self.decoder.feed(data) if isinstance(f, Frame)]:
            self.heard.append(frame)
            said.append(frame.message)
            if frame.message.RELIABLE:  # acknowledge every report so the MCU's queue moves
                said += self._take(self.mcu.receive(encode(Frame(0, Ack(frame.seq))), now), now)
        return said

    def send(self, message: Message, now: int, seq: int | None = None) -> list[Message]:
        if message.RELIABLE and seq is None:
            self.seq += 1
            seq = self.seq
        return self._take(self.mcu.receive(encode(Frame(seq or 0, message)), now), now)

    def wait(self, now: int) -> list[Message]:
        return self._take(self.mcu.tick(now), now)


def booted(max_hold_ms: int = 60_000) -> tuple[McuFirmware, Agent]:
    mcu = McuFirmware(
        slots={1: 1000, 2: 2000}, failsafe_ms=1000, heartbeat_ms=100, max_hold_ms=max_hold_ms
    )
    agent = Agent(mcu)
    agent._take(mcu.boot(0), 0)
    return mcu, agent


def test_relay_is_off_and_reported_locked_at_boot() -> None:
    mcu, agent = booted()
    heard = [f.message for f in agent.heard]
    assert not mcu.relay_on
    assert isinstance(heard[0], Info) and heard[0].failsafe_ms == 1000
    assert LockState(False, True, LockCause.BOOT) in heard


def test_unlock_is_refused_before_any_agent_heartbeat() -> None:
    mcu, agent = booted()
    replies = agent.send(LockCommand(True, 5000), 10)
    assert replies == [Nack(1, NackReason.NOT_ARMED)]
    assert not mcu.relay_on


def test_unlock_after_a_heartbeat_is_acked_then_reported() -> None:
    mcu, agent = booted()
    agent.send(Heartbeat(0), 10)
    replies = agent.send(LockCommand(True, 5000), 20)
    assert replies == [Ack(1), LockState(True, False, LockCause.COMMAND)]
    assert mcu.relay_on


def test_unlock_without_a_hold_time_is_an_invalid_value() -> None:
    _, agent = booted()
    agent.send(Heartbeat(0), 10)
    assert agent.send(LockCommand(True, 0), 20) == [Nack(1, NackReason.INVALID_VALUE)]


def test_mcu_locks_itself_when_agent_heartbeats_stop() -> None:
    mcu, agent = booted()
    agent.send(Heartbeat(0), 0)
    agent.send(LockCommand(True, 60_000), 10)
    agent.wait(999)
    assert mcu.relay_on
    reports = agent.wait(1000)
    assert not mcu.relay_on and mcu.failsafe_tripped
    assert LockState(False, True, LockCause.FAILSAFE) in reports
    assert Fault(FaultCode.HEARTBEAT_LOST, True, 1000) in reports
    # Disarmed: no unlock until heartbeats come back; then the fault clears.
    assert agent.send(LockCommand(True, 5000), 1100) == [Nack(2, NackReason.NOT_ARMED)]
    assert Fault(FaultCode.HEARTBEAT_LOST, False, 0) in agent.send(Heartbeat(1), 1200)
    assert McuStatus.FAILSAFE not in mcu.status()
    assert not mcu.relay_on  # resumed heartbeats do not unlock by themselves


def test_relay_drops_when_the_hold_time_runs_out_even_with_heartbeats() -> None:
    mcu, agent = booted(max_hold_ms=300)
    agent.send(Heartbeat(0), 0)
    agent.send(LockCommand(True, 10_000), 0)  # clamped to the firmware's 300 ms
    agent.send(Heartbeat(1), 200)
    assert mcu.relay_on
    assert LockState(False, True, LockCause.HOLD_EXPIRED) in agent.wait(300)


def test_a_retransmitted_lock_command_is_applied_once() -> None:
    mcu, agent = booted()
    agent.send(Heartbeat(0), 0)
    first = agent.send(LockCommand(True, 5000), 10, seq=7)
    again = agent.send(LockCommand(True, 5000), 20, seq=7)
    assert first[0] == Ack(7) and again == [Ack(7)]
    assert mcu.applied.count(LockCommand(True, 5000)) == 1


def test_hello_answers_with_info_and_a_full_snapshot() -> None:
    mcu, agent = booted()
    agent._take(mcu.set_door(True, 5), 5)
    replies = agent.send(Hello(), 10)
    assert replies[0] == Ack(1)
    kinds = [type(m).__name__ for m in replies[1:]]
    assert kinds[:5] == ["Info", "Door", "LockState", "Tamper", "Leak"]
    assert Door(True) in replies and LockState(False, True, LockCause.RESYNC) in replies


def test_outputs_follow_commands_and_are_off_after_reboot() -> None:
    mcu, agent = booted()
    assert agent.send(OutputCommand(OutputId.FAN, True), 10) == [Ack(1)]
    assert mcu.outputs[OutputId.FAN]
    mcu.boot(20)
    assert not any(mcu.outputs.values()) and not mcu.relay_on


def test_weights_are_sent_periodically_without_failed_scales() -> None:
    mcu, agent = booted()
    mcu.set_weight(1, 900)
    later = agent._take(mcu.set_scale_fault(2, True, 50), 50) + agent.wait(600)
    weights = [m for m in later if isinstance(m, Weights)]
    assert weights and {(r.slot, r.mg) for r in weights[-1].readings} == {(1, 900)}
    assert any(isinstance(m, Fault) and m.code == FaultCode.SCALE for m in later)


def test_a_report_the_agent_never_acks_sets_events_lost_until_hello() -> None:
    mcu = McuFirmware(failsafe_ms=1000, heartbeat_ms=100, ack_timeout_ms=50, retries=1)
    mcu.boot(0)
    for now in range(0, 2000, 50):
        mcu.tick(now)
    assert McuStatus.EVENTS_LOST in mcu.status()
    Agent(mcu).send(Hello(), 2000)
    assert McuStatus.EVENTS_LOST not in mcu.status()


def test_garbage_before_a_command_does_not_stop_it() -> None:
    mcu, agent = booted()
    agent.send(Heartbeat(0), 0)
    agent._take(mcu.receive(b"\x13\x37\xff\x00\x02\x01", 5), 5)
    assert agent.send(LockCommand(True, 1000), 10)[0] == Ack(1)
    assert mcu.frame_errors >= 1
