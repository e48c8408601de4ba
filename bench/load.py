"""Load test: N concurrent clients mixing search, pull, push and resolve against a real registry.

``python -m bench.load [--duration 120] [--clients 50] [--backend sqlite|postgres|both]`` (also
``make bench-load``, and ``python -m bench --only load``). Loopback only: the registry is a real
uvicorn process on 127.0.0.1 (SQLite, or a fresh PostgreSQL database), the clients are asyncio
tasks with one ``httpx.AsyncClient`` each, each running operations back to back (a closed loop,
no think time) until the duration is up:

- search: a page of ``GET /adapters`` with one of a few filters;
- pull: the manifest of an acknowledged version, then each file, checked against its sha256;
- push: a new version of the client's own adapter (ask for missing blobs, upload, publish);
- resolve: ``:prod`` with a random key, while a canary rollout holds ``prod``.

It reports throughput and p50/p95/p99 per operation, every error (grouped, with counts, and any
traceback in the server's log), then restarts the server and checks that nothing was lost: every
acknowledged push lists, and every file of it downloads byte-identical to what was sent.

>>> r = run_load("sqlite", clients=4, duration=2.0)                              # doctest: +SKIP
>>> r["lost"], r["errors"]                                                      # doctest: +SKIP
(0, [])
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import psycopg
from safetensors.numpy import save

from adapterhub.format import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
from bench import common
from tests.helpers.live_server import fresh_postgres, start_server, stop_server

MIX = {"search": 0.35, "pull": 0.30, "resolve": 0.25, "push": 0.10}
SEARCHES = [{}, {"q": "sentiment"}, {"method": "lora"}, {"task": "classification"}, {"tag": "t3"},
            {"sort": "downloads"}, {"namespace": "load", "limit": 50}, {"q": "topic", "method": "ia3"}]
NS, ROLLOUT_ADAPTER = "load", "base"
EXTRA_ADAPTERS, EXTRA_VERSIONS = 30, 6  # more adapters to search; a few with a version to pull from the start
TIMEOUT_S = 60.0


def files_for(seed: int, size_kb: int) -> dict[str, bytes]:
    """The adapter folder pushed as ``seed``: the same bytes every time, so that the final check
    regenerates what was sent instead of keeping every push in memory."""
    rng = np.random.default_rng(seed)
    width = max(1, size_kb * 1024 // (2 * 8 * 4))
    tensors = {"base_model.model.q_proj.lora_A.weight": rng.standard_normal((8, width)).astype(np.float32),
               "base_model.model.q_proj.lora_B.weight": rng.standard_normal((width, 8)).astype(np.float32)}
    return {CONFIG_FILE: json.dumps({"peft_type": "LORA", "r": 8, "seed": seed}).encode(),
            WEIGHTS_FILE: save(tensors),
            CARD_FILE: json.dumps({"method": "lora", "task": "classification", "seed": seed}).encode()}


def _manifest(files: dict[str, bytes]) -> list[dict]:
    return [{"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for p, b in files.items()]


class Failed(Exception):
    """An operation that did not get the answer it should; ``key`` groups it in the report."""

    def __init__(self, status: int | None, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail[:300]


def _ok(r: httpx.Response, *expected: int) -> httpx.Response:
    if r.status_code not in (expected or (200,)):
        try:
            body = r.json()
            detail = f"{body.get('code')}: {body.get('detail')}"
        except ValueError:
            detail = r.text[:200]
        raise Failed(r.status_code, f"{r.request.method} {r.request.url.path} -> {r.status_code} {detail}")
    return r


class Run:
    """The shared state of one load run: what was acknowledged, the samples, the errors."""

    def __init__(self, url: str, token: str, size_kb: int, seed: int):
        self.url, self.token, self.size_kb, self.seed = url, token, size_kb, seed
        self.acked: list[tuple[str, str, int]] = []  # (adapter, version, files seed) of each 201 publish
        self.latencies: dict[str, list[float]] = {op: [] for op in MIX}
        self.errors: Counter[tuple[str, int | None, str]] = Counter()
        self.rollout_versions: set[str] = set()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                                 timeout=TIMEOUT_S, limits=httpx.Limits(max_connections=1))

    async def search(self, c: httpx.AsyncClient, rng: random.Random, _k: int, _n: int) -> None:
        page = _ok(await c.get("/api/v1/adapters", params=rng.choice(SEARCHES))).json()
        if not isinstance(page.get("items"), list):
            raise Failed(200, f"search answered without items: {str(page)[:200]}")

    async def pull(self, c: httpx.AsyncClient, rng: random.Random, _k: int, _n: int) -> None:
        name, version, _seed = rng.choice(self.acked)
        base = f"/api/v1/adapters/{NS}/{name}/versions/{version}"
        for f in _ok(await c.get(base)).json()["files"]:
            body = _ok(await c.get(f"{base}/files/{f['path']}")).content
            if len(body) != f["size"] or hashlib.sha256(body).hexdigest() != f["sha256"]:
                raise Failed(200, f"{name}@{version}/{f['path']}: {len(body)} bytes that do not hash to the manifest")

    async def resolve(self, c: httpx.AsyncClient, rng: random.Random, _k: int, _n: int) -> None:
        params = {"ref": ":prod", "key": f"tenant-{rng.randrange(100_000)}"}
        got = _ok(await c.get(f"/api/v1/adapters/{NS}/{ROLLOUT_ADAPTER}/resolve", params=params)).json()
        if got["version"] not in self.rollout_versions or got["rollout_id"] is None:
            raise Failed(200, f"resolve gave {got} outside the rollout {sorted(self.rollout_versions)}")

    async def push(self, c: httpx.AsyncClient, _rng: random.Random, k: int, n: int) -> None:
        seed = self.seed + 1_000_000 * (k + 1) + n
        await push(c, f"c{k}", f"1.{n}.0", files_for(seed, self.size_kb))
        self.acked.append((f"c{k}", f"1.{n}.0", seed))

    async def client_loop(self, k: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + k)
        ops, weights = list(MIX), list(MIX.values())
        pushes = 0
        async with self.client() as c:
            while time.monotonic() < deadline:
                op = rng.choices(ops, weights)[0]
                t0 = time.perf_counter()
                try:
                    await getattr(self, op)(c, rng, k, pushes)
                except Failed as exc:
                    self.errors[(op, exc.status, exc.detail)] += 1
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    self.errors[(op, None, f"{type(exc).__name__}: {exc}"[:300])] += 1
                else:
                    self.latencies[op].append(time.perf_counter() - t0)
                if op == "push":
                    pushes += 1  # never reuse a version number, acknowledged or not


async def push(c: httpx.AsyncClient, name: str, version: str, files: dict[str, bytes]) -> None:
    """Upload what the server lacks and publish; raise `Failed` unless the publish answers 201."""
    shas = {hashlib.sha256(b).hexdigest(): b for b in files.values()}
    missing = _ok(await c.post("/api/v1/blobs/missing", json={"sha256": list(shas)})).json()["missing"]
    for s in missing:
        _ok(await c.put(f"/api/v1/blobs/{s}", content=shas[s]), 200, 201)
    body = {"version": version, "files": _manifest(files)}
    _ok(await c.post(f"/api/v1/adapters/{NS}/{name}/versions", json=body), 201)


def _setup(url: str, admin_token: str, clients: int, run_seed: int, size_kb: int) -> tuple[str, list]:
    """A user ``load`` with a write token, one adapter per client, a few more to search, and
    ``load/base`` with ``prod`` -> 1.0.0 in a 25 % canary rollout to 1.1.0. Returns the token and
    the acknowledged seed pushes."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=TIMEOUT_S) as a:
        _ok(a.post("/api/v1/users", json={"name": NS}), 201)
        token = _ok(a.post("/api/v1/tokens", json={"user": NS, "scope": "write", "namespaces": [NS]}), 201).json()
    acked = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token['token']}"}, timeout=TIMEOUT_S) as c:
        names = [ROLLOUT_ADAPTER] + [f"c{k}" for k in range(clients)] + [f"x{i}" for i in range(EXTRA_ADAPTERS)]
        for i, name in enumerate(names):
            meta = {"description": f"{'sentiment' if i % 3 == 0 else 'topic'} adapter {i}", "task": "classification",
                    "method": ["lora", "ia3", "bottleneck"][i % 3], "tags": ["en", f"t{i % 7}"]}
            _ok(c.post("/api/v1/adapters", json={"namespace": NS, "name": name, **meta}), 201)

        async def seed_pushes() -> None:
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token['token']}"},
                                         timeout=TIMEOUT_S) as ac:
                for i, (name, version) in enumerate([(ROLLOUT_ADAPTER, "1.0.0"), (ROLLOUT_ADAPTER, "1.1.0"),
                                                     *((f"x{j}", "1.0.0") for j in range(EXTRA_VERSIONS))]):
                    await push(ac, name, version, files_for(run_seed + i, size_kb))
                    acked.append((name, version, run_seed + i))

        asyncio.run(seed_pushes())
        _ok(c.put(f"/api/v1/adapters/{NS}/{ROLLOUT_ADAPTER}/aliases/prod", json={"version": "1.0.0"}))
        _ok(c.post(f"/api/v1/adapters/{NS}/{ROLLOUT_ADAPTER}/rollouts",
                   json={"alias": "prod", "canary_version": "1.1.0", "weight": 25}), 201)
    return token["token"], acked


