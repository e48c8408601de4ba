"""Tokens and who may do what.

A token is ``ah_<public_id>_<secret>``; the database keeps ``public_id`` (to find the row) and a
salted sha256 of the secret, compared in constant time. The bootstrap admin token from
``ADAPTERHUB_ADMIN_TOKEN`` is compared in constant time against the setting itself.

Token namespaces: an explicit list grants exactly those namespaces; ``"*"`` means every
namespace the user owns (every namespace, for an admin user).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session, select

from adapterhub.registry.server.models import Namespace, Token, User

LEVEL = {"read": 1, "write": 2, "admin": 3}
ADMIN_USER = "admin"


def aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def to_utc(dt: datetime | None) -> datetime | None:
    """An input time as UTC before it is stored: SQLite's DATETIME keeps the wall-clock digits and
    drops the offset, so ``12:00+05:00`` stored as is would read back as ``12:00`` UTC, five hours off.
    A time without an offset is taken as UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def new_token_secret() -> tuple[str, str, str, str]:
    """Return ``(token_text, public_id, salt, secret_hash)``."""
    public_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
    return f"ah_{public_id}_{secret}", public_id, salt, hash_secret(salt, secret)


_DUMMY_SALT = secrets.token_hex(16)


@dataclass
class Principal:
    """The caller: anonymous (``user`` None), a token holder, or the bootstrap superuser."""

    user: User | None = None
    token: Token | None = None
    superuser: bool = False
    scope: str | None = None
    namespaces: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.user.name if self.user else "anonymous"

    def covers(self, ns: Namespace) -> bool:
        if self.superuser:
            return True
        if self.user is None:
            return False
        if ns.name in self.namespaces:
            return True
        return "*" in self.namespaces and (self.user.is_admin or ns.owner_id == self.user.id)

    def can(self, level: str, ns: Namespace) -> bool:
        return self.superuser or (
            self.scope is not None and LEVEL[self.scope] >= LEVEL[level] and self.covers(ns)
        )

    def can_read(self, ns: Namespace) -> bool:
        return not ns.private or self.can("read", ns)

    def has_scope(self, level: str) -> bool:
        return self.superuser or (self.scope is not None and LEVEL[self.scope] >= LEVEL[level])


class TokenRejected(Exception):
    """A bearer token we will not honour. Only a token whose secret matched is told that it expired
    or was revoked; anything else is "invalid", so a guesser learns nothing."""


UNKNOWN_TOKEN = "invalid, expired or revoked token"


def authenticate(session: Session, text: str, admin_token: str | None) -> Principal:
    """The principal a bearer token stands for; `TokenRejected` saying why for any other token."""
    if admin_token and hmac.compare_digest(text.encode(), admin_token.encode()):
        admin = session.exec(select(User).where(User.name == ADMIN_USER)).first()
        return Principal(user=admin, superuser=True, scope="admin", namespaces=["*"])
    parts = text.split("_", 2)
    if len(parts) != 3 or parts[0] != "ah":
        raise TokenRejected(UNKNOWN_TOKEN)
    tok = session.exec(select(Token).where(Token.public_id == parts[1])).first()
    expected = tok.secret_hash if tok else hash_secret(_DUMMY_SALT, "")
    salt = tok.salt if tok else _DUMMY_SALT
    if not hmac.compare_digest(hash_secret(salt, parts[2]), expected) or tok is None:
        raise TokenRejected(UNKNOWN_TOKEN)
    if tok.revoked_at is not None:
        raise TokenRejected(f"token {tok.public_id} was revoked at {aware(tok.revoked_at):%Y-%m-%d %H:%M} UTC")
    if tok.expires_at is not None and aware(tok.expires_at) <= datetime.now(UTC):
        raise TokenRejected(f"token {tok.public_id} expired at {aware(tok.expires_at):%Y-%m-%d %H:%M} UTC")
    user = session.get(User, tok.user_id)
    superuser = bool(user and user.is_admin and tok.scope == "admin" and "*" in tok.namespaces)
    return Principal(user=user, token=tok, superuser=superuser, scope=tok.scope, namespaces=list(tok.namespaces))


class FailureLimiter:
    """Counts failed authentications per client address in a sliding window.

    Guessing tokens is hopeless anyway (256 random bits); this keeps a client that loops on a
    bad token from costing a database look-up per request. Counts live in this process only.
    """

    MAX_CLIENTS = 50_000  # beyond this, addresses with no failure in the window are forgotten

    def __init__(self, limit: int, window_s: float):
        self.limit, self.window_s = limit, window_s
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window_s:
            q.popleft()

    def blocked(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            q = self._fails.get(client)
            if not q:
                return False
            self._trim(q, now)
            return len(q) >= self.limit

    def retry_after(self, client: str) -> int:
        """Whole seconds until ``client`` drops below the limit again (at least 1)."""
        now = time.monotonic()
        with self._lock:
            q = self._fails.get(client)
            if not q or len(q) < self.limit:
                return 1
            return max(1, math.ceil(q[-self.limit] + self.window_s - now))

    def fail(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            q = self._fails[client]
            self._trim(q, now)
            q.append(now)
            if len(self._fails) > self.MAX_CLIENTS:
                for key in [k for k, v in self._fails.items() if not v or v[-1] <= now - self.window_s]:
                    del self._fails[key]
