"""Identity: whoami, users, tokens, namespaces."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlmodel import select

from adapterhub.registry.reference import check_name
from adapterhub.registry.server.auth import LEVEL, aware, new_token_secret
from adapterhub.registry.server.crud import audit, get_namespace, user_by_name
from adapterhub.registry.server.deps import CurrentUser, PrincipalDep, SessionDep
from adapterhub.registry.server.errors import ApiError, error_responses
from adapterhub.registry.server.models import Namespace, Token, User, utcnow
from adapterhub.registry.server.schemas import (
    NamespaceCreate,
    NamespacePublic,
    ScopeEntry,
    TokenCreate,
    TokenCreated,
    UserCreate,
    UserPublic,
    WhoAmI,
)

MAX_ID = 2**31 - 1  # ids are INTEGER columns; a larger one cannot exist (and PostgreSQL refuses it)
router = APIRouter(tags=["auth"], responses=error_responses(401, 422, 429, 503))


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: CurrentUser) -> WhoAmI:
    return WhoAmI(
        user=principal.name,
        is_admin=principal.superuser or bool(principal.user and principal.user.is_admin),
        scopes=[ScopeEntry(scope=principal.scope, namespace=n) for n in principal.namespaces],
    )


@router.post("/users", response_model=UserPublic, status_code=201, responses=error_responses(403, 409))
def create_user(body: UserCreate, session: SessionDep, principal: CurrentUser) -> UserPublic:
    """Admin only: a user and the namespace of the same name, owned by them."""
    if not principal.superuser:
        raise ApiError(403, "Forbidden", "only an admin may create users")
    check_name(body.name, "user name")
    if user_by_name(session, body.name) or session.exec(select(Namespace).where(Namespace.name == body.name)).first():
        raise ApiError(409, "UserExists", f"user or namespace {body.name!r} exists")
    user = User(name=body.name)
    session.add(user)
    session.flush()
    session.add(Namespace(name=body.name, owner_id=user.id))
    audit(session, principal.name, "user.create", body.name, user=body.name)
    session.commit()
    return UserPublic(name=user.name)


@router.post("/tokens", response_model=TokenCreated, status_code=201, responses=error_responses(403))
def create_token(body: TokenCreate, session: SessionDep, principal: CurrentUser) -> TokenCreated:
    """Admins issue any token; a user may issue themselves one within the scopes they hold."""
    user = user_by_name(session, body.user)
    if not principal.superuser:
        if principal.user is None or body.user != principal.user.name:
            raise ApiError(403, "Forbidden", "only an admin may create tokens for another user")
        if LEVEL[body.scope] > LEVEL[principal.scope]:
            raise ApiError(403, "Forbidden", f"your token has scope {principal.scope!r}, not {body.scope!r}")
        extra = [n for n in body.namespaces if n not in principal.namespaces and "*" not in principal.namespaces]
        if extra:
            raise ApiError(403, "Forbidden", f"your token does not cover namespaces {extra}")
    if user is None:
        raise ApiError(422, "InvalidRequest", f"no user {body.user!r}")
    if not body.namespaces:
        raise ApiError(422, "InvalidRequest", "a token needs at least one namespace (or '*')")
    for n in body.namespaces:
        if n != "*":
            check_name(n, "namespace")
    text, public_id, salt, secret_hash = new_token_secret()
    expires = body.expires_at if body.expires_at is None or body.expires_at.tzinfo else body.expires_at.replace(
        tzinfo=UTC)
    tok = Token(public_id=public_id, user_id=user.id, name=body.name, scope=body.scope,
                namespaces=list(body.namespaces), salt=salt, secret_hash=secret_hash, expires_at=expires)
    session.add(tok)
    session.flush()
    audit(session, principal.name, "token.create", "", None, user=user.name, token_id=tok.id, scope=body.scope,
          namespaces=list(body.namespaces))
    session.commit()
    return TokenCreated(id=tok.id, token=text)


@router.delete("/tokens/{token_id}", status_code=204, responses=error_responses(404))
def revoke_token(token_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, principal: CurrentUser) -> Response:
    tok = session.get(Token, token_id)
    if tok is None or not (principal.superuser or (principal.user and tok.user_id == principal.user.id)):
        raise ApiError(404, "NotFound", f"no token {token_id}")
    if tok.revoked_at is None:
        tok.revoked_at = utcnow()
        session.add(tok)
        audit(session, principal.name, "token.revoke", "", None, token_id=token_id)
        session.commit()
    return Response(status_code=204)


@router.post("/namespaces", response_model=NamespacePublic, status_code=201,
             responses=error_responses(403, 409))
def create_namespace(body: NamespaceCreate, session: SessionDep, principal: CurrentUser) -> NamespacePublic:
    if not principal.has_scope("write"):
        raise ApiError(403, "Forbidden", "creating a namespace needs a write scope")
    check_name(body.name, "namespace")
    if session.exec(select(Namespace).where(Namespace.name == body.name)).first():
        raise ApiError(409, "NamespaceExists", f"namespace {body.name!r} exists")
    owner = principal.user
    ns = Namespace(name=body.name, private=body.private, owner_id=owner.id if owner else None)
    session.add(ns)
    audit(session, principal.name, "namespace.create", body.name, private=body.private)
    session.commit()
    return NamespacePublic(name=ns.name, private=ns.private, owner=owner.name if owner else None,
                           created_at=aware(ns.created_at))


@router.get("/namespaces/{ns}", response_model=NamespacePublic, responses=error_responses(404))
def read_namespace(ns: str, session: SessionDep, principal: PrincipalDep) -> NamespacePublic:
    row = get_namespace(session, principal, ns)
    owner = session.get(User, row.owner_id) if row.owner_id else None
    return NamespacePublic(name=row.name, private=row.private, owner=owner.name if owner else None,
                           created_at=aware(row.created_at))
