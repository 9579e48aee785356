"""Live updates: one server-sent event stream per open console tab.

The stream only says *that* something changed (the store's change mark grew); the page
then fetches the parts it shows. A new alarm therefore reaches the screen within one
poll plus one fetch, well inside a second, and the stream carries no data a stale tab
could misread. sse-starlette sends keep-alive pings so proxies do not close idle
streams, and ends the stream when the tab goes away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from central.web.auth import NotSignedIn, from_request
from central.web.ports import ConsoleStore
from central.web.settings import WebSettings

router = APIRouter()


@router.get("/live", include_in_schema=False)
async def live(request: Request) -> EventSourceResponse:
    store: ConsoleStore = request.app.state.store
    settings: WebSettings = request.app.state.settings
    if await run_in_threadpool(from_request, request, store) is None:
        raise NotSignedIn
    return EventSourceResponse(_changes(request, store, settings.live_poll_s), ping=15)


async def _changes(
    request: Request, store: ConsoleStore, poll_s: float
) -> AsyncIterator[dict[str, str]]:
    seen: int | None = None
    down = False
    while not await request.is_disconnected():
        try:
            mark = await run_in_threadpool(store.change_mark)
        except Exception:  # the database away: tell the page, keep the stream, retry
            if not down:
                request.app.state.log.warning("live.database_down", exc_info=True)
                down = True
                yield {"event": "down", "data": "database"}
            await asyncio.sleep(poll_s * 4)
            continue
        if down or mark != seen:
            down = False
            seen = mark
            yield {"event": "change", "data": str(mark)}
        await asyncio.sleep(poll_s)
