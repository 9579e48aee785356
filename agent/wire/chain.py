"""The one chain verifier: is this device's stream of envelopes authentic and whole?

    verifier = ChainVerifier(device_key, device="cab-1")
    outcome = verifier.feed(payload)           # the bytes as received
    if isinstance(outcome, Verified): ...      # outcome.envelope: new, signed, linked
    elif isinstance(outcome, Duplicate): ...   # the same bytes again (at-least-once)
    else: ...                                  # a Failure: typed, str() says why
    verifier.holes()                           # seq ranges not received (yet)
    verifier.attested                          # ranges the device signed it shed

`feed` is `authenticate` (parse strictly, same device, signature: no state) followed by
`link` (duplicates, forks, `prev` links: state). A caller that must check something
between the two (the topic it came on) calls them itself. Envelopes may arrive in any
order: each link is checked as soon as both neighbours are known, whichever comes
first. A failed envelope changes nothing. Memory is bounded: hashes more than `memory`
seqs below the highest are forgotten; `lookup(seq)` (e.g. a database of what an earlier
run stored) answers for those, and `seed(seq, hash)` continues from such a record.

`verify_chain` checks a whole record (many devices, any order) with it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.wire.encoding import GENESIS_PREV, SignatureError, WireError, canonical
from agent.wire.envelope import Envelope, check_shape, parse_envelope, signed_message
from agent.wire.signing import VerifyKey, check_signature

DROPPED_TYPE = "system.outbox_dropped"  # data: from_seq, to_seq (telemetry shed on a full disk)


# --- outcomes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verified:
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Duplicate:
    seq: int


@dataclass(frozen=True, slots=True)
class Failure:
    """Something wrong with one envelope (or a range of seqs); `str()` says what."""

    seq: int | None

    @property
    def reason(self) -> str:
        return "failure"

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class _Explained(Failure):
    why: str

    @property
    def reason(self) -> str:
        return self.why


@dataclass(frozen=True, slots=True)
class Malformed(_Explained):
    """Not an envelope: not strict JSON, or a field missing, extra or of the wrong type."""


@dataclass(frozen=True, slots=True)
class BadSignature(_Explained):
    """`sig` is missing, not base64url, or does not verify with the device's key."""


@dataclass(frozen=True, slots=True)
class WrongDevice(Failure):
    claimed: str

    @property
    def reason(self) -> str:
        return f"claims device {self.claimed!r}"


@dataclass(frozen=True, slots=True)
class UnknownDevice(Failure):
    device: str

    @property
    def reason(self) -> str:
        return "unknown device"


@dataclass(frozen=True, slots=True)
class Fork(Failure):
    """Two different, validly signed envelopes claim the same seq."""

    @property
    def reason(self) -> str:
        return f"two different envelopes claim seq {self.seq}"


@dataclass(frozen=True, slots=True)
class BrokenLink(Failure):
    """`prev` does not link to the neighbour `other` (seq - 1, or seq + 1's `prev`)."""

    other: int

    @property
    def reason(self) -> str:
        if self.seq == 1 and self.other == 0:
            return "seq 1 does not start a chain (prev is not the hash of nothing)"
        if self.other < (self.seq or 0):
            return f"chain broken: prev does not match seq {self.other}"
        return f"chain broken: seq {self.other} does not link to this seq {self.seq}"


@dataclass(frozen=True, slots=True)
class Missing(Failure):
    """Seqs `seq`..`last` never arrived and the device did not attest shedding them."""

    last: int

    @property
    def reason(self) -> str:
        return f"missing seq {self.seq}..{self.last}"


Outcome = Verified | Duplicate | Failure


# --- the verifier ------------------------------------------------------------------------


