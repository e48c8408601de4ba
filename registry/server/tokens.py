"""What a token may mint or revoke: one rule, so a token never makes or unmakes more than it holds.

A user's token may make another token for the same user only within its own reach: no higher
scope, no namespace it does not cover, no later expiry. ``"*"`` in a parent means the namespaces
the user owns, looked up row by row, never "any name"; a child ``"*"`` needs a ``"*"`` parent.
The same reach decides which of the user's tokens it may revoke (besides itself), so a leaked
read token cannot revoke its user's write tokens. Admins issue and revoke any token.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlmodel import Session, select

from adapterhub.registry.server.auth import LEVEL, Principal, aware, to_utc
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.models import Namespace, Token, utcnow


def uncovered(session: Session, principal: Principal, namespaces: Iterable[str]) -> list[str]:
    """The names in ``namespaces`` the caller's token does not cover (missing ones included, so a
    refusal reads the same for a private namespace of someone else and for a name nobody has)."""
    out = []
    for n in namespaces:
        if n == "*":
            if "*" not in principal.namespaces:
                out.append(n)
            continue
        if n in principal.namespaces:
            continue
        row = session.exec(select(Namespace).where(Namespace.name == n)).first() if "*" in principal.namespaces else None
        if row is None or not principal.covers(row):
            out.append(n)
    return out


def grant(session: Session, principal: Principal, scope: str, namespaces: list[str],
          expires_at: datetime | None) -> datetime | None:
    """Refuse a child beyond the caller's token; return its expiry, in UTC and clamped to the parent's
    (no expiry asked means "as long as my token lives")."""
    expires = to_utc(expires_at)
    if principal.superuser:
        return expires
    if LEVEL[scope] > LEVEL[principal.scope]:
        raise ApiError(403, "Forbidden", f"your token has scope {principal.scope!r}, not {scope!r}")
    extra = uncovered(session, principal, namespaces)
    if extra:
        raise ApiError(403, "Forbidden", f"your token does not cover namespaces {extra}")
    limit = aware(principal.token.expires_at) if principal.token else None
    if limit is not None:
        if expires is None:
            return limit
        if expires > limit:
            raise ApiError(403, "Forbidden", f"a token cannot outlive the token that makes it: yours expires at "
                                             f"{limit:%Y-%m-%d %H:%M:%S} UTC, this one would at {expires:%Y-%m-%d %H:%M:%S} UTC")
    return expires


def check_revoke(session: Session, principal: Principal, tok: Token) -> None:
    """A user revokes their own token, or one of theirs their token could have minted."""
    if principal.superuser or (principal.token is not None and principal.token.id == tok.id):
        return
    if LEVEL[tok.scope] > LEVEL[principal.scope] or uncovered(session, principal, tok.namespaces):
        raise ApiError(403, "Forbidden", f"your token ({principal.scope}, {principal.namespaces}) may not revoke "
                                         f"token {tok.id} ({tok.scope}, {tok.namespaces}): it reaches further")


def revoke_tree(session: Session, tok: Token) -> list[int]:
    """Revoke ``tok`` and every token minted from it, at any depth; the ids newly revoked."""
    now, done, todo = utcnow(), [], [tok]
    while todo:
        t = todo.pop()
        if t.revoked_at is None:
            t.revoked_at = now
            session.add(t)
            done.append(t.id)
        todo.extend(session.exec(select(Token).where(Token.parent_id == t.id)).all())
    return done
