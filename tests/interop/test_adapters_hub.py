"""AdapterHub's `adapters` 1.3 against our registry as its Hub: with ``HF_ENDPOINT`` at a live
registry, ``model.load_adapter("ns/name", use_safetensors=True)`` (``snapshot_download`` underneath)
pulls a folder our engine wrote and pushed, and gives our engine's logits (atol 1e-5);
``push_adapter_to_hub`` writes pickles (it calls ``save_adapter(dir, name)`` with no way to ask for
safetensors), which the registry refuses before any upload, the command that converts them reaching
the user; the documented way, ``save_adapter(dir, name, use_safetensors=True)`` +
``huggingface_hub.upload_folder``, lands a version that loads back with the same logits, and
``list_models(library="adapter-transformers")`` finds both.

`hub_side.py` runs in the adapters environment with the endpoint and a token of ours in its
environment, as a user's script would (huggingface_hub 0.36 there; its ``library=`` is a filter).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import adapterhub as ah
from adapterhub import adapters_folder as af
from adapterhub.registry.client import Hub
from tests.helpers.live_server import run_server
from tests.helpers.tiny import batch, build
from tests.interop.referee import adapters_python, save_tiny_base
from tests.registry.factory import client, make_user
from tests.registry.test_adapters_folders import BASE_ID, engine_folder

pytestmark = pytest.mark.slow  # a live registry and several interpreters of the adapters environment

SIDE = Path(__file__).with_name("hub_side.py")
ATOL = 1e-5
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters-hub")
    with run_server(root / "registry") as srv:
        base_dir = save_tiny_base(build("bert-seqcls"), root / "base")
        with Hub(srv.url, srv.admin_token, cache_dir=root / "cache", progress=False) as admin:
            admin.register_base(base_dir, BASE_ID)
        srv.owner = f"u{uuid.uuid4().hex[:8]}"
        srv.token = make_user(client(srv.url, srv.admin_token), srv.owner)
        srv.base_dir, srv.root = base_dir, root
        yield srv
        assert "Traceback" not in srv.log(), srv.log()


def hub_side(hub, tmp_path: Path, *args) -> dict:
    """One `hub_side.py` command as a user runs it: the endpoint and token in the environment, online."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=hub.token, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([adapters_python(), str(SIDE), *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def inputs_file(tmp_path: Path) -> Path:
    ids, mask = batch()
    path = tmp_path / "inputs.safetensors"
    save_file({"input_ids": ids.to(torch.int64).contiguous(), "attention_mask": mask.to(torch.int64).contiguous()},
              str(path))
    return path


def our_logits(folder: Path) -> torch.Tensor:
    model = ah.AdapterModel(build("bert-seqcls"))
    model.load_adapter(folder, set_active=True)
    ids, mask = batch()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.float()


def test_adapters_load_adapter_pulls_our_push_and_gives_our_logits(hub, tmp_path):
    folder = engine_folder(tmp_path / "bn", seed=11)
    repo = f"{hub.owner}/engine-bn"
    with Hub(hub.url, hub.token, cache_dir=tmp_path / "cache", progress=False) as h:
        v = h.push(folder, repo, version="1.0.0")
    assert v["warnings"] == [] and v["engines"] == ["adapters"]
    out = hub_side(hub, tmp_path, "load", "--base", hub.base_dir, "--repo", repo, "--inputs", inputs_file(tmp_path),
                   "--out", tmp_path / "theirs.safetensors")
    assert out["name"] == "x"
    theirs, ours = load_file(str(tmp_path / "theirs.safetensors"))["logits"], our_logits(folder)
    with torch.no_grad():
        bare = build("bert-seqcls")(*batch()).logits
    assert (ours - bare).abs().max().item() > 1e-3  # the adapter (and its head) change something
    assert (ours - theirs).abs().max().item() < ATOL
    # adapters' own default (use_safetensors=False) reads pickles only: a safetensors repo needs the flag
    assert out["default_load_error"] and "pytorch" in out["default_load_error"].lower(), out


def test_push_adapter_to_hub_is_refused_readably_and_upload_folder_lands(hub, tmp_path):
    repo = f"{hub.owner}/pushed"
    out = hub_side(hub, tmp_path, "push", "--base", hub.base_dir, "--repo", repo, "--seed", 12)
    refused = out["refused"]
    assert refused is not None, out
    named = [p for p in af.PICKLE_FILES if p in refused]
    assert named and af.pickle_advice(named[0]) in refused and "422" in refused, refused  # whole, the command in it
    versions = client(hub.url, hub.token).get(f"/api/v1/adapters/{repo}/versions")
    assert versions.status_code == 200 and versions.json() == []  # create_repo made the repo; nothing landed

    repo = f"{hub.owner}/uploaded"
    out = hub_side(hub, tmp_path, "upload", "--base", hub.base_dir, "--repo", repo, "--seed", 13,
                   "--inputs", inputs_file(tmp_path), "--out", tmp_path / "both.safetensors")
    assert out["saved"] == sorted([af.CONFIG_FILE, af.WEIGHTS_FILE, af.HEAD_CONFIG_FILE, af.HEAD_WEIGHTS_FILE])
    assert out["same_bytes"] and out["max_diff"] < ATOL and out["changes_logits"] > 1e-3, out
    c = client(hub.url, hub.token)
    v, = c.get(f"/api/v1/adapters/{repo}/versions").json()
    assert v["version"] == "1.0.0" and v["engines"] == ["adapters"]
    summary = c.get(f"/api/v1/adapters/{repo}").json()
    assert summary["method"] == "bottleneck" and af.LIBRARY in summary["tags"]
    assert c.get(f"/api/models/{repo}").json()["library_name"] == "adapter-transformers"
    # it loads in our engine too, with the logits adapters gave
    both = load_file(str(tmp_path / "both.safetensors"))
    with Hub(hub.url, hub.token, cache_dir=tmp_path / "cache", progress=False) as h:
        pulled = h.pull(f"{repo}@1.0.0")
    assert (our_logits(pulled) - both["made"]).abs().max().item() < ATOL

    listed = hub_side(hub, tmp_path, "list", "--library", "adapter-transformers")
    assert {f"{hub.owner}/uploaded"} <= set(listed["ids"]) and listed["libraries"] == ["adapter-transformers"]
    assert f"{hub.owner}/pushed" not in listed["ids"]  # an empty repo has no library yet