class ChainVerifier:
    def __init__(
        self,
        key: VerifyKey,
        device: str | None = None,
        *,
        lookup: Callable[[int], str | None] | None = None,
        memory: int = 100_000,
    ) -> None:
        self.key, self.device = key, device
        self.attested: list[tuple[int, int]] = []  # ranges signed as shed (outbox_dropped)
        self._lookup, self._memory = lookup, memory
        self._hashes: dict[int, str] = {}
        self._prevs: dict[int, str] = {}
        self._received: list[tuple[int, int]] = []  # merged, sorted ranges of linked seqs
        self._floor = 0  # at and below this, hashes may have been forgotten (or seeded)

    def seed(self, seq: int, hash_: str) -> None:
        """Continue from a record an earlier run verified: its last seq and hash."""
        self._hashes[seq] = hash_
        self._floor = max(self._floor, seq)
        self._add_received(seq)

    def feed(self, payload: bytes | str) -> Outcome:
        envelope = self.authenticate(payload)
        return envelope if isinstance(envelope, Failure) else self.link(envelope)

    def authenticate(self, envelope: bytes | str | Mapping[str, Any]) -> Envelope | Failure:
        """Parse (or shape-check) and check device and signature; keeps no state."""
        seq: int | None = None
        try:
            if isinstance(envelope, Mapping):
                seq = envelope.get("seq") if type(envelope.get("seq")) is int else None
                check_shape(envelope)
                fields: Mapping[str, Any] = envelope
            else:
                fields = parse_envelope(envelope)
            seq = fields["seq"]
            if self.device is not None and fields["device"] != self.device:
                return WrongDevice(seq, str(fields["device"]))
            # Encoded once: the signed message is these bytes without `sig`.
            payload = canonical(fields)
            check_signature(fields, self.key, message=signed_message(fields, payload))
        except SignatureError as exc:
            return BadSignature(seq, str(exc))
        except WireError as exc:
            return Malformed(seq, str(exc))
        return Envelope(fields, payload)

    def link(self, envelope: Envelope) -> Verified | Duplicate | Failure:
        """Place an authenticated envelope in the chain."""
        seq, prev, digest = envelope.seq, str(envelope.fields["prev"]), envelope.hash
        known = self._hashes.get(seq)
        if known is None and seq <= self._floor:  # seeded or forgotten: ask the record
            known = self._lookup(seq) if self._lookup is not None else None
            if known is None and self._has_received(seq):
                # Linked long ago and its hash forgotten: a copy or a fork can no longer
                # be told apart here (give a `lookup` for that); not news either way.
                return Duplicate(seq)
        if known is not None:
            return Duplicate(seq) if known == digest else Fork(seq)
        broken = self._link_problem(seq, prev, digest)
        if broken is not None:
            return broken
        self._hashes[seq], self._prevs[seq] = digest, prev
        self._add_received(seq)
        if envelope.type == DROPPED_TYPE:
            self._note_attested(envelope.fields.get("data"))
        self._forget_old()
        return Verified(envelope)

    def holes(self) -> list[tuple[int, int]]:
        """Ranges between the first and the highest seq received that did not arrive."""
        return [
            (a[1] + 1, b[0] - 1) for a, b in zip(self._received, self._received[1:], strict=False)
        ]

    @property
    def received(self) -> list[tuple[int, int]]:
        """The seqs linked so far (and the seed), as sorted, merged ranges."""
        return list(self._received)

    @property
    def first(self) -> int | None:
        return self._received[0][0] if self._received else None

    @property
    def last(self) -> int | None:
        return self._received[-1][1] if self._received else None

    def is_attested(self, lo: int, hi: int) -> bool:
        """Did the device sign that it shed every seq of lo..hi?"""
        for a_lo, a_hi in sorted(self.attested):
            if a_lo <= lo <= a_hi:
                lo = a_hi + 1
            if lo > hi:
                return True
        return False

    # --- internals -------------------------------------------------------------------

    def _link_problem(self, seq: int, prev: str, digest: str) -> BrokenLink | None:
        if seq == 1 and prev != GENESIS_PREV:
            return BrokenLink(seq, 0)
        before = self._hashes.get(seq - 1)
        if before is not None and prev != before:
            return BrokenLink(seq, seq - 1)
        after = self._prevs.get(seq + 1)
        if after is not None and after != digest:
            return BrokenLink(seq, seq + 1)
        return None

    def _top(self) -> int:
        return self._received[-1][1] if self._received else self._floor

    def _has_received(self, seq: int) -> bool:
        i = bisect.bisect_right(self._received, (seq, float("inf")))
        return i > 0 and self._received[i - 1][0] <= seq <= self._received[i - 1][1]

    def _add_received(self, seq: int) -> None:
        ranges = self._received
        i = bisect.bisect_left(ranges, (seq, seq))
        if i > 0 and ranges[i - 1][1] >= seq - 1:
            i -= 1
            lo, hi = ranges[i][0], max(ranges[i][1], seq)
            ranges[i] = (lo, hi)
        else:
            ranges.insert(i, (seq, seq))
        while i + 1 < len(ranges) and ranges[i + 1][0] <= ranges[i][1] + 1:
            ranges[i] = (ranges[i][0], max(ranges[i][1], ranges[i + 1][1]))
            del ranges[i + 1]

    def _note_attested(self, data: object) -> None:
        if not isinstance(data, Mapping):
            return
        lo, hi = data.get("from_seq"), data.get("to_seq")
        if type(lo) is int and type(hi) is int and lo <= hi:
            self.attested.append((lo, hi))

    def _forget_old(self) -> None:
        # An all-day stream must not grow without bound; `lookup` remembers more.
        if len(self._hashes) <= 2 * self._memory:
            return
        floor = self._top() - self._memory
        for table in (self._hashes, self._prevs):
            for seq in [s for s in table if s < floor]:
                del table[seq]
        self._floor = max(self._floor, floor)


