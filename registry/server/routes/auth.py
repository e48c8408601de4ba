"""Identity: whoami, users, tokens, namespaces: making them, and listing what the caller may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlmodel import Session, select

from adapterhub.registry.reference import check_name
from adapterhub.registry.server.auth import ADMIN_USER, LEVEL, Principal, aware, new_token_secret
from adapterhub.registry.server.crud import audit, get_namespace, readable_filter, user_by_name
from adapterhub.registry.server.deps import CurrentUser, PrincipalDep, SessionDep
from adapterhub.registry.server.errors import ApiError, error_responses
from adapterhub.registry.server.models import Namespace, Token, User
from adapterhub.registry.server.schemas import (
    NamespaceCreate,
    NamespacePublic,
    ScopeEntry,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    UserCreate,
    UserEntry,
    UserPublic,
    WhoAmI,
)
from adapterhub.registry.server.tokens import check_revoke, grant, revoke_tree, uncovered

MAX_ID = 2**31 - 1  # ids are INTEGER columns; a larger one cannot exist (and PostgreSQL refuses it)
# The bootstrap admin's name and the first segment of the HF API's paths: claimed by a user, they
# would pass for the registry's own
RESERVED_NAMESPACES = frozenset({ADMIN_USER, "api"})
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


@router.get("/users", response_model=list[UserEntry], responses=error_responses(403))
def list_users(session: SessionDep, principal: CurrentUser) -> list[UserEntry]:
    """Admin only, as creating them is: who has an account is not a user's business."""
    if not principal.superuser:
        raise ApiError(403, "Forbidden", "only an admin may list users")
    rows = session.exec(select(User).order_by(User.name)).all()
    return [UserEntry(name=u.name, is_admin=u.is_admin, created_at=aware(u.created_at)) for u in rows]


def _visible(session: Session, principal: Principal, tok: Token) -> bool:
    """A token sees itself and the tokens it could revoke (`tokens.check_revoke`'s reach): a leaked
    read token learns nothing of its user's write tokens."""
    if principal.superuser or (principal.token is not None and principal.token.id == tok.id):
        return True
    return LEVEL[tok.scope] <= LEVEL[principal.scope] and not uncovered(session, principal, tok.namespaces)


@router.get("/tokens", response_model=list[TokenPublic], responses=error_responses(403, 404))
def list_tokens(session: SessionDep, principal: CurrentUser,
                user: Annotated[str | None, Query(max_length=96)] = None) -> list[TokenPublic]:
    """The caller's own tokens within its reach, oldest first, revoked and expired ones included (so
    a revocation can be checked); admins name any ``user``. Never the secret nor its hash."""
    own = principal.user.name if principal.user else None
    name = check_name(user, "user name") if user is not None else own
    if name != own and not principal.superuser:
        raise ApiError(403, "Forbidden", "only an admin may list another user's tokens")
    target = user_by_name(session, name) if name else None
    if target is None:
        if user is not None:
            raise ApiError(404, "NotFound", f"no user {user!r}")
        return []
    rows = session.exec(select(Token).where(Token.user_id == target.id).order_by(Token.id)).all()
    current = principal.token.id if principal.token is not None else None
    return [TokenPublic(id=t.id, user=target.name, name=t.name, scope=t.scope, namespaces=list(t.namespaces),
                        created_at=aware(t.created_at), expires_at=aware(t.expires_at),
                        revoked_at=aware(t.revoked_at), current=t.id == current)
            for t in rows if _visible(session, principal, t)]


