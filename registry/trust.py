"""Re-checks of what the registry names, before the client turns it into a cache path or a URL.

Why: the registry speaks plain HTTP (SECURITY.md "No TLS"), so a hostile server, or anything on the
network path, can answer a resolve or a manifest with ``../..`` in a name, a version or a file path.
The cache builds folders from those answers, so each one is held against the reference the caller
asked for here, and refused with what the registry said and what was expected, before `Cache` or a
request URL sees it. `Cache` proves every path lies under its root as a second line.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from adapterhub.errors import InvalidAdapterError, InvalidReferenceError, RegistryError
from adapterhub.format import MAX_FILES_PER_VERSION, file_set_problem
from adapterhub.registry.cache import safe_relpath
from adapterhub.registry.reference import Reference, check_name, check_version

UNTRUSTED = "UntrustedAnswer"  # the RegistryError code of every refusal here
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def refuse(ref: Reference, what: str, said: object, expected: str) -> RegistryError:
    """The error for an answer the client will not use: names the reference, the value, the rule."""
    return RegistryError(f"refusing the registry's answer for {ref}: it names {what} {said!r}, expected "
                         f"{expected} (a broken or hostile registry, or something on the network path)",
                         code=UNTRUSTED)


def _checked(ref: Reference, what: str, said: object, check: Callable[[object], object], expected: str | None,
             rule: str) -> str:
    try:
        check(said)
    except InvalidReferenceError:
        raise refuse(ref, what, said, rule if expected is None else repr(expected)) from None
    if expected is not None and said != expected:
        raise refuse(ref, what, said, repr(expected))
    return said


def checked_resolution(ref: Reference, body: object) -> tuple[str, str, str, str | None]:
    """``(namespace, name, version, commit)`` of a resolve answer, each held against ``ref``.

    The namespace and name must be the ones asked for (the server echoes them; any other answer
    would pull one adapter's bytes into another's folder), the version a semantic version and, for
    a pinned reference, the pinned one.
    """
    if not isinstance(body, dict):
        raise refuse(ref, "a resolve answer of type", type(body).__name__, "a JSON object")
    namespace = _checked(ref, "namespace", body.get("namespace", ref.namespace), lambda v: check_name(v, "namespace"),
                         ref.namespace, "a valid namespace")
    name = _checked(ref, "adapter name", body.get("name", ref.name), check_name, ref.name, "a valid adapter name")
    version = _checked(ref, "version", body.get("version"), check_version, ref.version, "a semantic version")
    return namespace, name, version, _commit(ref, body.get("commit"))


def _commit(ref: Reference, commit: object) -> str | None:
    if commit is not None and not (isinstance(commit, str) and COMMIT_RE.match(commit)):
        raise refuse(ref, "commit", commit, "40 lowercase hex digits")
    return commit


def checked_manifest(ref: Reference, body: object, version: str, commit: str | None = None) -> dict:
    """The VersionOut the registry sent for ``version``, once it is that version and its files are
    entries the cache can hold (safe relative paths, sha256 digests, sizes).

    ``commit`` (from a resolve) must match too, so a manifest cannot swap content under a known
    version. A path that is also another path's folder, or a duplicate, is refused here as a typed
    error instead of an ``OSError`` halfway through building the snapshot.
    """
    if not isinstance(body, dict):
        raise refuse(ref, "a manifest of type", type(body).__name__, "a JSON object")
    _checked(ref, "manifest version", body.get("version"), check_version, version, "a semantic version")
    if commit is not None and body.get("commit") != commit:
        raise refuse(ref, "manifest commit", body.get("commit"), f"{commit!r} (the resolved commit)")
    _commit(ref, body.get("commit"))
    files = body.get("files")
    if not isinstance(files, list) or len(files) > MAX_FILES_PER_VERSION:
        raise refuse(ref, "files", type(files).__name__ if not isinstance(files, list) else f"{len(files)} entries",
                     f"a list of at most {MAX_FILES_PER_VERSION} entries")
    paths: set[str] = set()
    for entry in files:
        _check_entry(ref, entry)
        if entry["path"] in paths:
            raise InvalidAdapterError(f"refusing the registry's manifest for {ref}: {entry['path']!r} is listed twice")
        paths.add(entry["path"])
    problem = file_set_problem(paths)  # the server's rule (adapterhub/format.py), for older versions too
    if problem:
        raise InvalidAdapterError(f"refusing the registry's manifest for {ref}: {problem}")
    return body


def _check_entry(ref: Reference, entry: object) -> None:
    if not isinstance(entry, dict):
        raise refuse(ref, "a file entry", entry, "an object with path, sha256 and size")
    safe_relpath(entry.get("path"))
    sha = entry.get("sha256")
    if not (isinstance(sha, str) and SHA256_RE.match(sha)):
        raise InvalidAdapterError(f"refusing malformed sha256 {sha!r} in the registry's manifest")
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise refuse(ref, f"size of {entry.get('path')!r}", size, "a whole number of bytes, 0 or more")
