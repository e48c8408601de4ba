"""The catalogue's shared parts: the seeded registry (`World`), one HTTP refusal (`Refusal`) and
how it is checked, and the bad files every entry point is fed.

A case is sent once; the check is the exact status, ``code`` and ``detail`` (``X-Error-Code`` too),
then that no row and no blob changed. A private adapter's refusal must also look exactly like a
truly missing one's (its ``twin``: a name of the same length that exists nowhere).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import struct
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.client.support import make_adapter
from tests.helpers.live_server import ServerHandle
from tests.helpers.snapshots import assert_still, registry_state
from tests.registry.factory import client, raw_safetensors

MAX_UPLOAD = 1024 * 1024
AUTH_FAIL_LIMIT = 50  # failed authentications per address and minute
FIVE_GB = 5 * 1024**3
NAME_RULE = "use 1-96 characters from [a-z0-9._-], starting with a letter or digit"
ALIAS_RULE = "use 1-64 characters from [a-z0-9._-] (no '/'), starting with a letter or digit"
SEMVER_RULE = "expected a semantic version such as 1.2.0"
LOOKALIKE = "t\u0430rget"  # Cyrillic a: renders as "target"
LOOKALIKE_NS = "\u0430lice"  # renders as "alice"
LONG_NAME = "x" * 300
AUTH_HINT = "(check the token with `adapterhub whoami`, or `adapterhub login` again)"
PICKLE_HINT = "pickle-based weights can run code when loaded; save them as safetensors"


@dataclass
class World:
    """The seeded registry every catalogue module shares (see conftest)."""

    server: ServerHandle
    admin: httpx.Client
    tokens: dict[str, str]
    _clients: dict[str, httpx.Client] = field(default_factory=dict)

    def client(self, who: str | None = None) -> httpx.Client:
        """An httpx client holding token ``who`` (a key of ``tokens``), anonymous for None."""
        if who not in self._clients:
            self._clients[who] = client(self.server.url, self.tokens[who] if who else None)
        return self._clients[who]

    def token_id(self, who: str) -> str:
        return self.tokens[who].split("_")[1]

    def state(self) -> dict:
        return registry_state(self.server.home)

    def close(self) -> None:
        for c in self._clients.values():
            c.close()


Detail = str | re.Pattern | Callable[[World], "str | re.Pattern"]


@dataclass(frozen=True)
class Refusal:
    """One bad request and its exact answer. ``setup`` runs before the snapshot (say, uploading the
    blobs a bad manifest names); ``twin`` sends the same request for something that does not exist."""

    id: str
    send: Callable[[World], httpx.Response | None]
    status: int | None
    code: str | None = None
    detail: Detail | None = None
    setup: Callable[[World], object] | None = None
    twin: Callable[[World], httpx.Response] | None = None
    body: dict | None = None  # the exact JSON of an answer that is not an error (an empty search)


def check_refusal(world: World, case: Refusal) -> None:
    if case.setup:
        case.setup(world)
    before = world.state()
    r = case.send(world)
    if case.status is None:  # the connection was dropped mid-request: there is no answer to read
        assert r is None
    else:
        assert r.status_code == case.status, r.text
        if case.body is not None:
            assert r.json() == case.body
        if case.code is not None:
            assert r.headers["x-error-code"] == case.code
            detail = case.detail(world) if callable(case.detail) else case.detail
            got = r.json()["detail"] if r.request.method != "HEAD" else r.headers["x-error-message"]
            if isinstance(detail, re.Pattern):
                assert detail.fullmatch(got), got
            else:
                assert got == detail
            if r.request.method != "HEAD":
                assert r.json()["code"] == case.code
        if case.twin is not None:
            assert_looks_missing(r, case.twin(world))
    assert_still(before, world.state)


def assert_looks_missing(r: httpx.Response, twin: httpx.Response) -> None:
    """A hidden thing answers as a missing one: same status, headers, length; the body differs only
    by the name asked for (twins are named ``hidden``/``hiddex``, ``secret``/``secrex``)."""
    def named(text: str) -> str:
        return text.replace("hiddex", "hidden").replace("secrex", "secret")

    assert r.status_code == twin.status_code
    assert sorted((k, v) for k, v in r.headers.multi_items() if k != "date") == \
        sorted((k, named(v)) for k, v in twin.headers.multi_items() if k != "date")
    assert r.content == named(twin.content.decode()).encode()


def raw_request(world: World, head: str, body: bytes = b"", half_close: bool = False) -> bytes | None:
    """Send a hand-written request on a fresh connection (``half_close``: then end our side, as a
    client that dies mid-body does) and return the whole answer, None when the server hung up
    without one: for what httpx will not send."""
    import socket

    with socket.create_connection(("127.0.0.1", world.server.port)) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out or None


def parse_raw(answer: bytes, method: str = "PUT") -> httpx.Response:
    """An httpx response from raw bytes, so raw answers are checked like any other."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [tuple(h.split(": ", 1)) for h in lines[1:]]
    return httpx.Response(status, headers=headers, content=body, request=httpx.Request(method, "http://raw/"))


# -- bad files -----------------------------------------------------------------------------
def tensor_header(**tensors: tuple[str, list[int], list[int]]) -> dict:
    return {name: {"dtype": dtype, "shape": shape, "data_offsets": offs} for name, (dtype, shape, offs) in tensors.items()}


