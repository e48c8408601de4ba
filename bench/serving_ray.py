"""Ray bench: what the Ray Serve backend costs against the local server, on the same base and requests.

One run, one machine: the base is the serving bench's SmolLM2-shaped random model (4 layers, 2 in
``--quick``), saved as a folder; 4 LoRA adapters (r=8 on q,v) pushed to a live registry; the same
stream of completions (prompts of 8-16 words, 8 new tokens greedy, adapter ``i % 4``, 8 concurrent
HTTP clients) sent to ``serve-model``'s app under uvicorn (``--backend local``) and to the Ray
Serve application with 1 and with 2 replicas. Requests/s and p50/p99 latency per backend, and
whether every answer equals the local server's. On a 2-core machine two replicas share the same
two cores, so no speed-up is expected: the figure is the overhead Ray adds (an extra hop through
its proxy and router, and pickling each request).

    python -m bench --only ray --quick
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from adapterhub.registry.client import Hub
from bench.serving import _adapter_folders, _base, _tokenizer
from tests.helpers.live_server import free_port, start_server, stop_server

CLIENTS = 8
NEW_TOKENS = 8
ADAPTERS = 4


def _stream(url: str, refs: list[str], prompts: list[str]) -> dict:
    latencies, texts = [0.0] * len(prompts), [""] * len(prompts)
    with httpx.Client(base_url=url, timeout=300) as client:
        def one(i: int) -> None:
            t = time.perf_counter()
            r = client.post("/v1/completions", json={"model": refs[i % len(refs)], "prompt": prompts[i],
                                                     "max_tokens": NEW_TOKENS})
            r.raise_for_status()
            texts[i], latencies[i] = r.json()["choices"][0]["text"], time.perf_counter() - t

        for i in range(len(refs)):  # warm: every adapter loaded where the stream will ask for it
            one(i)
        start = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(one, range(len(prompts))))
        seconds = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests_per_s": len(prompts) / seconds, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3,
            "texts": texts}


def _local(base: Path, hub_url: str, token: str) -> tuple[str, Callable[[], None]]:
    import uvicorn

    from adapterhub.compose.serving.http import create_app
    from adapterhub.compose.serving.server import AdapterServer

    server = AdapterServer(str(base), Hub(hub_url, token=token, progress=False), max_wait_ms=5)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(server), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.05)

    def stop() -> None:
        uv.should_exit = True
        thread.join(10)
        server.close()
    return f"http://127.0.0.1:{port}", stop


def _ray(base: Path, hub_url: str, token: str, replicas: int, home: Path) -> tuple[str, Callable[[], None]]:
    import ray
    from ray import serve

    from adapterhub.compose.serving.ray_backend import ray_deployment

    root = str(Path(__file__).resolve().parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"ADAPTERHUB_HOME": str(home), "PYTHONPATH": root}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(ray_deployment(str(base), registry=hub_url, token=token, replicas=replicas, max_wait_ms=5),
              route_prefix="/")

    def stop() -> None:
        serve.shutdown()
        ray.shutdown()
    return f"http://127.0.0.1:{port}", stop


def run(quick: bool, selected: Callable[[str], bool] = lambda _k: True) -> dict:
    if not selected("ray"):
        return {}
    n = 32 if quick else 96
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, tok = _base(2 if quick else 4), _tokenizer()
        model.save_pretrained(root / "base")
        tok.save_pretrained(root / "base")
        names = [f"ray{i}" for i in range(ADAPTERS)]
        srv = start_server(root / "registry")
        try:
            with Hub(srv.url, token=srv.admin_token, cache_dir=root / "push", progress=False) as hub:
                hub.create_namespace("bench")
                for name, folder in _adapter_folders(model, root / "adapters", names).items():
                    hub.push(folder, f"bench/{name}", version="1.0.0", alias="prod")
            refs = [f"bench/{name}:prod" for name in names]
            words = [f"t{i}" for i in range(4, 400)]
            prompts = [" ".join(words[(i * 13 + j * 7) % len(words)] for j in range(8 + i % 9)) for i in range(n)]
            rows: dict[str, dict] = {}
            for label, start in (("local", lambda: _local(root / "base", srv.url, srv.admin_token)),
                                 ("ray, 1 replica", lambda: _ray(root / "base", srv.url, srv.admin_token, 1, root / "h1")),
                                 ("ray, 2 replicas", lambda: _ray(root / "base", srv.url, srv.admin_token, 2, root / "h2"))):
                url, stop = start()
                try:
                    rows[label] = _stream(url, refs, prompts)
                finally:
                    stop()
        finally:
            stop_server(srv)
    local, reference = rows["local"], rows["local"]["texts"]
    for row in rows.values():
        row["equal_to_local"] = sum(a == b for a, b in zip(row.pop("texts"), reference, strict=True))
        row["vs_local_requests_per_s"] = row["requests_per_s"] / local["requests_per_s"]
    return {"protocol": {"requests": n, "clients": CLIENTS, "new_tokens": NEW_TOKENS, "adapters": ADAPTERS,
                         "layers": 2 if quick else 4}, "ray": rows}


def print_tables(results: dict) -> None:
    if not results:
        return
    p = results["protocol"]
    print(f"\nserve-model backends ({p['requests']} requests, {p['clients']} clients, {p['adapters']} adapters, "
          f"{p['new_tokens']} new tokens, {p['layers']}-layer SmolLM2 shape)")
    print(f"{'backend':<18}{'req/s':>8}{'vs local':>10}{'p50 ms':>9}{'p99 ms':>9}{'= local':>9}")
    for label, row in results["ray"].items():
        print(f"{label:<18}{row['requests_per_s']:>8.1f}{row['vs_local_requests_per_s']:>10.2f}"
              f"{row['p50_ms']:>9.0f}{row['p99_ms']:>9.0f}{row['equal_to_local']:>9}")
