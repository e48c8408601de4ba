"""The referee's side: AdapterHub's own `adapters` 1.3.0 library, run in its own virtualenv.

Standalone (no adapterhub import): it runs under the interpreter of the adapters environment
(`make interop-env`, transformers 4.57) and talks to our suite only through files. Subcommands:

  make    --base DIR --head seqcls|causal|flexcls --config NAME --kwargs JSON --name NAME --seed S --out DIR
  logits  --base DIR --head seqcls|causal|flexcls (--adapter DIR ... [--fusion DIR] --setup JSON | --none)
          --inputs FILE.safetensors --out FILE.safetensors
  fusion  --base DIR --head seqcls|causal|flexcls --adapter DIR --adapter DIR --seed S --out DIR
  save-setup --base DIR --head ... --adapter DIR ... [--fusion DIR] --setup JSON --out DIR
          (save_adapter_setup; `logits --setup-folder DIR` loads one with load_adapter_setup)
  versions                                  (prints the library versions as JSON)
  batch   --jobs JOBS.json --out RESULTS.json (a list of the argv lists above, run in one process;
          writes one {"rc", "error"} per job; exits 0 unless the batch itself fails)

`make` and `fusion` fill every new parameter (in sorted name order, after torch.manual_seed(S)) with
normal values of std 0.05, so nothing stays an identity through its zero init; for seqcls the
model's own classifier (the "head": every parameter outside the base model prefix) is filled too and
saved with the adapter (head_config.json + model_head.safetensors).

Base models come from our side's `save_pretrained` under transformers 5 (config.json +
model.safetensors). transformers 4.57 loads them as they are for bert/gpt2/llama: the v5-only config
keys are ignored, and llama's v5 `rope_parameters` is mapped back onto `rope_theta`/`rope_scaling`
below (a no-op for the default rope, kept for a base saved with another rope_theta). GPT-2's tied
lm_head.weight, absent from the v5 file, is re-tied by 4.57 on load.

Any failure prints one line `adapters_side: <type>: <message>` to stderr and exits 2 (3 where the
library cannot save the requested adapter at all).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

CONFIG_CLASSES = {
    "seq_bn": "SeqBnConfig",
    "double_seq_bn": "DoubleSeqBnConfig",
    "par_bn": "ParBnConfig",
    "bn": "BnConfig",
    "lora": "LoRAConfig",
    "ia3": "IA3Config",
    "prompt_tuning": "PromptTuningConfig",
    "prefix_tuning": "PrefixTuningConfig",
}
STD = 0.05
# the fusion's query/key/value: large enough that its attention is far from uniform, so a wrong score
# scale or residual shows in the logits
FUSION_STD = 0.5


class CannotSave(Exception):
    """The library cannot write this adapter (exit 3)."""


def _quiet():
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import logging

    # set_active_adapters() runs a ForwardContext before the setup is in place, which logs
    # "adapters available but none are activated": noise, not a fault.
    logging.getLogger("adapters").setLevel(logging.ERROR)


def load_base(base_dir: str, head: str):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(base_dir)
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict):  # transformers 5 folds rope_theta/rope_scaling into rope_parameters
        if "rope_theta" in rope:
            config.rope_theta = rope["rope_theta"]
        if rope.get("rope_type", "default") != "default":
            config.rope_scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    if head == "flexcls":  # adapters' own model class with its flex heads (what AdapterHub's hub adapters use)
        from adapters import AutoAdapterModel

        return AutoAdapterModel.from_pretrained(base_dir, config=config).eval()
    cls = {"seqcls": AutoModelForSequenceClassification, "causal": AutoModelForCausalLM}[head]
    model = cls.from_pretrained(base_dir, config=config)
    return model.eval()


def init_model(base_dir: str, head: str):
    import adapters

    model = load_base(base_dir, head)
    if head != "flexcls":
        adapters.init(model)
    return model


def head_names(model) -> list[str]:
    prefix = model.base_model_prefix
    return sorted(k for k, _ in model.named_parameters() if not k.startswith(prefix))


def fill(model, names, seed: int, std: float = STD) -> None:
    import torch

    torch.manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(set(names)):
            p = params[name]
            p.copy_(torch.randn(p.shape, dtype=p.dtype) * std)


def with_head_kw(model, head: str) -> dict:
    """Only the heads-aware save/load take `with_head`; a causal model's "head" is its lm_head: never saved."""
    import inspect

    if "with_head" in inspect.signature(model.save_adapter).parameters:
        return {"with_head": head in ("seqcls", "flexcls")}
    return {}


