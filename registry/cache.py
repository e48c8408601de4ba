"""The local adapter cache, laid out like the huggingface_hub cache.

Why this shape: blobs are content-addressed, so two versions sharing a file store it once;
snapshots are plain folders (hard links to the blobs, or copies where links fail) that PEFT,
vLLM or our engine open as they are; refs let ``ADAPTERHUB_OFFLINE=1`` answer "which version is
``stable``" without the network. Nothing is ever a symlink, so nothing can point outside.

    <ADAPTERHUB_HOME>/cache/
      .locks/adapters--acme--sentiment.lock        one lock per adapter (pulls, prune)
      adapters--acme--sentiment/
        blobs/<sha256>                            verified, read-only
        blobs/<sha256>.incomplete                 a partial download, resumed with Range
        refs/default | refs/<alias> | refs/@<version>   the version each pointed to at last pull
        manifests/<version>.json                  the registry's VersionOut for that version
        snapshots/<version>/<path>                the adapter folder

>>> cache = Cache("/tmp/ah-doc-cache")
>>> cache.repo_dir("acme", "sentiment").name
'adapters--acme--sentiment'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

import httpx
from filelock import FileLock

from adapterhub.errors import InvalidAdapterError, InvalidReferenceError, OfflineError, RegistryError
from adapterhub.format import FormatError, atomic_folder, read_json_object, segment_problem, write_text_atomic
from adapterhub.registry.reference import Reference, check_alias, check_name, check_version

CHUNK = 1 << 20
REPO_PREFIX = "adapters--"
# refs and manifests say which (maybe private) versions this user pulled: readable by the owner only
PRIVATE = 0o600


def ref_name(ref: Reference) -> str:
    """The refs/ file a reference records: ``default``, the alias, or ``@<version>`` (a pin)."""
    if ref.version:
        return f"@{ref.version}"
    return ref.alias or "default"


def safe_relpath(path: str) -> PurePosixPath:
    """Refuse a file path from a manifest that could land outside its snapshot folder on any OS.

    Beyond ``..``, absolute paths and backslashes: any ``:`` (a drive letter, ``D:/evil`` or ``C:x``,
    and NTFS streams leave the folder on Windows), a segment of only dots and spaces (Windows trims
    ``.. `` to ``..``), and whatever `format.segment_problem` refuses on the server too (control and
    invisible characters, trailing dots or spaces, over-long names).
    """
    if (not isinstance(path, str) or not path or "\\" in path or ":" in path
            or any(not part.rstrip(". ") or segment_problem(part) for part in path.split("/"))):
        raise InvalidAdapterError(f"refusing unsafe file path {path!r} in the registry's manifest")
    return PurePosixPath(path)


def _valid_ref(ref: str) -> str:
    """A refs/ file name as `ref_name` makes them: ``default``, an alias or ``@<version>``."""
    if ref.startswith("@"):
        check_version(ref[1:])
    elif ref != "default":
        check_alias(ref)
    return ref


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


def download_blob(
    http: httpx.Client,
    url: str,
    dest: Path,
    sha256: str,
    size: int,
    *,
    check: Callable[[httpx.Response], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (a blob), resuming ``dest.incomplete`` with ``Range``.

    The bytes are hashed as they arrive (the kept prefix first); ``dest`` appears, by an atomic
    rename, only once size and sha256 match. ``check(response)`` raises for error answers.
    """
    partial = dest.with_name(dest.name + ".incomplete")
    for attempt in range(2):
        offset, digest = _hash_prefix(partial, size)
        if on_bytes and offset:
            on_bytes(offset)
        if offset < size:
            offset, digest = _fetch(http, url, partial, offset, digest, check, on_bytes)
        elif not partial.exists():
            partial.touch()  # an empty file: nothing to fetch
        if offset == size and digest.hexdigest() == sha256:
            os.chmod(partial, 0o444)
            os.replace(partial, dest)
            return dest
        partial.unlink(missing_ok=True)  # the kept prefix or the server's bytes were wrong
        if attempt == 1:
            raise RegistryError(
                f"downloaded {url} does not match the manifest: expected sha256 {sha256} and "
                f"{size} bytes, got {digest.hexdigest()} and {offset} bytes",
                code="HashMismatch",
            )
    raise AssertionError("unreachable")