HUGE_HEADER = struct.pack("<Q", 2**62) + b"{}"
NOT_JSON_HEADER = raw_safetensors(b"{not json")
PAST_THE_END = raw_safetensors(tensor_header(w=("F32", [2], [0, 8])), b"\0" * 4)
OVERLAPPING = raw_safetensors(tensor_header(a=("F32", [2], [0, 8]), b=("F32", [1], [4, 8])), b"\0" * 8)
UNKNOWN_DTYPE = raw_safetensors(tensor_header(w=("Q4", [2], [0, 8])), b"\0" * 8)
# a dtype safetensors has and the engine cannot load: refused by the server too
UNUSABLE_DTYPE = raw_safetensors(tensor_header(w=("F8_E4M3", [2], [0, 2])), b"\0" * 2)


def zip_bomb() -> bytes:
    """32 MiB of zeros deflated to ~32 KiB, fixed timestamp (so its bytes never change)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("adapter_model.safetensors", date_time=(1980, 1, 1, 0, 0, 0))
        z.writestr(info, b"\0" * (32 << 20), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def gzip_bomb() -> bytes:
    """64 MiB of zeros as a ~64 KiB gzip stream."""
    return gzip.compress(b"\0" * (64 << 20), mtime=0)


class _Tripwire:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def tripwire_pickle(marker: Path) -> bytes:
    """A real pickle that creates ``marker`` when it is unpickled: proof that nobody unpickled it."""
    return pickle.dumps(_Tripwire(marker))


TRIPWIRE = Path(tempfile.gettempdir()) / f"adapterhub-tripwire-{uuid.uuid4().hex}"
PICKLE = tripwire_pickle(TRIPWIRE)  # every pickle the catalogue feeds anyone


# -- adapter folders to push -------------------------------------------------------------
def _with(name: str, edit: Callable[[Path], object]) -> Callable[[Path], Path]:
    """A folder-maker: a good adapter folder under ``root/name``, then ``edit`` applied to it."""
    def make(root: Path) -> Path:
        folder = make_adapter(root / name, seed=len(name))
        edit(folder)
        return folder
    return make


def write_file(path: str, data: bytes) -> Callable[[Path], object]:
    return lambda folder: (folder / path).write_bytes(data)


def _many(folder: Path) -> None:
    (folder / "data").mkdir()
    for i in range(10_000):
        (folder / "data" / f"{i}.txt").write_bytes(b"")


def pickle_only(suffix: str) -> Callable[[Path], object]:
    """Replace the safetensors weights by a (tripwire) pickle named ``adapter_model<suffix>``."""
    def edit(folder: Path) -> None:
        (folder / "adapter_model.safetensors").unlink()
        (folder / f"adapter_model{suffix}").write_bytes(PICKLE)
    return edit


def edit_config(**changes) -> Callable[[Path], object]:
    """Change keys of ``adapter_config.json``."""
    def edit(folder: Path) -> None:
        cfg = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**cfg, **changes}))
    return edit


FOLDERS: dict[str, Callable[[Path], Path]] = {
    "symlink": _with("symlink", lambda f: os.symlink(f / "adapter_config.json", f / "link.json")),
    **{f"pickle_{s}": _with(f"pickle-{s}", pickle_only(f".{s}")) for s in ("bin", "pt", "pkl")},
    "control": _with("control", write_file("bad\x1bname.json", b"{}")),
    "bidi": _with("bidi", write_file("a\u202etxt.json", b"{}")),
    "case_twins": _with("case-twins", lambda f: [(f / n).write_bytes(b"# twin\n") for n in ("NOTES.md", "notes.md")]),
    "many": _with("many", _many),
    "empty": lambda root: (root / "empty").mkdir() or root / "empty",
    "config_not_json": _with("config-not-json", write_file("adapter_config.json", b"{not json")),
    "zero_weights": _with("zero", write_file("adapter_model.safetensors", b"")),
    "huge_header": _with("huge-header", write_file("adapter_model.safetensors", HUGE_HEADER)),
    "r0": _with("r0", edit_config(r=0)),
    "good": _with("good", lambda f: None),
}


def assert_only_orphans_added(before: dict, after: dict) -> None:
    """The server refused a push after its blobs went up: every row but the blob tables, and the
    cache, are as before; the blob table and the blob folder gained the same new blobs only, and
    the uploader's proofs of possession (``blob_upload``) only grew."""
    rest = [k for k in before["rows"] if k not in ("blob", "blob_upload")]
    assert {k: after["rows"][k] for k in rest} == {k: before["rows"][k] for k in rest}
    assert after["cache"] == before["cache"]
    new_rows = set(after["rows"]["blob"]) - set(before["rows"]["blob"])
    assert set(before["rows"]["blob"]) <= set(after["rows"]["blob"]) and set(before["blobs"]) <= set(after["blobs"])
    assert len(set(after["blobs"]) - set(before["blobs"])) == len(new_rows)  # on disk: exactly the new rows
    assert set(before["rows"]["blob_upload"]) <= set(after["rows"]["blob_upload"])


class _TokenIds:
    def __init__(self, world: World):
        self.world = world

    def __format__(self, who: str) -> str:
        return self.world.token_id(who)


def fill(message: str, world: World, folders: dict[str, Path]) -> str:
    """An expected message with ``{folder key}`` as that folder's path and ``{id:who}`` as the public
    id of token ``who``."""
    return message.format(**{k: str(v) for k, v in folders.items()}, id=_TokenIds(world))
