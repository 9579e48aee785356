"""Who is asking: a bearer token (API clients) or the console's signed session cookie.

Sessions are Starlette's signed cookie (itsdangerous): the cookie holds who signed in
and the CSRF secret of that session, re-signed on every answer and refused once older
than the idle limit. A request carrying a cookie must prove it came from our own page
(the CSRF token, in a form field or the `X-CSRF-Token` header) before it may change
anything; a bearer token cannot be sent by a foreign page, so it needs no such proof.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request

from central.web.ports import ConsoleStore

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class SignedIn:
    login: str
    person: str
    role: str
    by_token: bool


class NotSignedIn(Exception):
    """A page asked for without a session: the console answers with the sign-in page."""


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def from_request(request: Request, store: ConsoleStore) -> SignedIn | None:
    token = bearer(request)
    if token is not None:
        user = store.user_for_token(token)
        if user is None:
            return None
        return SignedIn(user.login, user.person, user.role, by_token=True)
    who = request.session.get("who")
    if not isinstance(who, dict):
        return None
    try:
        return SignedIn(str(who["login"]), str(who["person"]), str(who["role"]), by_token=False)
    except KeyError:
        return None


def sign_in(request: Request, login: str, person: str, role: str) -> None:
    # a fresh session at sign-in: nothing from before (e.g. a planted CSRF token) survives
    request.session.clear()
    request.session["who"] = {"login": login, "person": person, "role": role}
    request.session[CSRF_FIELD] = secrets.token_urlsafe(24)


def sign_out(request: Request) -> None:
    request.session.clear()


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session[CSRF_FIELD] = token
    return token


def check_csrf(request: Request, who: SignedIn | None, submitted: str | None) -> None:
    if who is not None and who.by_token:
        return
    expected = request.session.get(CSRF_FIELD)
    given = submitted or request.headers.get(CSRF_HEADER)
    if not isinstance(expected, str) or not given or not hmac.compare_digest(expected, given):
        raise HTTPException(403, "the form is stale or came from another site (CSRF): reload")
