"""Hypothesis strategies: every message kind with every legal field value."""

from __future__ import annotations

from hypothesis import strategies as st

from firmware_bridge.codes import LockCause, NackReason, OutputId
from firmware_bridge.messages import (
    MAX_WEIGHTS,
    Ack,
    Door,
    Fault,
    Heartbeat,
    Hello,
    Info,
    Leak,
    LockCommand,
    LockState,
    Message,
    Nack,
    OutputCommand,
    SlotWeight,
    Tamper,
    Weights,
)
from firmware_bridge.protocol import Frame

u8 = st.integers(0, 255)
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
seq = st.integers(1, 255)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Hello, u8),
    st.builds(Info, u8, u8, u8, u8, u8, u16),
    st.builds(Heartbeat, u32, u8),
    st.builds(Ack, seq),
    st.builds(Nack, seq, st.sampled_from(NackReason)),
    st.builds(LockCommand, st.booleans(), u32),
    st.builds(OutputCommand, st.sampled_from(OutputId), st.booleans()),
    st.builds(
        Weights,
        st.lists(st.builds(SlotWeight, u8, i32), max_size=MAX_WEIGHTS).map(tuple),
    ),
    st.builds(Door, st.booleans()),
    st.builds(Tamper, st.booleans()),
    st.builds(Leak, st.booleans()),
    st.builds(LockState, st.booleans(), st.booleans(), st.sampled_from(LockCause)),
    st.builds(Fault, u8, st.booleans(), i32),
)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    message = draw(messages)
    return Frame(draw(seq) if message.RELIABLE else 0, message)


@st.composite
def byte_mutation(draw: st.DrawFn, data: bytes, max_edits: int = 3) -> bytes:
    """`data` with 1..max_edits edits: a bit flipped, bytes inserted or removed, truncated."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, max_edits))):
        where = draw(st.integers(0, max(0, len(out) - 1)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip" and out:
            out[where] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            out[where:where] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and out:
            del out[where]
        elif kind == "truncate":
            del out[where:]
    return bytes(out)
