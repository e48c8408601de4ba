"""The one parser for adapter references, used by the client, the server, the engine and the CLI.

``ns/name`` (the ``stable`` alias, else the newest version), ``ns/name@1.2.0`` (an exact
semantic version) and ``ns/name:canary`` (an alias). Names follow ``[a-z0-9][a-z0-9._-]*`` so
that look-alikes, upper case and path tricks are refused before they reach storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from adapterhub.errors import InvalidReferenceError

# Anchored with ``\Z``, not ``$`` (which also matches before a final newline, so ``"bob\n"`` would
# pass), and ``[0-9]``, not ``\d`` (which takes any script's digits): callers elsewhere use
# ``.match``, and these patterns must still mean the whole string. Checks here use ``fullmatch``.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,95}\Z")
ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
SEMVER_RE = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z"
)
COMMIT_RE = re.compile(r"^[0-9a-f]{40}\Z")
# The Hugging Face name of the default revision: ``stable``, else the newest version.
DEFAULT_REVISION = "main"


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a valid namespace/adapter name, else raise naming the rule."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or ".." in value:
        raise InvalidReferenceError(
            f"invalid {what} {value!r}: use 1-96 characters from [a-z0-9._-], starting with a letter or digit"
        )
    return value


def check_alias(value: str) -> str:
    """Return ``value`` if it can name an alias. Names that a revision look-up reads as something
    else first (``main``, a version, a commit id) are refused: such an alias would be shadowed
    for ever, never resolved, so it is refused here, where aliases are created and named."""
    if not isinstance(value, str) or not ALIAS_RE.fullmatch(value):
        raise InvalidReferenceError(
            f"invalid alias {value!r}: use 1-64 characters from [a-z0-9._-] (no '/'), starting with a letter or digit"
        )
    if value == DEFAULT_REVISION:
        raise InvalidReferenceError(
            f"alias {value!r} is reserved: it names the default revision (the stable alias, else the newest "
            "version), as on the Hugging Face Hub"
        )
    if SEMVER_RE.fullmatch(value):
        raise InvalidReferenceError(
            f"alias {value!r} is reserved: it reads as a version; pin a version with ns/name@{value}"
        )
    if COMMIT_RE.fullmatch(value):
        raise InvalidReferenceError(f"alias {value!r} is reserved: it reads as a commit id")
    return value


def check_version(value: str) -> str:
    if not isinstance(value, str) or not SEMVER_RE.fullmatch(value):
        raise InvalidReferenceError(f"invalid version {value!r}: expected a semantic version such as 1.2.0")
    return value


def semver_key(version: str) -> tuple:
    """Sort key following semver precedence (a pre-release sorts before its release)."""
    m = SEMVER_RE.fullmatch(version) if isinstance(version, str) else None
    if not m:
        raise InvalidReferenceError(f"invalid version {version!r}")
    major, minor, patch, pre, _build = m.groups()
    pre_key: tuple = (1,)
    if pre:
        pre_key = (0, *[(0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")])
    return (int(major), int(minor), int(patch), pre_key)


@dataclass(frozen=True)
class Reference:
    """A parsed reference. At most one of ``version`` and ``alias`` is set."""

    namespace: str
    name: str
    version: str | None = None
    alias: str | None = None

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def revision(self) -> str | None:
        """The part after the name, as the HF protocol's ``revision`` would take it."""
        return self.version or self.alias

    def __str__(self) -> str:
        if self.version:
            return f"{self.repo_id}@{self.version}"
        if self.alias:
            return f"{self.repo_id}:{self.alias}"
        return self.repo_id


def parse_reference(text: str) -> Reference:
    """Parse ``ns/name``, ``ns/name@1.2.0`` or ``ns/name:alias``; raise `InvalidReferenceError`."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReferenceError("empty reference: expected ns/name, ns/name@1.2.0 or ns/name:alias")
    raw = text.strip()
    version = alias = None
    if "@" in raw:
        raw, version = raw.split("@", 1)
        check_version(version)
    elif ":" in raw:
        raw, alias = raw.split(":", 1)
        # ``ns/name:main`` is the bare reference under its Hugging Face name; the engine and the
        # server's resolve take it so, and no alias may be called ``main``
        alias = None if alias == DEFAULT_REVISION else check_alias(alias)
    parts = raw.split("/")
    if len(parts) != 2:
        raise InvalidReferenceError(
            f"invalid reference {text!r}: expected ns/name, ns/name@1.2.0 or ns/name:alias"
        )
    return Reference(check_name(parts[0], "namespace"), check_name(parts[1], "adapter name"), version, alias)


def as_reference(ref: str | Reference) -> Reference:
    """A `Reference` as it is, a string parsed (client methods accept either)."""
    return ref if isinstance(ref, Reference) else parse_reference(ref)


def looks_like_reference(text: str) -> bool:
    """True when ``text`` parses as a reference (used to tell a registry ref from a folder path)."""
    try:
        parse_reference(text)
    except InvalidReferenceError:
        return False
    return True
