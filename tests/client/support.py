"""Small factories shared by the client and CLI tests: adapter folders and local HTTP servers."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from safetensors.numpy import save_file


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_adapter(folder: Path, *, seed: int = 0, card: bool = True, base_model: str = "tiny/base",
                 extra_bytes: int = 0, method: str = "LORA") -> Path:
    """A small PEFT-style LoRA folder (config + safetensors), with our card unless ``card=False``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {
        "base_model.model.layer.0.q_proj.lora_A.weight": rng.standard_normal((4, 16)).astype(np.float32),
        "base_model.model.layer.0.q_proj.lora_B.weight": np.zeros((16, 4), dtype=np.float32),
    }
    if extra_bytes:
        tensors["base_model.model.layer.0.v_proj.lora_A.weight"] = rng.integers(
            0, 255, size=extra_bytes, dtype=np.uint8
        )
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": method, "base_model_name_or_path": base_model, "r": 4, "lora_alpha": 8,
              "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    if card:
        (folder / "adapterhub.json").write_text(json.dumps({
            "method": method.lower(), "base_model": {"id": base_model}, "task": "text-classification",
            "description": f"test adapter {seed}", "tags": ["test"], "license": "apache-2.0",
        }))
    return folder


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            body = json.dumps({"detail": f"no file {self.path}", "code": "EntryNotFound"}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None and len(body) > srv.cut_after:
            self.wfile.write(body[: srv.cut_after])  # then drop the connection mid-body
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextmanager
def range_server(files: dict[str, bytes], *, honour_range: bool = True,
                 cut_after: int | None = None) -> Iterator[http.server.ThreadingHTTPServer]:
    """A tiny file server that honours ``Range: bytes=N-``; ``.requests`` logs (path, Range)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    srv.files, srv.honour_range, srv.cut_after, srv.requests = files, honour_range, cut_after, []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards to the real registry, logging requests; can slow responses down to a trickle."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        srv = self.server
        srv.requests.append((self.command, self.path, self.headers.get("Range")))
        if "/files/" in self.path:
            srv.gate.wait(60)  # a test may hold file downloads back
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        with httpx.stream(self.command, srv.target + self.path, headers=headers, content=body, timeout=60) as r:
            self.send_response(r.status_code)
            for key, value in r.headers.items():
                if key.lower() not in ("transfer-encoding", "connection"):
                    self.send_header(key, value)
            if "content-length" not in r.headers:  # a streamed answer: its end is the connection's
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            for chunk in r.iter_raw(64 * 1024):
                self.wfile.write(chunk)
                self.wfile.flush()
                if srv.delay and "/files/" in self.path:
                    time.sleep(srv.delay)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward


@contextmanager
def proxy(target: str, delay: float = 0.0) -> Iterator[http.server.ThreadingHTTPServer]:
    """A logging proxy in front of ``target``; ``delay`` seconds after every 64 KiB of a file;
    file downloads wait while ``.gate`` (a `threading.Event`) is clear."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    srv.target, srv.delay, srv.requests, srv.gate = target, delay, [], threading.Event()
    srv.gate.set()
    srv.daemon_threads = True
    srv.handle_error = lambda request, address: None  # a client killed mid-download is the point
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@contextmanager
def live_registry(home: Path, namespaces: tuple[str, ...] = ("acme",)) -> Iterator:
    """A real registry server (uvicorn subprocess) with ``namespaces`` created by the admin."""
    from tests.helpers.live_server import run_server

    with run_server(home) as srv:
        headers = {"Authorization": f"Bearer {srv.admin_token}"}
        for ns in namespaces:
            r = httpx.post(f"{srv.url}/api/v1/namespaces", json={"name": ns}, headers=headers)
            assert r.status_code in (200, 201), r.text
        yield srv
