"""What `cabinetctl watch` knows and shows, without any I/O (fed messages and the time).

`WatchState.on_message(topic, payload, now_ms)` takes whatever the broker delivered and
returns a `Step`: the records to show (each verified, or flagged with its problem),
the resend requests to send, the alarms that just opened, the cabinets whose status
changed. `tick(now_ms)` does the same for time passing (resend retries, held envelopes).
The MQTT client and the screen are thin layers over this, so everything here is unit
tested without a broker or a terminal.

Nothing is believed before it is verified against the registry: an envelope from an
unknown device, with a bad signature, a broken chain or a topic that disagrees with its
content is shown loudly, never dropped and never allowed to open, ack or clear an alarm.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.wire import (
    ChainVerifier,
    Envelope,
    Topic,
    WireError,
    category,
    parse_envelope,
    parse_json_object,
    parse_topic,
)
from central.chain import DeviceChain, Release, ResendAsk, Timing
from central.registry import Registry
from central.store import Alarm as StoredAlarm

LOG_LINES = 1000
PROBLEM_LINES = 200


@dataclass(frozen=True)
class Seen:
    """One line of the event log (and of `--json` output)."""

    verified: bool
    problem: str | None
    device: str | None
    seq: int | None
    type: str | None
    envelope: Mapping[str, Any] | None
    topic: str
    at_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "event",
            "verified": self.verified,
            "problem": self.problem,
            "device": self.device,
            "seq": self.seq,
            "type": self.type,
            "envelope": dict(self.envelope) if self.envelope is not None else None,
            "topic": self.topic,
        }


@dataclass
class Alarm:
    device: str
    alarm: str
    kind: str
    since_ms: int  # the device's ts of alarm.raised
    seq: int  # of its alarm.raised (0 when it came from the store's projection)
    acked: bool = False
    acked_by: str | None = None


@dataclass
class CabinetStatus:
    device: str
    site: str
    state: str  # online | offline | unknown
    boot: int | None = None
    last_seq: int | None = None
    version: str | None = None
    changed_ms: int = 0
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": "status", **vars(self)}


@dataclass(frozen=True)
class ResendRequest:
    device: str
    site: str
    from_seq: int
    to_seq: int
    attempt: int


@dataclass
class Step:
    shown: list[Seen] = field(default_factory=list)
    resends: list[ResendRequest] = field(default_factory=list)
    new_alarms: list[Alarm] = field(default_factory=list)
    statuses: list[CabinetStatus] = field(default_factory=list)

    def extend(self, other: Step) -> None:
        self.shown += other.shown
        self.resends += other.resends
        self.new_alarms += other.new_alarms
        self.statuses += other.statuses


class WatchState:
    def __init__(
        self,
        registry: Registry,
        *,
        prefix: str = "cabinet",
        timing: Timing | None = None,
        lookup: Callable[[str, int], str | None] | None = None,
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self.timing = timing or Timing()
        self._lookup = lookup
        self.chains: dict[str, DeviceChain] = {}
        self.alarms: dict[tuple[str, str], Alarm] = {}
        self._cleared: dict[tuple[str, str], int] = {}  # alarm -> seq of its clear
        self.status: dict[str, CabinetStatus] = {}
        self.log: deque[Seen] = deque(maxlen=LOG_LINES)
        self.problems: deque[Seen] = deque(maxlen=PROBLEM_LINES)
        self.counts = {"verified": 0, "problems": 0, "resends": 0}

    def chain(self, device: str) -> DeviceChain:
        """The chain of a registered device (KeyError for one that is not)."""
        if device not in self.chains:
            lookup = self._lookup
            verifier = ChainVerifier(
                self.registry.devices[device].pubkey,
                device,
                lookup=(lambda seq: lookup(device, seq)) if lookup else None,
            )
            self.chains[device] = DeviceChain(device, verifier, self.timing)
        return self.chains[device]

    # --- input -------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes, now_ms: int) -> Step:
        where = parse_topic(self.prefix, topic)
        if where is not None and where.kind == "status":
            return self._on_status(where, topic, payload, now_ms)
        return self._on_envelope(where, topic, payload, now_ms)

    def tick(self, now_ms: int) -> Step:
        step = Step()
        for device, chain in self.chains.items():
            released, asks, notes = chain.tick(now_ms)
            step.extend(self._release(released, now_ms))
            step.resends += [self._resend(ask) for ask in asks]
            for note in notes:
                step.extend(self._show(Seen(False, note, device, None, None, None, "", now_ms)))
        self.counts["resends"] += len(step.resends)
        return step

    def note(self, problem: str, device: str | None, now_ms: int) -> Step:
        """A problem found outside the state (a resend that could not be sent, ...)."""
        return self._show(Seen(False, problem, device, None, None, None, "", now_ms))

    def open_gaps(self) -> list[tuple[str, str]]:
        """(device, "seq a..b") still missing, for the screen."""
        return [(device, gap.text()) for device, chain in self.chains.items() for gap in chain.gaps]

    def load_alarms(self, stored: Iterable[StoredAlarm]) -> None:
        """The open alarms as the centre's store projects them (its record, across boots)."""
        self.alarms = {
            (a.device, a.alarm): Alarm(
                a.device, a.alarm, a.kind, a.raised_ms, 0, a.acked_by is not None, a.acked_by
            )
            for a in stored
            if a.cleared_ms is None
        }

    def open_alarms(self) -> list[Alarm]:
        """Unacknowledged first, then oldest first: what a person must look at now."""
        return sorted(self.alarms.values(), key=lambda a: (a.acked, a.since_ms, a.device))

    # --- envelopes ---------------------------------------------------------------------

    def _on_envelope(self, where: Topic | None, topic: str, payload: bytes, now: int) -> Step:
        def flagged(problem: str, env: Mapping[str, Any] | None = None) -> Step:
            device = str(env["device"]) if env else (where.device if where else None)
            seq = int(env["seq"]) if env else None
            kind = str(env["type"]) if env else None
            return self._show(Seen(False, problem, device, seq, kind, env, topic, now))

        try:
            env = parse_envelope(payload)
        except WireError as exc:
            return flagged(f"malformed envelope: {exc}")
        device = self.registry.devices.get(env["device"])
        if device is None:
            return flagged(f"unknown device {env['device']!r} (not in the registry)", env)
        chain = self.chain(device.id)
        authentic = chain.verifier.authenticate(env)
        if not isinstance(authentic, Envelope):
            forged = f"{authentic} (not signed by {device.id}'s registered key): forged?"
            return flagged(forged, env)
        if where is None or where.kind != "evt":
            return flagged(f"signed envelope on an unexpected topic {topic!r}", env)
        if where.device != device.id or where.name != category(env["type"]):
            return flagged(
                f"topic {topic!r} does not match the envelope ({device.id}, {env['type']})", env
            )
        releases = chain.accept(authentic, topic, now)
        step = self._release(releases, now)
        if where.site != device.site:
            note = f"published under site {where.site!r}, registered at {device.site!r}"
            step.extend(
                self._show(Seen(False, note, device.id, env["seq"], None, None, topic, now))
            )
        return step

    def _release(self, releases: list[Release], now: int) -> Step:
        step = Step()
        for r in releases:
            env = r.env
            seen = Seen(
                r.verified,
                r.problem,
                str(env["device"]),
                int(env["seq"]),
                str(env["type"]),
                env,
                r.topic,
                now,
            )
            step.extend(self._show(seen))
            if r.verified:
                step.new_alarms += self._follow_alarms(env)
        return step

    def _follow_alarms(self, env: Mapping[str, Any]) -> list[Alarm]:
        device, seq, data = str(env["device"]), int(env["seq"]), env["data"]
        kind = env["type"]
        alarm_id = data.get("alarm")
        if not isinstance(alarm_id, str):
            alarm_id = f"seq-{seq}" if kind == "alarm.raised" else None
        if alarm_id is None:
            return []
        key = (device, alarm_id)
        if kind == "alarm.raised":
            cleared_at = self._cleared.get(key)
            if cleared_at is not None and cleared_at > seq:
                return []  # its clear already arrived (a late resend of the raise)
            alarm = Alarm(device, alarm_id, str(data.get("kind", "?")), int(env["ts"]), seq)
            if key in self.alarms:
                alarm.acked = self.alarms[key].acked
                self.alarms[key] = alarm
                return []
            self.alarms[key] = alarm
            return [alarm]
        if kind == "alarm.cleared":
            self._cleared[key] = max(seq, self._cleared.get(key, 0))
            self.alarms.pop(key, None)
        elif kind == "command.applied" and data.get("name") == "ack" and key in self.alarms:
            self.alarms[key].acked = True
            by = data.get("by")
            self.alarms[key].acked_by = by if isinstance(by, str) else None
        return []

    def _show(self, seen: Seen) -> Step:
        self._log_in_order(seen)
        if seen.verified:
            self.counts["verified"] += 1
        if seen.problem is not None:
            self.counts["problems"] += 1
            self.problems.append(seen)
        return Step(shown=[seen])

    def _log_in_order(self, seen: Seen) -> None:
        """Append, but a late envelope goes before the later seqs of its device already shown.

        A person reads a device's log as its history: seq 2 printed above seq 1 (a resend
        or a cross-topic reordering filled in after the hold) reads as the wrong story.
        """
        if seen.device is None or seen.seq is None or not seen.verified:
            self.log.append(seen)
            return
        place = len(self.log)
        for index in range(len(self.log) - 1, -1, -1):
            shown = self.log[index]
            if shown.device == seen.device and shown.seq is not None and shown.verified:
                if shown.seq < seen.seq:
                    break
                place = index
        if place == len(self.log):
            self.log.append(seen)
        else:
            if len(self.log) == self.log.maxlen:
                self.log.popleft()
                place -= 1
            self.log.insert(max(place, 0), seen)

    def _resend(self, ask: ResendAsk) -> ResendRequest:
        device = self.registry.devices[ask.device]
        return ResendRequest(ask.device, device.site, ask.lo, ask.hi, ask.attempt)

    # --- status (retained, unsigned: shown, never trusted for anything but display) -----

    def _on_status(self, where: Topic, topic: str, payload: bytes, now: int) -> Step:
        device = self.registry.devices.get(where.device)
        status = CabinetStatus(where.device, where.site, "unknown", changed_ms=now)
        if device is None:
            status.problem = "unknown device (not in the registry)"
        elif not payload:
            status.problem = "status cleared"
        else:
            status.problem = self._read_status(status, payload, device.pubkey_text)
            if device.site != where.site:
                status.problem = f"status under site {where.site!r}, registered {device.site!r}"
            if status.state == "online" and status.last_seq is not None and not status.problem:
                status.problem = self.chain(device.id).expect(status.last_seq, now)
        previous = self.status.get(where.device)
        self.status[where.device] = status
        step = Step(statuses=[status])
        if status.problem and (previous is None or previous.problem != status.problem):
            note = f"status: {status.problem}"
            step.extend(self._show(Seen(False, note, where.device, None, None, None, topic, now)))
        return step

    @staticmethod
    def _read_status(status: CabinetStatus, payload: bytes, pubkey: str) -> str | None:
        try:
            body = parse_json_object(payload)
        except WireError as exc:
            return f"malformed status: {exc}"
        if body.get("state") not in ("online", "offline"):
            return "malformed status: no online/offline state"
        status.state = str(body["state"])
        if body.get("device") != status.device:
            return f"status names device {body.get('device')!r}"
        boot, last_seq = body.get("boot"), body.get("last_seq")
        status.boot = boot if type(boot) is int else None
        status.last_seq = last_seq if type(last_seq) is int else None
        status.version = str(body["version"]) if "version" in body else None
        if "pubkey" in body and body["pubkey"] != pubkey:
            return "status advertises a different public key than the registry"
        return None


def json_line(item: Seen | CabinetStatus | ResendRequest) -> str:
    if isinstance(item, ResendRequest):
        missing = f"seq {item.from_seq}..{item.to_seq}"
        problem = f"gap: {missing} missing, resend asked (attempt {item.attempt})"
        body: dict[str, Any] = {"kind": "resend", **vars(item), "problem": problem}
    else:
        body = item.to_json()
    return json.dumps(body, ensure_ascii=False, sort_keys=True)
