"""Serving bench: `AdapterServer` (LRU + per-row micro-batches) against a naive PEFT server, one run.

Same LLaMA shape as the engine bench (SmolLM2-135M, random weights from the config, fp32, greedy,
16 new tokens); every adapter is a LoRA (r=8 on q,v, random weights) pushed to a real registry
(uvicorn on 127.0.0.1) and pulled from it. Rows:

- throughput for 1, 10 and 100 distinct adapters: the same request stream (prompts of 16-32 tokens,
  adapter ``i % N``, 16 concurrent clients) through ours (references resolved through the registry
  with the default TTL cache, adapters warm in the LRU, micro-batched with per-row adapters) and
  through a naive server holding one ``PeftModel`` with all N adapters that serves one request at a
  time, ``set_adapter`` then ``generate``. Requests/s, tokens/s, p50 latency, and how many answers
  agree token for token (greedy on both sides);
- cold start: a request for an adapter in neither the LRU nor the local cache (resolve + pull +
  load + generate) against the same request once warm, and the parts of a cold start timed apart;
- resolve: p50/p99 of ``Hub.resolve`` with a rollout key against the live registry (an alias under a
  50 % rollout, a new key per call) and of ``AdapterServer.resolve`` through its TTL cache.

A full run takes a few minutes on 2 cores; ``--quick`` (2 layers, 1 and 10 adapters, 32 requests) is
a smoke test whose numbers are not the published ones.

    python -m bench --only serving --quick
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import peft
import torch
from torch import nn

import adapterhub as ah
from adapterhub.compose.serving.server import AdapterServer
from adapterhub.registry.client import Hub
from bench.common import setup_torch
from bench.engine import _llama
from tests.helpers.live_server import start_server, stop_server
from tests.helpers.tiny import word_tokenizer

VOCAB = 49152
COUNTS = (1, 10, 100)
QUICK_COUNTS = (1, 10)  # a smoke run: the same paths, a fraction of the pushes and loads
CLIENTS = 16
NEW_TOKENS = 16
PROMPT_TOKENS = (16, 32)
TARGETS = ["q_proj", "v_proj"]


def _base(layers: int) -> nn.Module:
    """The random SmolLM2-shaped model; no EOS, so every request generates exactly NEW_TOKENS."""
    torch.manual_seed(0)
    model = _llama(layers).eval()
    model.generation_config.eos_token_id = None
    model.config.pad_token_id = model.generation_config.pad_token_id = 0
    return model


def _tokenizer():
    """A word-level tokenizer whose vocabulary matches the model's (requests are sent as token ids)."""
    return word_tokenizer([f"t{i}" for i in range(VOCAB - 4)])


def _adapter_folders(base: nn.Module, root: Path, names: list[str]) -> dict[str, Path]:
    maker = ah.AdapterModel(copy.deepcopy(base))
    folders = {}
    for i, name in enumerate(names):
        torch.manual_seed(100 + i)
        maker.add_adapter(name, ah.LoRAConfig(r=8, alpha=16, target_modules=TARGETS, init_lora_weights=False))
        folders[name] = maker.save_adapter(name, root / name)
        maker.delete_adapter(name)
    return folders


