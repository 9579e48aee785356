"""Sans-I/O codec and reliability for the cabinet MCU link (docs/firmware-bridge.md).

No threads, clocks or ports here, in the manner of h11: the caller feeds received bytes
to a `Decoder` and gets frames (or `FrameError` values) back, turns frames into bytes with
`encode`, and drives a `Channel` with the current time in milliseconds to get
acknowledgement, retransmission and duplicate suppression. The agent's link and the MCU
simulator use the very same code, so the two ends cannot drift apart.

Wire format: 0x00, COBS(body), 0x00 where body = version, msg id, seq, payload, CRC-16.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from firmware_bridge.codes import MAX_PAYLOAD, PROTOCOL_VERSION, NackReason, PayloadError
from firmware_bridge.messages import MESSAGE_TYPES, Ack, Message, Nack, unpack_message

DELIMITER = 0x00
HEADER_LEN = 3  # version, msg id, seq
CRC_LEN = 2
MAX_BODY = HEADER_LEN + MAX_PAYLOAD + CRC_LEN
# COBS adds one code byte per 254 data bytes, plus one: the longest legal encoded frame.
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 1


class FrameError(Exception):
    """Bytes that are not a valid frame. Returned as a value by `Decoder.feed`.

    `reason` is a stable word for counters and logs. `seq` and `msg_id` are set only when
    the CRC was good but the message could not be understood (`unknown_message`,
    `bad_payload`): the sender really sent it, so the receiver answers it with a NACK
    instead of letting the sender retransmit it in vain.
    """

    def __init__(
        self, reason: str, detail: str = "", *, msg_id: int | None = None, seq: int | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.msg_id = msg_id
        self.seq = seq


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


def cobs_encode(data: bytes) -> bytes:
    """COBS without a trailing empty block after a final full (254-byte) block."""
    out = bytearray(b"\x00")  # placeholder for the first block's code byte
    code_at, code = 0, 1
    for byte in data:
        if code == 0xFF:  # block full: close it only now that more data follows
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        if byte:
            out.append(byte)
            code += 1
        else:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    if DELIMITER in data:
        raise FrameError("cobs", "zero byte inside a frame")
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        end = i + code
        if end > n:
            raise FrameError("cobs", "block runs past the end of the frame")
        out += data[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Frame:
    """One message on the wire. `seq` is 1..255 for reliable messages and 0 for the others."""

    seq: int
    message: Message

    def __post_init__(self) -> None:
        if self.message.RELIABLE:
            if not 1 <= self.seq <= 255:
                raise ValueError(f"reliable {type(self.message).__name__} needs seq 1..255")
        elif self.seq != 0:
            raise ValueError(f"{type(self.message).__name__} is unsequenced: seq must be 0")


def frame_body(frame: Frame) -> bytes:
    """The bytes before COBS: header, payload, CRC (big-endian)."""
    payload = frame.message.pack()
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = bytes((PROTOCOL_VERSION, frame.message.MSG_ID, frame.seq)) + payload
    return head + crc16_ccitt_false(head).to_bytes(2, "big")


def encode(frame: Frame) -> bytes:
    # A delimiter on both sides: whatever garbage came before, the next frame starts
    # clean, so the receiver loses at most the garbage and never the good frame after it.
    return b"\x00" + cobs_encode(frame_body(frame)) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame without its delimiters. Raises only FrameError."""
    if len(encoded) > MAX_ENCODED:
        raise FrameError("oversized", f"{len(encoded)} bytes")
    body = cobs_decode(encoded)
    if len(body) < HEADER_LEN + CRC_LEN:
        raise FrameError("short", f"{len(body)} bytes")
    if crc16_ccitt_false(body[:-CRC_LEN]) != int.from_bytes(body[-CRC_LEN:], "big"):
        raise FrameError("crc")
    version, msg_id, seq = body[0], body[1], body[2]
    if version != PROTOCOL_VERSION:
        raise FrameError("version", f"protocol {version}")
    if msg_id not in MESSAGE_TYPES:
        raise FrameError("unknown_message", f"0x{msg_id:02X}", msg_id=msg_id, seq=seq)
    if (seq != 0) != MESSAGE_TYPES[msg_id].RELIABLE:
        raise FrameError("bad_seq", f"seq {seq} for 0x{msg_id:02X}")
    try:
        message = unpack_message(msg_id, body[HEADER_LEN:-CRC_LEN])
    except PayloadError as exc:
        raise FrameError("bad_payload", str(exc), msg_id=msg_id, seq=seq) from None
    return Frame(seq, message)


class Decoder:
    """Splits a byte stream into frames. Memory stays bounded whatever arrives."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False  # an oversized run: drop bytes until the next delimiter

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        start = 0
        while start <= len(data):
            end = data.find(DELIMITER, start)
            last = end < 0
            chunk = data[start:] if last else data[start:end]
            if not self._discarding:
                self._buffer += chunk
                if len(self._buffer) > MAX_ENCODED:
                    out.append(FrameError("oversized", f"more than {MAX_ENCODED} bytes"))
                    self._buffer.clear()
                    self._discarding = True
            if last:
                return out
            if self._buffer:  # empty between two delimiters is just idle line
                out.append(self._decode(bytes(self._buffer)))
                self._buffer.clear()
            self._discarding = False
            start = end + 1
        return out

    @staticmethod
    def _decode(encoded: bytes) -> Frame | FrameError:
        try:
            return decode_frame(encoded)
        except FrameError as exc:
            return exc


# --- reliability: stop-and-wait with retransmit, per direction -------------------------


@dataclass(frozen=True, slots=True)
class Transmit:
    """Write this frame to the line."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Deliver:
    """A new message from the peer: apply it; if reliable, answer with `Channel.answer`."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The peer acknowledged this reliable message."""

    message: Message


