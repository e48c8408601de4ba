"""A live registry with pushed synthetic adapters, and a tiny classifier base with a trained adapter.

Shared by the AppTest page tests and the browser test (module scope keeps the UI suite quick).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from adapterhub.registry.client import Hub
from tests.client.support import live_registry, make_adapter
from tests.helpers import tiny
from tests.helpers.tiny import build

APP = str(Path(__file__).resolve().parents[2] / "web" / "app.py")
WORDS = ["the", "film", "was", "a", "plot", "story", "really", "quite", "and", "it", "music", "good", "bad"]
README = """# Alpha adapter

A **synthetic** adapter for the UI tests.

<script>window.pwned = true</script><b id="raw-html">raw html</b>
"""


@dataclass
class Hubdata:
    url: str
    token: str
    base: Path  # a tiny BERT classifier folder with its tokenizer
    lm_base: Path  # a tiny LLaMA causal LM folder with the same tokenizer
    data: Path  # JSONL with text,label (labels neg/pos)
    home: Path
    scored: Path  # acme/tiny-scored@1.0.0's folder: its card records the protocol of its figures


def word_tokenizer():
    return tiny.word_tokenizer(WORDS)


def reviews(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        words = rng.sample(WORDS[:-2], 4) + ["good" if positive else "bad"]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "pos" if positive else "neg"})
    return rows


def _tiny_classifier(root: Path) -> tuple[Path, Path, Path]:
    """A tiny random BERT saved with a word tokenizer, and a LoRA trained on it for a few steps."""
    from adapterhub.compose.workflows.training import train

    base = root / "tiny-bert"
    build("bert-seqcls").save_pretrained(base)
    word_tokenizer().save_pretrained(base)
    data = root / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in reviews(48, seed=0)))
    out = root / "tiny-sent"
    train(base, data, "lora", out, progress=False, device="cpu", steps=40, lr=3e-2, batch_size=16, r=4, alpha=8)
    return base, data, out


def _tiny_scored(root: Path, base: Path, data: Path) -> Path:
    """A LoRA on the tiny BERT scored after training on a seeded sample of 24 of the reviews at
    max_length 64: its card records that protocol (base and data are this machine's paths)."""
    from adapterhub.compose.workflows.training import train

    out = root / "tiny-scored"
    train(base, data, "lora", out, eval_data=data, eval_sample=24, progress=False, device="cpu", steps=40,
          lr=3e-2, batch_size=16, r=4, alpha=8, max_length=64)
    return out


def _tiny_lm(root: Path) -> tuple[Path, Path]:
    """A tiny random LLaMA over the word vocabulary, and a LoRA trained on it for a few steps."""
    from adapterhub.compose.workflows.training import train

    base = root / "tiny-llama"
    tokenizer = word_tokenizer()
    build("llama-causal", vocab_size=len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = root / "lm.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in reviews(16, seed=2)))
    out = root / "tiny-lm"
    train(base, data, "lora", out, progress=False, device="cpu", steps=8, lr=3e-2, batch_size=8, r=4, alpha=8)
    return base, out


@pytest.fixture(scope="session")
def hubdata(tmp_path_factory) -> Hubdata:
    root = tmp_path_factory.mktemp("web")
    base, data, tiny = _tiny_classifier(root)
    lm_base, tiny_lm = _tiny_lm(root)
    scored = _tiny_scored(root, base, data)
    with live_registry(root / "registry", namespaces=("acme", "other")) as srv:
        hub = Hub(srv.url, srv.admin_token, cache_dir=root / "cache", progress=False)
        alpha1 = make_adapter(root / "alpha1", seed=1)
        (alpha1 / "README.md").write_text(README)
        hub.push(alpha1, "acme/alpha", version="1.0.0", alias="stable")
        alpha2 = make_adapter(root / "alpha2", seed=2, extra_bytes=2048)
        cfg = json.loads((alpha2 / "adapter_config.json").read_text())
        (alpha2 / "adapter_config.json").write_text(json.dumps({**cfg, "r": 8, "lora_alpha": 16}))
        (alpha2 / "README.md").write_text(README)
        hub.push(alpha2, "acme/alpha", version="1.1.0")
        hub.post_eval("acme/alpha@1.0.0", "reviews:test", "0" * 64, {"accuracy": 0.81, "macro_f1": 0.8})
        hub.post_eval("acme/alpha@1.1.0", "reviews:test", "0" * 64, {"accuracy": 0.9, "macro_f1": 0.88})
        hub.set_alias("acme/alpha", "stable", "1.1.0")
        hub.push(make_adapter(root / "beta", seed=3, base_model="other/base"), "other/beta", version="0.1.0")
        hub.push(tiny, "acme/tiny-sent", version="1.0.0", alias="stable")
        hub.push(tiny_lm, "acme/tiny-lm", version="1.0.0")
        hub.push(scored, "acme/tiny-scored", version="1.0.0")
        hub.push(make_adapter(root / "roll1", seed=4), "other/roll", version="1.0.0", alias="prod")
        hub.push(make_adapter(root / "roll2", seed=5), "other/roll", version="1.1.0")
        rollout = hub.rollout_start("other/roll", "prod", "1.1.0", 10)
        hub.report_outcomes("other/roll:prod", [
            {"arm": "stable", "requests": 90, "errors": 2, "latency_sum": 9.0, "latency_sq_sum": 1.0},
            {"arm": "canary", "requests": 10, "errors": 0, "latency_sum": 0.8, "latency_sq_sum": 0.07}],
            rollout_id=rollout["id"])
        hub.close()
        yield Hubdata(srv.url, srv.admin_token, base, lm_base, data, root, scored)


@pytest.fixture
def ui_env(tmp_path, monkeypatch):
    """None of the caller's ADAPTERHUB_* settings, and a fresh ADAPTERHUB_HOME (cache, stored login)."""
    for var in ("ADAPTERHUB_URL", "ADAPTERHUB_TOKEN", "ADAPTERHUB_OFFLINE", "ADAPTERHUB_UI_SHARED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ADAPTERHUB_HOME", str(tmp_path / "home"))


def app(hub, page: str | None = None, token: str | None = None, ref: str = "", timeout: float = 30) -> AppTest:
    """The app run once against ``hub`` (anything with ``url`` and ``token``), on ``page``, signed in
    with ``hub.token`` unless ``token`` says otherwise ("" = anonymous)."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.session_state["url"] = hub.url
    if token is None or token:  # "" = anonymous (the environment holds no token)
        at.session_state["token"] = hub.token if token is None else token
    at.session_state["ref"] = ref
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)
