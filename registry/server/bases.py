"""Base models in the registry: look-up by Hub id or alias, registration, and the gate at publish.

Every adapter names its base; a registered base lets the registry check, before anything is
written, that each adapter tensor fits a module of that base (`adapterhub.base_compat`), and
record which engines can serve the version. An adapter for a base nobody registered is accepted
with a warning on the version, since nothing could be checked.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import delete
from sqlmodel import Session, select

from adapterhub import adapters_folder as af
from adapterhub.adapters_compat import adapters_incompatibility
from adapterhub.base_compat import incompatibility, serving_engines
from adapterhub.format import CONFIG_FILE
from adapterhub.registry.server import validation as val
from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.crud import audit
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.models import BaseAlias, BaseFile, RegisteredBase
from adapterhub.registry.server.schemas import BaseCreate, BaseOut, FileEntry

# A Hub id: ``owner/name`` of letters, digits, ``-``, ``_``, ``.`` (the Hub's own rule, case kept)
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
ALIAS_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,95}")


def find_base(session: Session, name: str | None) -> RegisteredBase | None:
    """The base a Hub id or an alias names (None for a local path or an unknown name)."""
    if not name or not isinstance(name, str) or len(name) > 300:
        return None
    row = session.exec(select(RegisteredBase).where(RegisteredBase.hub_id == name)).first()
    if row is not None:
        return row
    alias = session.get(BaseAlias, name)
    return session.get(RegisteredBase, alias.base_id) if alias is not None else None


def base_names(session: Session, name: str) -> list[str]:
    """Every name a base goes by (its id and aliases), or ``[name]`` when it names no base: what a
    search by base model matches, so an id and its alias find the same adapters."""
    row = find_base(session, name)
    return [row.hub_id, *row.aliases] if row is not None else [name]


def base_commit(row: RegisteredBase) -> str:
    """The 40-hex commit a mirrored base answers with, fixed by its content."""
    return hashlib.sha1(f"adapterhub-base:{row.hub_id}:{row.revision}".encode()).hexdigest()


def files_of_base(session: Session, base_id: int) -> list[BaseFile]:
    return list(session.exec(select(BaseFile).where(BaseFile.base_id == base_id).order_by(BaseFile.path)).all())


def base_out(session: Session, row: RegisteredBase, full: bool = False) -> BaseOut:
    return BaseOut(id=row.hub_id, aliases=list(row.aliases), revision=row.revision, architecture=row.architecture,
                   mirror=row.mirror, modules=len((row.manifest or {}).get("modules") or {}),
                   files=[FileEntry(path=f.path, sha256=f.sha256, size=f.size) for f in files_of_base(session, row.id)],
                   manifest=row.manifest if full else None)


def _check_body(session: Session, body: BaseCreate) -> None:
    if not HUB_ID_RE.fullmatch(body.id) or ".." in body.id:
        raise ApiError(422, "InvalidRequest", f"bad base model id {body.id!r}: a Hugging Face Hub id such as "
                                              "'HuggingFaceTB/SmolLM2-135M-Instruct'")
    for alias in body.aliases:
        if not ALIAS_RE.fullmatch(alias) or ".." in alias:
            raise ApiError(422, "InvalidRequest", f"bad base alias {alias!r}: 1-96 characters from [a-z0-9._-]")
        taken = session.get(BaseAlias, alias)
        other = find_base(session, alias)
        if (taken is not None or other is not None) and (other is None or other.hub_id != body.id):
            raise ApiError(409, "AliasTaken", f"base alias {alias!r} already names {other.hub_id if other else alias!r}")
    modules = body.manifest.get("modules")
    if not isinstance(modules, dict) or not modules or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in modules.items()):
        raise ApiError(422, "InvalidRequest", "the manifest needs 'modules': {module path: {parameter: shape}}, "
                                              "as adapterhub.base_manifest writes it")
    if body.mirror and not body.files:
        raise ApiError(422, "InvalidRequest", "a mirrored base needs its files (upload them as blobs first)")
    if body.files:
        val.check_file_count(len(body.files))
        for f in body.files:
            val.check_path(f.path)
            val.check_not_pickle(f.path)
            val.check_sha256(f.sha256)
        val.check_file_set([f.path for f in body.files])


def register_base(session: Session, principal: Principal, body: BaseCreate) -> tuple[RegisteredBase, bool]:
    """Create the base, or replace what an earlier registration said (a new revision); True if new."""
    from adapterhub.registry.server.publish import check_blobs  # publish imports this module

    _check_body(session, body)
    if body.files:
        check_blobs(session, principal, body.files)
    row = session.exec(select(RegisteredBase).where(RegisteredBase.hub_id == body.id)).first()
    new = row is None
    if new:
        row = RegisteredBase(hub_id=body.id)
    row.aliases, row.manifest, row.mirror = list(dict.fromkeys(body.aliases)), body.manifest, body.mirror
    row.revision = str(body.manifest.get("content_sha256") or "")[:64]
    row.architecture = str(body.manifest.get("architecture") or "")[:200]
    row.updated_by = principal.name
    session.add(row)
    session.flush()
    session.exec(delete(BaseAlias).where(BaseAlias.base_id == row.id))
    session.exec(delete(BaseFile).where(BaseFile.base_id == row.id))
    for alias in row.aliases:
        session.add(BaseAlias(name=alias, base_id=row.id))
    for f in body.files:
        session.add(BaseFile(base_id=row.id, path=f.path, sha256=f.sha256, size=f.size))
    audit(session, principal.name, "base.register", "", None, base=row.hub_id, revision=row.revision,
          mirror=row.mirror, files=len(body.files))
    session.commit()
    return row, new


def adapter_base_name(config: dict, fallback: str) -> str | None:
    """The base an adapter names: PEFT's ``base_model_name_or_path`` (an ``adapters`` config's
    ``model_name`` when it is a Hub id), else the adapter's record."""
    if af.looks_like_adapters_config(config):  # a fusion's config too (its options under "config")
        return af.base_model_of(config) or fallback or None
    named = config.get("base_model_name_or_path")
    return named if isinstance(named, str) and named else (fallback or None)


