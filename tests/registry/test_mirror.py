"""The base-model mirror, refereed by PEFT's AutoPeftModel with only ``HF_ENDPOINT`` set.

A registry with the two built-in bases registered and mirrored (as ``adapterhub up`` does) and the
seeds published: ``AutoPeftModelForCausalLM.from_pretrained("adapterhub/smollm2-friends-lora")``
reads the adapter's ``base_model_name_or_path`` (a Hub id), fetches the base from the same
endpoint, and must give the logits the local folders give. Offline but for 127.0.0.1: the
subprocess has ``HF_HUB_OFFLINE`` unset and no other endpoint to reach.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapterhub.cli.base import register_catalogue_or_folder
from adapterhub.cli.server import seed_root
from adapterhub.compose.workflows.catalog import CATALOGUE, resolve_base_model
from adapterhub.registry.client import Hub
from adapterhub.registry.seeding import seed_registry
from tests.helpers.live_server import run_server

pytestmark = pytest.mark.slow  # converts SmolLM2 once (cached), mirrors 630 MB, loads two real models

ROOT = Path(__file__).resolve().parents[2]
CASES = [  # (AutoPeft class, seed, base, extra from_pretrained arguments)
    ("AutoPeftModelForCausalLM", "smollm2-friends-lora", "smollm2-135m", {}),
    ("AutoPeftModelForSequenceClassification", "minilm-bbc-news-lora", "minilm-l6", {"num_labels": 5}),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    with run_server(root / "registry") as srv:
        with Hub(srv.url, srv.admin_token, cache_dir=root / "cache", progress=False) as admin:
            for entry in CATALOGUE.values():
                register_catalogue_or_folder(admin, entry.name, None, (), True, say=lambda _m: None)
            seed_registry(admin, seed_root(), say=lambda _m: None)
        yield srv


@pytest.mark.parametrize(("auto", "seed", "base", "extra"), CASES, ids=[c[1] for c in CASES])
def test_autopeft_loads_base_and_adapter_from_the_hub_alone(hub, tmp_path, auto, seed, base, extra):
    local_base = resolve_base_model(base, say=lambda _m: None)
    code = textwrap.dedent(f"""
        import json, torch
        import peft
        from peft import PeftModel
        import transformers
        auto = getattr(peft, {auto!r})
        ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]] if {auto!r}.endswith("Classification") else [[1, 504, 2130, 30, 7]])
        remote = auto.from_pretrained("adapterhub/{seed}", **{extra!r}).eval()
        base_cls = getattr(transformers, {auto!r}.replace("AutoPeftModel", "AutoModel"))
        local = PeftModel.from_pretrained(base_cls.from_pretrained({str(local_base)!r}, **{extra!r}),
                                          {str(seed_root() / seed)!r}).eval()
        with torch.no_grad():
            a, b = remote(input_ids=ids).logits, local(input_ids=ids).logits
        print(json.dumps({{"equal": torch.equal(a, b), "max_diff": float((a - b).abs().max()),
                           "base": remote.peft_config["default"].base_model_name_or_path}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
                "PYTHONPATH": str(ROOT)})
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["equal"], out
    assert out["base"] == next(e.hub_id for e in CATALOGUE.values() if e.name == base)
