"""The console's pages (server-rendered): fleet, live alarms, a cabinet, approvals, ledger, daily.

Each page is a view of the same projections the API serves; the parts that change while
a person watches carry `data-live` and are refreshed by static/console.js when the live
stream says the record grew.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from central.web import roles
from central.web.auth import from_request
from central.web.ledger_query import ledger_rows
from central.web.ports import ConsoleStore
from central.web.present import local_today
from central.web.render import page_user, render
from central.web.settings import WebSettings
from central.web.when import BadTime, ledger_filter, parse_day
from rules.command_args import RESOLVE_REASONS

router = APIRouter(include_in_schema=False)

MASS_ALARMS = frozenset({"mass_unexplained", "mass_mismatch", "unknown_item"})


def _second_persons(store: ConsoleStore, me: str) -> Callable[[str], list[tuple[str, str]]]:
    """Who can resolve with me, per cabinet: asked of the store once per cabinet and page,
    however many of that cabinet's alarms the page shows."""

    @functools.cache
    def of(device: str) -> list[tuple[str, str]]:
        return roles.second_persons(store.persons(device), me)

    return of


def _store(request: Request) -> ConsoleStore:
    store: ConsoleStore = request.app.state.store
    return store


def _now_ms() -> int:
    return int(time.time() * 1000)


def error_page(request: Request, status: int, message: str, signed_in: bool = True) -> Response:
    # with the database away, who is asking cannot be looked up (a bearer token) either
    who = from_request(request, _store(request)) if signed_in else None
    return render(request, "error.html", who, status_code=status, status=status, message=message)


@router.get("/", response_class=HTMLResponse)
def fleet(request: Request) -> Response:
    who = page_user(request)
    store = _store(request)
    return render(
        request,
        "fleet.html",
        who,
        cabinets=store.cabinets(),
        pending=store.pending_approvals(_now_ms()),
        quarantined=store.quarantine(),
    )


@router.get("/alarms", response_class=HTMLResponse)
def alarms(request: Request, device: str | None = None) -> Response:
    who = page_user(request)
    store = _store(request)
    shown = store.alarms(state="open", device=device or None)
    shown.sort(key=lambda a: a.raised_ms, reverse=True)
    return render(
        request,
        "alarms.html",
        who,
        alarms=shown,
        device=device,
        mass_alarms=MASS_ALARMS,
        reasons=RESOLVE_REASONS,
        people=_second_persons(store, who.person),
    )


@router.get("/alarms/{device}/{alarm}", response_class=HTMLResponse)
def alarm_history(request: Request, device: str, alarm: str) -> Response:
    who = page_user(request)
    store = _store(request)
    steps = store.alarm_history(device, alarm)
    found = [a for a in store.alarms(state="all", device=device) if a.alarm == alarm]
    if not found and not steps:
        raise HTTPException(404, f"no alarm {alarm} of {device} in the record")
    return render(
        request,
        "alarm.html",
        who,
        device=device,
        alarm=found[0] if found else None,
        alarm_id=alarm,
        steps=steps,
        resolution=_resolution(store, device, alarm, steps),
        mass_alarms=MASS_ALARMS,
        reasons=RESOLVE_REASONS,
        people=_second_persons(store, who.person),
    )


def _resolution(store: ConsoleStore, device: str, alarm: str, steps: list[Any]) -> Any:
    """Who resolved a discrepancy, why and with what comment: the cabinet records the
    settlement (`inventory.adjusted`, naming both persons and the alarm) just before the
    alarm's `resolved` clearing, so it is the verified record right before that step."""
    cleared = [s for s in steps if s.what == "cleared" and s.comment == "resolved"]
    if not cleared or cleared[-1].seq < 2:
        return None
    before = store.events(device, cleared[-1].seq - 1, 1)
    try:
        env = json.loads(before[0]) if before else None
    except ValueError:
        return None
    if not isinstance(env, dict) or env.get("type") != "inventory.adjusted":
        return None
    data = env.get("data")
    if not isinstance(data, dict) or data.get("alarm") != alarm:
        return None
    persons = data.get("persons")
    return {
        "persons": [p for p in persons if isinstance(p, str)] if isinstance(persons, list) else [],
        "reason": data.get("reason") if isinstance(data.get("reason"), str) else None,
        "comment": data.get("comment") if isinstance(data.get("comment"), str) else None,
    }


@router.get("/cabinets/{device}", response_class=HTMLResponse)
def cabinet(request: Request, device: str) -> Response:
    who = page_user(request)
    store = _store(request)
    found = [c for c in store.cabinets() if c.device == device]
    if not found:
        raise HTTPException(404, f"unknown cabinet {device}")
    return render(
        request,
        "cabinet.html",
        who,
        cabinet=found[0],
        books=sorted(store.books(device), key=lambda b: b.slot),
        sessions=store.sessions(device, limit=20),
        alarms=store.alarms(state="open", device=device),
        quarantined=[q for q in store.quarantine() if q.device == device],
    )


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request) -> Response:
    who = page_user(request)
    return render(
        request, "approvals.html", who, pending=_store(request).pending_approvals(_now_ms())
    )


@router.get("/ledger", response_class=HTMLResponse)
def ledger(
    request: Request,
    device: str = "",
    container: str = "",
    person: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    who = page_user(request)
    settings: WebSettings = request.app.state.settings
    store = _store(request)
    problem = None
    rows = []
    try:
        since_ms, until_ms = ledger_filter(since, until, settings.zone)
        rows = ledger_rows(
            store, since_ms, until_ms, device or None, container or None, person or None
        )
    except BadTime as error:
        problem = error.message
    filters = {
        "device": device,
        "container": container,
        "person": person,
        "since": since,
        "until": until,
    }
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(
        request,
        "ledger.html",
        who,
        rows=rows,
        filters=filters,
        export_query=query,
        problem=problem,
        cabinets=store.cabinets(),
        status_code=400 if problem else 200,
    )


@router.get("/daily", response_class=HTMLResponse)
def daily(request: Request, day: str = "") -> Response:
    who = page_user(request)
    settings: WebSettings = request.app.state.settings
    try:
        wanted = parse_day(day, "day") if day else local_today(settings.zone, _now_ms())
    except BadTime as error:
        raise HTTPException(400, error.message) from None
    rows = _store(request).daily(wanted, settings.time_zone)
    unweighed = sum(r.ok and not r.weighed for r in rows)
    all_ok = all(r.ok for r in rows)
    return render(
        request, "daily.html", who, day=wanted, rows=rows, all_ok=all_ok, unweighed=unweighed
    )


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine(request: Request) -> Response:
    who = page_user(request)
    return render(request, "quarantine.html", who, quarantined=_store(request).quarantine())
