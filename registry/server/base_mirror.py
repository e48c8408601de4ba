"""Serving a mirrored base model over the Hugging Face routes, under its Hub id.

With ``HF_ENDPOINT`` at the registry, ``AutoPeftModel.from_pretrained("adapterhub/<adapter>")``
reads the adapter's ``base_model_name_or_path`` (a Hub id) and asks the same endpoint for the
base: these answers let it load both with no other network. A mirrored base is public and has one
revision (``main``, or its fixed commit id).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, select

from adapterhub.registry.reference import DEFAULT_REVISION
from adapterhub.registry.server.bases import base_commit, files_of_base
from adapterhub.registry.server.blobstore import BlobStore
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.models import RegisteredBase
from adapterhub.registry.server.responses import blob_response


def mirrored_base(session: Session, ns: str, name: str, rev: str = DEFAULT_REVISION) -> RegisteredBase | None:
    """The mirrored base ``ns/name`` is (Hub ids keep their case), None when it is no such base."""
    if len(ns) + len(name) > 300 or "\x00" in ns + name:
        return None
    row = session.exec(select(RegisteredBase).where(RegisteredBase.hub_id == f"{ns}/{name}",
                                                    RegisteredBase.mirror.is_(True))).first()
    if row is not None and rev not in ("", DEFAULT_REVISION, base_commit(row)):
        raise ApiError(404, "RevisionNotFound", f"base {row.hub_id} is mirrored at one revision: main "
                                                f"({base_commit(row)}), not {rev!r}")
    return row


def base_info(session: Session, row: RegisteredBase, hf_time) -> dict:
    files = files_of_base(session, row.id)
    return {"_id": row.hub_id, "id": row.hub_id, "modelId": row.hub_id, "author": row.hub_id.split("/")[0],
            "sha": base_commit(row), "private": False, "disabled": False, "gated": False,
            "tags": ["transformers", "adapterhub-base-mirror"], "library_name": "transformers",
            "lastModified": hf_time(row.created_at), "createdAt": hf_time(row.created_at),
            "config": {"architectures": [row.architecture]} if row.architecture else {},
            "cardData": {}, "siblings": [{"rfilename": f.path, "size": f.size} for f in files],
            "usedStorage": sum(f.size for f in files)}


def resolve_base_file(request: Request, session: Session, store: BlobStore, row: RegisteredBase, path: str) -> Response:
    headers = {"X-Repo-Commit": base_commit(row)}
    f = next((f for f in files_of_base(session, row.id) if f.path == path), None)
    if f is None:
        raise ApiError(404, "EntryNotFound", f"base {row.hub_id} has no file {path!r}", headers)
    url = store.presigned_url(f.sha256, f.path)
    if url is not None:
        return RedirectResponse(url, status_code=302, headers={
            **headers, "X-Linked-Size": str(f.size), "X-Linked-Etag": f'"{f.sha256}"', "ETag": f'"{f.sha256}"'})
    response, _whole = blob_response(request, store, f.sha256, f.size, f.path, headers)
    return response
