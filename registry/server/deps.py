"""FastAPI dependencies: the database session, the caller, the blob store, the settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from adapterhub.registry.server.auth import FailureLimiter, Principal, authenticate
from adapterhub.registry.server.blobstore import BlobStore
from adapterhub.registry.server.db import writer
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.settings import Settings

READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; writes (non-GET) begin ``IMMEDIATE`` on SQLite."""
    engine = request.app.state.engine
    if request.method not in READ_METHODS:
        engine = writer(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield session


def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    if not header:
        return Principal()
    limiter: FailureLimiter = request.app.state.limiter
    client = request.client.host if request.client else "?"
    if limiter.blocked(client):
        raise ApiError(429, "RateLimited", "too many failed authentications from this address; retry later",
                       {"Retry-After": str(int(limiter.window_s))})
    scheme, _, token = header.partition(" ")
    principal = None
    if scheme.lower() == "bearer" and token.strip():
        with Session(request.app.state.engine) as session:
            principal = authenticate(session, token.strip(), request.app.state.settings.admin_token)
    if principal is None:
        limiter.fail(client)
        raise ApiError(401, "Unauthorized", "invalid, expired or revoked token",
                       {"WWW-Authenticate": "Bearer"})
    return principal


def require_user(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.user is None and not principal.superuser:
        raise ApiError(401, "Unauthorized", "this call needs a token (Authorization: Bearer <token>)",
                       {"WWW-Authenticate": "Bearer"})
    return principal


def get_store(request: Request) -> BlobStore:
    return request.app.state.store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
CurrentUser = Annotated[Principal, Depends(require_user)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
