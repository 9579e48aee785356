"""The live state for a person at the cabinet: `cabinet-agent status`.

The daemon writes `status.json` in its state dir (atomically, at most once a second
and whenever something a person would notice changes); `status` reads it, so it works
without any socket into the daemon and without touching the rule state's thread.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from rules.cabinet import CabinetRules
from rules.effects import Instant

log = structlog.get_logger("status")

STATUS_FILE = "status.json"


def rules_view(rules: CabinetRules, now: Instant) -> dict[str, Any]:
    """What the rules know, as plain data. Core thread only (it owns the rule state)."""
    session = rules.session
    pending = rules.access.pending
    return {
        "door": {None: "unknown", True: "open", False: "closed"}[rules.door_open],
        "lock": "released (relay energised)" if rules.outputs["lock"] else "locked",
        "outputs": dict(rules.outputs),
        "session": None
        if session is None
        else {"id": session.id, "persons": list(session.grant.persons), "phase": session.phase},
        "pending": None
        if pending is None
        else {
            "person": pending.person,
            "reader": pending.reader,
            "expires_in_s": max(0, (pending.expires_mono - now.mono_ms) // 1000),
        },
        "locked_out": rules.access.locked_until is not None,
        "alarms": [
            {
                "id": a.id,
                "kind": a.kind,
                "subject": a.subject,
                "since_ms": a.since_ms,
                "acked": a.acked,
            }
            for a in rules.alarms.open_alarms()
        ],
        "policy_version": rules.policy.version if rules.policy else None,
        "voc_ppb": rules.env.voc_ppb,
    }


class StatusFile:
    """status.json: the rules' view, the uplink, the backlog and the agent's counters.

    Only the core thread reads rule state: it calls `refresh` between batches, and the
    finished snapshot is handed over by swapping one reference, which `write` (any
    thread, once a second) puts in the file with everything else.
    """

    REFRESH_S = 0.5

    def __init__(
        self,
        state_dir: Path,
        identity: dict[str, Any],
        counters: Callable[[], dict[str, int]],
    ) -> None:
        self._state_dir, self._identity, self._counters = state_dir, identity, counters
        self._view: dict[str, Any] = {}
        self._view_at = float("-inf")

    def refresh(self, rules: CabinetRules, now: Instant) -> None:
        """Core thread only (or before it runs): take a new view of the rules, 2 a second."""
        at = time.monotonic()
        if at - self._view_at >= self.REFRESH_S:
            self._view_at = at
            self._view = rules_view(rules, now)

    def write(self, uplink: str, backlog: int, oldest_unsent_age_s: int | None) -> None:
        status = {
            **self._view,
            **self._identity,
            "uplink": uplink,
            "backlog": backlog,
            "oldest_unsent_age_s": oldest_unsent_age_s,
            "counters": self._counters(),
            "updated_ms": int(time.time() * 1000),
        }
        try:
            write_status(self._state_dir, status)
        except OSError as exc:
            log.warning("status.write_failed", error=str(exc))


def write_status(state_dir: Path, status: dict[str, Any]) -> None:
    path = state_dir / STATUS_FILE
    temp = state_dir / f".{STATUS_FILE}.tmp"
    temp.write_text(json.dumps(status, sort_keys=True, ensure_ascii=False))
    os.replace(temp, path)  # no fsync: a status lost in a power cut is rewritten in 1 s


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def render(status: dict[str, Any], now_ms: int | None = None) -> str:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    age_s = max(0, (now_ms - int(status.get("updated_ms", now_ms))) // 1000)
    lines = [
        f"cabinet {status.get('device')} (site {status.get('site')}), boot {status.get('boot')}, "
        f"status {age_s} s old" + ("  — DAEMON NOT UPDATING" if age_s > 10 else ""),
        f"  door      {status.get('door')}",
        f"  lock      {status.get('lock')}",
    ]
    session = status.get("session")
    lines.append(
        "  session   none"
        if not session
        else f"  session   {session['id']} ({' + '.join(session['persons'])}), {session['phase']}"
    )
    pending = status.get("pending")
    if pending:
        lines.append(
            f"  pending   {pending['person']} on reader {pending['reader']}, "
            f"second badge within {pending['expires_in_s']} s"
        )
    if status.get("locked_out"):
        lines.append("  LOCKED OUT after repeated denials")
    alarms = status.get("alarms") or []
    lines.append(f"  alarms    {len(alarms)} open")
    for alarm in alarms[-10:]:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(alarm["since_ms"] / 1000))
        acked = "acked" if alarm["acked"] else "NOT ACKED"
        subject = f" {alarm['subject']}" if alarm.get("subject") else ""
        lines.append(f"    {alarm['id']:<8} {alarm['kind']}{subject}  since {since} UTC  {acked}")
    lines += [
        f"  uplink    {status.get('uplink')}",
        f"  backlog   {status.get('backlog')} unsent"
        + (
            f", oldest {status['oldest_unsent_age_s']} s"
            if status.get("oldest_unsent_age_s")
            else ""
        ),
        f"  policy    version {status.get('policy_version') or 'NONE (every badge is denied)'}",
    ]
    counters = status.get("counters") or {}
    if counters:
        lines.append("  counters  " + ", ".join(f"{k} {v}" for k, v in sorted(counters.items())))
    return "\n".join(lines)
