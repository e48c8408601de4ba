"""The Hugging Face Hub protocol, refereed by the real `huggingface_hub` client and by PEFT.

Both read ``HF_ENDPOINT`` at import, so each check runs in a fresh Python subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest

from tests.helpers.live_server import run_server
from tests.registry.factory import adapter_files, client, make_user, push, sha

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A SQLite-backed server with a public adapter (1.0.0 stable, 1.1.0) and a private one."""
    with run_server(tmp_path_factory.mktemp("hf-home")) as srv:
        admin = client(srv.url, srv.admin_token)
        owner = f"hf{uuid.uuid4().hex[:6]}"
        token = make_user(admin, owner, namespaces=["*"])
        c = client(srv.url, token)
        files = {**adapter_files(1), "nested/dir/notes.txt": b"hello nested"}
        assert push(c, owner, "pub", "1.0.0", files, alias="stable").status_code == 201
        assert push(c, owner, "pub", "1.1.0", adapter_files(2)).status_code == 201
        c.post("/api/v1/namespaces", json={"name": owner + "-priv", "private": True})
        assert push(c, owner + "-priv", "secret", "1.0.0", adapter_files(3)).status_code == 201
        srv.owner, srv.token, srv.files = owner, token, files
        yield srv


def run_py(code: str, endpoint: str, tmp_path: Path, timeout: int = 300) -> dict:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "PYTHONPATH": str(ROOT)}
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_head_carries_commit_etag_and_size(hub):
    repo = f"{hub.owner}/pub"
    info = httpx.get(f"{hub.url}/api/v1/adapters/{repo}/versions/1.0.0").json()
    body = hub.files["adapter_model.safetensors"]
    r = httpx.head(f"{hub.url}/{repo}/resolve/stable/adapter_model.safetensors")
    assert r.status_code == 200
    assert r.headers["x-repo-commit"] == info["commit"]
    assert r.headers["etag"] == f'"{sha(body)}"'
    assert r.headers["content-length"] == str(len(body))
    assert "content-encoding" not in r.headers
    r = httpx.head(f"{hub.url}/{repo}/resolve/1.0.0/missing.bin")
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"
    assert r.headers["x-repo-commit"] == info["commit"]
    r = httpx.head(f"{hub.url}/{repo}/resolve/9.9.9/adapter_config.json")
    assert r.status_code == 404 and r.headers["x-error-code"] == "RevisionNotFound"
    r = httpx.get(f"{hub.url}/{repo}/resolve/{info['commit']}/adapter_config.json")
    assert r.content == hub.files["adapter_config.json"]
    r = httpx.get(f"{hub.url}/{repo}/resolve/main/adapter_model.safetensors", headers={"Range": "bytes=5-"})
    assert r.status_code == 206 and r.content == body[5:]


def test_card_data_names_the_base_model_by_hub_id(hub):
    """Our card may hold ``base_model`` as ``{"id", "fingerprint"}``; the Hub's clients read a string."""
    c = client(hub.url, hub.token)
    card = {"method": "lora", "base_model": {"id": "HuggingFaceTB/SmolLM2-135M", "fingerprint": "0" * 16}}
    files = {**adapter_files(4), "adapterhub.json": json.dumps(card).encode()}
    assert push(c, hub.owner, "based", "1.0.0", files).status_code == 201
    info = httpx.get(f"{hub.url}/api/models/{hub.owner}/based").json()
    assert info["cardData"]["base_model"] == "HuggingFaceTB/SmolLM2-135M"
    assert info["cardData"]["library_name"] == "peft"


def test_model_info_and_tree(hub):
    repo = f"{hub.owner}/pub"
    info = httpx.get(f"{hub.url}/api/models/{repo}/revision/1.0.0").json()
    assert info["id"] == repo and len(info["sha"]) == 40 and info["library_name"] == "peft"
    assert sorted(s["rfilename"] for s in info["siblings"]) == sorted(hub.files)
    assert httpx.get(f"{hub.url}/api/models/{repo}").json()["sha"] == info["sha"]  # main = stable
    for flag in ("true", "True"):
        tree = httpx.get(f"{hub.url}/api/models/{repo}/tree/stable", params={"recursive": flag}).json()
        files = {e["path"]: e for e in tree if e["type"] == "file"}
        assert set(files) == set(hub.files)
        assert files["adapter_config.json"]["oid"] == sha(hub.files["adapter_config.json"])
    top = httpx.get(f"{hub.url}/api/models/{repo}/tree/stable").json()
    assert {e["path"] for e in top} == {"adapter_config.json", "adapter_model.safetensors", "adapterhub.json",
                                       "nested"}
    r = httpx.get(f"{hub.url}/api/models/{repo}/revision/nope")
    assert r.status_code == 404 and r.headers["x-error-code"] == "RevisionNotFound"