@router.post("/tokens", response_model=TokenCreated, status_code=201, responses=error_responses(403))
def create_token(body: TokenCreate, session: SessionDep, principal: CurrentUser) -> TokenCreated:
    """Admins issue any token; a user may issue themselves one within their token's reach (`tokens.grant`)."""
    user = user_by_name(session, body.user)
    if not principal.superuser and (principal.user is None or body.user != principal.user.name):
        raise ApiError(403, "Forbidden", "only an admin may create tokens for another user")
    if user is None:
        raise ApiError(422, "InvalidRequest", f"no user {body.user!r}")
    if not body.namespaces:
        raise ApiError(422, "InvalidRequest", "a token needs at least one namespace (or '*')")
    for n in body.namespaces:
        if n != "*":
            check_name(n, "namespace")
    expires = grant(session, principal, body.scope, list(body.namespaces), body.expires_at)
    parent = principal.token.id if principal.token is not None and not principal.superuser else None
    text, public_id, salt, secret_hash = new_token_secret()
    tok = Token(public_id=public_id, user_id=user.id, name=body.name, scope=body.scope,
                namespaces=list(body.namespaces), salt=salt, secret_hash=secret_hash, expires_at=expires,
                parent_id=parent)
    session.add(tok)
    session.flush()
    audit(session, principal.name, "token.create", "", None, user=user.name, token_id=tok.id, scope=body.scope,
          namespaces=list(body.namespaces), parent_id=parent)
    session.commit()
    return TokenCreated(id=tok.id, token=text, expires_at=expires)


@router.delete("/tokens/{token_id}", status_code=204, responses=error_responses(403, 404))
def revoke_token(token_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, principal: CurrentUser) -> Response:
    """Revokes the token and every token minted from it (a child never outlives its parent)."""
    tok = session.get(Token, token_id)
    if tok is None or not (principal.superuser or (principal.user and tok.user_id == principal.user.id)):
        raise ApiError(404, "NotFound", f"no token {token_id}")
    check_revoke(session, principal, tok)
    revoked = revoke_tree(session, tok)
    if revoked:
        audit(session, principal.name, "token.revoke", "", None, token_id=token_id, revoked=revoked)
        session.commit()
    return Response(status_code=204)


@router.post("/namespaces", response_model=NamespacePublic, status_code=201,
             responses=error_responses(403, 409))
def create_namespace(body: NamespaceCreate, session: SessionDep, principal: CurrentUser) -> NamespacePublic:
    """Names are global, as user names are on the Hugging Face Hub: a writer who tries a taken name
    learns that it is taken (private or not), and nothing else about it (SECURITY.md)."""
    if not principal.has_scope("write"):
        raise ApiError(403, "Forbidden", "creating a namespace needs a write scope")
    check_name(body.name, "namespace")
    if body.name in RESERVED_NAMESPACES and not principal.superuser:
        raise ApiError(403, "Forbidden", f"namespace {body.name!r} is reserved for the registry's own use")
    if session.exec(select(Namespace).where(Namespace.name == body.name)).first():
        raise ApiError(409, "NamespaceExists", f"namespace {body.name!r} exists")
    owner = principal.user
    ns = Namespace(name=body.name, private=body.private, owner_id=owner.id if owner else None)
    session.add(ns)
    audit(session, principal.name, "namespace.create", body.name, private=body.private)
    session.commit()
    return NamespacePublic(name=ns.name, private=ns.private, owner=owner.name if owner else None,
                           created_at=aware(ns.created_at))


@router.get("/namespaces", response_model=list[NamespacePublic])
def list_namespaces(session: SessionDep, principal: PrincipalDep) -> list[NamespacePublic]:
    """Every namespace the caller may read, by name: the public ones, and the private ones its
    token covers (the same rule as search, `crud.readable_filter`); a private one it may not read
    is left out, never hinted at."""
    query = select(Namespace, User).join(User, Namespace.owner_id == User.id, isouter=True).order_by(Namespace.name)
    where = readable_filter(principal)
    if where is not None:
        query = query.where(where)
    return [NamespacePublic(name=ns.name, private=ns.private, owner=owner.name if owner else None,
                            created_at=aware(ns.created_at)) for ns, owner in session.exec(query).all()]


@router.get("/namespaces/{ns}", response_model=NamespacePublic, responses=error_responses(404))
def read_namespace(ns: str, session: SessionDep, principal: PrincipalDep) -> NamespacePublic:
    row = get_namespace(session, principal, ns)
    owner = session.get(User, row.owner_id) if row.owner_id else None
    return NamespacePublic(name=row.name, private=row.private, owner=owner.name if owner else None,
                           created_at=aware(row.created_at))