async def _verify(url: str, token: str, acked: list[tuple[str, str, int]], size_kb: int) -> dict:
    """Every acknowledged push lists and downloads byte-identical; count versions nobody was told about."""
    lost: list[str] = []
    listed: dict[str, set[str]] = {}
    sem = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=TIMEOUT_S) as c:
        for name in sorted({a for a, _v, _s in acked}):
            listed[name] = {v["version"] for v in _ok(await c.get(f"/api/v1/adapters/{NS}/{name}/versions")).json()}

        async def check(name: str, version: str, seed: int) -> None:
            files = files_for(seed, size_kb)
            async with sem:
                try:
                    base = f"/api/v1/adapters/{NS}/{name}/versions/{version}"
                    listed_files = _ok(await c.get(base)).json()["files"]
                    if sorted(_entries(listed_files)) != sorted(_entries(_manifest(files))):
                        raise Failed(200, f"manifest differs: {listed_files}")
                    for path, data in files.items():
                        if _ok(await c.get(f"{base}/files/{path}")).content != data:
                            raise Failed(200, f"{path} differs")
                except (Failed, httpx.HTTPError) as exc:
                    lost.append(f"{name}@{version}: {exc}")

        await asyncio.gather(*(check(*a) for a in acked))
    told = {(a, v) for a, v, _s in acked}
    unacked = sorted(f"{a}@{v}" for a, vs in listed.items() for v in vs if (a, v) not in told)
    return {"verified": len(acked) - len(lost), "lost": len(lost), "lost_detail": lost,
            "unacknowledged_visible": unacked}


