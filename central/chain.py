"""One device's event stream as seen live: seq order, holding, gaps, resends (sans-I/O).

Envelopes reach `watch` at least once, in seq order per MQTT topic but not across
topics (`evt/access` and `evt/alarm` are separate topics), and some never arrive (the
watcher was down, a session was lost). `DeviceChain` takes envelopes already
authenticated by the contract's `ChainVerifier`, lets the verifier link them (duplicate,
fork, broken link), and decides, for each linked one, whether it is the next one to
show or one to hold until the missing seqs before it come.

Holding is bounded (`hold_ms`): an alarm must not wait behind a gap for long, so held
envelopes are shown after that delay anyway, flagged, and a seq that fills the gap
later is shown then, flagged as late.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.wire import ChainVerifier, Duplicate, Envelope, Failure

# A status birth or a signed envelope may put last_seq far ahead; beyond this many
# missing seqs something is wrong with the device, and asking for them is pointless.
MAX_GAP = 1_000_000


@dataclass(frozen=True)
class Timing:
    grace_ms: int = 1_000  # cross-topic reordering settles within this; then ask
    tail_grace_ms: int = 30_000  # after a reconnect the device drains its backlog first
    retry_ms: int = 10_000  # ask again this long after an unanswered resend
    max_asks: int = 5
    hold_ms: int = 3_000  # the longest an envelope waits behind a gap before it is shown


@dataclass
class Gap:
    lo: int
    hi: int
    opened_ms: int
    tail: bool = False  # learnt from a status birth, not from a later envelope
    asked_ms: int | None = None
    asks: int = 0
    given_up: bool = False

    def text(self) -> str:
        return f"seq {self.lo}" if self.lo == self.hi else f"seq {self.lo}..{self.hi}"


@dataclass(frozen=True)
class Release:
    """An envelope to show now, with what is known to be wrong or unusual about it."""

    env: Mapping[str, Any]
    topic: str
    verified: bool
    problem: str | None


@dataclass(frozen=True)
class ResendAsk:
    device: str
    lo: int
    hi: int
    attempt: int


@dataclass
class DeviceChain:
    device: str
    verifier: ChainVerifier  # knows the key; links, dedupes, remembers attested drops
    timing: Timing = field(default_factory=Timing)
    head: int | None = None  # every seq up to here has been shown or given up on
    held: dict[int, tuple[Mapping[str, Any], str, int]] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    duplicates: int = 0

    def seed(self, seq: int, hash_: str) -> None:
        """Continue from what a previous run verified (its last seq and hash)."""
        self.head = seq
        self.verifier.seed(seq, hash_)

    # --- input ---------------------------------------------------------------------------

    def accept(self, envelope: Envelope, topic: str, now_ms: int) -> list[Release]:
        env, seq = envelope.fields, envelope.seq
        outcome = self.verifier.link(envelope)
        if isinstance(outcome, Duplicate):
            self.duplicates += 1  # at-least-once delivery: expected, not news
            return []
        if isinstance(outcome, Failure):
            return [Release(env, topic, False, str(outcome))]
        was_missing = self._fill(seq)
        if self.head is None:
            self.head = seq
            return [Release(env, topic, True, None), *self._drain()]
        if seq == self.head + 1:
            self.head = seq
            return [Release(env, topic, True, None), *self._drain()]
        if seq <= self.head:
            why = "late: arrived after later seqs were shown" if was_missing else None
            return [Release(env, topic, True, why)]
        if seq - self.head > MAX_GAP:
            jumped = f"seq jumps from {self.head} to {seq}: not asking for the rest"
            self.head = seq
            return [Release(env, topic, True, jumped)]
        self.held[seq] = (env, topic, now_ms)
        self._open_gap(self.head + 1, seq - 1, now_ms, tail=False)
        return []

    def expect(self, last_seq: int, now_ms: int) -> str | None:
        """A status birth says the device has written up to `last_seq`."""
        if self.head is None or last_seq <= max([self.head, *self.held], default=0):
            return None
        top = max([self.head, *self.held])
        if last_seq - top > MAX_GAP:
            return f"status claims last_seq {last_seq}, far beyond seq {top}: not asking"
        self._open_gap(top + 1, last_seq, now_ms, tail=True)
        return None

    # --- time ----------------------------------------------------------------------------

    def tick(self, now_ms: int) -> tuple[list[Release], list[ResendAsk], list[str]]:
        """Due resend requests, held envelopes whose wait is over, and gaps given up on."""
        asks: list[ResendAsk] = []
        notes: list[str] = []
        for gap in list(self.gaps):
            if self.verifier.is_attested(gap.lo, gap.hi):
                self.gaps.remove(gap)
                notes.append(f"{gap.text()} shed by the device (attested by system.outbox_dropped)")
                continue
            if gap.given_up:
                continue
            wait = self.timing.tail_grace_ms if gap.tail else self.timing.grace_ms
            if gap.asked_ms is None and now_ms - gap.opened_ms < wait:
                continue
            if gap.asked_ms is not None and now_ms - gap.asked_ms < self.timing.retry_ms:
                continue
            if gap.asks >= self.timing.max_asks:
                gap.given_up = True
                notes.append(f"{gap.text()} still missing after {gap.asks} resend requests")
                continue
            gap.asked_ms, gap.asks = now_ms, gap.asks + 1
            asks.append(ResendAsk(self.device, gap.lo, gap.hi, gap.asks))
        released: list[Release] = []
        oldest = min((at for _, _, at in self.held.values()), default=None)
        if oldest is not None and now_ms - oldest >= self.timing.hold_ms:
            released = self._flush_held()
        return released, asks, notes

    def open_gaps(self) -> list[Gap]:
        return list(self.gaps)

    # --- internals -----------------------------------------------------------------------

    def _drain(self) -> list[Release]:
        assert self.head is not None
        out = []
        while self.head + 1 in self.held:
            self.head += 1
            env, topic, _ = self.held.pop(self.head)
            out.append(Release(env, topic, True, None))
        return out

    def _flush_held(self) -> list[Release]:
        out = []
        for seq in sorted(self.held):
            env, topic, _ = self.held.pop(seq)
            assert self.head is not None
            problem = None
            if seq != self.head + 1:
                missing = f"seq {self.head + 1}" + (
                    f"..{seq - 1}" if seq - 1 > self.head + 1 else ""
                )
                problem = f"shown before {missing} arrived (gap; resend asked)"
            self.head = max(self.head, seq)
            out.append(Release(env, topic, True, problem))
        return out

    def _open_gap(self, lo: int, hi: int, now_ms: int, *, tail: bool) -> None:
        # Only seqs not already known, held or inside an open gap: sweep the free stretches.
        blocked = sorted(
            [(a, b) for a, b in self.verifier.received if a <= hi and b >= lo]
            + [(g.lo, g.hi) for g in self.gaps if g.lo <= hi and g.hi >= lo]
        )
        start = lo
        for b_lo, b_hi in blocked:
            if b_lo > start:
                self.gaps.append(Gap(start, b_lo - 1, now_ms, tail=tail))
            start = max(start, b_hi + 1)
        if start <= hi:
            self.gaps.append(Gap(start, hi, now_ms, tail=tail))
        self.gaps.sort(key=lambda g: g.lo)

    def _fill(self, seq: int) -> bool:
        for gap in self.gaps:
            if gap.lo <= seq <= gap.hi:
                self.gaps.remove(gap)
                if gap.lo < seq:
                    self.gaps.append(_part(gap, gap.lo, seq - 1))
                if seq < gap.hi:
                    self.gaps.append(_part(gap, seq + 1, gap.hi))
                self.gaps.sort(key=lambda g: g.lo)
                return True
        return False


def _part(gap: Gap, lo: int, hi: int) -> Gap:
    return Gap(lo, hi, gap.opened_ms, gap.tail, gap.asked_ms, gap.asks, gap.given_up)
