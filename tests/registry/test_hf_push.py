"""Pushing with the stock Hugging Face tools, as users install them: the `hf` CLI, `HfApi`,
`PeftModel.push_to_hub` and `transformers.Trainer(push_to_hub=True)`, against a live registry.

Every client runs in a fresh Python with ``HF_ENDPOINT`` and ``HF_TOKEN`` set and ``hf_xet``
installed, and no ``HF_HUB_DISABLE_XET`` (each run asserts that Xet is available to it): adapter-sized
files are answered "regular" and travel inside the commit. Each push is then pulled back through
``snapshot_download`` byte for byte, and ``PeftModel.from_pretrained`` from the registry must give
the same logits as from the local folder. The LFS path (files over the regular limit) runs against
a second registry with a tiny limit, with Xet turned off as the error tells a Xet client to do.
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

from tests.helpers.live_server import drop_postgres, postgres_url, run_server
from tests.registry.factory import client, make_user

pytestmark = pytest.mark.slow  # subprocesses that import torch, transformers and peft

ROOT = Path(__file__).resolve().parents[2]
HF_CLI = Path(sys.executable).parent / "hf"

# Shared by every subprocess: a tiny Llama saved locally (the base never travels), a LoRA folder
# with non-zero weights, and the round trip every push is judged by.
PRELUDE = '''
import hashlib, json, os, sys
from pathlib import Path
import torch
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.utils._runtime import is_xet_available
assert os.environ.get("HF_HUB_DISABLE_XET") == XET_OFF, "the environment must be as the test says"
assert is_xet_available() == (XET_OFF is None), "hf_xet must be installed and in use"
from transformers import LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, PeftModel, get_peft_model

def base_model():
    if not Path("base").exists():
        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, vocab_size=96, pad_token_id=0)).save_pretrained("base")
    return LlamaForCausalLM.from_pretrained("base").eval()

def lora_model(seed=1):
    torch.manual_seed(seed)
    return get_peft_model(base_model(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))

IDS = torch.tensor([[5, 9, 11, 30, 42, 7]])

def logits(source, **kw):
    with torch.no_grad():
        return PeftModel.from_pretrained(base_model(), source, **kw).eval()(input_ids=IDS).logits

def files_of(folder, skip=()):
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() not in skip
            and not p.relative_to(folder).parts[0].startswith(".")}

def round_trip(repo, local, revision=None, skip=()):
    """Byte-equal through snapshot_download, and the same logits as the local folder."""
    pulled = snapshot_download(repo, revision=revision)
    same_bytes = files_of(pulled, skip) == files_of(local, skip)
    same_logits = torch.equal(logits(repo, revision=revision), logits(local))
    return {"bytes": same_bytes, "logits": same_logits, "pulled": sorted(files_of(pulled)),
            "commit": Path(pulled).name}
'''


def run_client(code: str, hub, tmp_path: Path, xet_off: bool = False, timeout: int = 600) -> dict:
    """Run ``code`` (after `PRELUDE`) as a user would: a fresh process, the endpoint and token in the
    environment; its last stdout line is JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HOME": str(tmp_path / "hf"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"})
    if xet_off:
        env["HF_HUB_DISABLE_XET"] = "1"
    prelude = f"XET_OFF = {('1' if xet_off else None)!r}\n" + PRELUDE
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions(hub, repo: str) -> list[str]:
    r = httpx.get(f"{hub.url}/api/v1/adapters/{repo}/versions", headers={"Authorization": f"Bearer {hub.token}"})
    assert r.status_code == 200, r.text
    return sorted(v["version"] for v in r.json())


def _start(tmp_path_factory, database_url=None, env=None):
    srv = run_server(tmp_path_factory.mktemp("hf-push"), database_url=database_url, env=env)
    handle = srv.__enter__()
    handle.owner = f"u{uuid.uuid4().hex[:8]}"
    handle.token = make_user(client(handle.url, handle.admin_token), handle.owner)
    return srv, handle


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    srv, handle = _start(tmp_path_factory)
    yield handle
    srv.__exit__(None, None, None)
    assert "Traceback" not in handle.log(), handle.log()


