"""The HTTP API: JSON views of the projections, the ledger as CSV, and signed commands.

Every path but /api/health needs a login (bearer token or the console's session).
Anything a caller can get wrong is a 4xx with `{"error": "..."}` saying what and how to
fix it; nothing reaches the caller as a traceback.
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from agent.wire import MalformedJson, parse_json
from central.errors import CentralError
from central.web import roles
from central.web.auth import SignedIn, check_csrf, from_request
from central.web.command_args import ARGS, BadArgs, checked_args
from central.web.i18n import Words
from central.web.ledger_csv import ledger_csv
from central.web.ledger_query import ledger_rows
from central.web.ports import ConsoleStore, Gateway
from central.web.present import row
from central.web.settings import WebSettings
from central.web.when import BadTime, ledger_filter, parse_day

router = APIRouter(prefix="/api")
T = TypeVar("T")

CABINET_FIELDS = ("device", "site", "online", "boot", "last_seq", "last_seen_ms", "open_alarms")
ALARM_FIELDS = (
    "device",
    "alarm",
    "kind",
    "raised_ms",
    "acked_by",
    "ack_comment",
    "cleared_ms",
    "clear_reason",
)
BOOK_FIELDS = ("device", "slot", "container", "cas", "book_mg", "measured_mg", "as_of_seq")
MAX_EVENTS = 1000


def store_of(request: Request) -> ConsoleStore:
    store: ConsoleStore = request.app.state.store
    return store


def settings_of(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


def signed_in(request: Request) -> SignedIn:
    who = from_request(request, store_of(request))
    if who is None:
        raise HTTPException(
            401,
            "sign in first: a console session or 'Authorization: Bearer <token>' "
            "(cabinet-central token create LOGIN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return who


def known_device(store: ConsoleStore, device: str) -> None:
    if device not in {c.device for c in store.cabinets()}:
        raise HTTPException(404, f"unknown device {device!r}: not in the centre's record")


def rows_of_known_device(store: ConsoleStore, device: str | None, rows: list[T]) -> list[T]:
    """`rows` of one device; nothing found may mean no such device (404), asked only then:
    listing every cabinet is the costly query, and a console polls these paths."""
    if device is not None and not rows:
        known_device(store, device)
    return rows


@router.get("/health")
def health(request: Request) -> JSONResponse:
    settings = settings_of(request)
    try:
        store_of(request).change_mark()
        database = "ok"
    except Exception:  # any failure of the store is "down" here; the log says which
        request.app.state.log.warning("health.database_down", exc_info=True)
        database = "down"
    ingest = "connected" if settings.ingest_connected() else "down"
    ok = database == "ok" and ingest == "connected"
    return JSONResponse(
        {"ok": ok, "ingest": ingest, "database": database}, status_code=200 if ok else 503
    )


@router.get("/cabinets")
def cabinets(request: Request) -> list[dict[str, Any]]:
    signed_in(request)
    return [row(c, CABINET_FIELDS) for c in store_of(request).cabinets()]


@router.get("/alarms")
def alarms(
    request: Request,
    state: Literal["open", "all"] = "open",
    device: str | None = None,
) -> list[dict[str, Any]]:
    signed_in(request)
    store = store_of(request)
    found = rows_of_known_device(store, device, store.alarms(state=state, device=device))
    return [row(a, ALARM_FIELDS) for a in found]


@router.get("/alarms/{device}/{alarm}/history")
def alarm_history(request: Request, device: str, alarm: str) -> list[dict[str, Any]]:
    signed_in(request)
    store = store_of(request)
    steps = rows_of_known_device(store, device, store.alarm_history(device, alarm))
    return [row(step) for step in steps]


@router.get("/events")
def events(
    request: Request,
    device: str,
    from_seq: int = Query(1, ge=1),
    limit: int = Query(100, ge=1, le=MAX_EVENTS),
) -> Response:
    signed_in(request)
    store = store_of(request)
    envelopes = rows_of_known_device(store, device, store.events(device, from_seq, limit))
    # the envelopes exactly as stored and verified: joined, never parsed and re-encoded
    body = b"[" + b",".join(envelopes) + b"]"
    return Response(body, media_type="application/json")


@router.get("/books")
def books(request: Request, device: str | None = None) -> list[dict[str, Any]]:
    signed_in(request)
    store = store_of(request)
    return [row(b, BOOK_FIELDS) for b in rows_of_known_device(store, device, store.books(device))]


@router.get("/sessions")
def sessions(
    request: Request, device: str, limit: int = Query(20, ge=1, le=500)
) -> list[dict[str, Any]]:
    signed_in(request)
    store = store_of(request)
    found = rows_of_known_device(store, device, store.sessions(device, limit=limit))
    return [row(s) for s in found]


@router.get("/ledger", response_model=None)
def ledger(
    request: Request,
    since: str | None = None,
    until: str | None = None,
    device: str | None = None,
    container: str | None = None,
    person: str | None = None,
    format: Literal["json", "csv"] = "json",
) -> Response | list[dict[str, Any]]:
    signed_in(request)
    store = store_of(request)
    zone = settings_of(request).zone
    try:
        since_ms, until_ms = ledger_filter(since, until, zone)
    except BadTime as error:
        raise HTTPException(400, error.message) from None
    rows = ledger_rows(store, since_ms, until_ms, device or None, container or None, person or None)
    if format == "json":
        return [row(r) for r in rows]
    words: Words = request.state.words
    name = f"ledger-{since or 'start'}-{until or 'now'}.csv"
    return Response(
        ledger_csv(rows, store, zone, words),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/daily")
def daily(request: Request, day: str) -> list[dict[str, Any]]:
    signed_in(request)
    try:
        wanted = parse_day(day, "day")
    except BadTime as error:
        raise HTTPException(400, error.message) from None
    settings = settings_of(request)
    return [row(r) for r in store_of(request).daily(wanted, settings.time_zone)]


@router.get("/approvals")
def approvals(request: Request) -> list[dict[str, Any]]:
    signed_in(request)
    now_ms = int(time.time() * 1000)
    return [row(p) for p in store_of(request).pending_approvals(now_ms)]


@router.get("/quarantine")
def quarantine(request: Request) -> list[dict[str, Any]]:
    signed_in(request)
    return [row(q) for q in store_of(request).quarantine()]


@router.post("/commands/{device}/{name}")
async def command(request: Request, device: str, name: str) -> dict[str, Any]:
    who = signed_in(request)
    check_csrf(request, who, None)
    return await send_command(request, who, device, name, await _json_body(request))


async def send_command(
    request: Request, who: SignedIn, device: str, name: str, body: object
) -> dict[str, Any]:
    """Check, sign as the signed-in person, send, and wait for the cabinet's verified answer."""
    if name not in ARGS:
        raise HTTPException(404, f"unknown command {name!r}: one of {', '.join(sorted(ARGS))}")
    if not roles.may_command(who.role, name):
        raise HTTPException(403, f"role {who.role!r} may not send {name!r}")
    store = store_of(request)
    await run_in_threadpool(known_device, store, device)
    try:
        args = checked_args(name, body, who.person)
    except BadArgs as error:
        raise HTTPException(422, error.message) from None
    gateway: Gateway = request.app.state.gateway
    timeout_s = settings_of(request).command_timeout_s
    request.app.state.log.info(
        "command.send", device=device, command=name, login=who.login, person=who.person
    )
    try:
        answer = await run_in_threadpool(gateway.send, device, name, args, who.person, timeout_s)
    except LookupError as error:  # the gateway's UnknownDevice: registry and record disagree
        raise HTTPException(404, f"unknown device {device!r}: {error}") from None
    except CentralError as error:  # not sent (broker away) or could not be signed
        request.app.state.log.warning(
            "command.not_sent", device=device, command=name, error=error.message
        )
        raise HTTPException(503, f"not sent to the cabinet: {error.message}") from None
    return {"result": answer.result, "reason": answer.reason, "seq": answer.seq}


async def _json_body(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        return {}
    # The contract's strict reader: duplicate keys, floats and deep nesting (which would
    # run json.loads to the recursion limit: a 500) are refused with the reason.
    try:
        return parse_json(raw)
    except MalformedJson as error:
        raise HTTPException(400, f"the body is not acceptable JSON: {error}") from None
