"""The referee's Hub side: AdapterHub's `adapters` 1.3 talking to our registry as to the Hugging Face Hub.

Standalone (no adapterhub import), run by the adapters environment's interpreter (`referee.adapters_python`)
with ``HF_ENDPOINT`` (and ``HF_TOKEN``) in its environment, pointing at a live registry; the base
model is always a local folder (HF_ENDPOINT is global: a base fetched by name would be asked of the
registry too). Subcommands, each printing one JSON line last:

  load    --base DIR --repo NS/NAME --inputs FILE --out FILE   `model.load_adapter("NS/NAME",
          use_safetensors=True)` (snapshot_download underneath), its logits to FILE; also what the
          default `load_adapter("NS/NAME")` (use_safetensors=False) does with a safetensors-only repo
  push    --base DIR --repo NS/NAME --seed S          `push_adapter_to_hub(repo, "x")` of a seeded
          random seq_bn adapter: it saves pickles (`pytorch_adapter.bin`), which the registry refuses
  upload  --base DIR --repo NS/NAME --seed S --inputs FILE --out FILE   the documented safetensors path:
          `save_adapter(dir, "x", use_safetensors=True)` + `huggingface_hub.upload_folder`, then
          `load_adapter(repo, use_safetensors=True)` into a fresh model; the logits of both to FILE
  list    --library NAME                              `HfApi().list_models(library=NAME)` ids

The seq_bn adapter of `push` and `upload` is the stock config with reduction_factor 4, every new
parameter (and the classifier) filled with normal values of std 0.05 after torch.manual_seed(S).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import warnings

STD = 0.05


def _quiet() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    logging.getLogger("adapters").setLevel(logging.ERROR)


def base_model(base_dir: str):
    import adapters
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(base_dir).eval()
    adapters.init(model)
    return model


def made_adapter(base_dir: str, seed: int):
    import torch
    from adapters import SeqBnConfig

    model = base_model(base_dir)
    before = {k for k, _ in model.named_parameters()}
    model.add_adapter("x", config=SeqBnConfig(reduction_factor=4))
    prefix = model.base_model_prefix
    names = sorted({k for k, _ in model.named_parameters() if k not in before or not k.startswith(prefix)})
    torch.manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            params[name].copy_(torch.randn(params[name].shape) * STD)
    model.set_active_adapters("x")
    return model.eval()


def logits(model, inputs_file: str):
    import torch
    from safetensors.torch import load_file

    inputs = load_file(inputs_file)
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"].long(), attention_mask=inputs["attention_mask"].long())
    return out.logits.float().contiguous()


def cmd_load(a) -> dict:
    from safetensors.torch import save_file

    model = base_model(a.base)
    name = model.load_adapter(a.repo, use_safetensors=True)
    model.set_active_adapters(name)
    save_file({"logits": logits(model.eval(), a.inputs)}, a.out)
    try:  # the library's default: pickles only
        base_model(a.base).load_adapter(a.repo)
        default = None
    except Exception as exc:  # noqa: BLE001 - what the user would see
        default = f"{type(exc).__name__}: {exc}"
    return {"name": name, "default_load_error": default}


def cmd_push(a) -> dict:
    model = made_adapter(a.base, a.seed)
    try:
        url = model.push_adapter_to_hub(a.repo, "x")
        return {"refused": None, "url": str(url)}
    except Exception as exc:  # noqa: BLE001 - the refusal as the user meets it
        return {"refused": f"{type(exc).__name__}: {exc}"}


def cmd_upload(a) -> dict:
    import torch
    from huggingface_hub import HfApi, snapshot_download
    from safetensors.torch import save_file

    model = made_adapter(a.base, a.seed)
    with tempfile.TemporaryDirectory() as folder:
        model.save_adapter(folder, "x", use_safetensors=True)
        saved = sorted(os.listdir(folder))
        api = HfApi()
        api.create_repo(a.repo, exist_ok=True)
        commit = api.upload_folder(folder_path=folder, repo_id=a.repo)
        local = {f: open(os.path.join(folder, f), "rb").read() for f in saved}
        pulled = snapshot_download(a.repo)
        same_bytes = all(open(os.path.join(pulled, f), "rb").read() == b for f, b in local.items())
    fresh = base_model(a.base)
    name = fresh.load_adapter(a.repo, use_safetensors=True)
    fresh.set_active_adapters(name)
    ours, theirs = logits(model, a.inputs), logits(fresh.eval(), a.inputs)
    save_file({"made": ours, "loaded": theirs}, a.out)
    return {"saved": saved, "commit": getattr(commit, "oid", None), "same_bytes": same_bytes,
            "max_diff": float((ours - theirs).abs().max()), "changes_logits": float((ours - logits(
                base_model(a.base), a.inputs)).abs().max()), "torch": torch.__version__}


def cmd_list(a) -> dict:
    from huggingface_hub import HfApi

    return {"ids": sorted(m.id for m in HfApi().list_models(library=a.library)),
            "libraries": sorted({str(m.library_name) for m in HfApi().list_models(library=a.library)})}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hub_side")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("load", "push", "upload"):
        s = sub.add_parser(name)
        s.add_argument("--base", required=True)
        s.add_argument("--repo", required=True)
        if name != "load":
            s.add_argument("--seed", type=int, default=0)
        if name != "push":
            s.add_argument("--inputs", required=True)
            s.add_argument("--out", required=True)
    sub.add_parser("list").add_argument("--library", required=True)
    return p


def main(argv=None) -> int:
    _quiet()
    a = parser().parse_args(argv)
    try:
        result = {"load": cmd_load, "push": cmd_push, "upload": cmd_upload, "list": cmd_list}[a.cmd](a)
    except Exception as exc:  # noqa: BLE001 - one line for the referee
        print(f"hub_side: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
