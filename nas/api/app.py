"""The FastAPI application: the API under /api/v1 (with its OpenAPI schema) and the web page at /.

`create_app(settings)` builds everything; nothing is created at import time. Errors are mapped to HTTP
answers here, once: hwnas errors by `nas.errors.http_status_for`, request validation to 422 (400 for a
body that is not JSON), unknown routes to 404, bodies over `settings.max_body_bytes` to 413, all with the
same `Problem` body.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nas.api.headers import SecurityHeaders
from nas.auth import FailedAuthLimiter
from nas.db.storage import Storage
from nas.errors import HwnasError, PayloadTooLargeError, TooManyRequestsError, api_message, http_status_for
from nas.settings import Settings

logger = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"


def _problem(status: int, detail: str, error: str, problems: list[str] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": error, "problems": problems or [detail]}, status_code=status,
                        headers=headers)


def _validation_problems(exc: RequestValidationError) -> tuple[int, list[str]]:
    problems, status = [], 422
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        if err.get("type") == "json_invalid":
            status = 400
            problems.append(f"body: not valid JSON ({err.get('ctx', {}).get('error', 'parse error')}); "
                            "send a JSON object with Content-Type: application/json")
            continue
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
        received = err.get("input")
        if isinstance(received, (dict, list)):
            shown = f" (got a JSON {'object' if isinstance(received, dict) else 'array'})" \
                if str(err.get("type", "")).endswith("_type") else ""
        else:
            shown = "" if received is None else f" (got {str(received)[:80]!r})"
        problems.append(f"{where}: {message}{shown}")
    return status, problems


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 before any route sees them (chunked bodies too)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, streamed: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = streamed  # POST paths whose route streams the body under its own limit (uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope.get("method") == "POST" and scope.get("path") in self.streamed):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = PayloadTooLargeError(f"request body over the limit of {self.max_bytes} bytes; send a smaller "
                                         "body (a job spec is a few kB; set HWNAS_MAX_BODY_BYTES to raise it)")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _problem(413, str(too_large), "PayloadTooLargeError")(scope, receive, send)
            return
        chunks: list[Message] = []
        received = 0
        while True:  # read the whole (small) body first, so a chunked body over the limit is refused too
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await _problem(413, str(too_large), "PayloadTooLargeError")(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of `app` answers on `path` (asked of the router itself, so included routers
    count too)."""
    from starlette.routing import Match

    allowed = []
    for method in ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"):
        scope = {"type": "http", "path": path, "method": method, "root_path": "", "path_params": {}}
        if any(route.matches(scope)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def create_app(settings: Settings, *, storage: Storage | None = None) -> FastAPI:
    """The service's app over `storage` (default: the settings' database, migrated)."""
    from nas.api.routes import checkpoints, datasets, devices, jobs, tokens
    from nas.api.events import JobEvents
    from nas.api.read_cache import Answers, TokenChecks
    from nas.api.schemas import add_job_spec_schema
    from nas.db.change_feed import ChangeFeed
    from nas.service import job_summary, storage_for

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Database work runs in threads; past a few per process they only contend for the GIL and the pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        feed.start()
        try:
            yield
        finally:
            feed.stop()

    app = FastAPI(lifespan=lifespan, title="hwnas", version="1", openapi_url=f"{API_PREFIX}/openapi.json",
                  docs_url=f"{API_PREFIX}/docs",
                  redoc_url=None,
                  description="Hardware-aware neural architecture search: submit search jobs with a latency target, "
                              "browse Pareto fronts, download the best checkpoints. Authenticate with "
                              "`Authorization: Bearer <token>` (`hwnas token create --scope read|submit|admin`).")
    app.state.settings = settings
    app.state.storage = storage or storage_for(settings)
    feed = ChangeFeed(app.state.storage.engine)  # live from start-up to shutdown
    app.state.change_feed = feed
    app.state.answers = Answers(feed)
    app.state.token_checks = TokenChecks(feed)
    app.state.auth_limiter = FailedAuthLimiter(per_minute=settings.auth_failures_per_minute)
    storage = app.state.storage
    app.state.job_events = JobEvents(lambda job_id: job_summary(storage, job_id).model_dump(mode="json"),
                                     interval_s=settings.events_interval_s,
                                     version=lambda job_id: feed.version(f"job:{job_id}"))

    @app.exception_handler(HwnasError)
    async def hwnas_error(_: Request, exc: HwnasError) -> JSONResponse:
        status = http_status_for(exc)
        if status >= 500:
            logger.error("%s: %s", type(exc).__name__, exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, TooManyRequestsError):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        return _problem(status, api_message(exc), type(exc).__name__, getattr(exc, "problems", None), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, problems = _validation_problems(exc)
        return _problem(status, "invalid request: " + "; ".join(problems), "RequestValidationError", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404:
            detail = f"no such resource: {request.url.path}; the API is under {API_PREFIX} (see {API_PREFIX}/docs)"
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            allowed = _allowed_methods(request.app, request.url.path)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            detail = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
        return _problem(exc.status_code, detail, "HTTPException", headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error while answering a request")
        return _problem(500, f"internal error ({type(exc).__name__}); the server log has the details",
                        "InternalError")

    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_job_spec_schema(generate_openapi(), path=f"{API_PREFIX}/jobs")
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get(f"{API_PREFIX}/health", tags=["service"], summary="Liveness (no token needed)")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    for router in (jobs.router, checkpoints.router, devices.router, datasets.router, tokens.router):
        app.include_router(router, prefix=API_PREFIX)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, streamed=(f"{API_PREFIX}/datasets",))
    app.add_middleware(SecurityHeaders, docs_path=f"{API_PREFIX}/docs")  # outermost: every answer has them
    return app


def app_from_env() -> FastAPI:
    """The app of one API worker process of `hwnas serve --workers N` (settings from the environment)."""
    return create_app(Settings())
