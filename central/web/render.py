"""Rendering one console page: the words, times, masses and names every template uses."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from central.web import roles
from central.web.auth import NotSignedIn, SignedIn, csrf_token, from_request
from central.web.i18n import Words
from central.web.ports import ConsoleStore
from central.web.present import Names, grams, local_time
from central.web.settings import WebSettings


def page_user(request: Request) -> SignedIn:
    """The signed-in person of a console page; otherwise the sign-in page (via NotSignedIn).

    Every page asks this first, so the change mark is read here, before the page reads
    what it shows: a change stored while the page is built is then newer than the page's
    mark, and the live stream makes the page fetch it."""
    store: ConsoleStore = request.app.state.store
    who = from_request(request, store)
    if who is None:
        raise NotSignedIn
    request.state.mark = _mark(store)
    return who


def flash(request: Request, kind: str, text: str) -> None:
    """A one-line result shown once on the next page (e.g. the cabinet's answer)."""
    request.session["flash"] = {"kind": kind, "text": text}


def _mark(store: ConsoleStore) -> int | None:
    """The store's change mark this page is rendered at: the live stream compares its own
    first mark with it, so a change between this render and the stream's connection is
    fetched, not lost. None when the store cannot say (the error page of a database away)."""
    try:
        return store.change_mark()
    except Exception:  # the page is still worth showing; the live stream reports the database
        return None


def render(
    request: Request,
    template: str,
    who: SignedIn | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    store: ConsoleStore = request.app.state.store
    settings: WebSettings = request.app.state.settings
    templates: Jinja2Templates = request.app.state.templates
    words: Words = request.state.words
    zone = settings.zone
    context.update(
        who=who,
        mark=getattr(request.state, "mark", None),
        say=words.say,
        word=words.word,
        lang=words.language,
        csrf=csrf_token(request),
        time=lambda ms, seconds=True: local_time(ms, zone, seconds),
        grams=grams,
        names=Names(store),
        roles=roles,
        zone_name=settings.time_zone,
        path=request.url.path,
        flash=request.session.pop("flash", None),
        now_ms=int(time.time() * 1000),
    )
    return templates.TemplateResponse(request, template, context, status_code=status_code)
