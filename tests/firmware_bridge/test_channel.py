"""The reliability layer on its own: virtual time, no threads, no ports."""

from __future__ import annotations

from firmware_bridge.codes import NackReason, OutputId
from firmware_bridge.messages import (
    Ack,
    Door,
    Heartbeat,
    Hello,
    Info,
    LockCommand,
    Nack,
    OutputCommand,
)
from firmware_bridge.protocol import (
    Channel,
    ChannelEvent,
    Confirmed,
    Deliver,
    Failed,
    Frame,
    FrameError,
    Transmit,
)


def sent(events: list[ChannelEvent]) -> list[Frame]:
    return [e.frame for e in events if isinstance(e, Transmit)]


def channel() -> Channel:
    return Channel(ack_timeout_ms=100, retries=2)


def test_a_command_goes_out_with_a_fresh_seq_and_is_confirmed_by_its_ack() -> None:
    ch = channel()
    [frame] = sent(ch.send(LockCommand(True, 5000), now_ms=0))
    assert frame.seq == 1
    assert ch.receive(Frame(0, Ack(1)), now_ms=10) == [Confirmed(LockCommand(True, 5000))]
    assert ch.idle


def test_an_unanswered_command_is_retransmitted_identically_then_given_up() -> None:
    ch = channel()
    [first] = sent(ch.send(LockCommand(False), now_ms=0))
    assert ch.poll(99) == []
    assert sent(ch.poll(100)) == [first]
    assert sent(ch.poll(200)) == [first]
    assert ch.poll(300) == [Failed(LockCommand(False), "no_ack")]
    assert ch.retransmits == 2 and ch.idle


def test_commands_wait_their_turn_one_in_flight_at_a_time() -> None:
    ch = channel()
    assert len(sent(ch.send(Door(True), 0))) == 1
    assert sent(ch.send(Door(False), 0)) == []
    events = ch.receive(Frame(0, Ack(1)), 5)
    assert events == [Confirmed(Door(True)), Transmit(Frame(2, Door(False)))]


def test_a_nack_ends_the_command_with_its_reason_and_no_retransmit() -> None:
    ch = channel()
    ch.send(LockCommand(True, 1000), 0)
    [failed] = ch.receive(Frame(0, Nack(1, NackReason.NOT_ARMED)), 5)
    assert failed == Failed(LockCommand(True, 1000), "nack", NackReason.NOT_ARMED)
    assert ch.poll(1000) == []


def test_a_late_ack_for_another_seq_is_ignored() -> None:
    ch = channel()
    ch.send(Door(True), 0)
    assert ch.receive(Frame(0, Ack(9)), 5) == []
    assert not ch.idle


def test_a_retransmitted_duplicate_is_answered_again_but_applied_once() -> None:
    ch = channel()
    frame = Frame(4, LockCommand(True, 1000))
    [deliver] = ch.receive(frame, 0)
    assert deliver == Deliver(frame)
    reply = ch.answer(frame)
    assert reply.frame == Frame(0, Ack(4))
    assert ch.receive(frame, 150) == [reply]  # our ACK was lost: same answer, no Deliver
    assert ch.duplicates == 1


def test_a_duplicate_of_a_refused_command_gets_the_same_refusal() -> None:
    ch = channel()
    frame = Frame(4, LockCommand(True, 1000))
    ch.receive(frame, 0)
    refusal = ch.answer(frame, NackReason.NOT_ARMED)
    assert ch.receive(frame, 150) == [refusal]


def test_hello_and_info_are_always_delivered_because_the_peer_may_have_rebooted() -> None:
    ch = channel()
    ch.receive(Frame(1, Door(True)), 0)
    ch.answer(Frame(1, Door(True)))
    info = Frame(1, Info(1, 1, 0, 0, 4, 3000))
    assert ch.receive(info, 10) == [Deliver(info)]
    hello = Frame(1, Hello())
    assert ch.receive(hello, 20) == [Deliver(hello)]
    assert ch.receive(hello, 30) == [Deliver(hello)]


def test_unsequenced_messages_pass_straight_through() -> None:
    ch = channel()
    assert ch.send(Heartbeat(5), 0) == [Transmit(Frame(0, Heartbeat(5)))]
    beat = Frame(0, Heartbeat(6))
    assert ch.receive(beat, 0) == [Deliver(beat)]
    assert ch.receive(beat, 0) == [Deliver(beat)]


def test_a_newer_setting_replaces_the_queued_older_one() -> None:
    ch = channel()
    ch.send(Door(True), 0)  # in flight
    ch.send(LockCommand(True, 1000), 0)
    ch.send(OutputCommand(OutputId.FAN, True), 0)
    ch.send(LockCommand(False), 0)
    ch.receive(Frame(0, Ack(1)), 1)
    order = []
    for seq in (2, 3):
        order.append(ch._outstanding.frame.message if ch._outstanding else None)
        ch.receive(Frame(0, Ack(seq)), 2)
    assert order == [OutputCommand(OutputId.FAN, True), LockCommand(False)]
    assert ch.idle


def test_an_unlock_that_waited_too_long_in_the_queue_is_dropped_not_sent_late() -> None:
    ch = channel()
    ch.send(Door(True), 0)
    ch.send(LockCommand(True, 1000), 0, expires_at_ms=50)
    events = ch.receive(Frame(0, Ack(1)), 80)
    assert events[1] == Failed(LockCommand(True, 1000), "expired")
    assert ch.idle


def test_seq_runs_1_to_255_and_skips_0_when_it_wraps() -> None:
    ch = channel()
    seqs = []
    for _ in range(257):
        [frame] = sent(ch.send(Door(True), 0))
        seqs.append(frame.seq)
        ch.receive(Frame(0, Ack(frame.seq)), 0)
    assert seqs[:2] == [1, 2] and seqs[254:] == [255, 1, 2]


def test_a_command_we_cannot_understand_is_nacked_so_the_sender_stops() -> None:
    ch = channel()
    reply = ch.answer_error(FrameError("bad_payload", msg_id=0x10, seq=3))
    assert reply is not None and reply.frame == Frame(0, Nack(3, NackReason.BAD_PAYLOAD))
    assert ch.answer_error(FrameError("crc")) is None


def test_a_full_queue_refuses_instead_of_growing() -> None:
    ch = Channel(ack_timeout_ms=100, retries=2, queue_limit=2)
    ch.send(Door(True), 0)
    ch.send(Door(False), 0)
    ch.send(Door(True), 0)
    assert ch.send(Door(False), 0) == [Failed(Door(False), "queue_full")]
