"""``adapterhub serve-model`` as a real uvicorn process on 127.0.0.1 against a real registry:
concurrent requests equal single ones, OpenAI-shaped answers and errors, metrics, canary arms."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner

import adapterhub as ah
from adapterhub.cli.main import cli
from adapterhub.registry.client import Hub
from adapterhub.registry.server.canary import arm_for
from tests.engine.test_serve import WORDS, _lora_folder, _prompt, parse_prometheus
from tests.helpers.live_server import free_port
from tests.helpers.tiny import build, word_tokenizer

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

ADAPTERS = [f"acme/srv{i}:prod" for i in range(10)]


@pytest.fixture(scope="module")
def serving(server, tmp_path_factory):
    """Base + adapters pushed to the live registry, and ``serve-model`` running against it."""
    root = tmp_path_factory.mktemp("serve-model")
    build("llama-causal").save_pretrained(root / "base")
    word_tokenizer(WORDS).save_pretrained(root / "base")
    am = ah.AdapterModel(build("llama-causal"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERHUB_")}
    env.update(ADAPTERHUB_URL=server.url, ADAPTERHUB_TOKEN=server.admin_token, ADAPTERHUB_HOME=str(root / "home"))
    # the server boots (imports torch, loads the base) while the adapters are pushed
    port = free_port()
    log = open(root / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "adapterhub.cli", "serve-model", "--base", str(root / "base"),
                             "--port", str(port), "--max-wait-ms", "20", "--max-prompt-tokens", "40",
                             "--report-interval", "0.2"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with Hub(server.url, token=server.admin_token, cache_dir=root / "push-cache", progress=False) as hub:
            for i, ref in enumerate(ADAPTERS):
                hub.push(_lora_folder(am, root / "a", f"srv{i}", seed=i, r=2 + i % 3), ref.split(":")[0],
                         version="1.0.0", alias="prod")
            hub.push(_lora_folder(am, root / "a", "svc-old", seed=50), "acme/svc", version="1.0.0", alias="prod")
            hub.push(_lora_folder(am, root / "a", "svc-new", seed=51), "acme/svc", version="1.1.0")
            other = ah.AdapterModel(build("llama-causal", hidden_size=48))
            wide = _lora_folder(other, root / "a", "wide", seed=7)
            hub.push(wide, "acme/wide", version="1.0.0", alias="prod")
            hub.push(_lora_folder(am, root / "a", "brk-old", seed=60), "acme/brk", version="1.0.0", alias="prod")
            hub.push(wide, "acme/brk", version="1.1.0")  # a broken canary: built for another base
            hub.push(_lora_folder(am, root / "a", "bare-old", seed=70), "acme/bare", version="1.0.0", alias="stable")
            hub.push(_lora_folder(am, root / "a", "bare-new", seed=71), "acme/bare", version="1.1.0")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (root / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _complete(client, model, prompt, max_tokens=4, **kw):
    r = client.post("/v1/completions", json={"model": model, "prompt": prompt, "max_tokens": max_tokens, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def _batches(client) -> float:
    return parse_prometheus(client.get("/metrics").text)["adapterhub_batches_total"]


def test_fifty_concurrent_requests_equal_single_requests(serving):
    jobs = [(ADAPTERS[i % 10], _prompt(i), 2 + i % 4) for i in range(50)]
    single = [_complete(serving, m, p, n)["choices"][0]["text"] for m, p, n in jobs]  # one at a time
    before = _batches(serving)
    with ThreadPoolExecutor(25) as pool:
        together = list(pool.map(lambda j: _complete(serving, *j)["choices"][0]["text"], jobs))
    assert together == single
    assert len(set(single)) > 10
    assert _batches(serving) - before < 50  # concurrent requests shared batches


def test_openai_shapes_models_and_metrics(serving):
    out = _complete(serving, ADAPTERS[0], ["w1 w2", "w3"], max_tokens=3)
    assert out["object"] == "text_completion" and [c["index"] for c in out["choices"]] == [0, 1]
    assert out["usage"]["prompt_tokens"] == 3 and out["adapterhub"]["resolved"] == "acme/srv0@1.0.0"
    chat = serving.post("/v1/chat/completions", json={
        "model": ADAPTERS[1], "messages": [{"role": "user", "content": "w5 w6"}], "max_tokens": 2})
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["role"] == "assistant"
    assert chat.headers["x-adapterhub-version"] == "acme/srv1@1.0.0"
    ids = [m["id"] for m in serving.get("/v1/models").json()["data"]]
    assert "acme/srv0@1.0.0" in ids
    samples = parse_prometheus(serving.get("/metrics").text)
    assert samples['adapterhub_requests_total{adapter="acme/srv0:prod",arm="stable",status="ok"}'] >= 2
    assert any(k.startswith("adapterhub_request_latency_seconds_bucket") for k in samples)
    assert samples['adapterhub_cache_requests_total{cache="adapter",result="hit"}'] > 0


def test_bad_requests(serving):
    r = serving.post("/v1/completions", json={"model": "acme/nope:prod", "prompt": "w1"})
    assert r.status_code == 404 and "acme/nope:prod" in r.json()["error"]["message"]
    r = serving.post("/v1/completions", json={"model": "acme/wide:prod", "prompt": "w1"})
    msg = r.json()["error"]["message"]
    assert r.status_code == 422 and "acme/wide@1.0.0" in msg and "hidden 48" in msg and "hidden 32" in msg, msg
    r = serving.post("/v1/completions", json={"model": ADAPTERS[0], "prompt": " ".join(["w1"] * 41)})
    assert r.status_code == 413 and "41 tokens" in r.json()["error"]["message"]
    r = serving.post("/v1/classify", json={"model": ADAPTERS[0], "input": "w1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_task"
    assert serving.post("/v1/completions", json={"prompt": "w1"}).status_code == 422  # no model field
    assert _complete(serving, ADAPTERS[0], "w1")["choices"]  # still serving


def test_rollout_keys_get_their_arm(serving, server):
    with Hub(server.url, token=server.admin_token) as hub:
        rid = hub.rollout_start("acme/svc", "prod", "1.1.0", 50)["id"]
        expected = {v: _complete(serving, f"acme/svc@{v}", "w9 w8 w7", 4)["choices"][0]["text"]
                    for v in ("1.0.0", "1.1.0")}
        assert expected["1.0.0"] != expected["1.1.0"]
        arms = set()
        for i in range(12):
            key = f"tenant-{i}"
            via_user = _complete(serving, "acme/svc:prod", "w9 w8 w7", 4, user=key)
            r = serving.post("/v1/completions", headers={"X-Adapterhub-Key": key},
                             json={"model": "acme/svc:prod", "prompt": "w9 w8 w7", "max_tokens": 4})
            arm = arm_for(rid, 50, key)
            version = "1.1.0" if arm == "canary" else "1.0.0"
            for out in (via_user, r.json()):
                assert (out["adapterhub"]["arm"], out["adapterhub"]["version"]) == (arm, version)
                assert out["choices"][0]["text"] == expected[version]
            arms.add(arm)
        assert arms == {"stable", "canary"}
        deadline = time.monotonic() + 10  # outcomes reach the registry in the background
        while time.monotonic() < deadline:
            status = hub.rollout_status("acme/svc:prod")
            if sum(a["requests"] for a in status["arms"].values()) >= 24:
                break
            time.sleep(0.2)
        assert sum(a["requests"] for a in status["arms"].values()) == 24
        assert status["arms"]["canary"]["requests"] > 0 and status["arms"]["stable"]["requests"] > 0


def test_bare_reference_outcomes_count_towards_the_stable_rollout(serving, server):
    """``acme/bare`` means the ``stable`` alias: its requests land in the rollout on ``stable``, per arm,
    in the same counters as ``acme/bare:stable``."""
    with Hub(server.url, token=server.admin_token) as hub:
        rid = hub.rollout_start("acme/bare", "stable", "1.1.0", 50)["id"]
        want = {"stable": 0, "canary": 0}
        for i in range(10):
            key = f"bare-{i}"
            for model in ("acme/bare", "acme/bare:stable"):
                out = _complete(serving, model, "w1 w2", 1, user=key)
                arm = arm_for(rid, 50, key)
                assert (out["adapterhub"]["arm"], out["adapterhub"]["version"]) == (
                    arm, "1.1.0" if arm == "canary" else "1.0.0")
                want[arm] += 1
        assert want["stable"] and want["canary"]
        deadline = time.monotonic() + 10  # outcomes reach the registry in the background
        while time.monotonic() < deadline:
            arms = hub.rollout_status("acme/bare:stable")["arms"]
            if sum(a["requests"] for a in arms.values()) >= 20:
                break
            time.sleep(0.2)
        assert {arm: arms[arm]["requests"] for arm in want} == want


def test_broken_canary_is_rolled_back_by_served_traffic(serving, server):
    """Canary requests fail (422), the server reports per-arm outcomes, the registry rolls back."""
    with Hub(server.url, token=server.admin_token) as hub:
        rid = hub.rollout_start("acme/brk", "prod", "1.1.0", 50, thresholds={"min_requests": 10})["id"]
        codes = {"stable": set(), "canary": set()}
        for i in range(60):
            key = f"user-{i}"
            r = serving.post("/v1/completions", json={"model": "acme/brk:prod", "prompt": "w1 w2", "max_tokens": 1,
                                                      "user": key})
            codes[arm_for(rid, 50, key)].add(r.status_code)
        # canary keys fail until the registry rolls back (it may do so mid-loop), stable keys never fail
        assert codes["stable"] == {200} and 422 in codes["canary"] and codes["canary"] <= {200, 422}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (status := hub.rollout_status("acme/brk:prod"))["state"] != "rolled_back":
            time.sleep(0.2)
        assert status["state"] == "rolled_back", status
        assert "error" in status["reason"] and hub.aliases("acme/brk")["prod"] == "1.0.0"
    out = _complete(serving, "acme/brk:prod", "w1 w2", 1, user="a-new-key")
    assert (out["adapterhub"]["arm"], out["adapterhub"]["version"]) == ("stable", "1.0.0")
    samples = parse_prometheus(serving.get("/metrics").text)
    assert samples['adapterhub_requests_total{adapter="acme/brk:prod",arm="canary",status="error"}'] > 0


def test_serve_model_help():
    result = CliRunner().invoke(cli, ["serve-model", "--help"])
    assert result.exit_code == 0 and "Example" in result.output and "--registry" in result.output


def test_serve_model_bad_base_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["serve-model", "--base", str(tmp_path / "nope")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "not a local transformers model folder" in result.output
