"""Which stored blobs a caller may use: the ones they uploaded, or that a version they may read lists.

Blobs are stored once whoever sends them, but a sha256 is not a secret: it shows in ETags, tree
listings and manifests, and is kept by anyone who ever read one. So the registry answers "you
have it" (in ``/blobs/missing``, a size check or a publish) only where the caller has proven it,
as OCI registries require before a cross-repository mount. Everyone else uploads the bytes
again: stored once still, and the upload is the proof.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.crud import readable_filter
from adapterhub.registry.server.models import Adapter, Blob, BlobUpload, File, Namespace, Version


def usable_blobs(session: Session, principal: Principal, shas: list[str]) -> dict[str, int]:
    """sha256 -> stored size, for the blobs of ``shas`` this caller may reference."""
    if not shas:
        return {}
    stored = dict(session.exec(select(Blob.sha256, Blob.size).where(Blob.sha256.in_(shas))).all())
    if principal.superuser or not stored:
        return stored
    mine: set[str] = set()
    if principal.user is not None:
        mine = set(session.exec(select(BlobUpload.sha256).where(
            BlobUpload.user_id == principal.user.id, BlobUpload.sha256.in_(list(stored)))).all())
    rest = [s for s in stored if s not in mine]
    if rest:
        listed = (select(File.sha256).join(Version, File.version_id == Version.id)
                  .join(Adapter, Version.adapter_id == Adapter.id).join(Namespace, Adapter.namespace_id == Namespace.id)
                  .where(File.sha256.in_(rest)))
        visible = readable_filter(principal)
        if visible is not None:
            listed = listed.where(visible)
        mine |= set(session.exec(listed.distinct()).all())
    return {s: size for s, size in stored.items() if s in mine}


def record_upload(session: Session, sha256: str, user_id: int) -> bool:
    """Note that ``user_id`` sent these bytes; True the first time (a second upload adds nothing)."""
    if session.get(BlobUpload, (sha256, user_id)) is not None:
        return False
    session.add(BlobUpload(sha256=sha256, user_id=user_id))
    try:
        session.commit()
    except IntegrityError:  # the same user's two uploads of one blob raced: one row is enough
        session.rollback()
        return False
    return True