def test_hf_cli_upload(hub, tmp_path):
    """`hf upload ns/name ./folder` creates the repo and lands version 1.0.0; `--revision canary`
    creates the branch (an alias) on its own and moves it, leaving main where it was."""
    repo = f"{hub.owner}/cli"
    run_client("""
        lora_model().save_pretrained("lora")
        lora_model(seed=2).save_pretrained("lora2")
        print(json.dumps({}))
    """, hub, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HOME": str(tmp_path / "hf")})
    for args in (["./lora"], ["./lora2", "--revision", "canary"]):
        proc = subprocess.run([str(HF_CLI), "upload", repo, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert f"{hub.url}/{repo}" in proc.stdout + proc.stderr
    out = run_client(f"""print(json.dumps({{"main": round_trip({repo!r}, 'lora'),
                                           "canary": round_trip({repo!r}, 'lora2', revision='canary')}}))""",
                     hub, tmp_path)
    for key in ("main", "canary"):
        assert out[key]["bytes"] and out[key]["logits"], out
    assert versions(hub, repo) == ["1.0.0", "1.0.1"]
    aliases = httpx.get(f"{hub.url}/api/v1/adapters/{repo}").json()["aliases"]
    assert aliases == {"stable": "1.0.0", "canary": "1.0.1"}


def test_upload_folder_and_create_commit_with_a_deletion(hub, tmp_path):
    """`upload_folder` makes 1.0.0; `create_commit` deleting a file and adding one makes 1.0.1 on top
    of it; the same commit sent again (as the client's retry does) makes no third version."""
    repo = f"{hub.owner}/api"
    out = run_client(f"""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete
        api = HfApi()
        lora_model().save_pretrained("lora")
        Path("lora/notes.txt").write_text("first notes")
        api.create_repo({repo!r}, exist_ok=True)
        first = api.upload_folder(folder_path="lora", repo_id={repo!r})
        one = round_trip({repo!r}, "lora")
        ops = [CommitOperationDelete("notes.txt"), CommitOperationAdd("extra/about.txt", b"about this adapter")]
        second = api.create_commit({repo!r}, ops, commit_message="drop the notes")
        again = api.create_commit({repo!r}, [CommitOperationDelete("notes.txt"),
                                             CommitOperationAdd("extra/about.txt", b"about this adapter")],
                                  commit_message="drop the notes")
        Path("lora/notes.txt").unlink()
        Path("lora/extra").mkdir()
        Path("lora/extra/about.txt").write_text("about this adapter")
        two = round_trip({repo!r}, "lora")
        old = round_trip({repo!r}, "lora", revision="1.0.0", skip=("notes.txt", "extra/about.txt"))
        print(json.dumps({{"one": one, "two": two, "old": old, "first": first.oid, "second": second.oid,
                           "again": again.oid, "files": [f.rfilename for f in api.model_info({repo!r}).siblings]}}))
    """, hub, tmp_path)
    assert out["one"]["bytes"] and out["one"]["logits"], out
    assert out["two"]["bytes"] and out["two"]["logits"], out
    assert "notes.txt" in out["old"]["pulled"] and out["old"]["commit"] == out["first"]
    assert out["again"] == out["second"] != out["first"]
    assert "notes.txt" not in out["files"] and "extra/about.txt" in out["files"]
    assert versions(hub, repo) == ["1.0.0", "1.0.1"]


def test_peft_push_to_hub(hub, tmp_path):
    """`PeftModel.push_to_hub` reads the old card first (none: EntryNotFound), writes README.md and
    the adapter; a second push of a retrained adapter makes the next version."""
    repo = f"{hub.owner}/peft"
    out = run_client(f"""
        model = lora_model(seed=3)
        model.push_to_hub({repo!r})
        model.save_pretrained("lora")
        first = round_trip({repo!r}, "lora", skip=("README.md",))
        model2 = lora_model(seed=4)
        model2.push_to_hub({repo!r}, commit_message="retrained")
        model2.save_pretrained("lora2")
        second = round_trip({repo!r}, "lora2", skip=("README.md",))
        print(json.dumps({{"first": first, "second": second}}))
    """, hub, tmp_path)
    for key in ("first", "second"):
        assert out[key]["bytes"] and out[key]["logits"], out
        assert "README.md" in out[key]["pulled"], out
    assert versions(hub, repo) == ["1.0.0", "1.0.1"]


def test_trainer_push_to_hub(hub, tmp_path):
    """`Trainer(push_to_hub=True, hub_model_id=...)` on a PEFT model: a few steps, pushed at the end."""
    repo = f"{hub.owner}/trained"
    out = run_client(f"""
        from transformers import Trainer, TrainingArguments
        model = lora_model(seed=5)
        g = torch.Generator().manual_seed(0)
        rows = [{{"input_ids": ids, "labels": ids}} for ids in torch.randint(3, 96, (8, 12), generator=g)]
        args = TrainingArguments(output_dir="run", push_to_hub=True, hub_model_id={repo!r}, max_steps=3,
                                 per_device_train_batch_size=4, learning_rate=1e-2, report_to=[], save_strategy="no",
                                 use_cpu=True, logging_strategy="no", disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=rows)
        trainer.train()
        trainer.push_to_hub()
        model.save_pretrained("lora")
        print(json.dumps(round_trip({repo!r}, "lora", skip=("README.md", "training_args.bin"))))
    """, hub, tmp_path)
    assert out["bytes"] and out["logits"], out
    assert "training_args.bin" not in out["pulled"], "a pickle must never land"
    assert len(versions(hub, repo)) >= 1


def test_refs_branches_tags_and_search(hub, tmp_path):
    """`list_repo_refs`, `create_branch`, `create_tag`, `list_models(search=...)` and `whoami`; a
    commit to a branch moves that alias only (main keeps reading ``stable``, which commits to main
    move), and a tag never moves."""
    repo = f"{hub.owner}/refs"
    out = run_client(f"""
        from huggingface_hub import CommitOperationAdd
        from huggingface_hub.errors import HfHubHTTPError
        api = HfApi()
        lora_model().save_pretrained("lora")
        api.create_repo({repo!r})
        api.upload_folder(folder_path="lora", repo_id={repo!r})
        api.create_branch({repo!r}, branch="canary")
        api.create_tag({repo!r}, tag="launch")
        c = api.create_commit({repo!r}, [CommitOperationAdd("notes.txt", b"canary notes")], commit_message="try",
                              revision="canary")
        refs = api.list_repo_refs({repo!r})
        try:
            api.create_commit({repo!r}, [CommitOperationAdd("x.txt", b"x")], commit_message="x", revision="launch")
            tag_moved = True
        except HfHubHTTPError as exc:
            tag_moved = str(exc)
        print(json.dumps({{"commit": c.oid, "whoami": api.whoami()["name"], "tag_moved": tag_moved,
                           "branches": {{b.name: b.target_commit for b in refs.branches}},
                           "tags": {{t.name: t.target_commit for t in refs.tags}},
                           "found": [m.id for m in api.list_models(search="refs", author={hub.owner!r})]}}))
    """, hub, tmp_path)
    assert out["whoami"] == hub.owner
    assert out["branches"]["canary"] == out["commit"] == out["tags"]["1.0.1"]
    assert out["branches"]["main"] == out["branches"]["stable"] == out["tags"]["1.0.0"] == out["tags"]["launch"]
    assert out["tags"]["launch"] != out["commit"]
    assert "tags never move" in out["tag_moved"]
    assert out["found"] == [repo]


def test_large_files_go_by_lfs(tmp_path_factory, tmp_path):
    """Over the regular limit a file is "lfs": a Xet client is refused (400) with how to turn Xet off, and with
    ``HF_HUB_DISABLE_XET=1`` it goes by the LFS batch API to a signed URL and lands the version."""
    srv, hub = _start(tmp_path_factory, env={"ADAPTERHUB_HF_REGULAR_MAX_BYTES": "2048"})
    try:
        repo = f"{hub.owner}/big"
        out = run_client(f"""
            lora_model().save_pretrained("lora")
            HfApi().create_repo({repo!r})
            try:
                HfApi().upload_folder(folder_path="lora", repo_id={repo!r})
                refused = None
            except Exception as exc:
                refused = str(exc)
            print(json.dumps({{"refused": refused}}))
        """, hub, tmp_path)
        # hf_xet (Rust) fetches the token itself and shows only the status and the URL, not the
        # message the registry sends with it; the message is there for whoever follows the URL
        assert "400" in out["refused"] and "xet-write-token" in out["refused"], out
        r = httpx.get(f"{hub.url}/api/models/{repo}/xet-write-token/main", headers={"Authorization": f"Bearer {hub.token}"})
        assert r.status_code == 400 and "HF_HUB_DISABLE_XET=1" in r.headers["x-error-message"], r.headers
        out = run_client(f"""
            info = HfApi().upload_folder(folder_path="lora", repo_id={repo!r})
            print(json.dumps(round_trip({repo!r}, "lora")))
        """, hub, tmp_path, xet_off=True)
        assert out["bytes"] and out["logits"], out
        assert versions(hub, repo) == ["1.0.0"]
    finally:
        srv.__exit__(None, None, None)
    assert "Traceback" not in hub.log(), hub.log()


def test_upload_folder_on_postgresql(tmp_path_factory, tmp_path):
    url = postgres_url()
    srv, hub = _start(tmp_path_factory, database_url=url)
    try:
        repo = f"{hub.owner}/pg"
        out = run_client(f"""
            lora_model().save_pretrained("lora")
            HfApi().create_repo({repo!r})
            HfApi().upload_folder(folder_path="lora", repo_id={repo!r})
            again = HfApi().upload_folder(folder_path="lora", repo_id={repo!r})
            print(json.dumps(round_trip({repo!r}, "lora")))
        """, hub, tmp_path)
        assert out["bytes"] and out["logits"], out
        assert versions(hub, repo) == ["1.0.0"]
    finally:
        srv.__exit__(None, None, None)
        drop_postgres(url)
