"""`AdapterServer`: micro-batched per-row serving equals single-request runs; LRU by count and bytes
with pinning; clear refusals; a failing row never fails its batch-mates; canary-aware resolution."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import adapterhub as ah
from adapterhub.compose.serving.requests import PromptTooLongError
from adapterhub.compose.serving.server import AdapterServer
from adapterhub.errors import AdapterNotFoundError, IncompatibleAdapterError, RegistryError
from adapterhub.registry.client import Resolution
from adapterhub.registry.reference import parse_reference
from tests.helpers.tiny import build, word_tokenizer

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

WORDS = [f"w{i}" for i in range(80)]


class FakeHub:
    """Aliases and versions in a dict: ``refs[(ns/name, alias)] = version``, ``folders[exact] = path``."""

    def __init__(self):
        self.aliases: dict[str, str] = {}
        self.folders: dict[str, Path] = {}
        self.resolves = 0
        self.pulls: list[str] = []
        self.reported: list[tuple] = []

    def add(self, repo: str, version: str, folder: Path, alias: str = "prod") -> None:
        self.folders[f"{repo}@{version}"] = folder
        self.aliases[f"{repo}:{alias}"] = version

    def resolve(self, ref, key=None):
        self.resolves += 1
        r = parse_reference(ref)
        version = r.version or self.aliases.get(f"{r.repo_id}:{r.alias or 'stable'}")
        if version is None or f"{r.repo_id}@{version}" not in self.folders:
            raise AdapterNotFoundError(f"adapter {r.repo_id} not found")
        return Resolution(r.namespace, r.name, version)

    def pull(self, ref):
        self.pulls.append(ref)
        return self.folders[ref]

    def report_outcomes(self, ref, batches, alias=None, rollout_id=None):
        self.reported.append((ref, batches, rollout_id))
        return {}


def _lora_folder(model, root: Path, name: str, seed: int, r: int = 4) -> Path:
    torch.manual_seed(seed)
    model.add_adapter(name, ah.LoRAConfig(r=r, alpha=2 * r, init_lora_weights=False))
    with torch.no_grad():
        for p in model.adapter_parameters(name):
            p.mul_(3.0)  # strong enough that adapters change greedy outputs
    folder = model.save_adapter(name, root / name)
    model.delete_adapter(name)
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny llama + word tokenizer on disk, ten LoRA folders for it and one for another base."""
    root = tmp_path_factory.mktemp("serve")
    model = build("llama-causal")
    tok = word_tokenizer(WORDS)
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    am = ah.AdapterModel(build("llama-causal"))
    folders = {f"a{i}": _lora_folder(am, root / "adapters", f"a{i}", seed=i, r=2 + i % 3) for i in range(10)}
    other = ah.AdapterModel(build("llama-causal", hidden_size=48))
    folders["other"] = _lora_folder(other, root / "adapters", "other", seed=99)
    return root / "base", folders


@pytest.fixture
def hub(base):
    h = FakeHub()
    for name, folder in base[1].items():
        h.add(f"acme/{name}", "1.0.0", folder)
    return h


def _prompt(i: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 5))


def test_concurrent_requests_equal_single_requests(base, hub):
    requests = [(f"acme/a{i % 10}:prod", _prompt(i), 3 + i % 4) for i in range(50)]
    with AdapterServer(base[0], hub, max_batch=1) as single:
        expected = [single.complete(ref, p, max_tokens=n).token_ids for ref, p, n in requests]
        assert single.metrics.batch_rows == single.metrics.batches == 50
    with AdapterServer(base[0], hub, max_batch=16, max_wait_ms=20) as srv:
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda a: srv.complete(a[0], a[1], max_tokens=a[2]).token_ids, requests))
        assert srv.metrics.batches < 50  # requests really were grouped
    assert got == expected
    assert len({tuple(t) for t in expected}) > 10  # adapters and prompts really differ
    assert all(len(t) <= n for t, (_, _, n) in zip(expected, requests, strict=True))


