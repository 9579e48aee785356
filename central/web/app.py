"""`create_app(store, gateway, settings)`: the centre's HTTP API and console as one ASGI app.

One application over one store (the console's pages and the API are views of the same
projections). `cabinet-central serve` builds the store and the command gateway and runs
this app with uvicorn beside the ingest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from central.store.store import StoreUnavailable
from central.web import actions, api, live, pages, signin
from central.web.auth import NotSignedIn
from central.web.i18n import Words, pick_language
from central.web.limits import BodyLimit
from central.web.ports import ConsoleStore, Gateway
from central.web.settings import WebSettings
from central.web.throttle import SignInThrottle

HERE = Path(__file__).parent
LANGUAGE_COOKIE = "lang"
CONTENT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def create_app(store: ConsoleStore, gateway: Gateway, settings: WebSettings) -> FastAPI:
    # Swagger UI and ReDoc load their scripts from a CDN: the console must work on an
    # isolated network, so the schema is served (/openapi.json) and documented in
    # docs/api.md instead of a page that would be blank there.
    app = FastAPI(
        title="cabinet-central",
        summary="The verified record of every reagent cabinet, and its console",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.store = store
    app.state.gateway = gateway
    app.state.settings = settings
    app.state.log = structlog.get_logger("central.web")
    # a missing value (a container the policy never named) prints as nothing, not "None"
    pages_env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        finalize=lambda value: "" if value is None else value,
    )
    app.state.templates = Jinja2Templates(env=pages_env)
    app.state.throttle = SignInThrottle()

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie="cabinet_session",
        max_age=settings.session_idle_s,
        same_site="strict",
        https_only=settings.https_only,
    )

    @app.middleware("http")
    async def language(request: Request, call_next: Any) -> Response:
        chosen = pick_language(request.cookies.get(LANGUAGE_COOKIE), settings.language)
        request.state.words = Words(chosen)
        response: Response = await call_next(request)
        # nothing the console shows may be kept by a shared proxy or a back button
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # only the centre's own script and styles: an injected tag cannot run or phone home
        response.headers.setdefault("Content-Security-Policy", CONTENT_POLICY)
        return response

    _errors(app)
    app.include_router(api.router)
    app.include_router(live.router)
    app.include_router(signin.router)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "text/html" not in request.headers.get(
        "accept", ""
    )


def _errors(app: FastAPI) -> None:
    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        message = str(error.detail)
        if _wants_json(request):
            return JSONResponse(
                {"error": message}, status_code=error.status_code, headers=error.headers
            )
        return pages.error_page(request, error.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'query')}: {e.get('msg')}"
            for e in error.errors()
        ]
        message = "; ".join(problems) or "bad request"
        if _wants_json(request):
            return JSONResponse({"error": message}, status_code=422)
        return pages.error_page(request, 422, message)

    @app.exception_handler(StoreUnavailable)
    async def database_down(request: Request, error: Exception) -> Response:
        # the database being away is a known condition of the centre, not a bug: say so
        request.app.state.log.warning("web.database_down", path=request.url.path, error=str(error))
        message = "the database is not answering; try again in a moment"
        if _wants_json(request):
            return JSONResponse({"error": message}, status_code=503)
        return pages.error_page(request, 503, message, signed_in=False)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        request.app.state.log.error(
            "web.unexpected_error",
            path=request.url.path,
            error=type(error).__name__,
            exc_info=True,
        )
        return JSONResponse({"error": "internal error (logged); nothing was changed"}, 500)