def _prompts(n: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    lo, hi = PROMPT_TOKENS
    return [torch.randint(4, VOCAB, (lo + i % (hi - lo + 1),), generator=g).tolist() for i in range(n)]


def _quantiles(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3, "n": len(values)}


class NaiveServer:
    """The baseline: one PeftModel with every adapter, one request at a time (set_adapter, generate)."""

    def __init__(self, base: nn.Module):
        self.base, self.model, self.lock = base, None, threading.Lock()

    def load(self, name: str, folder: Path) -> None:
        if self.model is None:
            self.model = peft.PeftModel.from_pretrained(self.base, folder, adapter_name=name).eval()
        elif name not in self.model.peft_config:
            self.model.load_adapter(folder, adapter_name=name)

    def complete(self, name: str, ids: list[int]) -> list[int]:
        with self.lock, torch.inference_mode():
            self.model.set_adapter(name)
            out = self.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                      max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
        return out[0, len(ids):].tolist()


def _drive(call: Callable[[int], list[int]], n: int) -> dict:
    """``n`` requests from CLIENTS concurrent clients; wall time, tokens and per-request latencies."""
    latencies = [0.0] * n
    outputs: list[list[int]] = [[] for _ in range(n)]

    def one(i: int) -> None:
        t = time.perf_counter()
        outputs[i] = call(i)
        latencies[i] = time.perf_counter() - t

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(n)))
    seconds = time.perf_counter() - start
    tokens = sum(len(o) for o in outputs)
    return {"seconds": seconds, "requests_per_s": n / seconds, "tokens_per_s": tokens / seconds,
            "p50_latency_ms": statistics.median(latencies) * 1e3, "outputs": outputs}


def _serve_counters(srv: AdapterServer) -> tuple[int, int, int]:
    m = srv.metrics
    return m.batches, m.batch_rows, m.cache[("resolve", "hit")]


def throughput_one(srv: AdapterServer, naive: NaiveServer, refs: list[str], names: list[str],
                   prompts: list[list[int]], ours_first: bool) -> dict:
    """One request stream (request i on adapter i % N) through ours and through the naive server."""
    n = len(names)
    contenders = {
        "ours": lambda i: srv.complete(refs[i % n], prompts[i], max_tokens=NEW_TOKENS).token_ids,
        "naive": lambda i: naive.complete(names[i % n], prompts[i]),
    }
    runs = {}
    for k in (["ours", "naive"] if ours_first else ["naive", "ours"]):  # alternate: drift hits both alike
        before = _serve_counters(srv)
        runs[k] = _drive(contenders[k], len(prompts))
        if k == "ours":
            batches, rows, hits = (a - b for a, b in zip(_serve_counters(srv), before, strict=True))
    row: dict = {"requests": len(prompts), "clients": CLIENTS, "loaded": len(srv.loaded()),
                 "rows_per_batch": rows / batches, "resolve_cache_hits": hits / len(prompts)}
    for k, r in runs.items():
        row[k] = {m: r[m] for m in ("seconds", "requests_per_s", "tokens_per_s", "p50_latency_ms")}
    row["same_tokens"] = sum(a == b for a, b in zip(runs["ours"]["outputs"], runs["naive"]["outputs"], strict=True))
    row["ours_vs_naive"] = row["ours"]["requests_per_s"] / row["naive"]["requests_per_s"]
    return row


def throughput(srv: AdapterServer, naive: NaiveServer, refs: dict[str, str], folders: dict[str, Path],
               requests: int, counts: tuple[int, ...]) -> dict:
    """Ours vs naive for each N in ``counts``; adapters are added to both as N grows, so each holds exactly N."""
    prompts = _prompts(requests)
    names = list(refs)
    out: dict = {}
    for j, n in enumerate(counts):
        for name in names[:n]:
            srv.ensure_loaded(refs[name])
            naive.load(name, folders[name])
        out[str(n)] = row = throughput_one(srv, naive, [refs[x] for x in names[:n]], names[:n], prompts, j % 2 == 0)
        print(f"  serving/throughput/{n}: ours {row['ours']['requests_per_s']:.2f} req/s, "
              f"naive {row['naive']['requests_per_s']:.2f} req/s", file=sys.stderr)
    return out