def test_prompt_and_prefix_adapters_share_batches_with_lora(base, hub, tmp_path):
    """Rows with virtual tokens run as groups inside the micro-batch (they used to fail the batch)."""
    am = ah.AdapterModel(build("llama-causal"))
    for name, config in (("pt", ah.PromptTuningConfig(num_virtual_tokens=4)), ("px", ah.PrefixTuningConfig(num_virtual_tokens=3))):
        am.add_adapter(name, config)
        with torch.no_grad():
            for p in am.adapter_parameters(name):
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name) + p.numel())))
        hub.add(f"acme/{name}", "1.0.0", am.save_adapter(name, tmp_path / name))
    refs = ["acme/pt:prod", "acme/a1:prod", "acme/px:prod", "acme/pt:prod", "acme/a2:prod", "acme/px:prod"] * 2
    requests = [(ref, _prompt(i), 4) for i, ref in enumerate(refs)]
    with AdapterServer(base[0], hub, max_batch=1) as single:
        expected = [single.complete(ref, p, max_tokens=n).token_ids for ref, p, n in requests]
    with AdapterServer(base[0], hub, max_batch=16, max_wait_ms=50) as srv:
        with ThreadPoolExecutor(12) as pool:
            got = list(pool.map(lambda a: srv.complete(a[0], a[1], max_tokens=a[2]).token_ids, requests))
        assert srv.metrics.batches < len(requests)
    assert got == expected


def test_lru_evicts_by_count_keeps_pinned(base, hub):
    with AdapterServer(base[0], hub, max_adapters=3) as srv:
        srv.pin("acme/a0:prod")
        for i in (1, 2, 3, 4):
            srv.complete(f"acme/a{i}:prod", _prompt(i), max_tokens=1)
        ids = [e["id"] for e in srv.loaded()]
        assert ids == ["acme/a0@1.0.0", "acme/a3@1.0.0", "acme/a4@1.0.0"]
        assert len(srv.model.adapters) == 3  # evicted adapters are gone from the model too
        pulls = len(hub.pulls)
        srv.complete("acme/a4:prod", _prompt(1), max_tokens=1)
        assert len(hub.pulls) == pulls  # a hit: no pull
        srv.complete("acme/a1:prod", _prompt(1), max_tokens=1)
        assert len(hub.pulls) == pulls + 1 and "acme/a0@1.0.0" in [e["id"] for e in srv.loaded()]


def test_lru_evicts_by_bytes(base, hub):
    with AdapterServer(base[0], hub) as probe:
        sizes = {i: probe.ensure_loaded(f"acme/a{i}:prod").bytes for i in range(3)}
    budget = sizes[0] + sizes[1] + sizes[2] - 1  # three do not fit
    with AdapterServer(base[0], hub, max_bytes=budget) as srv:
        for i in range(3):
            srv.complete(f"acme/a{i}:prod", _prompt(i), max_tokens=1)
        assert [e["id"] for e in srv.loaded()] == ["acme/a1@1.0.0", "acme/a2@1.0.0"]
        assert srv.loaded_bytes <= budget
        srv.pin("acme/a1:prod")
        srv.complete("acme/a0:prod", _prompt(0), max_tokens=1)
        assert [e["id"] for e in srv.loaded()] == ["acme/a1@1.0.0", "acme/a0@1.0.0"]


def test_cold_pull_does_not_block_loaded_adapters(base, hub):
    gate, real_pull = threading.Event(), hub.pull

    def slow_pull(ref):
        if ref.startswith("acme/a5@"):
            assert gate.wait(30)
        return real_pull(ref)

    hub.pull = slow_pull
    with AdapterServer(base[0], hub) as srv:
        srv.complete("acme/a1:prod", "w1", max_tokens=1)
        cold = srv.submit("acme/a5:prod", "w1", max_tokens=2)  # returns at once: the pull runs in the background
        for _ in range(3):  # served while a5 is still being pulled
            assert srv.complete("acme/a1:prod", "w2 w3", max_tokens=2, timeout=10).token_ids is not None
        assert not cold.done()
        gate.set()
        assert cold.result(30).resolved.exact == "acme/a5@1.0.0"


