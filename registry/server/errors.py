"""One error type for the API: ``{"detail": "<one line>", "code": "<Code>"}``.

Every error response also carries ``X-Error-Code`` / ``X-Error-Message``, which is what the
``huggingface_hub`` client reads (a HEAD response has no body).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapterhub.errors import InvalidReferenceError
from adapterhub.registry.server.validation import ValidationError


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "RepoNotFound", f"{what} not found (or you may not read it)")


def _header_safe(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")[:500]


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    h = {"X-Error-Code": code, "X-Error-Message": _header_safe(detail), **(headers or {})}
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=h)


STATUS_CODES = {400: "InvalidRequest", 401: "Unauthorized", 403: "Forbidden", 404: "RepoNotFound",
                405: "MethodNotAllowed", 411: "LengthRequired", 413: "TooLarge", 422: "InvalidRequest"}


def install_handlers(app: FastAPI) -> None:
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

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        code = STATUS_CODES.get(exc.status_code, "Error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))
