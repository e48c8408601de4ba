"""`Hub`, the Python client: every catalogued bad input raises the typed error with the exact
message, and changes nothing in the registry or in the local cache.

What the client can see from names alone (symlinks, pickles, control characters, 10,000 files,
bad references) is refused before it creates an adapter or uploads a byte. What only the server
can judge (a file's contents) is refused at publish; the blobs uploaded by then stay behind as
unreferenced content (as in an OCI registry before garbage collection), so those cases check
that every row but the blob table is unchanged and that the only new blobs are orphans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapterhub.errors import (
    AdapterNotFoundError,
    AuthenticationError,
    InvalidAdapterError,
    InvalidReferenceError,
    RegistryError,
)
from adapterhub.registry.client import Hub
from tests.bad_inputs.support import (
    ALIAS_RULE,
    AUTH_HINT,
    LONG_NAME,
    LOOKALIKE,
    NAME_RULE,
    PICKLE_HINT,
    SEMVER_RULE,
    TRIPWIRE,
    World,
    assert_only_orphans_added,
    fill,
)
from tests.helpers.snapshots import assert_still, folder_state


@dataclass(frozen=True)
class HubCase:
    """``call(hub, folders)`` must raise ``error`` with exactly ``message`` (``{folder}`` and ``{id:...}``
    filled in); ``orphans``: the server refused after the blobs were uploaded."""

    id: str
    call: Callable[[Hub, dict[str, Path]], object]
    error: type[Exception]
    message: str
    who: str | None = "write"
    orphans: bool = False


def push(folder: str, ref: str = "alice/target", version: str = "2.0.0", **kw):
    return lambda hub, folders: hub.push(folders[folder], ref, version=version, **kw)


def pull(ref: str):
    return lambda hub, folders: hub.pull(ref)


CASES = [
    # -- uploads -------------------------------------------------------------------------
    HubCase("symlink in the folder", push("symlink"), InvalidAdapterError,
            "refusing to push {symlink}/link.json: symlinks are not allowed in an adapter folder"),
    *[HubCase(f"pickle .{s}", push(f"pickle_{s}"), InvalidAdapterError,
              f"refusing to push {{pickle_{s}}}/adapter_model.{s}: {PICKLE_HINT}") for s in ("bin", "pt", "pkl")],
    HubCase("control character in a name", push("control"), InvalidAdapterError,
            "refusing to push '{control}/bad\\x1bname.json': control characters are not allowed"),
    HubCase("bidi override in a name", push("bidi"), InvalidAdapterError,
            "refusing to push '{bidi}/a\\u202etxt.json': invisible format characters are not allowed (U+202E)"),
    HubCase("case twins", push("case_twins"), InvalidAdapterError,
            "refusing to push {case_twins}: 'NOTES.md' and 'notes.md' differ only in case or Unicode form: "
            "one would overwrite the other"),
    HubCase("10,000 files", push("many"), InvalidAdapterError,
            "refusing to push {many}: it holds more than 1000 files, the most a version may hold"),
    HubCase("empty folder", push("empty"), InvalidAdapterError, "{empty} is empty: nothing to push"),
    HubCase("0-byte weights", push("zero_weights"), RegistryError,
            "adapter_model.safetensors: 0 bytes is too short for a safetensors file", orphans=True),
    HubCase("header length 2^62", push("huge_header"), RegistryError,
            f"adapter_model.safetensors: header length {2**62} exceeds the limit or the file size (10 bytes)",
            orphans=True),
    HubCase("existing version", push("good", version="1.0.0"), RegistryError,
            "version 1.0.0 of 'target' exists; versions are immutable", orphans=True),
    # -- adapter_config.json -------------------------------------------------------------
    HubCase("config not json", push("config_not_json"), InvalidAdapterError,
            "{config_not_json}/adapter_config.json is not valid JSON: Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1)"),
    HubCase("r = 0", push("r0"), RegistryError, "adapter_config.json: r must be a positive integer, got 0",
            orphans=True),
    # -- names and references ------------------------------------------------------------
    HubCase("upper case", push("good", "Alice/target"), InvalidReferenceError, f"invalid namespace 'Alice': {NAME_RULE}"),
    HubCase("look-alike", pull(f"alice/{LOOKALIKE}"), InvalidReferenceError,
            f"invalid adapter name {LOOKALIKE!r}: {NAME_RULE}"),
    HubCase("leading dot", pull("alice/.target"), InvalidReferenceError, f"invalid adapter name '.target': {NAME_RULE}"),
    HubCase("300 characters", push("good", f"alice/{LONG_NAME}"), InvalidReferenceError,
            f"invalid adapter name {LONG_NAME!r}: {NAME_RULE}"),
    HubCase("@not-semver", pull("alice/target@not-semver"), InvalidReferenceError,
            f"invalid version 'not-semver': {SEMVER_RULE}"),
    HubCase("push --version not-semver", push("good", version="1.0"), InvalidReferenceError,
            f"invalid version '1.0': {SEMVER_RULE}"),
    HubCase(":alias/with/slash", pull("alice/target:alias/with/slash"), InvalidReferenceError,
            f"invalid alias 'alias/with/slash': {ALIAS_RULE}"),
    HubCase("unknown adapter", pull("alice/targex"), AdapterNotFoundError,
            "adapter alice/targex not found (or you may not read it) (did you mean alice/target?)"),
    HubCase("unknown version", pull("alice/target@9.9.9"), AdapterNotFoundError, "version '9.9.9' not found"),
    # -- auth ----------------------------------------------------------------------------
    HubCase("expired token", pull("alice/target"), AuthenticationError,
            "token {id:expired} expired at 2000-01-01 00:00 UTC " + AUTH_HINT, who="expired"),
    HubCase("read-only token pushes", push("good"), AuthenticationError,
            "uploading blobs needs a write scope " + AUTH_HINT, who="read"),
    HubCase("another namespace", push("good", "bob/target"), AuthenticationError,
            "your token has no write scope on namespace 'bob' " + AUTH_HINT),
    HubCase("private adapter", pull("secret/hidden"), AdapterNotFoundError,
            "adapter secret/hidden not found (or you may not read it)", who=None),
    HubCase("near a private name", pull("secret/hiddem"), AdapterNotFoundError,  # never "did you mean secret/hidden"
            "adapter secret/hiddem not found (or you may not read it)", who=None),
]


@pytest.fixture(scope="module")
def cache(world, tmp_path_factory) -> Path:
    """A cache that already holds ``alice/target@1.0.0``, so that there is something to keep."""
    cache = tmp_path_factory.mktemp("cache")
    with Hub(world.server.url, world.tokens["write"], cache_dir=cache, progress=False) as hub:
        hub.pull("alice/target@1.0.0")
    return cache


def _state(world: World, cache: Path) -> dict:
    return {**world.state(), "cache": folder_state(cache)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hub_refuses(world, folders, cache, case):
    message = fill(case.message, world, folders)
    before = _state(world, cache)
    with Hub(world.server.url, world.tokens[case.who] if case.who else None, cache_dir=cache, progress=False) as hub:
        with pytest.raises(case.error) as info:
            case.call(hub, folders)
    assert str(info.value) == message
    if case.orphans:
        assert_only_orphans_added(before, _state(world, cache))
    else:
        assert_still(before, lambda: _state(world, cache))
    assert not TRIPWIRE.exists(), "a pickle was unpickled"
