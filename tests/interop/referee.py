"""The adapters 1.3 referee: AdapterHub's own library, asked by subprocess in its own virtualenv.

`adapters` 1.3.0 needs transformers 4.x, our suite runs transformers 5, so the library lives in a
second environment (`make interop-env`, requirements-adapters.txt) and `adapters_side.py` runs there;
the two sides exchange only files: a tiny base saved with `save_pretrained` (`save_tiny_base`),
adapter folders, and safetensors of inputs and logits.

Each call starts one interpreter (importing torch + transformers + adapters: a few seconds), so the
`*_many` forms run several jobs in one process; the single forms are thin wrappers over them.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

SIDE = Path(__file__).with_name("adapters_side.py")
DEFAULT_PYTHON = Path("~/.cache/adapterhub/venv-adapters-1.3.0/bin/python").expanduser()
TIMEOUT_S = 120
MISSING = "the adapters 1.3 referee environment is missing: run `make interop-env`"


def adapters_python() -> str:
    """The adapters environment's interpreter: $ADAPTERHUB_ADAPTERS_PYTHON, else the cached default."""
    path = os.environ.get("ADAPTERHUB_ADAPTERS_PYTHON") or str(DEFAULT_PYTHON)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{MISSING} (looked for {path})", pytrace=False)
    return path


def run_side(args: list[str], timeout: float = TIMEOUT_S) -> str:
    """Runs adapters_side.py with ``args``; returns its stdout, or raises AssertionError with its stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               TOKENIZERS_PARALLELISM="false")
    cmd = [adapters_python(), str(SIDE), *map(str, args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"adapters_side timed out after {timeout}s: {' '.join(cmd[2:])}") from e
    if proc.returncode != 0:
        raise AssertionError(f"adapters_side {args[0]} failed (rc {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def run_batch(jobs: list[list[str]], timeout: float = TIMEOUT_S) -> None:
    """Runs several side commands (argv lists) in one interpreter; raises AssertionError naming each failure."""
    if not jobs:
        return
    with tempfile.TemporaryDirectory(prefix="adapters-batch-") as tmp:
        jobs_file, out_file = Path(tmp, "jobs.json"), Path(tmp, "results.json")
        jobs_file.write_text(json.dumps([[str(x) for x in j] for j in jobs]))
        run_side(["batch", "--jobs", jobs_file, "--out", out_file], timeout=timeout)
        results = json.loads(out_file.read_text())
    failed = [f"job {i} ({' '.join(map(str, jobs[i][:1]))}, rc {r['rc']}): {r['error']}"
              for i, r in enumerate(results) if r["rc"] != 0]
    if failed:
        raise AssertionError("adapters_side batch failed:\n" + "\n".join(failed))


def versions() -> dict:
    return json.loads(run_side(["versions"]).strip().splitlines()[-1])


def save_tiny_base(model, directory) -> Path:
    """Saves one of our tiny models (tests/helpers/tiny.py) where the adapters side can load it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


# --- make ------------------------------------------------------------------------------------------

def _make_argv(base_dir, head, config, kwargs, name, seed, out) -> list[str]:
    return ["make", "--base", base_dir, "--head", head, "--config", config, "--kwargs", json.dumps(kwargs or {}),
            "--name", name, "--seed", seed, "--out", out]


def make_adapter(base_dir, head: str, config: str, kwargs: dict | None, name: str, seed: int, out) -> Path:
    """An adapter made and saved by adapters 1.3 (every parameter, and a seqcls head, seeded random)."""
    run_side(_make_argv(base_dir, head, config, kwargs, name, seed, out))
    return Path(out)


def make_adapters(jobs: list[dict], timeout: float = TIMEOUT_S) -> list[Path]:
    """Several `make_adapter(**job)` in one interpreter."""
    run_batch([_make_argv(**j) for j in jobs], timeout=timeout)
    return [Path(j["out"]) for j in jobs]


# --- logits ----------------------------------------------------------------------------------------

def _logits_argv(base_dir, head, adapters, setup, inputs, out, fusion=None) -> list[str]:
    argv = ["logits", "--base", base_dir, "--head", head, "--inputs", inputs, "--out", out]
    if not adapters:
        return [*argv, "--none"]
    for d in adapters:
        argv += ["--adapter", d]
    if fusion is not None:
        argv += ["--fusion", fusion]
    return [*argv, "--setup", json.dumps(setup)]


def adapters_logits_many(jobs: list[dict], timeout: float = TIMEOUT_S) -> list[torch.Tensor]:
    """Several `adapters_logits(**job)` in one interpreter. ``adapters`` empty or None: the bare base."""
    with tempfile.TemporaryDirectory(prefix="adapters-logits-") as tmp:
        argvs = []
        for i, j in enumerate(jobs):
            inputs, out = Path(tmp, f"in{i}.safetensors"), Path(tmp, f"out{i}.safetensors")
            save_file({"input_ids": j["input_ids"].to(torch.int64).contiguous(),
                       "attention_mask": j["attention_mask"].to(torch.int64).contiguous()}, str(inputs))
            argvs.append(_logits_argv(j["base_dir"], j["head"], j.get("adapters"), j.get("setup"), inputs, out,
                                      j.get("fusion")))
        run_batch(argvs, timeout=timeout)
        return [load_file(str(Path(tmp, f"out{i}.safetensors")))["logits"] for i in range(len(jobs))]


def adapters_logits(base_dir, head: str, adapters, setup, input_ids, attention_mask, fusion=None) -> torch.Tensor:
    """Logits (float32) of adapters 1.3 with ``adapters`` (folders) loaded and ``setup`` active.

    ``setup``: a name ("x"), or {"stack": [...]} / {"fuse": [...]} (a list means a Stack); names are
    those in each folder's adapter_config.json. ``fusion``: a folder written by `make_fusion`.
    For seqcls, each folder's head files (where present) are loaded over the classifier: the last one wins.
    GPT-2's fused c_attn (LoRAMergedLinear) refuses any composed setup (Stack, Fuse) with LoRA or IA3.
    """
    return adapters_logits_many([dict(base_dir=base_dir, head=head, adapters=adapters, setup=setup,
                                      input_ids=input_ids, attention_mask=attention_mask, fusion=fusion)])[0]


# --- fusion ----------------------------------------------------------------------------------------

def make_fusion(base_dir, head: str, adapters, seed: int, out) -> Path:
    """An AdapterFusion over two bottleneck folders, seeded random, saved by `save_adapter_fusion`:
    adapter_fusion_config.json + model_adapter_fusion.safetensors, named "a,b" (the adapters' names)."""
    argv = ["fusion", "--base", base_dir, "--head", head]
    for d in adapters:
        argv += ["--adapter", d]
    run_side([*argv, "--seed", seed, "--out", out])
    return Path(out)
