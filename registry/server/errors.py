"""One error type for the API: ``{"detail": "<one line>", "code": "<Code>"}``.

Every error response also carries ``X-Error-Code`` / ``X-Error-Message``, which is what the
``huggingface_hub`` client reads (a HEAD response has no body).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapterhub.errors import InvalidReferenceError
from adapterhub.registry.server.blobstore import StorageError
from adapterhub.registry.server.schemas import ErrorOut
from adapterhub.registry.server.validation import ValidationError

log = logging.getLogger("adapterhub.registry")
RETRY_AFTER_S = "5"


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "RepoNotFound", f"{what} not found (or you may not read it)")


def header_safe(text: str) -> str:
    """ASCII without control characters: a NUL, CR or LF in a header value is refused by the HTTP
    layer, which would turn a clean 4xx into a dropped response."""
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    return "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in ascii_text)[:500]


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    h = {"X-Error-Code": code, "X-Error-Message": header_safe(detail), **(headers or {})}
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=h)


ERROR_DESCRIPTIONS = {
    400: "bad request (for example, the client disconnected mid-upload)",
    401: "missing, invalid, expired or revoked token",
    403: "the token lacks the scope or namespace this needs",
    404: "not found, or not readable by the caller (no existence leak)",
    409: "conflicts with the current state (exists already, held by a rollout, not active)",
    411: "Content-Length header missing",
    413: "body over the upload limit or longer than its Content-Length",
    415: "a Content-Encoding on an upload (uploads are never inflated)",
    416: "the requested byte range is not satisfiable",
    422: "invalid input: the detail names the field and the rule",
    429: "too many failed authentications from this address; see Retry-After",
    503: "the database or the blob store is unavailable; nothing was written; see Retry-After",
    412: "the commit's parentCommit is no longer the head of its revision",
    507: "no space left for blobs; the partial upload was deleted",
}
_ERROR_HEADERS = {
    "X-Error-Code": {"description": "the error code, as in the body", "required": True,
                     "schema": {"type": "string"}},
    "X-Error-Message": {"description": "the detail, ASCII-folded", "required": True, "schema": {"type": "string"}},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries declaring, in the OpenAPI document, the error statuses a route answers
    and their one shape (`ErrorOut`), so generated clients and the fuzzer know them in advance."""
    return {s: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[s], "headers": _ERROR_HEADERS}
            for s in statuses}


class CatchAll:
    """Any exception no handler claims: 500 ``InternalError`` in the one error shape, its traceback
    logged once. A middleware rather than ``exception_handler(Exception)``: Starlette runs that one
    outside every middleware (so the answer would lack `security.SafeHeaders`' headers) and
    re-raises after it, so the server logs the traceback a second time and drops the connection.
    Once a response has started (a download failing mid-body) the exception goes on: cutting the
    connection is then the only way to tell the client that the body is incomplete."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if started:
                raise
            log.exception("InternalError answering %s %s", scope.get("method"), scope.get("path"))
            await error_response(500, "InternalError", "internal error; the server logged it")(scope, receive, send)


STATUS_CODES = {400: "InvalidRequest", 401: "Unauthorized", 403: "Forbidden", 404: "RepoNotFound",
                405: "MethodNotAllowed", 411: "LengthRequired", 413: "TooLarge", 422: "InvalidRequest"}


def install_handlers(app: FastAPI) -> None:
    """Call before `security.install`: middleware added first runs innermost, and `CatchAll` must
    sit inside `security.SafeHeaders` for its 500s to carry the safe headers."""
    app.add_middleware(CatchAll)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(ValidationError)
    async def _validation(_request: Request, exc: ValidationError):
        return error_response(422, exc.code, str(exc))

    @app.exception_handler(InvalidReferenceError)
    async def _bad_name(_request: Request, exc: InvalidReferenceError):
        return error_response(422, "InvalidName", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(422, "InvalidRequest", f"invalid request: {where}: {first.get('msg')}")

    @app.exception_handler(StorageError)
    async def _storage(_request: Request, exc: StorageError):
        log.warning("%s: %s", exc.code, exc)
        return error_response(exc.status, exc.code, str(exc), {"Retry-After": RETRY_AFTER_S})

    async def _database(_request: Request, exc: OperationalError | InterfaceError):
        # the database is down, restarting, unreachable or (SQLite) locked past the busy timeout:
        # transient, so 503 with Retry-After and one log line; the pool's pre-ping reconnects after
        log.warning("DatabaseUnavailable: %s", (str(exc.orig or exc).splitlines() or [type(exc).__name__])[0])
        return error_response(503, "DatabaseUnavailable", "the database is unavailable; retry shortly",
                              {"Retry-After": RETRY_AFTER_S})

    app.add_exception_handler(OperationalError, _database)
    app.add_exception_handler(InterfaceError, _database)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            # FastAPI answers a non-UTF-8 JSON body with a vague 400, a body that is not JSON with 422:
            # one status and a specific message for both
            return error_response(422, "InvalidRequest", f"invalid request: body: not UTF-8 ({cause.reason})")
        if exc.status_code == 400 and isinstance(cause, RecursionError | ValueError):
            # the same vague 400 for JSON the parser gives up on: too deep, or an over-long integer
            why = ("nested too deeply" if isinstance(cause, RecursionError)
                   else f"an integer of more than {sys.get_int_max_str_digits()} digits")
            return error_response(422, "InvalidRequest", f"invalid request: body: {why}")
        code = STATUS_CODES.get(exc.status_code, "Error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))
