"""The server's outer shell: trusted hosts, CORS, a request rate limit, a body cap, safe headers.

Each is a small ASGI middleware configured from `Settings` (see SECURITY.md for what each one
defends and what it does not). Outermost first:

- ``TrustedHostMiddleware``: a request must name one of ``settings.trusted_hosts`` in ``Host``
  (default: localhost, 127.0.0.1, [::1] and the address the server was started on), which blunts
  DNS rebinding against a registry on a laptop;
- ``CORSMiddleware``: only when ``settings.cors_origins`` names origins (default none: browsers
  on other sites cannot read our answers);
- `RateLimit`: a token bucket per client address, ``settings.rate_limit`` requests a second
  (0 = off). It lives in this process: N server processes allow N times the rate;
- `BodyLimit`: request bodies other than blob uploads (which have their own, larger limit) are
  refused past ``settings.max_request_bytes`` before they fill memory;
- `SafeHeaders`: ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` on
  every response (file downloads also carry ``Content-Disposition: attachment``, see `responses.py`).

Repeated bad tokens are limited separately, per address, by `auth.FailureLimiter`.
"""

from __future__ import annotations

import math
import re
import threading
import time

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapterhub.registry.server.errors import error_response
from adapterhub.registry.server.settings import Settings

DEFAULT_TRUSTED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
WILDCARD_BINDS = {"", "0.0.0.0", "::", "[::]"}
# bodies streamed to disk, each route checking its own limit: blob and LFS uploads (max_upload_bytes),
# Hugging Face commits (hf_commit_max_bytes)
STREAMED_BODIES = (("PUT", re.compile(r"^/api/v1/blobs/[^/]+$")), ("PUT", re.compile(r"^/api/lfs/upload/[^/]+$")),
                   ("POST", re.compile(r"^/api/models/[^/]+/[^/]+/commit/[^/]+$")))
UNLIMITED_PATHS = {"/api/v1/health"}  # load balancers poll it
EXPOSED = ["ETag", "Content-Range", "Content-Disposition", "Retry-After", "X-Error-Code", "X-Error-Message",
           "X-Repo-Commit", "X-Linked-Size", "X-Linked-Etag"]
SAFE_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


def trusted_hosts(configured: list[str], bind_host: str | None = None) -> list[str]:
    """The configured hosts, else the loopback names plus the specific address the server binds."""
    if configured:
        return list(configured)
    hosts = list(DEFAULT_TRUSTED_HOSTS)
    if bind_host and bind_host not in WILDCARD_BINDS:
        name = f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host
        if name.lower() not in hosts:
            hosts.append(name.lower())
    return hosts


class TokenBucket:
    """Per-key buckets of ``burst`` tokens refilled at ``rate`` a second; memory bounded by ``max_keys``.

    >>> bucket = TokenBucket(rate=1.0, burst=2)
    >>> [bucket.take("10.0.0.1") == 0 for _ in range(3)]
    [True, True, False]
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 50_000):
        self.rate, self.burst, self.max_keys = rate, max(1, burst), max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token: 0.0 if there was one, else the seconds until there will be."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_keys:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they hold no state worth keeping)."""
        for key, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.rate >= self.burst:
                del self._buckets[key]


class RateLimit:
    """429 ``RateLimited`` with ``Retry-After`` once a client address spends its bucket."""

    def __init__(self, app: ASGIApp, rate: float, burst: int):
        self.app, self.bucket = app, TokenBucket(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in UNLIMITED_PATHS:
            client = scope.get("client")
            wait = self.bucket.take(client[0] if client else "?")
            if wait > 0:
                retry = max(1, math.ceil(wait))
                response = error_response(429, "RateLimited", f"too many requests from this address; retry in {retry}s",
                                          {"Retry-After": str(retry)})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 ``TooLarge`` for a request body past ``limit`` bytes, by header or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(scope["method"] == m and p.match(scope["path"]) for m, p in STREAMED_BODIES):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await error_response(413, "TooLarge", self._message(int(declared)))(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # FastAPI re-raises an HTTPException met while reading a body
                    raise HTTPException(413, self._message(seen))
            return message

        await self.app(scope, limited, send)

    def _message(self, size: int) -> str:
        return f"request body of {size}+ bytes exceeds the limit of {self.limit} (ADAPTERHUB_MAX_REQUEST_BYTES)"


class SafeHeaders:
    """Add `SAFE_HEADERS` to every response that does not set them itself."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in SAFE_HEADERS if h[0] not in have)]
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """Add the middleware; Starlette runs the one added last outermost."""
    app.add_middleware(SafeHeaders)
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    if settings.rate_limit > 0:
        app.add_middleware(RateLimit, rate=settings.rate_limit, burst=settings.rate_burst)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Range", "If-None-Match"],
                           expose_headers=EXPOSED, max_age=600)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts(settings.trusted_hosts))