def _tracebacks(log: str) -> Counter[str]:
    """The exception line ("Type: message") that ends each traceback in a server log, counted."""
    found: Counter[str] = Counter()
    for block in log.split("Traceback (most recent call last):")[1:]:
        lines = [ln for ln in block.splitlines() if ln and not ln.startswith((" ", "\t", "^"))]
        found[(lines or ["?"])[0][:300]] += 1
    return found


def _entries(files: list[dict]) -> list[tuple[str, str, int]]:
    return [(f["path"], f["sha256"], f["size"]) for f in files]


def _quantiles_ms(samples: list[float]) -> dict[str, float | None]:
    if len(samples) < 2:
        v = samples[0] * 1e3 if samples else None
        return {"p50_ms": v, "p95_ms": v, "p99_ms": v}
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": q[49] * 1e3, "p95_ms": q[94] * 1e3, "p99_ms": q[98] * 1e3}


def run_load(backend: str, clients: int = 50, duration: float = 120.0, size_kb: int = 64, seed: int = 0,
             work: Path | None = None) -> dict:
    """One run against a fresh registry on ``backend`` ("sqlite" or "postgres"); the report dict."""
    # on SQLite there is no database to make: the server creates its file under ``home``
    with tempfile.TemporaryDirectory() as tmp, (fresh_postgres() if backend == "postgres"
                                               else contextlib.nullcontext()) as database_url:
        home = (work or Path(tmp)) / f"load-{backend}"
        srv = start_server(home, database_url=database_url)
        try:
            token, seeded = _setup(srv.url, srv.admin_token, clients, seed, size_kb)
            run = Run(srv.url, token, size_kb, seed)
            run.acked.extend(seeded)
            run.rollout_versions = {"1.0.0", "1.1.0"}
            start = time.monotonic()

            async def all_clients() -> None:
                await asyncio.gather(*(run.client_loop(k, start + duration) for k in range(clients)))

            asyncio.run(all_clients())
            elapsed = time.monotonic() - start
        finally:
            stop_server(srv)
        log = srv.log()
        srv = start_server(home, database_url=database_url)  # nothing acknowledged may depend on the old process
        try:
            check = asyncio.run(_verify(srv.url, token, run.acked, size_kb))
        finally:
            stop_server(srv)
        log += srv.log()
    ops = {op: {"count": len(s), "ops_per_s": len(s) / elapsed, **_quantiles_ms(s),
                "errors": sum(n for (o, _st, _d), n in run.errors.items() if o == op)}
           for op, s in run.latencies.items()}
    every = [x for s in run.latencies.values() for x in s]
    ops["all"] = {"count": len(every), "ops_per_s": len(every) / elapsed, **_quantiles_ms(every),
                  "errors": sum(run.errors.values())}
    errors = [{"op": o, "status": st, "detail": d, "count": n} for (o, st, d), n in run.errors.most_common()]
    errors += [{"op": "server", "status": None, "detail": f"traceback in the server log: {line}", "count": n}
               for line, n in _tracebacks(log).most_common()]
    return {"backend": backend, "clients": clients, "duration_s": duration, "elapsed_s": elapsed,
            "file_kb": size_kb, "ops": ops, "errors": errors, "seeded": len(seeded),
            "pushes_acked": len(run.acked) - len(seeded), **check}