def _hash_prefix(partial: Path, size: int):
    """The length and running hash of what an earlier, interrupted download left behind."""
    digest = hashlib.sha256()
    offset = partial.stat().st_size if partial.exists() else 0
    if offset > size:
        partial.unlink()
        return 0, digest
    if offset:
        with open(partial, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    return offset, digest


def _fetch(http: httpx.Client, url: str, partial: Path, offset: int, digest, check, on_bytes):
    """Append the bytes from ``offset`` on; start over when the server cannot serve that range."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with http.stream("GET", url, headers=headers) as response:
        if offset and response.status_code == 416:
            partial.unlink(missing_ok=True)
            return _fetch(http, url, partial, 0, hashlib.sha256(), check, on_bytes)
        if check:
            check(response)
        response.raise_for_status()
        content_range = response.headers.get("content-range", "")
        if offset and (response.status_code != 206 or not content_range.startswith(f"bytes {offset}-")):
            offset, digest = 0, hashlib.sha256()  # the server sent the whole file
        with open(partial, "ab" if offset else "wb") as fh:
            for chunk in response.iter_bytes():
                fh.write(chunk)
                digest.update(chunk)
                offset += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    return offset, digest


class Cache:
    """A cache folder; every method works on one adapter (``namespace``, ``name``).

    Every path a method computes is proven to lie under ``root`` (resolved, so ``..`` and links
    count) before anything is read, created or deleted: names and versions reach here from the
    registry's answers, and the client's own checks (`adapterhub.registry.trust`) are not the only
    line between a hostile answer and ``shutil.rmtree``.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def _inside(self, path: Path) -> Path:
        root, found = self.root.resolve(), path.resolve()
        if found == root or not found.is_relative_to(root):
            raise InvalidAdapterError(f"refusing cache path {path}: it resolves to {found}, outside the cache {root}")
        return path

    # -- layout -------------------------------------------------------------------------------
    def repo_dir(self, namespace: str, name: str) -> Path:
        check_name(namespace, "namespace")
        check_name(name, "adapter name")
        return self._inside(self.root / f"{REPO_PREFIX}{namespace}--{name}")

    def snapshot_dir(self, namespace: str, name: str, version: str) -> Path:
        return self._inside(self.repo_dir(namespace, name) / "snapshots" / check_version(version))

    def manifest_path(self, namespace: str, name: str, version: str) -> Path:
        return self._inside(self.repo_dir(namespace, name) / "manifests" / f"{check_version(version)}.json")

    def ref_path(self, namespace: str, name: str, ref: str) -> Path:
        return self._inside(self.repo_dir(namespace, name) / "refs" / _valid_ref(ref))

    def blob_path(self, namespace: str, name: str, sha256: str) -> Path:
        if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidAdapterError(f"refusing malformed sha256 {sha256!r} in the registry's manifest")
        return self._inside(self.repo_dir(namespace, name) / "blobs" / sha256)

    def lock(self, namespace: str, name: str) -> FileLock:
        """The per-adapter lock held while pulling or pruning (released if the holder dies)."""
        path = self._inside(self.root / ".locks" / f"{self.repo_dir(namespace, name).name}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    # -- refs and manifests -------------------------------------------------------------------
    def read_ref(self, namespace: str, name: str, ref: str) -> str | None:
        """The version a ref recorded; a file that holds no version is as good as absent."""
        try:
            return check_version(self.ref_path(namespace, name, ref).read_text(encoding="utf-8").strip())
        except (FileNotFoundError, NotADirectoryError, InvalidReferenceError):
            return None

    def write_ref(self, namespace: str, name: str, ref: str, version: str) -> None:
        write_text_atomic(self.ref_path(namespace, name, ref), check_version(version), mode=PRIVATE)

    def manifest(self, namespace: str, name: str, version: str) -> dict | None:
        try:
            return read_json_object(self.manifest_path(namespace, name, version))
        except FormatError:
            return None  # absent or not one we wrote: pull again

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot(self, namespace: str, name: str, version: str, expect: dict | None = None) -> Path | None:
        """The snapshot folder if it is complete (manifest present, every file the right size).

        ``expect``: what the registry says the version holds now (its ``commit``, its ``files``, or
        both); a cached manifest that disagrees is not used, so the registry's answer wins.
        """
        folder = self.snapshot_dir(namespace, name, version)
        manifest = self.manifest(namespace, name, version)
        if manifest is None or not folder.is_dir():
            return None
        for key in ("commit", "files") if expect else ():
            if key in expect and _content(manifest.get(key)) != _content(expect[key]):
                return None
        try:
            for f in manifest.get("files", []):
                target = folder / safe_relpath(f["path"])
                if not target.is_file() or target.stat().st_size != f["size"]:
                    return None
        except (InvalidAdapterError, KeyError, TypeError):
            return None  # a cached manifest we would not have written: pull again
        return folder

    def build_snapshot(self, namespace: str, name: str, manifest: dict) -> Path:
        """Assemble ``snapshots/<version>`` from verified blobs, then rename it into place."""
        version = check_version(manifest["version"])
        final = self.snapshot_dir(namespace, name, version)
        manifest_path = self.manifest_path(namespace, name, version)
        with atomic_folder(final) as tmp:
            for f in manifest["files"]:
                target = self._inside(tmp / safe_relpath(f["path"]))
                target.parent.mkdir(parents=True, exist_ok=True)
                blob = self.blob_path(namespace, name, f["sha256"])
                try:
                    os.link(blob, target)
                except OSError:
                    shutil.copyfile(blob, target)
            write_text_atomic(manifest_path, json.dumps(manifest, indent=1), mode=PRIVATE)
        return final

    def resolve_offline(self, ref: Reference) -> tuple[str, Path]:
        """The version and snapshot a reference pointed to at its last pull, from disk only."""
        version = ref.version or self.read_ref(ref.namespace, ref.name, ref_name(ref))
        folder = self.snapshot(ref.namespace, ref.name, version) if version else None
        if folder is None:
            raise OfflineError(
                f"ADAPTERHUB_OFFLINE=1 and {ref} is not in the local cache ({self.root}); "
                "pull it once while online, or unset ADAPTERHUB_OFFLINE"
            )
        return version, folder

    # -- listing and pruning ------------------------------------------------------------------
    def repos(self) -> Iterable[tuple[str, str, Path]]:
        """Adapter folders named as `repo_dir` names them; links and other names are left alone."""
        if not self.root.is_dir():
            return
        for repo in sorted(self.root.iterdir()):
            parts = repo.name[len(REPO_PREFIX) :].split("--")
            if repo.is_symlink() or not repo.is_dir() or not repo.name.startswith(REPO_PREFIX) or len(parts) != 2:
                continue
            try:
                yield parts[0], parts[1], self.repo_dir(parts[0], parts[1])
            except (InvalidReferenceError, InvalidAdapterError):
                continue

    def list(self) -> list[dict]:
        """One row per cached adapter: versions, refs, bytes on disk."""
        rows = []
        for ns, name, repo in self.repos():
            refs_dir = repo / "refs"
            refs = {p.name: p.read_text().strip() for p in sorted(refs_dir.iterdir())} if refs_dir.is_dir() else {}
            snaps = repo / "snapshots"
            versions = sorted(p.name for p in snaps.iterdir() if not p.name.startswith(".")) if snaps.is_dir() else []
            blobs = repo / "blobs"
            size = sum(p.stat().st_size for p in blobs.iterdir()) if blobs.is_dir() else 0
            rows.append({"adapter": f"{ns}/{name}", "versions": versions, "refs": refs, "size": size,
                         "path": str(repo)})
        return rows

    def prune(self) -> dict:
        """Remove snapshots no ref points to, then blobs (and partial downloads) no snapshot uses."""
        removed_snapshots: list[str] = []
        removed_blobs = 0
        freed = 0
        for ns, name, repo in list(self.repos()):
            with self.lock(ns, name):
                refs_dir = repo / "refs"
                kept = {self.read_ref(ns, name, p.name) for p in (refs_dir.iterdir() if refs_dir.is_dir() else ())}
                kept.discard(None)  # a ref file that names no version keeps nothing
                snaps = repo / "snapshots"
                for snap in sorted(snaps.iterdir()) if snaps.is_dir() else []:
                    if snap.name in kept and self.snapshot(ns, name, snap.name):
                        continue
                    freed += _remove_tree(self._inside(snap))
                    self._inside(repo / "manifests" / f"{snap.name}.json").unlink(missing_ok=True)
                    if not snap.name.startswith("."):
                        removed_snapshots.append(f"{ns}/{name}@{snap.name}")
                used = {
                    f["sha256"]
                    for v in kept
                    for f in (self.manifest(ns, name, v) or {}).get("files", [])
                }
                blobs = repo / "blobs"
                for blob in sorted(blobs.iterdir()) if blobs.is_dir() else []:
                    if blob.name not in used:
                        freed += _remove_file(self._inside(blob))
                        removed_blobs += 1
                if not any(snaps.iterdir() if snaps.is_dir() else []):
                    shutil.rmtree(self._inside(repo), ignore_errors=True)
        return {"snapshots": removed_snapshots, "blobs": removed_blobs, "freed": freed}


def _content(value: object) -> object:
    """A manifest field compared as content: files by (path, sha256, size), in any order."""
    if isinstance(value, list):
        return sorted(repr((f.get("path"), f.get("sha256"), f.get("size"))) if isinstance(f, dict) else repr(f)
                       for f in value)
    return value


def _remove_file(path: Path) -> int:
    st = path.lstat()
    path.unlink()
    return st.st_size if st.st_nlink == 1 else 0  # a hard link frees bytes only as the last one


def _remove_tree(folder: Path) -> int:
    freed = 0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            freed += _remove_file(Path(dirpath) / f)
    shutil.rmtree(folder, ignore_errors=True)
    return freed
