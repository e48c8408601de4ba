"""A checked Hugging Face commit becomes a new immutable version (HF_PROTOCOL.md, "Mapping").

- **Which version**: the one the commit names (``version:`` in the README.md it adds, or a summary
  that is only a version, ``1.2.0`` / ``v1.2.0`` / ``version 1.2.0``), else the next patch after the
  newest version (``1.0.0`` for the first).
- **On top of what**: ``main`` builds on what ``main`` reads (the ``stable`` alias, else the newest
  version) and moves ``stable`` to the new version, so that ``main`` reads what was pushed to it
  and a commit to a branch never changes ``main``; a rollout holding ``stable`` refuses it (push to
  a branch and roll that out). Any other revision is an alias (a branch) that the new version
  moves. Versions and tags never move: a commit to one is refused.
- **Retries**: a commit whose files equal those of the version it would replace (or of the
  version it names) answers that version: the client retries the POST, and a retry after a lost
  answer must not make a second version.
"""

from __future__ import annotations

import re

from sqlmodel import Session, select

from adapterhub.registry.folder import peft_metadata
from adapterhub.registry.reference import COMMIT_RE, DEFAULT_REVISION, SEMVER_RE
from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.blob_access import record_upload
from adapterhub.registry.server.blobstore import BlobStore
from adapterhub.registry.server.card_meta import CardError, card_problems, front_matter
from adapterhub.registry.server.crud import files_of, resolve_revision, versions_newest_first
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.hf_commit import CommitPlan, read_part
from adapterhub.registry.server.models import Adapter, Alias, Namespace, Version
from adapterhub.registry.server.publish import (
    check_blobs,
    check_files,
    gate_contents,
    publish,
    read_contents,
    record_blob,
)
from adapterhub.registry.server.schemas import FileEntry, VersionCreate

STABLE = "stable"  # what main reads
SUMMARY_VERSION = re.compile(r"(?:version\s+|v)?(\S+)", re.IGNORECASE)


def base_version(session: Session, adapter: Adapter, rev: str) -> tuple[Version | None, str | None]:
    """The version a commit to ``rev`` builds on (None for a repo with no version yet) and the
    alias it moves (``stable`` for ``main``)."""
    if rev in ("", DEFAULT_REVISION):
        every = versions_newest_first(session, adapter.id)
        if not every:
            return None, STABLE
        try:
            return resolve_revision(session, adapter, DEFAULT_REVISION), STABLE
        except ApiError:  # every version yanked: build on the newest all the same
            return every[0], STABLE
    if SEMVER_RE.fullmatch(rev) or COMMIT_RE.fullmatch(rev):
        raise ApiError(409, "RevisionImmutable", f"{rev!r} names a version, and versions are immutable: "
                                                 "commit to main or to a branch (an alias)")
    alias = session.exec(select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == rev)).first()
    if alias is None:
        raise ApiError(404, "RevisionNotFound", f"no branch (alias) {rev!r}: create it first (create_branch; "
                                                "`hf upload --revision` does that itself)")
    if alias.is_tag:
        raise ApiError(409, "TagImmutable", f"{rev!r} is a tag; tags never move: commit to main or to a branch")
    return session.get(Version, alias.version_id), rev


def named_version(plan: CommitPlan) -> str | None:
    """The version the commit names: its README's ``version:``, else a summary that is one."""
    if plan.readme is not None:
        try:
            meta = front_matter(plan.readme)
        except CardError as exc:
            raise ApiError(400, "InvalidCard", f"README.md: {exc}") from None
        problems = card_problems(meta)
        if problems:
            raise ApiError(400, "InvalidCard", f"README.md: {'; '.join(problems)}")
        if meta.get("version") is not None:
            return str(meta["version"])
    m = SUMMARY_VERSION.fullmatch(plan.summary.strip())
    return m.group(1) if m and SEMVER_RE.fullmatch(m.group(1)) else None


