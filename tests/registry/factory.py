"""Small factories for registry tests: an httpx client per token, users, files, pushes."""

from __future__ import annotations

import hashlib
import json
import struct

import httpx
import numpy as np
from safetensors.numpy import save


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def client(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60.0)


def safetensors_bytes(seed: int = 0, n: int = 4) -> bytes:
    rng = np.random.default_rng(seed)
    return save({f"layer{i}.lora_A.weight": rng.standard_normal((2, 4)).astype(np.float32) for i in range(n)})


def raw_safetensors(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    """A hand-made safetensors file, to build broken ones."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def adapter_files(seed: int = 0) -> dict[str, bytes]:
    return {
        "adapter_config.json": json.dumps({"peft_type": "LORA", "r": 2, "seed": seed}).encode(),
        "adapter_model.safetensors": safetensors_bytes(seed),
        "adapterhub.json": json.dumps({"method": "lora", "task": "sentiment"}).encode(),
    }


def make_user(admin: httpx.Client, name: str, scope: str = "write", namespaces: list[str] | None = None) -> str:
    """Create user ``name`` (and namespace) and return a token for them."""
    r = admin.post("/api/v1/users", json={"name": name})
    assert r.status_code == 201, r.text
    r = admin.post("/api/v1/tokens", json={"user": name, "scope": scope, "namespaces": namespaces or [name]})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def upload(c: httpx.Client, files: dict[str, bytes]) -> None:
    shas = {sha(b): b for b in files.values()}
    r = c.post("/api/v1/blobs/missing", json={"sha256": list(shas)})
    assert r.status_code == 200, r.text
    for s in r.json()["missing"]:
        r = c.put(f"/api/v1/blobs/{s}", content=shas[s])
        assert r.status_code in (200, 201), r.text


def manifest(files: dict[str, bytes]) -> list[dict]:
    return [{"path": p, "sha256": sha(b), "size": len(b)} for p, b in files.items()]


def push(c: httpx.Client, ns: str, name: str, version: str, files: dict[str, bytes] | None = None,
         alias: str | None = None, create: bool = True) -> httpx.Response:
    """Create the adapter if needed, upload missing blobs, publish; return the publish response."""
    files = files if files is not None else adapter_files()
    if create:
        r = c.post("/api/v1/adapters", json={"namespace": ns, "name": name})
        assert r.status_code in (201, 409), r.text
    upload(c, files)
    body: dict = {"version": version, "files": manifest(files)}
    if alias:
        body["alias"] = alias
    return c.post(f"/api/v1/adapters/{ns}/{name}/versions", json=body)
