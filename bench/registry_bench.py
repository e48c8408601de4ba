"""Registry benchmarks: pull throughput vs a static file server, search latency, publish latency.

``python -m bench.registry_bench [--quick] [--only search]`` (or, once registered in
``bench/__main__.py``, ``python -m bench --only registry``). Every server is a real uvicorn process on 127.0.0.1.

- pull: the same file through ``GET …/files/{path}`` and through ``python -m http.server``,
  interleaved rounds, median MB/s and their ratio (target >= 0.70);
- search: N adapters bulk-inserted, 16 client threads issuing a mix of list/search/filter/sort
  queries, p50/p95/p99 in ms, on SQLite and PostgreSQL (target p95 < 50 ms on SQLite); also
  one client alone, which is the server's own latency without queueing behind the other 15
  (the clients share the machine's cores with the server);
- publish: a 10 MB adapter, upload (blobs) and publish (one transaction) timed apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from adapterhub.format import CONFIG_FILE
from bench import common
from tests.helpers.live_server import free_port, fresh_postgres, start_server, stop_server

CLIENTS = 16
QUERIES = [
    {}, {"q": "sentiment"}, {"q": "model 42"}, {"method": "lora"}, {"task": "classification"},
    {"tag": "t7"}, {"sort": "downloads"}, {"base_model": "base-3", "sort": "newest"}, {"namespace": "org5"},
    {"q": "adapter", "limit": 50},
]


def _client(url: str, token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=300)


def _user(srv) -> str:
    admin = _client(srv.url, srv.admin_token)
    admin.post("/api/v1/users", json={"name": "bench"})
    r = admin.post("/api/v1/tokens", json={"user": "bench", "scope": "write", "namespaces": ["*"]})
    r.raise_for_status()
    return r.json()["token"]


def _push(c: httpx.Client, name: str, version: str, files: dict[str, bytes]) -> tuple[float, float]:
    """Upload the missing blobs and publish; return (upload seconds, publish seconds)."""
    c.post("/api/v1/adapters", json={"namespace": "bench", "name": name})
    t0 = time.perf_counter()
    shas = {hashlib.sha256(b).hexdigest(): b for b in files.values()}
    for s in c.post("/api/v1/blobs/missing", json={"sha256": list(shas)}).json()["missing"]:
        c.put(f"/api/v1/blobs/{s}", content=shas[s]).raise_for_status()
    t1 = time.perf_counter()
    manifest = [{"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for p, b in files.items()]
    r = c.post(f"/api/v1/adapters/bench/{name}/versions", json={"version": version, "files": manifest})
    r.raise_for_status()
    return t1 - t0, time.perf_counter() - t1


def _drain(url: str) -> int:
    n = 0
    with httpx.stream("GET", url, timeout=300) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(1 << 20):
            n += len(chunk)
    return n


def bench_pull(work: Path, size_mb: int, repeats: int) -> dict:
    data = os.urandom(size_mb << 20)
    static_dir = work / "static"
    static_dir.mkdir()
    (static_dir / "blob.dat").write_bytes(data)
    port = free_port()
    static = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(static_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = start_server(work / "pull-home")
    try:
        c = _client(srv.url, _user(srv))
        _push(c, "big", "1.0.0", {CONFIG_FILE: b"{}", "blob.dat": data})
        for _ in range(100):
            try:
                httpx.head(f"http://127.0.0.1:{port}/blob.dat")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        urls = {"registry": f"{srv.url}/api/v1/adapters/bench/big/versions/1.0.0/files/blob.dat",
                "static": f"http://127.0.0.1:{port}/blob.dat"}
        samples = common.time_interleaved({k: (lambda u=u: _drain(u)) for k, u in urls.items()}, repeats)
    finally:
        stop_server(srv)
        static.terminate()
        static.wait()
    mbps = {k: size_mb / common.median(v) for k, v in samples.items()}
    return {"size_mb": size_mb, "repeats": repeats, "mb_per_s": mbps, "ratio": mbps["registry"] / mbps["static"]}


def _bulk_insert(database_url: str, n: int) -> None:
    from sqlalchemy import insert
    from sqlmodel import Session, select

    from adapterhub.registry.server.db import make_engine
    from adapterhub.registry.server.models import Adapter, Namespace, User
    from adapterhub.registry.server.settings import normalize_database_url

    engine = make_engine(normalize_database_url(database_url))
    with Session(engine) as s:
        owner = s.exec(select(User).where(User.name == "bench")).one()
        s.exec(insert(Namespace), params=[{"name": f"org{i}", "private": i % 10 == 9, "owner_id": owner.id}
                                          for i in range(20)])
        ns_ids = dict(s.exec(select(Namespace.name, Namespace.id)).all())
        rows = [{"namespace_id": ns_ids[f"org{i % 20}"], "name": f"adapter-{i}",
                 "description": f"{'sentiment' if i % 3 == 0 else 'topic'} model {i}", "task": "classification",
                 "method": ["lora", "ia3", "bottleneck"][i % 3], "base_model": f"base-{i % 10}",
                 "tags": ["en", f"t{i % 50}"], "tags_text": f",en,t{i % 50},", "license": "mit",
                 "latest_version": "1.0.0", "latest_size": 1000 + i, "downloads": i % 97} for i in range(n)]
        for k in range(0, n, 2000):
            s.exec(insert(Adapter), params=rows[k:k + 2000])
        s.commit()
    engine.dispose()


def bench_search(work: Path, backend: str, n: int, requests: int) -> dict:
    ctx = fresh_postgres() if backend == "postgres" else None
    url = ctx.__enter__() if ctx else f"sqlite:///{work / f'search-{backend}' / 'registry.sqlite'}"
    srv = start_server(work / f"search-{backend}", database_url=url)
    try:
        token = _user(srv)
        _bulk_insert(url, n)
        latencies: list[float] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            with _client(srv.url, token if k % 2 else None) as c:
                mine = []
                for j in range(requests // CLIENTS):
                    params = QUERIES[(k + j) % len(QUERIES)]
                    t = time.perf_counter()
                    c.get("/api/v1/adapters", params=params).raise_for_status()
                    mine.append(time.perf_counter() - t)
            with lock:
                latencies.extend(mine)

        with _client(srv.url) as c:  # one client alone: the server's own latency, no queueing
            solo = []
            for j in range(len(QUERIES) * 10):
                t = time.perf_counter()
                c.get("/api/v1/adapters", params=QUERIES[j % len(QUERIES)]).raise_for_status()
                solo.append(time.perf_counter() - t)
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(worker, range(CLIENTS)))
    finally:
        stop_server(srv)
        if ctx:
            ctx.__exit__(None, None, None)
    q, q1 = statistics.quantiles(latencies, n=100), statistics.quantiles(solo, n=100)
    return {"adapters": n, "clients": CLIENTS, "requests": len(latencies),
            "single_client_p50_ms": q1[49] * 1e3, "single_client_p95_ms": q1[94] * 1e3,
            "p50_ms": q[49] * 1e3, "p95_ms": q[94] * 1e3, "p99_ms": q[98] * 1e3}


def bench_publish(work: Path, size_mb: int, repeats: int) -> dict:
    srv = start_server(work / "publish-home")
    try:
        c = _client(srv.url, _user(srv))
        ups, pubs = [], []
        for i in range(repeats):
            files = {CONFIG_FILE: json.dumps({"peft_type": "LORA", "i": i}).encode(),
                     "weights.dat": os.urandom(size_mb << 20)}
            up, pub = _push(c, "pub", f"1.{i}.0", files)
            ups.append(up)
            pubs.append(pub)
    finally:
        stop_server(srv)
    return {"size_mb": size_mb, "repeats": repeats, "upload_ms": common.median(ups) * 1e3,
            "publish_ms": common.median(pubs) * 1e3, "total_ms": common.median([a + b for a, b in zip(ups, pubs,
                                                                                                    strict=True)]) * 1e3}


def run(quick: bool, selected: Callable[[str], bool] = lambda _k: True) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if selected("registry/pull"):
            out["pull"] = bench_pull(work, 20 if quick else 200, 3 if quick else 7)
        for backend in ("sqlite", "postgres"):
            if selected(f"registry/search/{backend}"):
                out[f"search/{backend}"] = bench_search(work, backend, 1000 if quick else 10_000,
                                                        320 if quick else 3200)
        if selected("registry/publish"):
            out["publish"] = bench_publish(work, 10, 3 if quick else 7)
    return out


def print_tables(results: dict) -> None:
    if "pull" in results:
        p = results["pull"]
        print(f"\npull {p['size_mb']} MB (median of {p['repeats']})   registry {p['mb_per_s']['registry']:.0f} MB/s"
              f"   static {p['mb_per_s']['static']:.0f} MB/s   ratio {p['ratio']:.2f} (target >= 0.70)")
    for backend in ("sqlite", "postgres"):
        s = results.get(f"search/{backend}")
        if s:
            print(f"search {backend:8s} {s['adapters']} adapters, {s['clients']} clients, {s['requests']} requests:"
                  f"  p50 {s['p50_ms']:.1f} ms  p95 {s['p95_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms"
                  f"  (one client alone: p50 {s['single_client_p50_ms']:.1f} ms, p95 {s['single_client_p95_ms']:.1f} ms)")
    if "publish" in results:
        p = results["publish"]
        print(f"publish {p['size_mb']} MB adapter (median of {p['repeats']}): upload {p['upload_ms']:.0f} ms, "
              f"publish {p['publish_ms']:.0f} ms, total {p['total_ms']:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.registry_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not for comparison")
    parser.add_argument("--only", action="append", default=[], metavar="PART",
                        help="run only the parts whose key contains PART (pull, search, search/sqlite, publish); "
                             "repeatable")
    args = parser.parse_args(argv)
    results = run(args.quick, (lambda k: any(p in k for p in args.only)) if args.only else (lambda _k: True))
    print_tables(results)
    name = "registry-quick" if args.quick else "registry"
    if args.only:
        name += "-" + "-".join(p.replace("/", "_") for p in args.only)
    path = common.write_results(name, {"machine": common.machine_info(), **results})
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
