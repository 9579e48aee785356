"""The frame codec: exact layout, checks, error reasons, and the worked examples of the spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings

from firmware_bridge.codes import MAX_PAYLOAD, NackReason
from firmware_bridge.messages import (
    MAX_WEIGHTS,
    Ack,
    Door,
    Heartbeat,
    LockCommand,
    Nack,
    SlotWeight,
    Weights,
)
from firmware_bridge.protocol import (
    MAX_ENCODED,
    Decoder,
    Frame,
    FrameError,
    cobs_decode,
    cobs_encode,
    crc16_ccitt_false,
    decode_frame,
    encode,
    frame_body,
)
from tests.firmware_bridge.strategies import frames

SPEC = Path(__file__).resolve().parents[2] / "docs" / "firmware-bridge.md"


def wire(frame: Frame) -> bytes:
    """The encoded frame without its two delimiters, as decode_frame takes it."""
    return encode(frame)[1:-1]


def body_to_wire(body: bytes) -> bytes:
    return cobs_encode(body)


def crc16_bitwise(data: bytes) -> int:
    # An independent, slow, by-the-definition implementation to check the table one.
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_crc_is_ccitt_false_with_its_published_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF


@given(data=frames())
@settings(max_examples=300, deadline=None, database=None)
def test_crc_table_matches_the_bitwise_definition(data: Frame) -> None:
    body = frame_body(data)
    assert crc16_ccitt_false(body[:-2]) == crc16_bitwise(body[:-2])


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("00", "0101"),
        ("0000", "010101"),
        ("001100", "01021101"),
        ("11220033", "0311220233"),
        ("11223344", "0511223344"),
        ("11000000", "0211010101"),
    ],
)
def test_cobs_matches_the_reference_examples(raw: str, encoded: str) -> None:
    assert cobs_encode(bytes.fromhex(raw)) == bytes.fromhex(encoded)
    assert cobs_decode(bytes.fromhex(encoded)) == bytes.fromhex(raw)


def test_cobs_full_block_at_the_end_has_no_trailing_empty_block() -> None:
    block = bytes(range(1, 255))  # 254 non-zero bytes
    assert cobs_encode(block) == b"\xff" + block
    assert cobs_encode(block + b"\xff") == b"\xff" + block + b"\x02\xff"
    tail = bytes(range(2, 256))
    assert cobs_encode(tail + b"\x00") == b"\xff" + tail + b"\x01\x01"
    # A sender that does add the empty block is still understood.
    assert cobs_decode(b"\xff" + block + b"\x01") == block


def test_frame_is_version_id_seq_payload_crc_between_delimiters() -> None:
    frame = Frame(1, LockCommand(energise=True, hold_ms=10_000))
    body = frame_body(frame)
    assert body[:3] == bytes([0x01, 0x10, 0x01])
    assert body[3:-2] == bytes.fromhex("0100002710")
    assert int.from_bytes(body[-2:], "big") == crc16_ccitt_false(body[:-2])
    encoded = encode(frame)
    assert encoded[0] == 0 and encoded[-1] == 0 and 0 not in encoded[1:-1]


def _spec_examples() -> dict[str, dict[str, bytes]]:
    """`example <name>` blocks of the spec, each with `body:` and `wire:` hex lines."""
    examples: dict[str, dict[str, bytes]] = {}
    current = None
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^example (\S+):", line):
            current = examples.setdefault(m.group(1), {})
        elif current is not None and (m := re.match(r"^\s+(body|wire):\s+([0-9A-F ]+)$", line)):
            current[m.group(1)] = bytes.fromhex(m.group(2))
    return examples


SPEC_FRAMES = {
    "unlock": Frame(1, LockCommand(energise=True, hold_ms=10_000)),
    "ack": Frame(0, Ack(1)),
    "heartbeat": Frame(0, Heartbeat(uptime_ms=1000, flags=0)),
    "weights": Frame(0, Weights((SlotWeight(3, 431_000), SlotWeight(4, -250)))),
    "door": Frame(7, Door(True)),
}


@pytest.mark.parametrize("name", sorted(SPEC_FRAMES))
def test_worked_examples_in_the_spec_are_what_the_codec_produces(name: str) -> None:
    example = _spec_examples()[name]
    frame = SPEC_FRAMES[name]
    assert example["body"] == frame_body(frame)
    assert example["wire"] == encode(frame)
    assert decode_frame(example["wire"][1:-1]) == frame


@given(frame=frames())
@settings(max_examples=1000, deadline=None, database=None)
def test_every_message_survives_encode_then_decode(frame: Frame) -> None:
    assert decode_frame(wire(frame)) == frame
    assert Decoder().feed(encode(frame)) == [frame]
    assert len(encode(frame)) <= MAX_ENCODED + 2


def test_largest_weights_frame_fits_the_bound() -> None:
    frame = Frame(0, Weights(tuple(SlotWeight(i, -1) for i in range(MAX_WEIGHTS))))
    assert len(frame_body(frame)) <= 3 + MAX_PAYLOAD + 2
    assert decode_frame(wire(frame)) == frame
    with pytest.raises(ValueError):
        Weights(tuple(SlotWeight(i, 0) for i in range(MAX_WEIGHTS + 1)))


def _reason(encoded_without_delimiters: bytes) -> FrameError:
    with pytest.raises(FrameError) as caught:
        decode_frame(encoded_without_delimiters)
    return caught.value


def _sealed(body_without_crc: bytes) -> bytes:
    return body_to_wire(body_without_crc + crc16_ccitt_false(body_without_crc).to_bytes(2, "big"))


def test_a_flipped_bit_is_a_crc_error() -> None:
    body = bytearray(frame_body(Frame(3, Door(True))))
    body[3] ^= 0x04
    assert _reason(body_to_wire(bytes(body))).reason == "crc"


def test_another_protocol_version_is_refused() -> None:
    assert _reason(_sealed(bytes([0x02, 0x21, 0x01, 0x01]))).reason == "version"


def test_unknown_message_keeps_its_seq_so_the_receiver_can_nack_it() -> None:
    error = _reason(_sealed(bytes([0x01, 0x7F, 0x09, 0xAA])))
    assert (error.reason, error.msg_id, error.seq) == ("unknown_message", 0x7F, 9)


def test_malformed_payload_keeps_its_seq_so_the_receiver_can_nack_it() -> None:
    error = _reason(_sealed(bytes([0x01, 0x10, 0x05, 0x02, 0, 0, 0, 1])))  # energise = 2
    assert (error.reason, error.seq) == ("bad_payload", 5)
    error = _reason(_sealed(bytes([0x01, 0x21, 0x05])))  # DOOR without its byte
    assert (error.reason, error.seq) == ("bad_payload", 5)


def test_reliable_message_without_seq_and_unsequenced_with_seq_are_refused() -> None:
    assert _reason(_sealed(bytes([0x01, 0x21, 0x00, 0x01]))).reason == "bad_seq"
    assert _reason(_sealed(bytes([0x01, 0x04, 0x03, 0x01]))).reason == "bad_seq"


def test_too_short_and_broken_cobs_are_frame_errors() -> None:
    assert _reason(cobs_encode(b"\x01\x21")).reason == "short"
    assert _reason(b"\x05\x01").reason == "cobs"
    assert _reason(b"\x02\x00\x01").reason == "cobs"


def test_nack_carries_its_reason() -> None:
    frame = Frame(0, Nack(4, NackReason.NOT_ARMED))
    assert decode_frame(wire(frame)) == frame


def test_an_endless_run_without_delimiter_is_one_error_and_bounded_memory() -> None:
    decoder = Decoder()
    out = []
    for _ in range(100):
        out += decoder.feed(b"\x55" * 1000)
    assert [e.reason for e in out if isinstance(e, FrameError)] == ["oversized"]
    assert len(decoder._buffer) <= MAX_ENCODED
    good = Frame(2, Door(False))
    assert decoder.feed(encode(good)) == [good]


def test_frames_split_anywhere_across_feeds_still_decode() -> None:
    stream = b"".join(encode(Frame(i, Door(i % 2 == 0))) for i in range(1, 20))
    decoder = Decoder()
    out = [item for byte in stream for item in decoder.feed(bytes([byte]))]
    assert out == [Frame(i, Door(i % 2 == 0)) for i in range(1, 20)]


def test_messages_refuse_values_that_do_not_fit_their_fields() -> None:
    for build in (
        lambda: Heartbeat(uptime_ms=2**32),
        lambda: Ack(0),
        lambda: SlotWeight(slot=256, mg=0),
        lambda: SlotWeight(slot=1, mg=2**31),
        lambda: LockCommand(True, -1),
    ):
        with pytest.raises(ValueError):
            build()
    with pytest.raises(ValueError):
        Frame(0, Door(True))
    with pytest.raises(ValueError):
        Frame(1, Ack(1))
