"""The Hugging Face protocol routes: every catalogued bad input answers the error a `huggingface_hub`
client maps (``X-Error-Code``), says what was wrong, and changes nothing (download counts included).

These routes read any token they do not know as anonymous (a real ``HF_TOKEN`` may be lying
around), so a bad, expired or revoked token on a private adapter answers exactly as a missing
adapter does.
"""

from __future__ import annotations

import pytest

from tests.bad_inputs.support import LONG_NAME, LOOKALIKE, NAME_RULE, Refusal, World, check_refusal

FILE = "adapter_config.json"
HIDDEN_MSG = "adapter secret/hidden not found (or you may not read it)"


def get(path: str, who: str | None = None, method: str = "GET", **headers: str):
    def send(w: World):
        c = w.client(who)
        return c.request(method, path, headers=headers)
    return send


def as_bearer(token: str):
    """A request with a raw ``Authorization`` value (one the world does not hold as a client)."""
    return {"Authorization": token}


def no_file(path: str) -> str:
    return f"version 1.0.0 has no file {path!r}"


def private(id: str, path: str, twin: str, who: str | None = None, method: str = "GET", **headers: str) -> Refusal:
    return Refusal(id, get(path, who, method, **headers), 404, "RepoNotFound", HIDDEN_MSG,
                   twin=get(twin, who, method, **headers))


CASES = [
    Refusal("unknown repo", get("/api/models/alice/nothing"), 404, "RepoNotFound",
            "adapter alice/nothing not found (or you may not read it)"),
    Refusal("upper case", get(f"/Alice/target/resolve/main/{FILE}"), 404, "RepoNotFound",
            f"invalid namespace 'Alice': {NAME_RULE}"),
    Refusal("look-alike name", get(f"/api/models/alice/{LOOKALIKE}"), 404, "RepoNotFound",
            f"invalid adapter name {LOOKALIKE!r}: {NAME_RULE}"),
    Refusal("leading dot", get("/api/models/alice/.target/tree/main"), 404, "RepoNotFound",
            f"invalid adapter name '.target': {NAME_RULE}"),
    Refusal("300 characters", get(f"/alice/{LONG_NAME}/resolve/main/{FILE}"), 404, "RepoNotFound",
            f"invalid adapter name {LONG_NAME!r}: {NAME_RULE}"),
    Refusal("revision not semver", get(f"/alice/target/resolve/1.0/{FILE}"), 404, "RevisionNotFound",
            "no version or alias '1.0'"),
    Refusal("revision alias/with/slash", get("/api/models/alice/target/revision/alias%2Fwith%2Fslash"), 404,
            "RevisionNotFound", "no version or alias 'alias/with/slash'"),
    Refusal("path with ..", get(f"/alice/target/resolve/main/%2E%2E/%2E%2E/{FILE}"), 404, "EntryNotFound",
            no_file(f"../../{FILE}")),
    Refusal("absolute path", get("/alice/target/resolve/main//etc/passwd"), 404, "EntryNotFound",
            no_file("/etc/passwd")),
    Refusal("NUL in a path", get("/alice/target/resolve/main/adapter%00config.json"), 404, "EntryNotFound",
            no_file("adapter\x00config.json")),
    Refusal("missing file, HEAD", get("/alice/target/resolve/main/adapter_model.bin", method="HEAD"), 404,
            "EntryNotFound", no_file("adapter_model.bin")),
    Refusal("tree path ..", get("/api/models/alice/target/tree/main/%2E%2E"), 404, "EntryNotFound",
            "no path '..' in version 1.0.0"),
    Refusal("range past the end", get(f"/alice/target/resolve/main/{FILE}", Range="bytes=999999-"), 416),
    private("private repo info", "/api/models/secret/hidden", "/api/models/secret/hiddex"),
    private("private revision, another user's token", "/api/models/secret/hidden/revision/1.0.0",
            "/api/models/secret/hiddex/revision/1.0.0", who="other"),
    private("private file, unknown token", f"/secret/hidden/resolve/main/{FILE}", f"/secret/hiddex/resolve/main/{FILE}",
            **as_bearer("Bearer ah_0123456789abcdef_guess")),
    private("private file HEAD, expired token", f"/secret/hidden/resolve/main/{FILE}",
            f"/secret/hiddex/resolve/main/{FILE}", who="expired", method="HEAD"),
    private("private tree, revoked token", "/api/models/secret/hidden/tree/main?recursive=true",
            "/api/models/secret/hiddex/tree/main?recursive=true", who="revoked"),
    private("private file, malformed header", f"/secret/hidden/resolve/1.0.0/{FILE}",
            f"/secret/hiddex/resolve/1.0.0/{FILE}", **as_bearer("Basic YWxpY2U6cHc=")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hf_routes_refuse(world, case):
    check_refusal(world, case)

