"""The transfer half of the registry client: push a folder as a version, pull a version into the cache.

Kept apart from ``client.py`` so that each file has one job; ``Hub`` inherits this mixin, so the
names stay ``hub.push(...)`` and ``hub.pull(...)``. Needs ``_request``, ``_check``, ``_transport``,
``_http``, ``cache``, ``offline``, ``progress``, ``resolve``, ``_adapter_path`` and ``_check_against_base``
from ``Hub``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from tqdm.auto import tqdm

from adapterhub.errors import AdapterNotFoundError, InvalidReferenceError, RegistryError
from adapterhub.format import scan_folder
from adapterhub.registry import trust
from adapterhub.registry.cache import CHUNK, download_blob, ref_name, sha256_file
from adapterhub.registry.folder import CREATE_FIELDS, folder_metadata
from adapterhub.registry.reference import Reference, as_reference, check_alias, check_version


@dataclass(frozen=True)
class Resolution:
    """What a reference points to right now (canary-aware: ``arm`` says which side of a rollout)."""

    namespace: str
    name: str
    version: str
    commit: str | None = None
    arm: str = "stable"
    rollout_id: int | None = None

    @property
    def reference(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"

    def to_dict(self) -> dict:
        return asdict(self)


class TransferMixin:
    """Pushing and pulling (see ``registry/API.md``, "Versions" and "Blobs"); mixed into ``Hub``."""

    def push(
        self,
        folder: str | os.PathLike[str],
        ref: str | Reference,
        version: str | None = None,
        alias: str | None = None,
        *,
        create_namespace: bool = False,
    ) -> dict:
        """Upload an adapter folder as a new immutable version; returns the VersionOut.

        Creates the adapter on first push (metadata from ``adapterhub.json``, else inferred from
        a PEFT ``adapter_config.json``) and uploads only the blobs the registry lacks. A namespace
        is never created by accident: a push into one that does not exist is refused, naming the
        command that creates it, unless ``create_namespace`` (a public one, owned by the caller).
        """
        r = as_reference(ref)
        version = check_version(_one_of("version", r.version, version, r))
        alias = check_alias(alias) if alias else r.alias
        root = Path(folder)
        files = scan_folder(root)
        metadata = folder_metadata(root)
        self._check_against_base(root)
        manifest = self._hash_files(root, files)
        if create_namespace:
            self._create_namespace_for_push(r.namespace)
        self._ensure_adapter(r, metadata, create_namespace)
        shas = sorted({f["sha256"] for f in manifest})
        missing = set(self._request("POST", "blobs/missing", json={"sha256": shas}).json()["missing"])
        self._upload(root, [f for f in manifest if f["sha256"] in missing])
        body = {"version": version, "files": manifest, **({"alias": alias} if alias else {})}
        return self._request("POST", f"{self._adapter_path(r)}/versions", ref=r, json=body).json()

    # -- pulling -----------------------------------------------------------------------------
    def pull(self, ref: str | Reference) -> Path:
        """The snapshot folder of the version ``ref`` resolves to, downloading what the cache lacks.

        Online, every pull asks the registry first (the pinned version's manifest, else a resolve):
        the cache supplies bytes, never who may read them, so a private version another token pulled
        into the same cache stays not found. Offline, the cache alone answers. One lock per adapter
        (across processes): a second pull of the same reference waits, then finds the snapshot ready.
        """
        r = as_reference(ref)
        if self.offline:
            return self.cache.resolve_offline(r)[1]
        manifest = self._manifest(r, r.version) if r.version else None
        res = Resolution(r.namespace, r.name, r.version, manifest.get("commit")) if manifest else self.resolve(r)
        with self.cache.lock(r.namespace, r.name):
            folder = self.cache.snapshot(r.namespace, r.name, res.version,
                                         expect=manifest or ({"commit": res.commit} if res.commit else None))
            if folder is None:
                manifest = manifest or self._manifest(r, res.version, res.commit)
                if manifest.get("yanked"):
                    warnings.warn(f"{res.reference} is yanked: {manifest.get('yank_reason')}", stacklevel=2)
                self._download(r, manifest)
                folder = self.cache.build_snapshot(r.namespace, r.name, manifest)
            self.cache.write_ref(r.namespace, r.name, ref_name(r), res.version)
        return folder

    def _manifest(self, r: Reference, version: str, commit: str | None = None) -> dict:
        body = self._request("GET", f"{self._adapter_path(r)}/versions/{version}", ref=r).json()
        return trust.checked_manifest(r, body, version, commit)

    def _bar(self, total: int, desc: str) -> tqdm:
        disable = None if self.progress is None else not self.progress
        return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=disable,
                    leave=False)

    def _hash_files(self, root: Path, files: list[Path]) -> list[dict]:
        with self._bar(sum(f.stat().st_size for f in files), "hashing") as bar:
            return [{"path": f.relative_to(root).as_posix(), "sha256": sha256_file(f, bar.update),
                     "size": f.stat().st_size} for f in files]

    def _create_namespace_for_push(self, namespace: str) -> None:
        try:
            self._request("POST", "namespaces", json={"name": namespace, "private": False})
        except RegistryError as exc:
            if exc.code != "NamespaceExists":  # it exists: push into it (if the token may)
                raise

    def _ensure_adapter(self, r: Reference, metadata: dict, tried_create: bool = False) -> None:
        try:
            self._request("GET", self._adapter_path(r))
            return
        except AdapterNotFoundError:
            pass
        body = {"namespace": r.namespace, "name": r.name,
                **{k: metadata[k] for k in CREATE_FIELDS if metadata.get(k) is not None}}
        try:
            self._request("POST", "adapters", json=body)
        except AdapterNotFoundError as exc:  # the one 404 of this call: no such namespace (or not readable)
            err = AdapterNotFoundError(_missing_namespace(r, tried_create))
            err.status, err.code, err.reference = 404, getattr(exc, "code", None), str(r)
            raise err from None
        except RegistryError as exc:
            if exc.code != "AdapterExists":  # another push created it meanwhile
                raise

    def _upload(self, root: Path, files: list[dict]) -> None:
        with self._bar(sum(f["size"] for f in files), "uploading") as bar:
            for f in files:
                def chunks(path: Path = root / f["path"]) -> Iterator[bytes]:
                    with open(path, "rb") as fh:
                        while chunk := fh.read(CHUNK):
                            bar.update(len(chunk))
                            yield chunk

                headers = {"Content-Length": str(f["size"]), "Content-Type": "application/octet-stream"}
                self._request("PUT", f"blobs/{f['sha256']}", content=chunks(), headers=headers)

    def _download(self, r: Reference, manifest: dict) -> None:
        """Fetch the blobs a checked manifest (`trust.checked_manifest`) names that the cache lacks."""
        ns, name, version = r.namespace, r.name, manifest["version"]
        todo = []
        for f in manifest["files"]:
            blob = self.cache.blob_path(ns, name, f["sha256"])
            if not (blob.is_file() and blob.stat().st_size == f["size"]):  # else verified when downloaded
                todo.append((f, blob))
        with self._bar(sum(f["size"] for f, _ in todo), f"pulling {ns}/{name}@{version}") as bar:
            for f, blob in todo:
                blob.parent.mkdir(parents=True, exist_ok=True)
                url = f"{self._adapter_path(r)}/versions/{version}/files/{quote(f['path'], safe='/')}"
                with self._transport():
                    download_blob(self._http, url, blob, f["sha256"], f["size"],
                                  check=lambda resp: self._check(resp, r), on_bytes=bar.update)


def _missing_namespace(r: Reference, tried_create: bool) -> str:
    """Why a push found no namespace, and what to do. Told alike whether it does not exist or is
    private to others (the registry does not say which, SECURITY.md)."""
    if tried_create:
        return (f"namespace {r.namespace!r} is taken and your token may not read it; "
                f"push to a namespace of yours instead")
    return (f"namespace {r.namespace!r} does not exist (or your token may not read it): create it with "
            f"`adapterhub namespace create {r.namespace}` (add --private to hide it), or push with "
            f"--create-namespace")


def _one_of(what: str, in_ref: str | None, given: str | None, r: Reference) -> str:
    if in_ref and given and in_ref != given:
        raise InvalidReferenceError(f"{r} names {what} {in_ref} but {given} was given; give it once")
    value = in_ref or given
    if not value:
        raise InvalidReferenceError(f"pushing {r} needs a {what}, e.g. --version 1.0.0")
    return value
