"""The identity half of the registry client: who am I, users, tokens, namespaces.

Kept apart from ``client.py`` so that each file has one job; ``Hub`` inherits this mixin, so the
names stay ``hub.create_token(...)`` and so on. Needs ``_request`` from ``Hub``. The registry
decides who may do what (``registry/API.md``, "Identity"); these calls only check names locally,
so that a typo is refused before it travels.

>>> hub.create_user("alice")                                                   # doctest: +SKIP
{'name': 'alice'}
>>> hub.create_token("alice", scope="write", namespaces=["alice"], expires_at=timedelta(days=90))["token"]  # doctest: +SKIP
'ah_...'
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from adapterhub.errors import RegistryError
from adapterhub.registry.reference import check_name


def _namespace_or_star(value: str) -> str:
    return value if value == "*" else check_name(value, "namespace")


class IdentityMixin:
    """Users, tokens and namespaces (see ``registry/API.md``, "Identity"); mixed into ``Hub``."""

    def whoami(self) -> dict:
        """``{"user", "is_admin", "scopes"}`` for the current token."""
        return self._request("GET", "whoami").json()

    # -- users -------------------------------------------------------------------------------
    def create_user(self, name: str) -> dict:
        """Admin only: the user ``name`` and the namespace of the same name, owned by them.

        A user has no token yet: mint one with `create_token` and hand its secret over.
        """
        return self._request("POST", "users", json={"name": check_name(name, "user name")}).json()

    def list_users(self) -> list[dict]:
        """Admin only: ``[{"name", "is_admin", "created_at"}]`` by name."""
        return self._request("GET", "users").json()

    # -- tokens ------------------------------------------------------------------------------
    def create_token(
        self,
        user: str | None = None,
        *,
        scope: str = "read",
        namespaces: Sequence[str] = ("*",),
        expires_at: datetime | timedelta | None = None,
        name: str = "",
    ) -> dict:
        """Mint a token; returns ``{"id", "token", "expires_at"}``, the secret in ``"token"`` (shown once).

        ``user`` defaults to the caller's own user. ``namespaces`` ``["*"]`` means the namespaces
        the user owns; ``expires_at`` is a time (UTC unless it says otherwise), a lifetime from now,
        or None (no expiry, or the minting token's when a user mints for themselves).
        """
        who = check_name(user, "user name") if user is not None else self.whoami()["user"]
        if isinstance(expires_at, timedelta):
            expires_at = datetime.now(UTC) + expires_at
        body = {"user": who, "scope": scope, "namespaces": [_namespace_or_star(n) for n in namespaces],
                "expires_at": expires_at.isoformat() if expires_at else None, "name": name}
        return self._request("POST", "tokens", json=body).json()

    def list_tokens(self, user: str | None = None) -> list[dict]:
        """The caller's tokens it may see (itself, and those within its reach), oldest first, revoked
        and expired ones included: ``[{"id", "user", "name", "scope", "namespaces", "created_at",
        "expires_at", "revoked_at", "current"}]``; never a secret. Admins may name another ``user``."""
        params = {"user": check_name(user, "user name")} if user is not None else None
        return self._request("GET", "tokens", params=params).json()

    def revoke_token(self, token_id: int) -> None:
        """Revoke token ``token_id`` and every token minted from it (the ids are in `list_tokens`)."""
        self._request("DELETE", f"tokens/{int(token_id)}")

    # -- namespaces --------------------------------------------------------------------------
    def create_namespace(self, name: str, private: bool = False, *, exist_ok: bool = False) -> dict:
        """Create a namespace owned by the caller; returns ``{"name", "private", "owner", "created_at"}``.

        With ``exist_ok`` an existing namespace is returned as it is (its privacy unchanged), so a
        seeding script can run twice.
        """
        try:
            return self._request("POST", "namespaces", json={"name": check_name(name, "namespace"),
                                                             "private": private}).json()
        except RegistryError as exc:
            if not (exist_ok and exc.code == "NamespaceExists"):
                raise
        return self.namespace(name)

    def namespace(self, name: str) -> dict:
        """``{"name", "private", "owner", "created_at"}``; a private one the caller may not read is not found."""
        return self._request("GET", f"namespaces/{check_name(name, 'namespace')}").json()

    def list_namespaces(self) -> list[dict]:
        """Every namespace the caller may read, by name (public ones, and the private ones its token
        covers): ``[{"name", "private", "owner", "created_at"}]``."""
        return self._request("GET", "namespaces").json()