# --- a whole record ------------------------------------------------------------------------


@dataclass
class ChainFailure:
    device: str
    seq: int
    problem: Failure

    @property
    def reason(self) -> str:
        return str(self.problem)

    def __str__(self) -> str:
        return f"device {self.device} seq {self.seq}: {self.reason}"


@dataclass
class ChainReport:
    events: int
    devices: int
    failures: list[ChainFailure]
    shed: int = 0  # seqs missing but covered by a signed system.outbox_dropped
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # first, last seq

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_chain(
    envelopes: Iterable[Mapping[str, Any]],
    keys: Mapping[str, VerifyKey] | VerifyKey,
) -> ChainReport:
    """Check signatures, `prev` links and seq contiguity per device, in any order.

    Duplicates of the same (device, seq) are fine if byte-identical (at-least-once
    delivery). A seq gap is accepted only where a validly signed `system.outbox_dropped`
    of the same device names that range: the device attests it shed that telemetry, and
    the link across the gap cannot be checked (its hash is not on the wire). A record
    may start after seq 1 (retention, a live window).
    """
    verifiers: dict[str, ChainVerifier] = {}
    reported: dict[str, set[int]] = {}  # seqs that failed: not to be reported missing too
    failures: list[ChainFailure] = []
    count = 0
    for env in envelopes:
        count += 1
        device, seq = str(env.get("device")), env.get("seq")
        if type(seq) is not int:
            failures.append(ChainFailure(device, -1, Malformed(None, "seq is not an integer")))
            continue
        verifier = verifiers.get(device)
        if verifier is None:
            key = keys if isinstance(keys, VerifyKey) else keys.get(device)
            if key is None:
                failures.append(ChainFailure(device, seq, UnknownDevice(seq, device)))
                continue
            verifier = verifiers[device] = ChainVerifier(key, device)
        authentic = verifier.authenticate(env)
        outcome = verifier.link(authentic) if isinstance(authentic, Envelope) else authentic
        if isinstance(outcome, Failure):
            failures.append(ChainFailure(device, seq, outcome))
            reported.setdefault(device, set()).add(seq)
    shed = 0
    spans: dict[str, tuple[int, int]] = {}
    for device, verifier in verifiers.items():
        first, last = verifier.first, verifier.last
        if first is None or last is None:
            continue
        spans[device] = (first, last)
        if first > 1 and verifier.is_attested(1, first - 1):
            shed += first - 1  # the record's head was shed telemetry, and says so
        for lo, hi in verifier.holes():
            if verifier.is_attested(lo, hi):
                shed += hi - lo + 1
            elif not all(s in reported.get(device, ()) for s in range(lo, hi + 1)):
                failures.append(ChainFailure(device, lo, Missing(lo, hi)))
    failures.sort(key=lambda f: (f.device, f.seq))
    return ChainReport(count, len(verifiers), failures, shed, spans)