HF_SCRIPT = """
import json, os, pathlib
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

repo, priv, token = {repo!r}, {priv!r}, {token!r}
out = {{}}
snap = pathlib.Path(snapshot_download(repo, revision="stable"))
out["snapshot"] = {{str(p.relative_to(snap)): p.read_bytes().hex() for p in snap.rglob("*") if p.is_file()}}
out["single"] = pathlib.Path(hf_hub_download(repo, "adapter_model.safetensors", revision="1.1.0")).read_bytes().hex()
out["main"] = pathlib.Path(hf_hub_download(repo, "adapter_config.json")).read_bytes().hex()
out["exists"] = [HfApi().file_exists(repo, "adapter_model.safetensors", revision="1.0.0"),
                 HfApi().file_exists(repo, "adapter_model.bin", revision="1.0.0")]
def err(fn):
    try:
        fn()
    except Exception as e:
        return type(e).__name__ + ":" + str(isinstance(e, (EntryNotFoundError, RepositoryNotFoundError,
                                                          RevisionNotFoundError)))
    return "no error"
out["missing"] = err(lambda: hf_hub_download(repo, "nope.txt", revision="1.0.0"))
out["missing_is_entry"] = err(lambda: hf_hub_download(repo, "nope.txt")).startswith(("EntryNotFound", "RemoteEntry"))
out["bad_revision"] = err(lambda: hf_hub_download(repo, "adapter_config.json", revision="9.9.9"))
out["private_anon"] = err(lambda: snapshot_download(priv))
out["private_token"] = sorted(p.name for p in pathlib.Path(snapshot_download(priv, token=token)).iterdir())
print(json.dumps(out))
"""


def test_real_huggingface_hub_client(hub, tmp_path):
    repo, priv = f"{hub.owner}/pub", f"{hub.owner}-priv/secret"
    out = run_py(HF_SCRIPT.format(repo=repo, priv=priv, token=hub.token), hub.url, tmp_path)
    assert {k: bytes.fromhex(v) for k, v in out["snapshot"].items()} == hub.files
    assert bytes.fromhex(out["single"]) == adapter_files(2)["adapter_model.safetensors"]
    assert bytes.fromhex(out["main"]) == hub.files["adapter_config.json"]
    assert out["exists"] == [True, False]
    assert out["missing"].endswith(":True") and out["missing_is_entry"]
    assert out["bad_revision"] == "RevisionNotFoundError:True"
    assert out["private_anon"] == "RepositoryNotFoundError:True"
    assert out["private_token"] == sorted(adapter_files(3))


PEFT_SCRIPT = """
import json, pathlib
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
from tests.registry.factory import client, push

url, public_ns, private_ns, token = {url!r}, {public_ns!r}, {private_ns!r}, {token!r}
cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=128)
def base():
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()
torch.manual_seed(1)
lora = get_peft_model(base(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                          init_lora_weights=False))
folder = pathlib.Path("lora"); lora.save_pretrained(folder)
files = {{p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}}
c = client(url, token)
for ns in (public_ns, private_ns):
    assert push(c, ns, "tiny-lora", "1.0.0", files).status_code == 201
ids = torch.tensor([[1, 5, 9, 3, 7]])
with torch.no_grad():
    local = PeftModel.from_pretrained(base(), str(folder))(ids).logits
    public = PeftModel.from_pretrained(base(), f"{{public_ns}}/tiny-lora", revision="1.0.0")(ids).logits
    private = PeftModel.from_pretrained(base(), f"{{private_ns}}/tiny-lora", revision="1.0.0", token=token)(ids).logits
    plain = base()(ids).logits
try:
    PeftModel.from_pretrained(base(), f"{{private_ns}}/tiny-lora", revision="1.0.0")
    anon = "loaded"
except Exception as e:
    anon = type(e).__name__
b_norm = sum(float(v.abs().sum()) for k, v in lora.state_dict().items() if "lora_B" in k)
print(json.dumps({{"public": float((local - public).abs().max()), "private": float((local - private).abs().max()),
                  "effect": float((local - plain).abs().max()), "b_norm": b_norm, "anon": anon}}))
"""


def test_peft_loads_lora_from_registry_with_identical_logits(hub, tmp_path):
    out = run_py(PEFT_SCRIPT.format(url=hub.url, public_ns=hub.owner, private_ns=f"{hub.owner}-priv",
                                    token=hub.token), hub.url, tmp_path)
    assert out["b_norm"] > 0 and out["effect"] > 1e-4  # the LoRA really changes the logits
    assert out["public"] == 0.0 and out["private"] == 0.0
    assert out["anon"] == "RepositoryNotFoundError", out  # the private adapter without a token


def test_unknown_token_reads_as_anonymous_on_hf_routes(hub):
    """A real HF_TOKEN left in the environment must not break public pulls (nor open private ones)."""
    stray = {"Authorization": "Bearer hf_NotOurTokenAtAll"}
    r = httpx.get(f"{hub.url}/{hub.owner}/pub/resolve/stable/adapter_config.json", headers=stray)
    assert r.status_code == 200 and r.content == hub.files["adapter_config.json"]
    r = httpx.head(f"{hub.url}/{hub.owner}-priv/secret/resolve/1.0.0/adapter_config.json", headers=stray)
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    r = httpx.get(f"{hub.url}/api/v1/adapters/{hub.owner}/pub", headers=stray)
    assert r.status_code == 401 and r.json()["code"] == "Unauthorized"  # the REST API stays strict