@dataclass(frozen=True, slots=True)
class Failed:
    """This reliable message was not accepted: `nack`, `no_ack`, `expired` or `queue_full`."""

    message: Message
    reason: str
    nack: NackReason | None = None


ChannelEvent = Transmit | Deliver | Confirmed | Failed


@dataclass(slots=True)
class _Queued:
    message: Message
    expires_at_ms: int | None


@dataclass(slots=True)
class _Outstanding:
    frame: Frame
    attempts: int
    due_ms: int


class Channel:
    """One end's reliability state: what it sent and waits for, and what it last accepted.

    Stop-and-wait: one reliable frame in flight, the rest queued in order, so reports keep
    their order and one remembered seq is enough to recognise a retransmitted duplicate.
    A duplicate is answered again with the same reply and never delivered twice. RESYNC
    messages (HELLO, INFO) start a new session and are always delivered, because the
    peer's seq counter restarts when it boots.
    """

    def __init__(self, *, ack_timeout_ms: int, retries: int, queue_limit: int = 16) -> None:
        self.ack_timeout_ms = ack_timeout_ms
        self.retries = retries
        self.queue_limit = queue_limit
        self.retransmits = 0
        self.duplicates = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything (a reboot): nothing in flight, seq restarts at 1."""
        self._next_seq = 1
        self._queue: deque[_Queued] = deque()
        self._outstanding: _Outstanding | None = None
        self._last_rx_seq: int | None = None
        self._last_reply: Frame | None = None

    @property
    def idle(self) -> bool:
        return self._outstanding is None and not self._queue

    def send(
        self, message: Message, now_ms: int, *, expires_at_ms: int | None = None
    ) -> list[ChannelEvent]:
        if not message.RELIABLE:
            return [Transmit(Frame(0, message))]
        key = message.supersede_key()
        if key is not None:
            # A newer setting makes a queued older one moot; on the wire it would only
            # delay the current decision (and a late unlock is worse than none).
            self._queue = deque(q for q in self._queue if q.message.supersede_key() != key)
        if len(self._queue) >= self.queue_limit:
            return [Failed(message, "queue_full")]
        self._queue.append(_Queued(message, expires_at_ms))
        return self._pump(now_ms)

    def receive(self, frame: Frame, now_ms: int) -> list[ChannelEvent]:
        message = frame.message
        out: list[ChannelEvent] = []
        pending = self._outstanding
        if isinstance(message, Ack | Nack):
            if pending is None or pending.frame.seq != message.seq:
                return out  # a late answer to a frame already settled
            self._outstanding = None
            if isinstance(message, Ack):
                out.append(Confirmed(pending.frame.message))
            else:
                out.append(Failed(pending.frame.message, "nack", message.reason))
            out += self._pump(now_ms)
            return out
        if message.RELIABLE and not message.RESYNC and frame.seq == self._last_rx_seq:
            self.duplicates += 1
            if self._last_reply is not None:
                out.append(Transmit(self._last_reply))
            return out
        if message.RELIABLE:
            self._last_rx_seq, self._last_reply = frame.seq, None
        out.append(Deliver(frame))
        return out

    def answer(self, frame: Frame, nack: NackReason | None = None) -> Transmit:
        """The ACK (or NACK) for a delivered reliable frame; remembered for duplicates."""
        return self._reply(frame.seq, nack)

    def answer_error(self, error: FrameError) -> Transmit | None:
        """A NACK for a frame whose CRC was good but whose content was not understood."""
        if not error.seq or error.reason not in ("unknown_message", "bad_payload"):
            return None
        self._last_rx_seq = error.seq
        reason = NackReason.UNKNOWN_MESSAGE
        if error.reason == "bad_payload":
            reason = NackReason.BAD_PAYLOAD
        return self._reply(error.seq, reason)

    def _reply(self, seq: int, nack: NackReason | None) -> Transmit:
        reply = Frame(0, Ack(seq) if nack is None else Nack(seq, nack))
        if seq == self._last_rx_seq:
            self._last_reply = reply
        return Transmit(reply)

    def poll(self, now_ms: int) -> list[ChannelEvent]:
        """Retransmit or give up on the frame in flight when its ACK is overdue."""
        pending = self._outstanding
        if pending is None or now_ms < pending.due_ms:
            return []
        if pending.attempts > self.retries:
            self._outstanding = None
            return [Failed(pending.frame.message, "no_ack"), *self._pump(now_ms)]
        pending.attempts += 1
        pending.due_ms = now_ms + self.ack_timeout_ms
        self.retransmits += 1
        return [Transmit(pending.frame)]

    def _pump(self, now_ms: int) -> list[ChannelEvent]:
        out: list[ChannelEvent] = []
        while self._outstanding is None and self._queue:
            queued = self._queue.popleft()
            if queued.expires_at_ms is not None and now_ms > queued.expires_at_ms:
                out.append(Failed(queued.message, "expired"))
                continue
            frame = Frame(self._next_seq, queued.message)
            self._next_seq = self._next_seq % 255 + 1  # 1..255: seq 0 means unsequenced
            self._outstanding = _Outstanding(frame, 1, now_ms + self.ack_timeout_ms)
            out.append(Transmit(frame))
        return out
