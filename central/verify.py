"""`cabinetctl verify`: is this record of events complete and authentic?

Input is JSON Lines of envelopes (a capture, `cabinet-agent replay` output, an export),
an agent outbox (SQLite, table `events(seq, ..., payload)`) or a cabinetctl ledger
(SQLite, table `events(device, seq, ..., payload)`). Every signature, every `prev` link
and seq contiguity per device are checked with `agent.wire.verify_chain` (the contract's
one chain verifier), after the contract's strict parse (duplicate keys, floats); this module only
reads the input and says *where* a failure is, in terms a person can find in the file.

Naming the place of a failure: every failure carries the line (or database row) it was
found at. A line that does not even parse as an envelope (a flipped byte can break the
JSON) cannot say which seq it held, so its seq is inferred from its neighbours in the
file and printed with a question mark: `line 17 (seq 17?): not JSON: ...`. A line that
parses names the device and seq it *claims*: `device cab-1 seq 17 (line 17): bad signature`.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.wire import (
    BrokenLink,
    ChainFailure,
    Fork,
    Missing,
    UnknownDevice,
    VerifyKey,
    WireError,
    parse_envelope,
    verify_chain,
    verify_envelope,
)
from central.errors import CentralError

SQLITE_HEADER = b"SQLite format 3\x00"
_DIGITS = re.compile(rb"\d{1,18}(?=[,}])")
_SEQ_KEY = b'"seq":'
_DEVICE_TEXT = re.compile(rb'"device":"([A-Za-z0-9._-]{1,64})"')


@dataclass(frozen=True)
class RawEnvelope:
    """One envelope as found in the input: its place, and its bytes."""

    number: int  # line number, or the row's seq for a database
    where: str  # "line 12", "row 12", "row cab-1/12"
    raw: bytes
    row_device: str | None = None  # what the database row says, to compare
    row_seq: int | None = None


@dataclass(frozen=True)
class Failure:
    number: float  # position in the input, for ordering
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Verdict:
    events: int
    devices: int
    failures: list[Failure] = field(default_factory=list)
    shed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures and self.events > 0

    def summary(self) -> str:
        if self.events == 0:
            return "FAIL: no events found"
        if self.ok:
            shed = ""
            if self.shed:
                shed = f", {self.shed} telemetry seqs shed (attested by the device)"
            return f"{self.events} events, devices {self.devices}, OK{shed}"
        more = len(self.failures) - 1
        tail = f" (and {more} more failure{'s' if more > 1 else ''})" if more else ""
        return f"FAIL: {self.failures[0]}{tail}"


# --- reading -----------------------------------------------------------------------------


def read_input(source: str) -> list[RawEnvelope]:
    """Read `source` ('-' is stdin): JSON Lines, an outbox/ledger SQLite database, or the
    store of `cabinet-central` by its database URL (postgresql://..., sqlite:///...)."""
    if source.startswith(("postgresql://", "postgresql+", "sqlite:///")):
        return read_central_store(source)
    if source == "-":
        data = sys.stdin.buffer.read()
        if data.startswith(SQLITE_HEADER):
            raise CentralError("stdin is an SQLite database: give its path instead of '-'")
        return split_lines(data)
    path = Path(source)
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
            if head == SQLITE_HEADER:
                return read_database(path)
            return split_lines(head + handle.read())
    except FileNotFoundError:
        raise CentralError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise CentralError(f"{source}: is a directory") from None
    except OSError as exc:
        raise CentralError(f"{source}: cannot read: {exc.strerror}") from None


def read_central_store(url: str) -> list[RawEnvelope]:
    from central.store import Store  # SQLAlchemy only for this kind of input

    with Store.open(url) as store:
        rows = store.stored_record()
    return [
        RawEnvelope(i, f"row {device}/{seq}", payload, device, seq)
        for i, (device, seq, payload) in enumerate(rows, start=1)
    ]


def split_lines(data: bytes) -> list[RawEnvelope]:
    out = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if line.strip():
            out.append(RawEnvelope(number, f"line {number}", line))
    return out


def read_database(path: Path) -> list[RawEnvelope]:
    # Read-only: verifying must never change the evidence (nor create a -wal next to it).
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise CentralError(f"{path}: cannot open read-only: {exc}") from None
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if {"seq", "payload"} - columns:
            raise CentralError(f"{path}: no events(seq, payload) table: not an outbox or ledger")
        if "device" in columns:  # a cabinetctl ledger: many devices
            rows = db.execute("SELECT device, seq, payload FROM events ORDER BY device, seq")
            return [
                RawEnvelope(i, f"row {dev}/{seq}", _blob(p), str(dev), int(seq))
                for i, (dev, seq, p) in enumerate(rows, start=1)
            ]
        rows = db.execute("SELECT seq, payload FROM events ORDER BY seq")
        return [RawEnvelope(int(seq), f"row {seq}", _blob(p), None, int(seq)) for seq, p in rows]
    except sqlite3.Error as exc:
        raise CentralError(f"{path}: cannot read: {exc}") from None
    finally:
        db.close()


def _blob(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


# --- verifying ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    item: RawEnvelope
    env: dict[str, Any]


def verify_input(
    items: Sequence[RawEnvelope], keys: Mapping[str, VerifyKey] | VerifyKey
) -> Verdict:
    results: list[dict[str, Any] | WireError] = []
    for item in items:
        try:
            results.append(parse_envelope(item.raw))
        except WireError as exc:
            results.append(exc)
    failures: list[Failure] = []
    parsed: list[_Parsed] = []
    for index, (item, result) in enumerate(zip(items, results, strict=True)):
        if isinstance(result, WireError):
            guess = _guess(index, items, results)
            failures.append(Failure(item.number, f"{item.where}{guess}: {result}"))
            continue
        env = result
        if item.row_seq is not None and (
            env["seq"] != item.row_seq or item.row_device not in (None, env["device"])
        ):
            failures.append(
                Failure(
                    item.number,
                    f"{item.where}: the row does not match the envelope it holds "
                    f"({env['device']} seq {env['seq']})",
                )
            )
        parsed.append(_Parsed(item, env))
    report = verify_chain([p.env for p in parsed], keys)
    locator = _Locator(parsed, keys)
    failures.extend(locator.place(chain_failure) for chain_failure in report.failures)
    failures.sort(key=lambda f: f.number)
    return Verdict(len(items), report.devices, failures, report.shed)


def _guess(
    index: int, items: Sequence[RawEnvelope], results: Sequence[dict[str, Any] | WireError]
) -> str:
    """` (seq S?)`: the seq an unparseable line most likely held, from its neighbours."""
    item = items[index]
    before = _neighbour_seq(index, items, results, -1)
    after = _neighbour_seq(index, items, results, +1)
    # A stray newline byte splits one envelope over several lines: read them together.
    text = item.raw
    following = index + 1
    while (
        following < len(items)
        and isinstance(results[following], WireError)
        and items[following].number == items[following - 1].number + 1
        and not items[following].raw.startswith(b"{")
    ):
        text += b"\n" + items[following].raw
        following += 1
    text_seq = _seq_in_text(text)
    if before is not None and before == after:
        seq: int | None = before
    elif text_seq is not None and text_seq in (before, after):
        seq = text_seq
    else:
        seq = next((s for s in (text_seq, before, after) if s is not None and s >= 1), None)
    device = _DEVICE_TEXT.search(text)
    named = f"device {device.group(1).decode()}? " if device else ""
    return f" ({named}seq {seq}?)" if seq is not None else ""


def _seq_in_text(raw: bytes) -> int | None:
    """The top-level seq still readable in a broken line, allowing one damaged key byte.

    Keys are sorted in canonical bytes and `data` sorts before `seq`, so the last match
    is the envelope's own seq, not a `seq` inside its data.
    """
    found = None
    for match in _DIGITS.finditer(raw):
        key = raw[max(0, match.start() - len(_SEQ_KEY)) : match.start()]
        if (
            len(key) == len(_SEQ_KEY)
            and sum(a != b for a, b in zip(key, _SEQ_KEY, strict=True)) <= 1
        ):
            found = int(match.group())
    return found


def _neighbour_seq(
    index: int,
    items: Sequence[RawEnvelope],
    results: Sequence[dict[str, Any] | WireError],
    step: int,
) -> int | None:
    """The seq at `index` implied by the nearest parsed line in direction `step`.

    Broken lines in between count as envelopes only if they start like one (`{`): the
    rest are fragments of a line split by a stray newline byte.
    """
    between = 0
    i = index + step
    # Bounded: a wholly garbled file must not cost quadratic time for a hint.
    while 0 <= i < len(items) and abs(i - index) <= 1000:
        result = results[i]
        if not isinstance(result, WireError):
            return int(result["seq"]) - step * (1 + between)
        between += items[i].raw.startswith(b"{")
        i += step
    return None


class _Locator:
    """Finds the line of a chain failure (verify_chain speaks of devices and seqs)."""

    def __init__(self, parsed: Sequence[_Parsed], keys: Mapping[str, VerifyKey] | VerifyKey):
        self._keys = keys
        self._by_seq: dict[tuple[str, int], list[_Parsed]] = {}
        for p in parsed:
            self._by_seq.setdefault((p.env["device"], p.env["seq"]), []).append(p)

    def _signed(self, p: _Parsed) -> bool:
        key = self._keys if isinstance(self._keys, VerifyKey) else self._keys.get(p.env["device"])
        if key is None:
            return False
        try:
            verify_envelope(p.env, key)
        except WireError:
            return False
        return True

    def place(self, failure: ChainFailure) -> Failure:
        device, seq, problem = failure.device, failure.seq, failure.problem

        def text(where: str) -> str:
            return f"device {device} seq {seq}{where}: {problem}"

        if isinstance(problem, Missing):
            # Found where the chain resumes: the first good envelope after the gap.
            found = self._by_seq.get((device, problem.last + 1), [])
            after = next((p for p in found if self._signed(p)), None)
            where = f" (before {after.item.where})" if after else ""
            number = after.item.number - 0.5 if after else float("inf")
            return Failure(number, text(where))
        candidates = self._by_seq.get((device, seq), [])
        here: _Parsed | None
        if isinstance(problem, UnknownDevice):
            here = candidates[0] if candidates else None
        elif isinstance(problem, Fork):
            good = [p for p in candidates if self._signed(p)]
            here = good[1] if len(good) > 1 else (candidates[-1] if candidates else None)
        elif isinstance(problem, BrokenLink):
            here = next((p for p in candidates if self._signed(p)), None)
        else:  # a signature or shape problem: the copy that does not verify
            here = next((p for p in candidates if not self._signed(p)), None)
        if here is None and candidates:
            here = candidates[0]
        where = f" ({here.item.where})" if here else ""
        return Failure(here.item.number if here else float("inf"), text(where))