def test_refusals_name_the_problem(base, hub):
    with AdapterServer(base[0], hub, max_prompt_tokens=20) as srv:
        with pytest.raises(AdapterNotFoundError, match="'acme/nope:prod'"):
            srv.complete("acme/nope:prod", "w1")
        with pytest.raises(IncompatibleAdapterError) as err:
            srv.complete("acme/other:prod", "w1")
        assert "acme/other@1.0.0" in str(err.value) and "hidden 48" in str(err.value) and "hidden 32" in str(err.value)
        with pytest.raises(PromptTooLongError, match="21 tokens; this server accepts at most 20"):
            srv.complete("acme/a1:prod", " ".join(["w1"] * 21))
        assert srv.complete("acme/a1:prod", "w1 w2", max_tokens=2).prompt_tokens == 2  # still serving


def test_failing_row_does_not_fail_batch_mates(base, hub, monkeypatch):
    with AdapterServer(base[0], hub, max_batch=8, max_wait_ms=200) as srv:
        alone = {i: srv.complete(f"acme/a{i}:prod", _prompt(i), max_tokens=3).token_ids for i in range(4)}
        bad = srv.ensure_loaded("acme/a3:prod").name
        real = type(srv.model).generate

        def generate(self, *args, **kwargs):
            if bad in kwargs.get("adapter_names", []):
                raise RuntimeError("poisoned row")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(type(srv.model), "generate", generate)
        batches = srv.metrics.batches
        futures = [srv.submit(f"acme/a{i}:prod", _prompt(i), max_tokens=3) for i in range(4)]
        for i in range(3):
            assert futures[i].result(30).token_ids == alone[i]
        with pytest.raises(RuntimeError, match="poisoned row"):
            futures[3].result(30)
        assert srv.metrics.batches == batches + 1  # they were one batch
        text = srv.metrics_text()
        assert 'adapterhub_requests_total{adapter="acme/a3:prod",arm="stable",status="error"} 1' in text


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def parse_prometheus(text: str) -> dict[str, float]:
    """A strict little parser of the text exposition format: every line a comment or a sample."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        samples[line.rsplit(" ", 1)[0]] = float(line.rsplit(" ", 1)[1])
    return samples


def test_metrics_text_parses_and_counts(base, hub):
    with AdapterServer(base[0], hub) as srv:
        for _ in range(3):
            srv.complete("acme/a1:prod", "w1 w2", max_tokens=1)
        samples = parse_prometheus(srv.metrics_text())
    assert samples['adapterhub_requests_total{adapter="acme/a1:prod",arm="stable",status="ok"}'] == 3
    assert samples['adapterhub_request_latency_seconds_count{adapter="acme/a1:prod",arm="stable"}'] == 3
    assert samples['adapterhub_request_latency_seconds_bucket{adapter="acme/a1:prod",arm="stable",le="+Inf"}'] == 3
    assert samples['adapterhub_cache_requests_total{cache="resolve",result="hit"}'] == 2
    assert samples['adapterhub_cache_requests_total{cache="adapter",result="hit"}'] == 2
    assert samples["adapterhub_adapters_loaded"] == 1


def test_resolve_cache_ttl(base, hub):
    with AdapterServer(base[0], hub, resolve_ttl=60) as srv:
        for _ in range(5):
            srv.resolve("acme/a1:prod", key="k1")
        srv.resolve("acme/a1:prod", key="k2")
        assert hub.resolves == 2
    with AdapterServer(base[0], hub, resolve_ttl=0) as srv:
        srv.resolve("acme/a1:prod")
        srv.resolve("acme/a1:prod")
        assert hub.resolves == 4


def test_concurrent_resolve_misses_share_one_registry_call(base, hub):
    gate, real_resolve, calls = threading.Event(), hub.resolve, []

    def slow_resolve(ref, key=None):
        calls.append(ref)
        assert gate.wait(30)
        return real_resolve(ref, key)

    hub.resolve = slow_resolve
    with AdapterServer(base[0], hub, resolve_ttl=60) as srv, ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(srv.resolve, "acme/a1:prod", "k") for _ in range(8)]
        while srv.metrics.cache[("resolve", "hit")] + srv.metrics.cache[("resolve", "miss")] < 8:
            threading.Event().wait(0.01)  # all eight are in resolve: one asks, seven wait for its answer
        gate.set()
        assert {f.result(30).exact for f in futures} == {"acme/a1@1.0.0"}
        assert calls == ["acme/a1:prod"]
        assert srv.metrics.cache[("resolve", "miss")] == 1


def test_resolve_serves_last_answer_while_registry_is_down(base, tmp_path):
    """A registry that cannot be reached fails no request for a reference already resolved."""
    from adapterhub.registry.client import Hub
    from tests.helpers.live_server import start_server, stop_server

    registry = start_server(tmp_path / "registry")
    hub = Hub(registry.url, token=registry.admin_token, cache_dir=tmp_path / "cache", progress=False, offline=False)
    try:
        hub.create_namespace("acme", exist_ok=True)
        hub.push(base[1]["a1"], "acme/a1", version="1.0.0", alias="prod")
        with AdapterServer(base[0], hub, resolve_ttl=0) as srv:
            first = srv.complete("acme/a1:prod", "w1 w2", max_tokens=3)
            stop_server(registry)
            again = srv.complete("acme/a1:prod", "w1 w2", max_tokens=3)
            assert (again.resolved, again.token_ids) == (first.resolved, first.token_ids)
            with pytest.raises(RegistryError, match="cannot reach the registry"):
                srv.complete("acme/a2:prod", "w1 w2")  # never resolved: nothing to fall back on
            stale = parse_prometheus(srv.metrics_text())
            assert stale['adapterhub_cache_requests_total{cache="resolve_stale",result="hit"}'] == 1
    finally:
        stop_server(registry)
        hub.close()


def test_classify_per_row_with_card_labels_over_http(tmp_path):
    """A classifier base: /v1/classify gives the card's labels and each adapter's own probabilities."""
    from fastapi.testclient import TestClient

    from adapterhub.compose.serving.http import create_app

    build("llama-seqcls").save_pretrained(tmp_path / "base")
    word_tokenizer(WORDS).save_pretrained(tmp_path / "base")
    am = ah.AdapterModel(build("llama-seqcls"))
    hub = FakeHub()
    for i in range(2):
        torch.manual_seed(i)
        am.add_adapter(f"c{i}", ah.LoRAConfig(r=4, alpha=8, init_lora_weights=False, task_type="SEQ_CLS"))
        with torch.no_grad():
            for name, p in am.named_parameters():
                if f".ah_heads.c{i}." in name:
                    p.add_(torch.randn(p.shape))
        hub.add(f"acme/c{i}", "1.0.0", am.save_adapter(f"c{i}", tmp_path / f"c{i}", card={"labels": ["neg", "neu", "pos"]}))
    text = "w3 w4 w5"
    ids = torch.tensor([word_tokenizer(WORDS)(text)["input_ids"]])
    with AdapterServer(tmp_path / "base", hub) as srv, TestClient(create_app(srv)) as client:
        r = client.post("/v1/classify", json={"model": "acme/c0:prod", "input": [text, "w9"]})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert set(data[0]["probabilities"]) == {"neg", "neu", "pos"}
        assert abs(sum(data[0]["probabilities"].values()) - 1) < 1e-5
        r1 = client.post("/v1/classify", json={"model": "acme/c1:prod", "input": text}).json()["data"][0]
        for i, got in enumerate((data[0], r1)):
            am.set_active(f"c{i}")
            with torch.no_grad():
                want = torch.softmax(am(input_ids=ids).logits, -1)[0].tolist()
            assert [got["probabilities"][k] for k in ("neg", "neu", "pos")] == pytest.approx(want, abs=1e-5)
        r = client.post("/v1/completions", json={"model": "acme/c0:prod", "prompt": "w1"})
        assert r.status_code == 400 and "classifier" in r.json()["error"]["message"]


def test_cancelled_request_does_not_stop_the_worker(base, hub):
    with AdapterServer(base[0], hub, max_wait_ms=50) as srv:
        srv.ensure_loaded("acme/a1:prod")
        gone = srv.submit("acme/a1:prod", "w1 w2", max_tokens=2)
        assert gone.cancel()  # e.g. an HTTP client that disconnected
        assert srv.complete("acme/a1:prod", "w1 w2", max_tokens=2, timeout=30).token_ids is not None
        assert srv.adapters.get("acme/a1@1.0.0").in_use == 0
