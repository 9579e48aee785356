"""Signing in and out, and the language switch."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from central.web.auth import check_csrf, from_request, sign_in, sign_out
from central.web.ports import Account, ConsoleStore
from central.web.render import render
from central.web.settings import LANGUAGES
from central.web.throttle import SignInThrottle

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path of this console: never a redirect to another site after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def checked_password(request: Request, login: str, password: str) -> Account | int:
    """The account whose password this is, or the seconds `login` must wait (0: wrong).
    Every place a console password is typed counts against the same per-login lockout,
    so no form is a side door for guessing."""
    throttle: SignInThrottle = request.app.state.throttle
    wait_s = throttle.wait_s(login)
    if wait_s:
        return wait_s
    store: ConsoleStore = request.app.state.store
    account = await run_in_threadpool(store.check_password, login, password) if login else None
    if account is None:
        throttle.failed(login)
        return 0
    throttle.succeeded(login)
    return account


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    if from_request(request, request.app.state.store) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", None, next=safe_next(next), failed=False)


@router.post("/login")
async def login(
    request: Request,
    username: str = Form("", max_length=200),
    password: str = Form("", max_length=1000),
    csrf: str = Form(""),
    next: str = Form("/"),
) -> Response:
    check_csrf(request, None, csrf)
    user = await checked_password(request, username, password)
    if isinstance(user, int) and user:
        request.app.state.log.warning("console.sign_in_throttled", login=username[:64])
        return render(
            request,
            "login.html",
            None,
            status_code=429,
            next=safe_next(next),
            failed=False,
            wait_s=user,
        )
    if isinstance(user, int):
        request.app.state.log.info("console.sign_in_failed", login=username[:64])
        return render(
            request, "login.html", None, status_code=401, next=safe_next(next), failed=True
        )
    sign_in(request, user.login, user.person, user.role)
    request.app.state.log.info("console.signed_in", login=user.login, role=user.role)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    check_csrf(request, None, csrf)
    sign_out(request)
    return RedirectResponse("/login", status_code=303)


@router.get("/lang/{code}")
def language(code: str, next: str = "/") -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    if code in LANGUAGES:
        response.set_cookie("lang", code, max_age=365 * 24 * 3600, samesite="lax")
    return response
