"""The Hugging Face write routes (repo creation, preupload, the NDJSON commit, LFS): every
catalogued bad input answers a specific 4xx that names what was wrong, and writes nothing: no
row, no blob, no temp file left in the blob store.

The catalogue's registry allows uploads of at most 1 MiB (`MAX_UPLOAD`), which also bounds a
file sent inside a commit.
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.bad_inputs.support import (
    MAX_UPLOAD,
    NAME_RULE,
    NOT_JSON_HEADER,
    PICKLE,
    PICKLE_HINT,
    Refusal,
    World,
    check_refusal,
    parse_raw,
    raw_request,
)
from tests.registry.factory import adapter_files, sha

TARGET = "alice/target"
HIDDEN_MSG = "adapter secret/hidden not found (or you may not read it)"
GOOD = adapter_files(7)


def header(summary: str = "a commit") -> dict:
    return {"key": "header", "value": {"summary": summary, "description": ""}}


def file_line(path: str, data: bytes) -> dict:
    return {"key": "file", "value": {"content": base64.b64encode(data).decode(), "path": path, "encoding": "base64"}}


def ndjson(*items: dict | bytes) -> bytes:
    return b"".join((i if isinstance(i, bytes) else json.dumps(i).encode()) + b"\n" for i in items)


def commit(body: bytes, repo: str = TARGET, rev: str = "main", who: str | None = "write"):
    def send(w: World):
        return w.client(who).post(f"/api/models/{repo}/commit/{rev}", content=body,
                                  headers={"Content-Type": "application/x-ndjson"})
    return send


def post(path: str, body: dict, who: str | None = "write"):
    return lambda w: w.client(who).post(path, json=body)


def preupload(files: list[dict], repo: str = TARGET, who: str = "write"):
    return post(f"/api/models/{repo}/preupload/main", {"files": files}, who)


def cut_commit(w: World) -> None:
    """A commit whose connection ends half-way through a file line: no answer can be read."""
    body = ndjson(header(), file_line("adapter_model.safetensors", GOOD["adapter_model.safetensors"]))
    head = (f"POST /api/models/{TARGET}/commit/main HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer "
            f"{w.tokens['write']}\nContent-Type: application/x-ndjson\nContent-Length: {len(body)}\n")
    answer = raw_request(w, head, body[: len(body) // 2], half_close=True)
    return parse_raw(answer, "POST") if answer else None


def lfs_put(data: bytes, signature: str = "0" * 64, **query):
    params = {"size": len(data), "user": 2, "expires": 4102444800, "signature": signature, **query}
    return lambda w: w.client(None).put(f"/api/lfs/upload/{sha(data)}", params=params, content=data)


def lfs_put_wrong_bytes(w: World):
    """A URL signed (by a real batch answer) for one object, used to send other bytes."""
    data = b"signed for these bytes"
    r = w.client("write").post(f"/{TARGET}.git/info/lfs/objects/batch", json={
        "operation": "upload", "transfers": ["basic"], "objects": [{"oid": sha(data), "size": len(data)}]})
    href = r.json()["objects"][0]["actions"]["upload"]["href"]
    return w.client(None).put(href, content=b"other bytes, same size!"[: len(data)])


PICKLE_MSG = f"refused 'adapter_model.bin': {PICKLE_HINT}"

CASES = [
    # -- the commit ------------------------------------------------------------------------
    Refusal("pickle in a commit", commit(ndjson(header(), file_line("adapter_model.bin", PICKLE))), 422,
            "PickleRefused", re.compile(r"refused 'adapter_model\.bin': pickle-based weights .*")),
    Refusal("bad safetensors header", commit(ndjson(header(), file_line("adapter_model.safetensors", NOT_JSON_HEADER))),
            422, "BadSafetensors", re.compile(r"adapter_model\.safetensors: .*")),
    Refusal("path escaping the folder", commit(ndjson(header(), file_line("../escape.txt", b"x"))), 422, "BadPath",
            "bad path '../escape.txt': '..' segments are not allowed"),
    Refusal("read-only token", commit(ndjson(header(), file_line("notes.txt", b"x")), who="read"), 403, "Forbidden",
            "your token has no write scope on namespace 'alice'"),
    Refusal("private namespace of someone else", commit(ndjson(header(), file_line("notes.txt", b"x")),
                                                        repo="secret/hidden"), 404, "RepoNotFound", HIDDEN_MSG,
            twin=commit(ndjson(header(), file_line("notes.txt", b"x")), repo="secret/hiddex")),
    Refusal("commit naming an existing version",
            commit(ndjson(header(), file_line("README.md", b"---\nversion: 1.0.0\n---\nnew card\n"))), 409,
            "VersionExists", "version 1.0.0 of 'target' exists with other files; versions are immutable: name a new "
                             "version (README.md's version:) or none"),
    Refusal("malformed NDJSON line", commit(ndjson(header(), b'{"key": "file", "value": ')), 400, "InvalidCommit",
            re.compile(r"commit line 2: not a JSON object \(.*\)")),
    Refusal("oversize regular file", commit(ndjson(header(), file_line("big.txt", b"x" * (MAX_UPLOAD + 1)))), 413,
            "TooLarge", f"a file sent inside a commit may be at most {MAX_UPLOAD} bytes (larger files go by LFS: the "
                        "preupload answers 'lfs')"),
    Refusal("no header first", commit(ndjson(file_line("notes.txt", b"x"))), 400, "InvalidCommit",
            "commit line 1: the first line must be the \"header\", not 'file'"),
    Refusal("unknown operation", commit(ndjson(header(), {"key": "renameFile", "value": {"path": "a"}})), 400,
            "InvalidCommit", "commit line 2: unknown operation 'renameFile'; expected one of file, lfsFile, "
                             "deletedFile, deletedFolder"),
    Refusal("content not base64", commit(ndjson(header(), {"key": "file", "value": {
        "content": "not base64!", "path": "notes.txt", "encoding": "base64"}})), 400, "InvalidCommit",
        "commit line 2: content is not valid base64"),
    Refusal("deleting a missing file", commit(ndjson(header(), {"key": "deletedFile", "value": {"path": "nope.txt"}},
                                                     file_line("notes.txt", b"x"))),
            404, "EntryNotFound", "cannot delete 'nope.txt': not in version 1.0.0"),
    Refusal("an LFS file never uploaded", commit(ndjson(header(), {"key": "lfsFile", "value": {
        "path": "w.safetensors", "algo": "sha256", "oid": sha(b"never sent"), "size": 10}})), 422, "BlobMissing",
        "upload these files first (their blobs are missing): w.safetensors"),
    Refusal("commit to a version", commit(ndjson(header(), file_line("notes.txt", b"x")), rev="1.0.0"), 409,
            "RevisionImmutable", "'1.0.0' names a version, and versions are immutable: commit to main or to a branch "
                                 "(an alias)"),
    Refusal("commit to a missing branch", commit(ndjson(header(), file_line("notes.txt", b"x")), rev="nope"), 404,
            "RevisionNotFound", "no branch (alias) 'nope': create it first (create_branch; `hf upload --revision` "
                                "does that itself)"),
    Refusal("card metadata that is not YAML", commit(ndjson(header(), file_line("README.md", b"---\na: [\n---\n"))),
            400, "InvalidCard", re.compile(r"README\.md: the card metadata is not valid YAML: .*")),
    Refusal("connection cut mid-commit", cut_commit, None),
    # -- preupload, repos, refs ------------------------------------------------------------
    Refusal("pickle at preupload", preupload([{"path": "adapter_model.bin", "size": 10, "sample": ""}]), 422,
            "PickleRefused", re.compile(r"refused 'adapter_model\.bin': pickle-based weights .*")),
    Refusal("create repo in a missing namespace", post("/api/repos/create", {"name": "x", "organization": "nobody"}),
            404, "RepoNotFound", "namespace 'nobody' not found (or you may not read it): an admin creates it with "
                                 "`adapterhub namespace create nobody`"),
    Refusal("create repo, bad name", post("/api/repos/create", {"name": "Bad Name", "organization": "alice"}), 400,
            "InvalidRepoName", f"invalid adapter name 'Bad Name': {NAME_RULE}"),
    Refusal("create repo, read-only token", post("/api/repos/create", {"name": "x", "organization": "alice"}, "read"),
            403, "Forbidden", "your token has no write scope on namespace 'alice'"),
    Refusal("create a private repo in a public namespace",
            post("/api/repos/create", {"name": "x", "organization": "alice", "visibility": "private"}), 400,
            "VisibilityMismatch", "namespace 'alice' is public, and here privacy belongs to the namespace: push a "
                                  "private adapter to a private namespace (`adapterhub namespace create NAME --private`)"),
    Refusal("create a dataset", post("/api/repos/create", {"name": "x", "organization": "alice", "type": "dataset"}),
            400, "RepoTypeUnsupported", "this registry holds models (adapters) only, not datasets"),
    Refusal("whoami-v2 without a token", lambda w: w.client(None).get("/api/whoami-v2"), 401, "Unauthorized",
            "this call needs a token (Authorization: Bearer <token>)"),
    Refusal("branch with a slash", post(f"/api/models/{TARGET}/branch/a%2Fb", {}), 400, "InvalidRevision",
            re.compile(r"invalid branch 'a/b': .*")),
    Refusal("branch named as a version", post(f"/api/models/{TARGET}/branch/2.0.0", {}), 400, "InvalidRevision",
            "branch '2.0.0' is reserved: it reads as a version; pin a version with ns/name@2.0.0"),
    Refusal("tag that exists", post(f"/api/models/{TARGET}/tag/main", {"tag": "stable"}), 409, "RefExists",
            "tag 'stable' exists"),
    # -- LFS -------------------------------------------------------------------------------
    Refusal("LFS upload, forged signature", lfs_put(b"forged"), 403, "Forbidden",
            "the upload URL's signature does not match (ask the LFS batch endpoint for a new one)"),
    Refusal("LFS upload, other bytes than signed", lfs_put_wrong_bytes, 422, "HashMismatch",
            re.compile(r"body hashes to [0-9a-f]{64}, not [0-9a-f]{64}")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hf_write_routes_refuse(world, case):
    check_refusal(world, case)