def cmd_make(a) -> None:
    import adapters

    cls = getattr(adapters, CONFIG_CLASSES[a.config])
    model = init_model(a.base, a.head)
    before = {k for k, _ in model.named_parameters()}
    model.add_adapter(a.name, config=cls(**json.loads(a.kwargs)))
    if a.head == "flexcls":  # a two-layer tanh classification head over the first token, 3 labels
        model.add_classification_head(a.name, num_labels=3, layers=2, activation_function="tanh")
    new = [k for k, _ in model.named_parameters() if k not in before]
    if not new:
        raise RuntimeError(f"adding {a.config} added no parameters")
    fill(model, new + (head_names(model) if a.head == "seqcls" else []), a.seed)
    os.makedirs(a.out, exist_ok=True)
    kw = with_head_kw(model, a.head)
    try:
        model.save_adapter(a.out, a.name, use_safetensors=True, **kw)
    except RuntimeError as e:
        if "share memory" not in str(e):
            raise
        # Prefix tuning: the one PrefixTuningPool is registered under the base model and under every
        # attention layer, so its tensors appear under several state-dict keys sharing storage, which
        # safetensors refuses. eject_prefix_tuning() does not help (the flat prefix is shared the same
        # way, and adapter_config.json would still say flat=false). What works: let adapters write
        # its torch checkpoint, then rewrite it as adapter.safetensors with each key's own copy: the
        # same keys and values adapters' loader reads from either file (load_adapter(...,
        # use_safetensors=True) prefers adapter.safetensors).
        save_via_torch(model, a.out, a.name, kw, e)


def save_via_torch(model, out: str, name: str, kw: dict, err: Exception) -> None:
    import torch
    from safetensors.torch import save_file

    model.save_adapter(out, name, use_safetensors=False, **kw)
    for bin_name, safe_name in (("pytorch_adapter.bin", "adapter.safetensors"),
                                ("pytorch_model_head.bin", "model_head.safetensors")):
        path = os.path.join(out, bin_name)
        if not os.path.exists(path):
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, os.path.join(out, safe_name))
        except Exception as e2:  # noqa: BLE001
            raise CannotSave(f"adapters 1.3 cannot save this adapter with safetensors: {err}; {e2}") from e2
        os.remove(path)


def activate(model, setup):
    from adapters.composition import Fuse, Stack

    def block(s):
        if isinstance(s, str):
            return s
        if isinstance(s, list):
            return Stack(*[block(x) for x in s])
        if isinstance(s, dict) and len(s) == 1:
            (kind, children), = s.items()
            kids = [block(x) for x in children]
            if kind == "fuse":
                return Fuse(*kids)
            if kind == "stack":
                return Stack(*kids)
        raise ValueError(f"unknown setup {s!r}")

    model.set_active_adapters(block(setup))


def cmd_logits(a) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    model = init_model(a.base, a.head)
    inputs = load_file(a.inputs)
    if a.setup_folder:
        block, _ = model.load_adapter_setup(a.setup_folder, use_safetensors=True, set_active=True)
    elif not a.none:
        if not a.adapter:
            raise ValueError("logits needs --adapter, --setup-folder or --none")
        kw = with_head_kw(model, a.head)
        for d in a.adapter:
            name = json.load(open(os.path.join(d, "adapter_config.json")))["name"]
            model.load_adapter(d, load_as=name, use_safetensors=True, **kw)
        if a.fusion:
            model.load_adapter_fusion(a.fusion, use_safetensors=True)
        activate(model, json.loads(a.setup))
        if a.head == "flexcls":
            model.active_head = json.load(open(os.path.join(a.adapter[0], "adapter_config.json")))["name"]
    model.eval()
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"].long(), attention_mask=inputs["attention_mask"].long())
    save_file({"logits": out.logits.float().contiguous()}, a.out)