def gate(session: Session, config: dict, tensors: dict[str, list[int]], base_name: str | None,
         shapes: dict[str, dict[str, list[int]]] | None = None) -> tuple[list[str], list[str]]:
    """Refuse (422 ``IncompatibleAdapter``) an adapter whose tensors do not fit its registered base;
    else the engines that can serve it and the warnings to record. ``shapes``: an ``adapters``
    folder's safetensors files (its weights, head and fusion), judged when ``config`` is its."""
    adapters = bool(config) and af.looks_like_adapters_config(config)
    warnings: list[str] = []
    base = find_base(session, base_name)
    if not config:
        warnings.append(f"no {CONFIG_FILE}: the adapter's shapes were not checked against a base")
    elif not base_name:
        warnings.append("the adapter names no base model" + (" (its model_name is not a Hub id)" if adapters else "")
                        + ": its shapes were not checked")
    elif base is None:
        warnings.append(f"base model {base_name!r} is not registered here: the adapter's shapes were not checked "
                        "(an admin registers it with `adapterhub base register`)")
    else:
        manifest = {**base.manifest, "id": base.hub_id}
        try:
            problem = (adapters_incompatibility(config, shapes or {}, manifest) if adapters
                       else incompatibility(config, tensors, manifest))
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # a config the rules cannot read
            problem = None
            warnings.append(f"the shapes could not be checked against {base.hub_id}: {exc}")
        if problem:
            raise ApiError(422, "IncompatibleAdapter", problem)
    if adapters:  # AdapterHub's own library reads its folders as they are
        return ["adapters"], warnings
    return (serving_engines(config, tensors) if config else []), warnings
