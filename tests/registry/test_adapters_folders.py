"""AdapterHub's ``adapters`` folders in the registry, against a live server: pushed as they are
(``adapterhub push``, the REST publish, an HF commit), pulled back byte for byte, found by library,
and refused, naming the file or the key, where they would not load.

The folders are written by our engine (``save_adapter(..., format="adapters")``: what ``adapters``
1.3 writes with ``use_safetensors=True``; `tests/interop/test_adapters_roundtrip.py` holds it to
``adapters`` itself). The base is the tiny BERT of `tests/helpers/tiny.py`, registered by its
manifest, so the shapes of every push are judged against it. `tests/interop/test_adapters_hub.py`
has ``adapters``' own ``load_adapter`` pulling from the registry.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import adapterhub as ah
from adapterhub import adapters_folder as af
from adapterhub.compose.folder.keys import adapter_tensors
from adapterhub.errors import IncompatibleAdapterError
from adapterhub.registry.client import Hub
from tests.cli.support import run
from tests.helpers.snapshots import database_state, folder_state
from tests.helpers.tiny import build
from tests.registry.factory import adapter_files, client, manifest, upload

BASE_ID = "test-org/Tiny-BERT-adapters"
NS = "acme"


@pytest.fixture(scope="module")
def hub(server, tmp_path_factory):
    """The live registry (`server`, SQLite in the fast lane) with the tiny BERT registered and ``acme``."""
    root = tmp_path_factory.mktemp("adapters-folders")
    base_dir = root / "base"
    build("bert-seqcls").save_pretrained(base_dir)
    with Hub(server.url, server.admin_token, cache_dir=root / "cache", progress=False) as admin:
        admin.register_base(base_dir, BASE_ID)
        admin.create_namespace(NS, exist_ok=True)
    return server


def state(server) -> dict:
    """Every row and every stored blob: what "the registry is left unchanged" compares."""
    return {"rows": database_state(server), "blobs": folder_state(server.home / "blobs")}


def bert(hidden: int = 32) -> BertForSequenceClassification:
    if hidden == 32:
        return build("bert-seqcls")
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                                                    intermediate_size=64, vocab_size=96, max_position_embeddings=128,
                                                    num_labels=3)).eval()


def engine_folder(path: Path, hidden: int = 32, method: str = "bottleneck", seed: int = 0) -> Path:
    """An adapters folder written by our engine, every adapter parameter seeded random (a zero-init
    up projection would make any adapter look right)."""
    model = ah.AdapterModel(bert(hidden))
    config = (ah.BottleneckConfig.preset("pfeiffer", reduction_factor=4, task_type="SEQ_CLS") if method == "bottleneck"
              else ah.LoRAConfig(r=4, alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS"))
    model.add_adapter("x", config)
    g = torch.Generator().manual_seed(seed)
    for param in adapter_tensors(model, "x").values():
        param.data = torch.randn(param.shape, generator=g) * 0.05
    return model.save_adapter("x", path, format="adapters", base_model_id=BASE_ID)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def edit_config(folder: Path, **changes) -> None:
    path = folder / af.CONFIG_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2, sort_keys=True))


def cli_push(server, tmp_path: Path, folder: Path, ref: str):
    env = {"ADAPTERHUB_URL": server.url, "ADAPTERHUB_TOKEN": server.admin_token,
           "ADAPTERHUB_HOME": str(tmp_path / "cli-home")}
    return run("push", folder, ref, "--version", "1.0.0", env=env)


def rest_publish(server, name: str, files: dict[str, bytes]):
    """The raw REST path: create, upload the blobs, publish (refusals come after the upload here)."""
    c = client(server.url, server.admin_token)
    assert c.post("/api/v1/adapters", json={"namespace": NS, "name": name}).status_code == 201
    upload(c, files)
    r = c.post(f"/api/v1/adapters/{NS}/{name}/versions", json={"version": "1.0.0", "files": manifest(files)})
    assert c.get(f"/api/v1/adapters/{NS}/{name}/versions").json() == [] or r.status_code == 201
    return r


def hf_commit(server, name: str, files: dict[str, bytes]):
    """An HF commit (what ``upload_folder`` sends, every file "regular": inside the NDJSON body)."""
    c = client(server.url, server.admin_token)
    r = c.post("/api/repos/create", json={"name": name, "organization": NS})
    assert r.status_code in (200, 409), r.text
    lines = [{"key": "header", "value": {"summary": "Upload folder", "description": ""}}] + [
        {"key": "file", "value": {"path": p, "content": base64.b64encode(b).decode(), "encoding": "base64"}}
        for p, b in files.items()]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    return c.post(f"/api/models/{NS}/{name}/commit/main", content=body, headers={"Content-Type": "application/x-ndjson"})


# ---------------------------------------------------------------------- lands, pulls back, is found
def test_an_adapters_folder_lands_pulls_back_byte_identical_and_is_found_by_library(hub, tmp_path):
    folder = engine_folder(tmp_path / "bn", seed=1)
    assert sorted(files_of(folder)) == sorted([af.CONFIG_FILE, af.WEIGHTS_FILE, af.HEAD_CONFIG_FILE,
                                               af.HEAD_WEIGHTS_FILE])
    result = cli_push(hub, tmp_path, folder, f"{NS}/adapters-bn")
    assert result.exit_code == 0, result.output
    with Hub(hub.url, hub.admin_token, cache_dir=tmp_path / "cache", progress=False) as h:
        v, = h.versions(f"{NS}/adapters-bn")
        assert v["warnings"] == [] and v["engines"] == ["adapters"]  # judged against the registered base
        assert v["config"] == json.loads((folder / af.CONFIG_FILE).read_text())
        pulled = h.pull(f"{NS}/adapters-bn@1.0.0")
        assert files_of(pulled) == files_of(folder)
        summary = h.summary(f"{NS}/adapters-bn")
        assert (summary["method"], summary["base_model"], summary["task"]) == ("bottleneck", BASE_ID,
                                                                                 "text-classification")
        assert af.LIBRARY in summary["tags"]
        # a PEFT adapter beside it: each library filter finds its own
        c = client(hub.url, hub.admin_token)
        assert c.post("/api/v1/adapters", json={"namespace": NS, "name": "peft-beside"}).status_code == 201
        upload(c, adapter_files(seed=5))
        r = c.post(f"/api/v1/adapters/{NS}/peft-beside/versions", json={"version": "1.0.0",
                                                                        "files": manifest(adapter_files(seed=5))})
        assert r.status_code == 201, r.text
        names = {lib: {a["name"] for a in h.search(library=lib, namespace=NS, limit=200)}
                 for lib in ("adapter-transformers", "adapters", "peft")}
    assert "adapters-bn" in names["adapter-transformers"] and "peft-beside" not in names["adapter-transformers"]
    assert names["adapters"] == names["adapter-transformers"]  # the Hub's two names for the library
    assert "peft-beside" in names["peft"] and "adapters-bn" not in names["peft"]
    env = {"ADAPTERHUB_URL": hub.url, "ADAPTERHUB_TOKEN": hub.admin_token, "ADAPTERHUB_HOME": str(tmp_path / "h")}
    found = run("search", "--library", "adapter-transformers", "--namespace", NS, "--json", env=env)
    assert found.exit_code == 0 and {a["name"] for a in json.loads(found.stdout)} == names["adapters"], found.output
    bad = client(hub.url).get("/api/v1/adapters", params={"library": "keras"})
    assert bad.status_code == 422 and "keras" in bad.json()["detail"], bad.text

    # the Hugging Face routes: the repo's library, and list_models' library filter (`library=` of
    # huggingface_hub < 1.0 sends it as a filter, as `filter="adapter-transformers"` does)
    info = client(hub.url).get(f"/api/models/{NS}/adapters-bn").json()
    assert info["library_name"] == "adapter-transformers" and info["cardData"]["library_name"] == "adapter-transformers"
    assert "adapter-transformers" in info["tags"] and "peft" not in info["tags"]
    assert info["cardData"]["base_model"] == BASE_ID
    for flt in ("adapter-transformers", "library:adapter-transformers"):
        listed = client(hub.url).get("/api/models", params={"filter": flt, "author": NS}).json()
        assert {m["id"].split("/")[1] for m in listed} == names["adapter-transformers"], flt
        assert {m["library_name"] for m in listed} == {"adapter-transformers"}
    peft_listed = client(hub.url).get("/api/models", params={"filter": "peft", "author": NS}).json()
    assert {m["id"].split("/")[1] for m in peft_listed} == names["peft"]
    assert client(hub.url).get(f"/api/models/{NS}/peft-beside").json()["library_name"] == "peft"


# ---------------------------------------------------------------------- the three refusals
def test_a_pickle_only_adapters_folder_is_refused_naming_the_file_and_the_conversion(hub, tmp_path):
    """What ``adapters``' default ``save_adapter`` (and ``push_adapter_to_hub``) writes: the weights
    as ``pytorch_adapter.bin``. Never opened: refused by its name, with the one-line conversion."""
    folder = engine_folder(tmp_path / "pickled", seed=2)
    (folder / af.WEIGHTS_FILE).unlink()
    (folder / af.PICKLE_WEIGHTS_FILE).write_bytes(b"\x80\x04 never unpickled")
    before = state(hub)
    result = cli_push(hub, tmp_path, folder, f"{NS}/pickled")
    assert result.exit_code == 1
    assert af.PICKLE_WEIGHTS_FILE in result.output and af.CONVERT_COMMAND in result.output, result.output
    assert state(hub) == before  # no adapter, no blob, no audit entry

    # the REST publish and the HF preupload (where stock clients meet it, before any upload) say the same
    r = rest_publish(hub, "pickled-rest", files_of(folder))
    assert r.status_code == 422 and r.json()["code"] == "PickleRefused", r.text
    assert af.PICKLE_WEIGHTS_FILE in r.json()["detail"] and af.CONVERT_COMMAND in r.json()["detail"]
    c = client(hub.url, hub.admin_token)
    assert c.post("/api/repos/create", json={"name": "pickled-hf", "organization": NS}).status_code == 200
    before = state(hub)
    r = c.post(f"/api/models/{NS}/pickled-hf/preupload/main",
               json={"files": [{"path": "pytorch_model_head.bin", "size": 20, "sample": ""}]})
    assert r.status_code == 422 and r.headers["X-Error-Code"] == "PickleRefused", r.text
    assert af.convert_command("pytorch_model_head.bin") in r.json()["detail"]
    assert r.headers["X-Error-Message"] == r.json()["detail"]  # whole: what huggingface_hub shows
    assert state(hub) == before


@pytest.mark.parametrize("method", ["bottleneck", "lora"])
def test_weights_that_do_not_fit_the_base_are_refused_on_every_path(hub, tmp_path, method):
    """An adapter made on a BERT of hidden size 48, pushed for the registered 32-wide base: the config's
    own hidden_size gives it away; with that lie told (32), the first tensor that does not fit does."""
    folder = engine_folder(tmp_path / "wide", hidden=48, method=method, seed=3)
    before = state(hub)
    with Hub(hub.url, hub.admin_token, cache_dir=tmp_path / "cache", progress=False) as h:
        with pytest.raises(IncompatibleAdapterError, match=r"hidden_size 48.*hidden size 32"):
            h.push(folder, f"{NS}/wide-{method}", version="1.0.0")
        edit_config(folder, hidden_size=32)
        tensor = (r"adapter\.safetensors: bert\.encoder\.layer\.0\.output\.adapters\.x\.adapter_down\.0\.weight "
                  r"is \[12, 48\].*needs \[12, 32\]" if method == "bottleneck" else
                  r"adapter\.safetensors: bert\.encoder\.layer\.0\.attention\.self\.query\.loras\.x\.lora_A "
                  r"is \[4, 48\].*takes 32 inputs.*needs \[4, 32\]")
        with pytest.raises(IncompatibleAdapterError, match=tensor):
            h.push(folder, f"{NS}/wide-{method}", version="1.0.0")
    assert state(hub) == before  # refused before the adapter was created or a byte uploaded

    r = rest_publish(hub, f"wide-rest-{method}", files_of(folder))
    assert r.status_code == 422 and r.json()["code"] == "IncompatibleAdapter", r.text
    assert "needs [12, 32]" in r.json()["detail"] or "needs [4, 32]" in r.json()["detail"]

    hf_commit(hub, f"wide-hf-{method}", {})  # creates the repo (an empty commit lands nothing)
    before = state(hub)
    r = hf_commit(hub, f"wide-hf-{method}", files_of(folder))
    assert r.status_code == 422 and r.headers["X-Error-Code"] == "IncompatibleAdapter", r.text
    assert state(hub)["blobs"] == before["blobs"]  # the commit's bytes never reached the store
    assert client(hub.url, hub.admin_token).get(f"/api/v1/adapters/{NS}/wide-hf-{method}/versions").json() == []


@pytest.mark.parametrize(("change", "named"), [
    ({"adapter_typo": True}, "unknown key 'adapter_typo'"),
    ({"name": 7}, "'name' must be a string, got 7"),
    ({"config": ["reduction_factor", 4]}, "'config' must be an object"),
    ({"model_type": None}, "'model_type' must be a string, got None"),
])
def test_an_unknown_key_or_a_wrong_type_is_refused_naming_the_key(hub, tmp_path, change, named):
    folder = engine_folder(tmp_path / "typo", seed=4)
    edit_config(folder, **change)
    before = state(hub)
    result = cli_push(hub, tmp_path, folder, f"{NS}/typo")
    assert result.exit_code == 1 and named in result.output and af.CONFIG_FILE in result.output, result.output
    assert state(hub) == before

    name = f"typo-rest-{abs(hash(named)) % 10**6}"
    r = rest_publish(hub, name, files_of(folder))
    assert r.status_code == 422 and r.json()["code"] == "InvalidManifest" and named in r.json()["detail"], r.text

    hf_commit(hub, f"{name}-hf", {})
    before = state(hub)
    r = hf_commit(hub, f"{name}-hf", files_of(folder))
    assert r.status_code == 422 and named in r.headers["X-Error-Message"], r.text
    assert state(hub)["blobs"] == before["blobs"]


def test_a_fusion_and_a_setup_folder_are_checked_too(hub, tmp_path):
    """The other JSON files of an adapters folder follow the JSON rules and their fields' types."""
    folder = engine_folder(tmp_path / "head", seed=6)
    head = json.loads((folder / af.HEAD_CONFIG_FILE).read_text())
    (folder / af.HEAD_CONFIG_FILE).write_text(json.dumps({**head, "num_labels": "three"}))
    r = rest_publish(hub, "bad-head", files_of(folder))
    assert r.status_code == 422 and "head_config.json: 'num_labels' must be int" in r.json()["detail"], r.text
    shutil.rmtree(folder)
    setup = {af.SETUP_FILE: json.dumps({"adapter_setup": {"type": "Stack", "children": []}, "head_setup": None,
                                        "version": af.WRITTEN_VERSION}).encode()}
    r = rest_publish(hub, "a-setup", setup)
    assert r.status_code == 201, r.text
    summary = client(hub.url).get(f"/api/v1/adapters/{NS}/a-setup").json()
    assert af.LIBRARY in summary["tags"]  # a setup folder is adapters' too