def cold_start(srv: AdapterServer, hub: Hub, folders: dict[str, Path]) -> dict:
    """Half the fresh adapters end to end (cold, then warm); the other half step by step."""
    prompt = _prompts(1)[0]
    names = list(folders)
    half = len(names) // 2
    for name in names:
        hub.push(folders[name], f"bench/{name}", version="1.0.0", alias="prod")
    cold, warm = [], []
    for name in names[:half]:
        for bucket in (cold, warm):
            t = time.perf_counter()
            srv.complete(f"bench/{name}:prod", prompt, max_tokens=NEW_TOKENS)
            bucket.append(time.perf_counter() - t)
    parts: dict[str, list[float]] = {"resolve": [], "pull": [], "load": [], "generate": []}
    for name in names[half:]:
        t0 = time.perf_counter()
        resolved = srv.resolve(f"bench/{name}:prod")
        t1 = time.perf_counter()
        srv.hub.pull(resolved.exact)
        t2 = time.perf_counter()
        srv.ensure_loaded(resolved)  # the snapshot is in the cache now: this is the load alone
        t3 = time.perf_counter()
        srv.complete(f"bench/{name}:prod", prompt, max_tokens=NEW_TOKENS)
        t4 = time.perf_counter()
        for part, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[part].append(dt)
    med = {k: statistics.median(v) * 1e3 for k, v in parts.items()}
    size = sum(f.stat().st_size for f in folders[names[0]].iterdir())
    return {"adapters": half, "adapter_kb": size / 1e3, "cold_ms": statistics.median(cold) * 1e3,
            "warm_ms": statistics.median(warm) * 1e3, "cold_vs_warm": statistics.median(cold) / statistics.median(warm),
            "parts_ms": med}


def resolve_latency(srv: AdapterServer, hub: Hub, folders: list[Path], calls: int) -> dict:
    """``Hub.resolve`` with a fresh key per call (a rollout is live) vs ``AdapterServer.resolve``'s cache."""
    hub.push(folders[0], "bench/roll", version="1.0.0", alias="prod")
    hub.push(folders[1], "bench/roll", version="1.1.0")
    hub.rollout_start("bench/roll", "prod", "1.1.0", 50)
    for i in range(20):  # warm the connection and the registry's rollout cache
        hub.resolve("bench/roll:prod", key=f"warm-{i}")
    direct, arms = [], set()
    for i in range(calls):
        t = time.perf_counter()
        arms.add(hub.resolve("bench/roll:prod", key=f"user-{i}").arm)
        direct.append(time.perf_counter() - t)
    before = dict(srv.metrics.cache)
    cached = []
    for i in range(calls * 10):  # 10 tenants, each resolved again and again within and across the TTL
        t = time.perf_counter()
        srv.resolve("bench/roll:prod", key=f"tenant-{i % 10}")
        cached.append(time.perf_counter() - t)
    hits = srv.metrics.cache[("resolve", "hit")] - before.get(("resolve", "hit"), 0)
    return {"hub": {**_quantiles(direct), "arms": sorted(arms)},
            "server_cache": {**_quantiles(cached), "hit_rate": hits / len(cached), "ttl_s": srv.resolver.ttl}}


def run(quick: bool, selected: Callable[[str], bool] = lambda _k: True) -> dict:
    setup_torch()
    layers = 2 if quick else 30
    requests, counts = (32, QUICK_COUNTS) if quick else (64, COUNTS)
    results: dict = {"quick": quick, "layers": layers, "threads": torch.get_num_threads(), "lora": "r=8 on q,v",
                     "prompt_tokens": list(PROMPT_TOKENS), "new_tokens": NEW_TOKENS}
    base = _base(layers)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        registry = start_server(work / "registry")
        try:
            hub = Hub(registry.url, token=registry.admin_token, cache_dir=work / "push-cache", progress=False,
                      offline=False)
            hub.create_namespace("bench", exist_ok=True)
            names = [f"a{i}" for i in range(max(counts))]
            cold_names = [f"cold{i}" for i in range(4 if quick else 8)]
            print(f"serving: {layers} layers; pushing {len(names) + len(cold_names)} LoRA adapters ...", file=sys.stderr)
            folders = _adapter_folders(base, work / "adapters", names + cold_names)
            refs = {}
            for name in names:
                hub.push(folders[name], f"bench/{name}", version="1.0.0", alias="prod")
                refs[name] = f"bench/{name}:prod"
            serving_hub = Hub(registry.url, token=registry.admin_token, cache_dir=work / "serve-cache",
                              progress=False, offline=False)
            srv = AdapterServer(copy.deepcopy(base), serving_hub, tokenizer=_tokenizer(), max_adapters=128,
                                max_batch=CLIENTS, max_new_tokens=NEW_TOKENS)
            try:
                naive = NaiveServer(copy.deepcopy(base))
                srv.complete(refs[names[0]], _prompts(1)[0], max_tokens=2)  # first-call costs out of the way
                naive.load(names[0], folders[names[0]])
                naive.complete(names[0], _prompts(1)[0])
                if selected("serving/throughput"):
                    results["throughput"] = throughput(srv, naive, refs, folders, requests, counts)
                del naive
                if selected("serving/cold"):
                    print("serving/cold ...", file=sys.stderr)
                    results["cold"] = cold_start(srv, hub, {n: folders[n] for n in cold_names})
                if selected("serving/resolve"):
                    print("serving/resolve ...", file=sys.stderr)
                    results["resolve"] = resolve_latency(srv, hub, [folders["a0"], folders["a1"]],
                                                         200 if quick else 1000)
            finally:
                srv.close()
                serving_hub.close()
                hub.close()
        finally:
            stop_server(registry)
    return results