def run(quick: bool, selected: Callable[[str], bool] = lambda _k: True, clients: int | None = None,
        duration: float | None = None) -> dict:
    """The ``python -m bench`` entry: both backends, 50 clients for 120 s (``--quick``: 8 for 10 s)."""
    clients = clients or (8 if quick else 50)
    duration = duration or (10.0 if quick else 120.0)
    out: dict = {}
    for backend in ("sqlite", "postgres"):
        if not selected(f"load/{backend}"):
            continue
        try:
            out[f"load/{backend}"] = run_load(backend, clients, duration)
        except psycopg.OperationalError as exc:  # only creating the PostgreSQL database raises this here
            out[f"load/{backend}"] = {"skipped": f"no PostgreSQL to test against: {exc}"}
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def print_tables(results: dict) -> None:
    """A markdown table per backend, then every error and the lost-data check."""
    for key, r in results.items():
        if not key.startswith("load/"):
            continue
        if "skipped" in r:
            print(f"\n{key}: skipped ({r['skipped']})")
            continue
        print(f"\n**{r['backend']}**: {r['clients']} clients, {r['elapsed_s']:.0f} s, {r['file_kb']} KB adapters\n")
        print("| operation | count | ops/s | p50 ms | p95 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for op, s in r["ops"].items():
            print(f"| {op} | {s['count']} | {s['ops_per_s']:.1f} | {_fmt(s['p50_ms'])} | {_fmt(s['p95_ms'])} "
                  f"| {_fmt(s['p99_ms'])} | {s['errors']} |")
        print(f"\npushes acknowledged {r['pushes_acked']}; after a restart {r['verified']} versions pulled "
              f"byte-identical, lost {r['lost']}, visible but never acknowledged {len(r['unacknowledged_visible'])}")
        for e in r["errors"]:
            print(f"- error x{e['count']} in {e['op']} (status {e['status']}): {e['detail']}")
        for lost in r["lost_detail"]:
            print(f"- LOST {lost}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load per backend (default 120)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args(argv)
    wanted = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = run(False, lambda k: k.split("/")[-1] in wanted, args.clients, args.duration)
    print_tables(results)
    name = "load" if (args.clients, args.duration) == (50, 120.0) else f"load-{args.clients}c-{args.duration:g}s"
    if args.backend != "both":
        name += f"-{args.backend}"
    path = common.write_results(name, {"machine": common.machine_info(), **results})
    print(f"wrote {path}", file=sys.stderr)
    bad = any(r.get("lost") or r.get("errors") for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
