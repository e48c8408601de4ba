"""Base models in the registry: registration, the compatibility gate on every push path, search by
id or alias, and engines recorded per version, against a live registry.

The bases here are tiny random BERTs saved as real transformers folders; the adapters are saved
by PEFT (the referee for the folder format). `test_mirror.py` has the real bases and AutoPeftModel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification

from adapterhub.errors import IncompatibleAdapterError
from adapterhub.registry.client import Hub
from tests.helpers.live_server import run_server
from tests.helpers.snapshots import registry_state
from tests.registry.factory import client

pytestmark = pytest.mark.slow  # live servers, transformers models, subprocesses

BASE_ID = "test-org/Tiny-BERT"
ROOT = Path(__file__).resolve().parents[2]


def tiny_bert(hidden: int = 32, layers: int = 2, seed: int = 0) -> BertForSequenceClassification:
    import torch

    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                                    intermediate_size=64, vocab_size=96, max_position_embeddings=64,
                                                    num_labels=3))


def lora_folder(path: Path, model, base_id: str = BASE_ID) -> Path:
    peft = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"],
                                            init_lora_weights=False))
    peft.save_pretrained(path)
    # named after saving: given a Hub id, PEFT's save would try to reach the Hub for its config
    config = json.loads((path / "adapter_config.json").read_text())
    (path / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base_id}, indent=2))
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    with run_server(root / "registry") as srv:
        base_dir = root / "base"
        tiny_bert().save_pretrained(base_dir)
        with Hub(srv.url, srv.admin_token, cache_dir=root / "cache", progress=False) as admin:
            out = admin.register_base(base_dir, BASE_ID, ["tiny-bert"], mirror=True)
            admin.create_namespace("acme")
        srv.root, srv.base_dir, srv.registered = root, base_dir, out
        yield srv
        assert "Traceback" not in srv.log(), srv.log()


def test_register_list_and_read_by_id_or_alias(hub):
    assert hub.registered["id"] == BASE_ID and hub.registered["aliases"] == ["tiny-bert"]
    assert hub.registered["modules"] > 0 and hub.registered["mirror"] is True
    listed = httpx.get(f"{hub.url}/api/v1/bases").json()
    assert [b["id"] for b in listed] == [BASE_ID]
    by_alias = httpx.get(f"{hub.url}/api/v1/bases/tiny-bert").json()
    by_id = httpx.get(f"{hub.url}/api/v1/bases/{BASE_ID}").json()
    assert by_alias == by_id and "encoder.layer.0.attention.self.query" in str(by_id["manifest"]["modules"])
    # the mirror: the base's own files under its Hub id, over the HF routes
    info = httpx.get(f"{hub.url}/api/models/{BASE_ID}").json()
    assert info["id"] == BASE_ID and {"config.json", "model.safetensors"} <= {s["rfilename"] for s in info["siblings"]}
    r = httpx.get(f"{hub.url}/{BASE_ID}/resolve/main/config.json")
    assert r.status_code == 200 and r.content == (hub.base_dir / "config.json").read_bytes()


def test_a_fitting_adapter_lands_with_its_engines(hub, tmp_path):
    folder = lora_folder(tmp_path / "fits", tiny_bert(seed=1))
    with Hub(hub.url, hub.admin_token, cache_dir=tmp_path / "cache", progress=False) as h:
        v = h.push(folder, "acme/fits", version="1.0.0")
    assert v["warnings"] == [] and "peft" in v["engines"] and "adapterhub" in v["engines"]


def test_a_lora_of_another_width_is_refused_on_every_path_and_writes_nothing(hub, tmp_path):
    """Rank side fits (r=4), target width does not (48, not 32): adapterhub push (refused before
    any upload), the REST publish, and an HF commit are refused alike, naming the first tensor."""
    folder = lora_folder(tmp_path / "wide", tiny_bert(hidden=48, seed=2))
    before = registry_state(hub.root / "registry")
    with Hub(hub.url, hub.admin_token, cache_dir=tmp_path / "cache", progress=False) as h:
        with pytest.raises(IncompatibleAdapterError, match=r"lora_A\.weight.*\[4, 32\]"):
            h.push(folder, "acme/wide", version="1.0.0")
    assert registry_state(hub.root / "registry") == before  # nothing uploaded, no adapter created

    c = client(hub.url, hub.admin_token)
    assert c.post("/api/v1/adapters", json={"namespace": "acme", "name": "wide-rest"}).status_code == 201
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    from tests.registry.factory import manifest, upload

    upload(c, files)
    r = c.post("/api/v1/adapters/acme/wide-rest/versions", json={"version": "1.0.0", "files": manifest(files)})
    assert r.status_code == 422 and r.json()["code"] == "IncompatibleAdapter", r.text
    assert "lora_A.weight" in r.json()["detail"] and "[4, 32]" in r.json()["detail"]
    assert c.get("/api/v1/adapters/acme/wide-rest/versions").json() == []

    before = registry_state(hub.root / "registry")
    out = _hf(hub, tmp_path, f"""
        api = HfApi()
        api.create_repo("acme/wide-hf")
        try:
            api.upload_folder(folder_path={str(folder)!r}, repo_id="acme/wide-hf")
            print(json.dumps({{"refused": None}}))
        except Exception as exc:
            print(json.dumps({{"refused": str(exc)}}))
    """)
    assert "IncompatibleAdapter" in out["refused"] or "lora_A.weight" in out["refused"], out
    after = registry_state(hub.root / "registry")
    assert after["blobs"] == before["blobs"]  # the commit's bytes never reached the store
    assert not any("wide-hf" in row and "1.0.0" in row for row in after["rows"].get("version", []))


def test_an_unknown_base_is_accepted_with_a_warning(hub, tmp_path):
    folder = lora_folder(tmp_path / "unknown", tiny_bert(seed=3), base_id="someone/Not-Registered")
    with Hub(hub.url, hub.admin_token, cache_dir=tmp_path / "cache", progress=False) as h:
        v = h.push(folder, "acme/unknown-base", version="1.0.0")
    assert len(v["warnings"]) == 1 and "someone/Not-Registered" in v["warnings"][0] and "not registered" in v["warnings"][0]


def test_search_by_id_and_by_alias_return_the_same_adapters(hub, tmp_path):
    with Hub(hub.url, hub.admin_token, cache_dir=tmp_path / "cache", progress=False) as h:
        h.push(lora_folder(tmp_path / "one", tiny_bert(seed=4)), "acme/searchable", version="1.0.0")
        by_id = sorted(a["name"] for a in h.search(base_model=BASE_ID))
        by_alias = sorted(a["name"] for a in h.search(base_model="tiny-bert"))
    assert by_id == by_alias and "searchable" in by_id


def _hf(hub, tmp_path: Path, code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.admin_token, "HF_HOME": str(tmp_path / "hf"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT)})
    proc = subprocess.run([sys.executable, "-c", "import json\nfrom huggingface_hub import HfApi\n" + textwrap.dedent(code)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_base_gate_is_shown_in_show(hub, tmp_path):
    """`adapterhub show` says which engines can serve the latest version, and any warning."""
    from click.testing import CliRunner

    from adapterhub.cli.main import cli

    with Hub(hub.url, hub.admin_token, cache_dir=tmp_path / "cache", progress=False) as h:
        h.push(lora_folder(tmp_path / "shown", tiny_bert(seed=5)), "acme/shown", version="1.0.0")
    env = {"ADAPTERHUB_URL": hub.url, "ADAPTERHUB_TOKEN": hub.admin_token, "ADAPTERHUB_HOME": str(tmp_path / "home")}
    out = CliRunner().invoke(cli, ["show", "acme/shown", "--json"], env=env)
    assert out.exit_code == 0, out.output
    shown = json.loads(out.stdout)
    assert "peft" in shown["version"]["engines"], shown
    text = CliRunner().invoke(cli, ["show", "acme/shown"], env={**env, "COLUMNS": "200"}).stdout
    assert "engines" in text and "peft" in text