def print_tables(results: dict) -> None:
    print(f"\nserving, LLaMA SmolLM2-135M shape, {results['layers']} layers, fp32, {results['threads']} threads, "
          f"LoRA {results['lora']}, prompts {results['prompt_tokens'][0]}-{results['prompt_tokens'][1]} tokens, "
          f"{results['new_tokens']} new tokens, greedy")
    rows = results.get("throughput", {})
    if rows:
        first = next(iter(rows.values()))
        print(f"throughput, {first['requests']} requests from {first['clients']} concurrent clients; naive = one "
              "PeftModel, set_adapter + generate per request, one at a time")
        print(f"{'adapters':>8}  {'ours req/s':>10}  {'naive req/s':>11}  {'ours tok/s':>10}  {'naive tok/s':>11}  "
              f"{'ours/naive':>10}  {'ours p50 ms':>11}  {'naive p50 ms':>12}  {'rows/batch':>10}  "
              f"{'resolve hits':>12}  same tokens")
        for n, r in rows.items():
            o, v = r["ours"], r["naive"]
            print(f"{n:>8}  {o['requests_per_s']:>10.2f}  {v['requests_per_s']:>11.2f}  {o['tokens_per_s']:>10.1f}  "
                  f"{v['tokens_per_s']:>11.1f}  {r['ours_vs_naive']:>9.2f}x  {o['p50_latency_ms']:>11.0f}  "
                  f"{v['p50_latency_ms']:>12.0f}  {r['rows_per_batch']:>10.1f}  {r['resolve_cache_hits']:>12.0%}  "
                  f"{r['same_tokens']}/{r['requests']}")
    c = results.get("cold")
    if c:
        p = c["parts_ms"]
        print(f"cold start ({c['adapter_kb']:.0f} kB adapter, median of {c['adapters']}): {c['cold_ms']:.0f} ms vs warm "
              f"{c['warm_ms']:.0f} ms ({c['cold_vs_warm']:.2f}x); parts: resolve {p['resolve']:.1f} ms, pull "
              f"{p['pull']:.1f} ms, load {p['load']:.1f} ms, generate {p['generate']:.0f} ms")
    r = results.get("resolve")
    if r:
        h, s = r["hub"], r["server_cache"]
        print(f"resolve with a rollout key: Hub.resolve p50 {h['p50_ms']:.2f} ms, p99 {h['p99_ms']:.2f} ms "
              f"({h['n']} calls, arms {'/'.join(h['arms'])}); AdapterServer TTL cache p50 {s['p50_ms'] * 1e3:.1f} µs, "
              f"p99 {s['p99_ms'] * 1e3:.1f} µs ({s['n']} calls, {s['hit_rate']:.1%} hits, TTL {s['ttl_s']:g} s)")