def next_patch(session: Session, adapter: Adapter) -> str:
    """The next patch after the newest version; a pre-release's own release if that is free."""
    every = versions_newest_first(session, adapter.id)
    if not every:
        return "1.0.0"
    taken = {v.version for v in every}
    major, minor, patch = (int(x) for x in SEMVER_RE.fullmatch(every[0].version).groups()[:3])
    release = f"{major}.{minor}.{patch}"
    return release if release not in taken else f"{major}.{minor}.{patch + 1}"


def _entries(session: Session, v: Version) -> list[FileEntry]:
    return [FileEntry(path=f.path, sha256=f.sha256, size=f.size) for f in files_of(session, v.id)]


def _same(a: list[FileEntry], b: list[FileEntry]) -> bool:
    return sorted((f.path, f.sha256, f.size) for f in a) == sorted((f.path, f.sha256, f.size) for f in b)


def land_commit(session: Session, store: BlobStore, principal: Principal, ns: Namespace, adapter: Adapter,
                plan: CommitPlan, rev: str) -> tuple[Version, bool]:
    """The version the commit lands as, and whether it is new. Everything that can refuse is
    checked before the commit's own bytes go into the store."""
    base, alias = base_version(session, adapter, rev)
    files, missing = plan.apply(_entries(session, base) if base is not None else [])
    named = named_version(plan)
    existing = None
    if named is not None:
        existing = session.exec(select(Version).where(Version.adapter_id == adapter.id, Version.version == named)).first()
    target = existing if named is not None else base
    if target is not None and _same(files, _entries(session, target)):
        return target, False
    if existing is not None:
        raise ApiError(409, "VersionExists", f"version {named} of {adapter.name!r} exists with other files; versions "
                                             "are immutable: name a new version (README.md's version:) or none")
    if missing:
        raise ApiError(404, "EntryNotFound", f"cannot delete {', '.join(map(repr, missing))}: not in "
                                             f"{'version ' + base.version if base else 'the empty repo'}")
    if plan.parent and base is not None and plan.parent != base.commit:
        raise ApiError(412, "CommitConflict", f"parentCommit {plan.parent} is not the head of {rev or 'main'} "
                                              f"({base.commit}, version {base.version}): pull and commit again")
    check_files(files)
    inline = {a.path for a in plan.additions.values() if a.upload is not None}
    check_blobs(session, principal, [f for f in files if f.path not in inline])
    version = named or next_patch(session, adapter)
    _gate(session, store, plan, files, adapter)
    _store_inline(session, store, principal, plan)
    if plan.config is not None:  # a new adapter's search fields, from PEFT's config (committed with the version)
        for key, value in peft_metadata(plan.config).items():
            if key in ("method", "task", "base_model") and isinstance(value, str) and not getattr(adapter, key):
                setattr(adapter, key, value[:64 if key == "method" else 200])
    return publish(session, store, principal, ns, adapter, VersionCreate(version=version, files=files, alias=alias)), True


def _gate(session: Session, store: BlobStore, plan: CommitPlan, files: list[FileEntry], adapter: Adapter) -> None:
    """The base-model gate of `publish`, run before the commit's bytes are stored (publish runs it
    again): a refused adapter leaves no blob behind. The commit's own files are read from its temp
    uploads, the rest from the version it builds on."""
    inline = {a.path: a.upload for a in plan.additions.values() if a.upload is not None}

    def read(f: FileEntry, start: int, end: int | None) -> bytes:
        up = inline.get(f.path)
        return read_part(up, start, end) if up is not None else store.read(f.sha256, start, end)

    gate_contents(session, read_contents(files, read), adapter)


def _store_inline(session: Session, store: BlobStore, principal: Principal, plan: CommitPlan) -> None:
    """Move the commit's own bytes into the store, with their rows and the uploader's proof."""
    for a in plan.additions.values():
        if a.upload is None:
            continue
        store.commit(a.upload)
        a.upload = None
        record_blob(session, a.sha256, a.size)
        if principal.user is not None:
            record_upload(session, a.sha256, principal.user.id)

