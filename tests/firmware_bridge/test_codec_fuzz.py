"""Property tests of the decoder against anything a noisy UART can deliver.

Each property runs a few thousand examples in CI and >= 100k with `--long`.
"""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.protocol import (
    MAX_ENCODED,
    Decoder,
    Frame,
    FrameError,
    decode_frame,
    encode,
)
from tests.firmware_bridge.strategies import byte_mutation, frames

CI = settings(max_examples=2000, deadline=None, database=None)
CI_CHEAP = settings(max_examples=3000, deadline=None, database=None)
CI_SHORT = settings(max_examples=1000, deadline=None, database=None)
LONG = settings(
    max_examples=100_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

garbage = st.binary(max_size=600)
# Where reads split the stream, as fractions of its length in 1/255ths. Bytes, not a list
# of integers: hypothesis draws them several times faster, and CI time is shared.
cuts = st.binary(max_size=8)


def feed_in_pieces(decoder: Decoder, data: bytes, cut_points: bytes) -> list[Frame | FrameError]:
    """Feed `data` split at the given points, like reads returning whatever had arrived."""
    points = sorted({c * len(data) // 255 for c in cut_points} | {0, len(data)})
    out: list[Frame | FrameError] = []
    for start, end in itertools.pairwise(points):
        out += decoder.feed(data[start:end])
        assert len(decoder._buffer) <= MAX_ENCODED  # garbage never grows memory
    return out


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """An encoded frame truncated, bit-flipped, with bytes inserted or removed."""
    return draw(byte_mutation(encode(draw(frames())), max_edits=4))


# --- the properties ---------------------------------------------------------------------


def random_bytes_only_yield_frames_or_frame_errors(noise: bytes, cut_points: bytes) -> None:
    for item in feed_in_pieces(Decoder(), noise, cut_points):
        assert isinstance(item, Frame | FrameError)


def next_good_frames_decode_after_garbage(
    noise: bytes, good: list[Frame], cut_points: bytes
) -> None:
    stream = noise + b"".join(encode(f) for f in good)
    out = feed_in_pieces(Decoder(), stream, cut_points)
    assert out[len(out) - len(good) :] == good


def damaged_frames_only_cost_themselves(
    broken: list[bytes], good: Frame, cut_points: bytes
) -> None:
    out = feed_in_pieces(Decoder(), b"".join(broken) + encode(good), cut_points)
    assert out[-1] == good
    assert all(isinstance(item, Frame | FrameError) for item in out)


def decode_frame_raises_only_its_own_error(raw: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_frame(raw)


def streams_of_frames_survive_any_chunking(good: list[Frame], cut_points: bytes) -> None:
    stream = b"".join(encode(f) for f in good)
    assert feed_in_pieces(Decoder(), stream, cut_points) == good


# --- CI (a few thousand examples each) and long (>= 100k) runs ---------------------------


@CI_CHEAP
@given(noise=garbage, cut_points=cuts)
def test_random_bytes_never_raise_and_never_grow_memory(noise: bytes, cut_points: bytes) -> None:
    random_bytes_only_yield_frames_or_frame_errors(noise, cut_points)


@CI
@given(noise=garbage, good=st.lists(frames(), min_size=1, max_size=3), cut_points=cuts)
def test_decoder_resyncs_on_the_next_good_frame_after_garbage(
    noise: bytes, good: list[Frame], cut_points: bytes
) -> None:
    next_good_frames_decode_after_garbage(noise, good, cut_points)


@CI
@given(broken=st.lists(damaged(), min_size=1, max_size=3), good=frames(), cut_points=cuts)
def test_truncated_or_corrupted_frames_never_raise_and_the_next_frame_decodes(
    broken: list[bytes], good: Frame, cut_points: bytes
) -> None:
    damaged_frames_only_cost_themselves(broken, good, cut_points)


@CI
@given(raw=st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"")))
def test_decode_frame_raises_nothing_but_frame_error(raw: bytes) -> None:
    decode_frame_raises_only_its_own_error(raw)


@CI_SHORT
@given(good=st.lists(frames(), max_size=4), cut_points=cuts)
def test_a_stream_of_frames_decodes_the_same_however_it_is_chunked(
    good: list[Frame], cut_points: bytes
) -> None:
    streams_of_frames_survive_any_chunking(good, cut_points)


@pytest.mark.long
@LONG
@given(noise=garbage, cut_points=cuts)
def test_long_random_bytes_never_raise_and_never_grow_memory(
    noise: bytes, cut_points: bytes
) -> None:
    random_bytes_only_yield_frames_or_frame_errors(noise, cut_points)


@pytest.mark.long
@LONG
@given(noise=garbage, good=st.lists(frames(), min_size=1, max_size=3), cut_points=cuts)
def test_long_decoder_resyncs_on_the_next_good_frame_after_garbage(
    noise: bytes, good: list[Frame], cut_points: bytes
) -> None:
    next_good_frames_decode_after_garbage(noise, good, cut_points)


@pytest.mark.long
@LONG
@given(broken=st.lists(damaged(), min_size=1, max_size=3), good=frames(), cut_points=cuts)
def test_long_truncated_or_corrupted_frames_never_raise_and_the_next_frame_decodes(
    broken: list[bytes], good: Frame, cut_points: bytes
) -> None:
    damaged_frames_only_cost_themselves(broken, good, cut_points)
