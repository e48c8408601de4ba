"""serve-model on a real local Ray cluster (CPU, 2 replicas) against a live registry: the same
answers and errors as the local server, affinity per version, the per-replica LRU, canary arms
across replicas, a rollback driven by outcomes from both replicas, and a replica killed mid-traffic."""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

import adapterhub as ah
from adapterhub.compose.serving.server import AdapterServer
from adapterhub.registry.client import Hub
from adapterhub.registry.server.canary import arm_for
from tests.engine.test_serve import WORDS, _lora_folder, _prompt, parse_prometheus
from tests.helpers.live_server import free_port
from tests.helpers.tiny import build, word_tokenizer

pytestmark = pytest.mark.slow  # a Ray cluster: ~30 s to start on 2 cores


ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = [f"acme/ray{i}:prod" for i in range(5)]
MAX_ADAPTERS = 3


@pytest.fixture(scope="module")
def fleet(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-ray")
    build("llama-causal").save_pretrained(root / "base")
    word_tokenizer(WORDS).save_pretrained(root / "base")
    am = ah.AdapterModel(build("llama-causal"))
    with Hub(server.url, token=server.admin_token, cache_dir=root / "push-cache", progress=False) as hub:
        for i, ref in enumerate(ADAPTERS):
            hub.push(_lora_folder(am, root / "a", f"ray{i}", seed=i), ref.split(":")[0], version="1.0.0", alias="prod")
        hub.push(_lora_folder(am, root / "a", "can-old", seed=40), "acme/can", version="1.0.0", alias="prod")
        hub.push(_lora_folder(am, root / "a", "can-new", seed=41), "acme/can", version="1.1.0")
        wide = _lora_folder(ah.AdapterModel(build("llama-causal", hidden_size=48)), root / "a", "wide", seed=7)
        hub.push(_lora_folder(am, root / "a", "brk-old", seed=60), "acme/brk", version="1.0.0", alias="prod")
        hub.push(wide, "acme/brk", version="1.1.0")  # a broken canary: built for another base
    from adapterhub.compose.serving.ray_backend import app_builder

    env = {"ADAPTERHUB_HOME": str(root / "home"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # as a Serve config file would build it (`app_builder` calls `ray_deployment`)
    serve.run(app_builder({"base": str(root / "base"), "registry": server.url, "token": server.admin_token,
                           "replicas": 2, "max_adapters": MAX_ADAPTERS, "max_wait_ms": 20, "max_prompt_tokens": 40,
                           "report_interval": 0.2, "resolve_ttl": 0.5}), route_prefix="/")
    local = AdapterServer(str(root / "base"), Hub(server.url, token=server.admin_token, cache_dir=root / "local-cache",
                                                  progress=False), max_prompt_tokens=40)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            client.local = local
            yield client
    finally:
        local.close()
        serve.shutdown()
        ray.shutdown()


def _complete(client, model, prompt, max_tokens=4, **kw):
    r = client.post("/v1/completions", json={"model": model, "prompt": prompt, "max_tokens": max_tokens, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def _per_replica(client, name: str) -> dict[tuple[str, str], float]:
    """(replica, adapter) -> value of metric ``name``, once every replica has published."""
    time.sleep(1.5)  # replicas publish their metrics every second
    out = {}
    for key, value in parse_prometheus(client.get("/metrics").text).items():
        if key.startswith(name + "{") and 'replica="router"' not in key:
            labels = dict(part.split("=") for part in key[len(name) + 1:-1].split(","))
            out[(labels["replica"].strip('"'), labels.get("adapter", "").strip('"'))] = value
    return out


def test_answers_equal_the_local_servers(fleet):
    for i, ref in enumerate(ADAPTERS[:3]):
        prompt = _prompt(i)
        remote = _complete(fleet, ref, prompt, 5)["choices"][0]["text"]
        assert remote == fleet.local.complete(ref, prompt, max_tokens=5).text


def test_one_version_loads_once_per_replica_not_per_request(fleet):
    ref = ADAPTERS[0]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _complete(fleet, ref, _prompt(i), 2), range(24)))
    loads = {k: v for k, v in _per_replica(fleet, "adapterhub_adapter_loads_total").items() if k[1] == "acme/ray0@1.0.0"}
    assert loads and all(v == 1 for v in loads.values()), loads  # each replica that served it loaded it once
    assert len(loads) <= 2


def test_each_replicas_lru_holds_at_most_max_adapters(fleet):
    for i, ref in enumerate(ADAPTERS):
        _complete(fleet, ref, _prompt(i), 1)
    loaded = _per_replica(fleet, "adapterhub_adapters_loaded")
    assert loaded and all(v <= MAX_ADAPTERS for v in loaded.values()), loaded
    models = fleet.get("/v1/models").json()["data"]
    assert {m["id"] for m in models} <= {r.replace(":prod", "@1.0.0") for r in ADAPTERS} | {"acme/can@1.0.0"}


def test_a_30_percent_canary_splits_keys_within_a_binomial_bound(fleet, server):
    with Hub(server.url, token=server.admin_token) as hub:
        rid = hub.rollout_start("acme/can", "prod", "1.1.0", 30)["id"]
        n, canary = 100, 0
        for i in range(n):
            key = f"tenant-{i}"
            first = _complete(fleet, "acme/can:prod", "w1 w2", 1, user=key)["adapterhub"]
            assert first["arm"] == arm_for(rid, 30, key)
            if i < 20:  # the same key, the same arm, whichever replica answers
                assert _complete(fleet, "acme/can:prod", "w1 w2", 1, user=key)["adapterhub"]["arm"] == first["arm"]
            canary += first["arm"] == "canary"
        assert abs(canary / n - 0.3) <= 4 * math.sqrt(0.3 * 0.7 / n), canary
        hub.rollout_rollback("acme/can:prod", reason="the split was measured")


def test_a_broken_canary_is_rolled_back_by_outcomes_from_both_replicas(fleet, server):
    with Hub(server.url, token=server.admin_token) as hub:
        rid = hub.rollout_start("acme/brk", "prod", "1.1.0", 50, thresholds={"min_requests": 10})["id"]
        codes = {"stable": set(), "canary": set()}
        for i in range(60):
            key = f"user-{i}"
            r = fleet.post("/v1/completions", json={"model": "acme/brk:prod", "prompt": "w1", "max_tokens": 1, "user": key})
            codes[arm_for(rid, 50, key)].add(r.status_code)
        assert codes["stable"] == {200} and 422 in codes["canary"] and codes["canary"] <= {200, 422}, codes
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (status := hub.rollout_status("acme/brk:prod"))["state"] != "rolled_back":
            time.sleep(0.2)
        assert status["state"] == "rolled_back", status
    errors = {k: v for k, v in _per_replica(fleet, "adapterhub_requests_total").items()}
    assert errors  # outcomes were counted on the replicas that served them


def test_bad_input_gets_the_local_servers_answers(fleet):
    r = fleet.post("/v1/completions", json={"model": "acme/nope:prod", "prompt": "w1"})
    assert r.status_code == 404 and "acme/nope:prod" in r.json()["error"]["message"]
    r = fleet.post("/v1/completions", json={"model": ADAPTERS[0], "prompt": " ".join(["w1"] * 41)})
    assert r.status_code == 413 and "41 tokens" in r.json()["error"]["message"], r.text
    r = fleet.post("/v1/classify", json={"model": ADAPTERS[0], "input": "w1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_task"
    assert "ray::" not in r.json()["error"]["message"]  # the replica's own message, not Ray's wrapper
    assert fleet.post("/v1/completions", json={"prompt": "w1"}).status_code == 422


def test_a_replica_killed_mid_traffic_loses_no_retried_request(fleet):
    """The client retries a 503 (as the openai client does); every request is answered in the end."""
    time.sleep(1.5)
    replicas = sorted({k[0] for k in _per_replica(fleet, "adapterhub_batches_total")})
    assert len(replicas) == 2, replicas

    def with_retries(i: int) -> int:
        for _ in range(20):
            try:
                r = fleet.post("/v1/completions", json={"model": ADAPTERS[i % 2], "prompt": _prompt(i), "max_tokens": 1})
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            if r.status_code != 503 and r.status_code < 500:
                return r.status_code
            time.sleep(0.5)
        return -1

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(with_retries, i) for i in range(30)]
        time.sleep(0.3)
        ray.kill(ray.get_actor(f"SERVE_REPLICA::default#AdapterReplica#{replicas[0]}", namespace="serve"))
        codes = [f.result() for f in futures]
    assert codes == [200] * 30, codes


def test_the_public_entry_and_the_cli_option():
    import adapterhub
    from adapterhub.compose.serving.ray_backend import ray_deployment

    assert adapterhub.ray_deployment is ray_deployment
    from click.testing import CliRunner

    from adapterhub.cli.main import cli

    out = CliRunner().invoke(cli, ["serve-model", "--help"]).output
    assert "--backend [local|ray]" in out and "--replicas" in out
