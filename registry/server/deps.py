"""FastAPI dependencies: the database session, the caller, the blob store, the settings, the rollout cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from adapterhub.registry.server.auth import FailureLimiter, Principal, TokenRejected, authenticate
from adapterhub.registry.server.blobstore import BlobStore
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.rollouts import RolloutCache
from adapterhub.registry.server.settings import Settings

READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; writes (non-GET) begin ``IMMEDIATE`` on SQLite."""
    state = request.app.state
    engine = state.engine if request.method in READ_METHODS else state.write_engine
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _principal(request: Request, lenient: bool) -> Principal:
    header = request.headers.get("authorization", "")
    if not header:
        return Principal()
    limiter: FailureLimiter = request.app.state.limiter
    client = request.client.host if request.client else "?"
    if limiter.blocked(client):
        if lenient:
            return Principal()
        raise ApiError(429, "RateLimited", "too many failed authentications from this address; retry later",
                       {"Retry-After": str(limiter.retry_after(client))})
    scheme, _, token = header.partition(" ")
    problem = "malformed Authorization header: expected 'Bearer <token>'"
    if scheme.lower() == "bearer" and token.strip():
        with Session(request.app.state.engine) as session:
            try:
                return authenticate(session, token.strip(), request.app.state.settings.admin_token)
            except TokenRejected as exc:
                problem = str(exc)
    limiter.fail(client)
    if lenient:
        return Principal()
    raise ApiError(401, "Unauthorized", problem, {"WWW-Authenticate": "Bearer"})


async def get_principal(request: Request) -> Principal:
    """The caller; 401 for a bad token, 429 after too many failures from one address.
    (Async so that an anonymous request costs no trip to the thread pool.)"""
    if not request.headers.get("authorization"):
        return Principal()
    return await run_in_threadpool(_principal, request, False)


async def get_hf_principal(request: Request) -> Principal:
    """On the HF routes a token we do not know (say a real ``HF_TOKEN`` left in the environment)
    reads as anonymous: public adapters still load, private ones answer ``RepoNotFound``.
    Failures still count, and a blocked address is not checked at all."""
    if not request.headers.get("authorization"):
        return Principal()
    return await run_in_threadpool(_principal, request, True)


def require_user(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.user is None and not principal.superuser:
        raise ApiError(401, "Unauthorized", "this call needs a token (Authorization: Bearer <token>)",
                       {"WWW-Authenticate": "Bearer"})
    return principal


def get_store(request: Request) -> BlobStore:
    return request.app.state.store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_rollout_cache(request: Request) -> RolloutCache:
    return request.app.state.rollout_cache


# scope="function": the session closes when the route returns, not after the response is sent,
# so a write request holds SQLite's write lock (and any request its pooled connection) only while
# it works, not while its answer travels to a slow client (routes return schemas, never rows)
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
HfPrincipalDep = Annotated[Principal, Depends(get_hf_principal)]
CurrentUser = Annotated[Principal, Depends(require_user)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RolloutCacheDep = Annotated[RolloutCache, Depends(get_rollout_cache)]