def cmd_fusion(a) -> None:
    from adapters.composition import Fuse

    model = init_model(a.base, a.head)
    names = []
    for d in a.adapter:
        names.append(model.load_adapter(d, use_safetensors=True, **with_head_kw(model, a.head)))
    before = {k for k, _ in model.named_parameters()}
    model.add_adapter_fusion(Fuse(*names))
    new = [k for k, _ in model.named_parameters() if k not in before]
    fill(model, new, a.seed, std=FUSION_STD)
    os.makedirs(a.out, exist_ok=True)
    model.save_adapter_fusion(a.out, ",".join(names), use_safetensors=True)


def cmd_save_setup(a) -> None:
    """Loads the adapter folders (and a fusion), then `save_adapter_setup(out, setup, use_safetensors=True)`."""
    from adapters.composition import Fuse, Stack

    model = init_model(a.base, a.head)
    names = [model.load_adapter(d, use_safetensors=True, **with_head_kw(model, a.head)) for d in a.adapter]
    if a.fusion:
        model.load_adapter_fusion(a.fusion, use_safetensors=True)
    setup = json.loads(a.setup)
    block = Fuse(*setup["fuse"]) if "fuse" in setup else Stack(*setup["stack"])
    if set(block.flatten()) - set(names):
        raise ValueError(f"setup {setup} names adapters not loaded ({names})")
    model.save_adapter_setup(a.out, block, use_safetensors=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adapters_side")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(s):
        s.add_argument("--base", required=True)
        s.add_argument("--head", required=True, choices=["seqcls", "causal", "flexcls"])

    m = sub.add_parser("make")
    common(m)
    m.add_argument("--config", required=True, choices=sorted(CONFIG_CLASSES))
    m.add_argument("--kwargs", default="{}")
    m.add_argument("--name", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True)

    lg = sub.add_parser("logits")
    common(lg)
    lg.add_argument("--adapter", action="append", default=[])
    lg.add_argument("--fusion")
    lg.add_argument("--setup", default="null")
    lg.add_argument("--none", action="store_true")
    lg.add_argument("--setup-folder", help="a folder save_adapter_setup wrote: load_adapter_setup(..., set_active=True)")
    lg.add_argument("--inputs", required=True)
    lg.add_argument("--out", required=True)

    f = sub.add_parser("fusion")
    common(f)
    f.add_argument("--adapter", action="append", required=True)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True)

    ss = sub.add_parser("save-setup")
    common(ss)
    ss.add_argument("--adapter", action="append", required=True)
    ss.add_argument("--fusion")
    ss.add_argument("--setup", required=True, help='{"stack": [...]} or {"fuse": [...]}')
    ss.add_argument("--out", required=True)

    sub.add_parser("versions")  # prints {"adapters": ..., "transformers": ..., "torch": ...}

    b = sub.add_parser("batch")  # several of the above in one process (torch imported once)
    b.add_argument("--jobs", required=True, help="JSON file: a list of argv lists")
    b.add_argument("--out", required=True, help="JSON file: one {rc, error} per job")
    return p


def cmd_versions(a) -> None:
    import adapters
    import torch
    import transformers

    print(json.dumps({"adapters": adapters.__version__, "transformers": transformers.__version__,
                      "torch": torch.__version__}))


def run_one(a) -> tuple[int, str | None]:
    try:
        COMMANDS[a.cmd](a)
    except CannotSave as e:
        return 3, f"adapters_side: CannotSave: {e}".replace("\n", " ")
    except Exception as e:  # noqa: BLE001 - one line for the referee, whatever went wrong
        return 2, f"adapters_side: {type(e).__name__}: {e}".replace("\n", " ")
    return 0, None


def cmd_batch(a) -> None:
    results = []
    for argv in json.load(open(a.jobs)):
        job = parser().parse_args(argv)
        if job.cmd == "batch":
            raise ValueError("a batch cannot hold a batch")
        rc, err = run_one(job)
        results.append({"rc": rc, "error": err})
    with open(a.out, "w") as f:
        json.dump(results, f)


COMMANDS = {"make": cmd_make, "logits": cmd_logits, "fusion": cmd_fusion, "save-setup": cmd_save_setup,
            "versions": cmd_versions, "batch": cmd_batch}


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    _quiet()
    rc, err = run_one(a)
    if err:
        print(err, file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
