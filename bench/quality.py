"""``python -m bench.quality`` (``make bench-quality``): does parameter-efficient tuning nearly match full
fine-tuning here, on real text, for what it costs?

On ``minilm-l6`` (all-MiniLM-L6-v2) × BBC News, Reuters R8 and the election tweets, every method is
trained with the same budget (steps × batch size), the same seed and the same training loop
(``compose.training.fit``), then scored on the same fixed seeded sample of the test split:

- ``full``: every weight trains (the reference the literature compares against);
- ``head``: only the new classification head trains (a linear probe: what the frozen encoder gives
  for free, so an adapter's gain over it is visible);
- ``lora``, ``lora_fa``, ``pfeiffer`` (bottleneck), ``ia3``, ``prefix_tuning``, ``prompt_tuning``:
  the adapter methods through ``compose.training.train``, head included as PEFT does.

Each run is a fresh child process, so its peak resident memory is its own. Time is reported as
wall time and as process CPU time (the CPU time is the steadier figure on a shared machine).
Learning rates are each method's usual one, not tuned per dataset. Output: a table on stdout,
``bench/results/quality.json`` and ``bench/results/quality.md``.

    python -m bench.quality                       # the whole table (about 45 minutes on 2 idle cores)
    python -m bench.quality --quick               # 5 steps, 32 test examples: a smoke run
    python -m bench.quality --dataset bbc-news --method lora --method full
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adapterhub.format import write_text_atomic
from bench import common

BASE = "minilm-l6"
DATASETS: dict[str, int] = {"bbc-news": 96, "reuters-r8": 96, "election-tweets": 64}  # name -> max_length


@dataclass(frozen=True)
class Method:
    lr: float
    config: dict[str, Any] = field(default_factory=dict)
    trainer: str | None = None  # a ``compose.training.METHODS`` name; None: trained here (full / head)


LORA = {"r": 8, "alpha": 16, "target_modules": ["query", "value"]}
METHODS: dict[str, Method] = {
    "full": Method(5e-5),
    "head": Method(1e-2),
    "lora": Method(2e-3, LORA, "lora"),
    "lora_fa": Method(2e-3, LORA, "lora_fa"),
    "pfeiffer": Method(2e-3, {"reduction_factor": 16}, "pfeiffer"),
    "ia3": Method(1e-2, {}, "ia3"),
    "prefix_tuning": Method(1e-2, {"num_virtual_tokens": 16}, "prefix_tuning"),
    "prompt_tuning": Method(3e-2, {"num_virtual_tokens": 16}, "prompt_tuning"),
}


@dataclass(frozen=True)
class Budget:
    steps: int = 50
    batch_size: int = 16
    test_sample: int = 200
    seed: int = 0


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def run_one(dataset: str, method: str, budget: Budget) -> dict[str, Any]:
    """Train and score one (dataset, method) in this process; the parent reads its peak memory."""
    import torch

    from adapterhub.compose.workflows.catalog import resolve_base_model
    from adapterhub.compose.workflows.data import load_dataset, seeded_sample

    common.setup_torch()
    spec = METHODS[method]
    max_length = DATASETS[dataset]
    base = resolve_base_model(BASE, say=lambda m: print(m, file=sys.stderr))
    train_ds = load_dataset(f"{dataset}:train")
    test_ds = seeded_sample(load_dataset(f"{dataset}:test"), budget.test_sample, budget.seed)
    settings = {"steps": budget.steps, "batch_size": budget.batch_size, "lr": spec.lr, "seed": budget.seed,
                "max_length": max_length}
    cpu0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        if spec.trainer is not None:
            row = _train_adapter(base, train_ds, test_ds, spec, settings, Path(tmp) / method)
        else:
            row = _train_weights(base, train_ds, test_ds, method, settings, Path(tmp) / method)
    row.update({
        "dataset": dataset, "method": method, "lr": spec.lr, "config": spec.config,
        "train_examples": len(train_ds), "train_sha256": train_ds.sha256,
        "test_examples": len(test_ds), "test_sha256": test_ds.sha256,
        "cpu_s": round(time.process_time() - cpu0, 1),
        "peak_rss_mb": round(common.peak_rss_mb(), 1), "torch_threads": torch.get_num_threads(),
    })
    return row


def _train_adapter(base: Path, train_ds, test_ds, spec: Method, settings: dict, out: Path) -> dict[str, Any]:
    from adapterhub.compose.workflows.training import train

    loaded_rss = common.current_rss_mb()
    result = train(base, train_ds, spec.trainer, out, eval_data=test_ds, progress=False, **settings, **spec.config)
    training = result.card["training"]
    return {
        "accuracy": result.metrics["accuracy"], "macro_f1": result.metrics["macro_f1"],
        "trainable_parameters": training["trainable_parameters"], "total_parameters": training["total_parameters"],
        "size_bytes": _folder_bytes(out), "train_s": training["time_s"], "final_loss": result.losses[-1],
        "rss_before_training_mb": round(loaded_rss, 1),
    }


def _train_weights(base: Path, train_ds, test_ds, method: str, settings: dict, out: Path) -> dict[str, Any]:
    """Full fine-tuning or the head alone, through the adapters' own loop; the result saved as PEFT
    would have to ship it (the whole model, or the head) to measure its size on disk."""
    from safetensors.torch import save_file

    from adapterhub.compose.workflows.base import load_base, load_tokenizer
    from adapterhub.compose.workflows.evaluate import default_device, evaluate
    from adapterhub.compose.workflows.training import TRAINING_DEFAULTS, fit

    labels = list(train_ds.labels)
    tokenizer = load_tokenizer(base)
    device = default_device()
    model = load_base(base, "classification", labels, seed=settings["seed"], tokenizer=tokenizer).to(device)
    head = model.classifier
    for p in model.parameters():
        p.requires_grad_(method == "full")
    for p in head.parameters():
        p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    loaded_rss = common.current_rss_mb()
    model.train()
    losses, seconds = fit(model, tokenizer, train_ds, labels, params, {**TRAINING_DEFAULTS, **settings}, device,
                          False, method)
    model.eval()
    result = evaluate(model, tokenizer, test_ds, labels=labels, batch_size=settings["batch_size"],
                      max_length=settings["max_length"], progress=False)
    out.mkdir(parents=True)
    shipped = model if method == "full" else head
    save_file({k: v.detach().contiguous() for k, v in shipped.state_dict().items()}, str(out / "weights.safetensors"))
    return {
        "accuracy": result.metrics["accuracy"], "macro_f1": result.metrics["macro_f1"],
        "trainable_parameters": sum(p.numel() for p in params),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "size_bytes": _folder_bytes(out), "train_s": round(seconds, 3), "final_loss": losses[-1],
        "rss_before_training_mb": round(loaded_rss, 1),
    }


def run(datasets: list[str], methods: list[str], budget: Budget) -> list[dict[str, Any]]:
    """Every (dataset, method) in its own child process, one after another."""
    rows = []
    for dataset in datasets:
        for method in methods:
            print(f"[quality] {dataset} × {method} ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, "-m", "bench.quality", "--child", dataset, method, "--steps", str(budget.steps),
                   "--batch-size", str(budget.batch_size), "--test-sample", str(budget.test_sample),
                   "--seed", str(budget.seed)]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": str(common.THREADS)})
            reply = [line for line in proc.stdout.splitlines() if line.startswith(common.PROTOCOL)]
            if proc.returncode != 0 or not reply:
                raise RuntimeError(f"{dataset} × {method} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            rows.append(json.loads(reply[-1][len(common.PROTOCOL):]))
            print(f"[quality]   accuracy {rows[-1]['accuracy']:.3f} in {rows[-1]['train_s']:.0f} s", file=sys.stderr)
    return rows


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one block per dataset, each method's gap to full fine-tuning in points of accuracy."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        block = [r for r in rows if r["dataset"] == dataset]
        full = next((r for r in block if r["method"] == "full"), None)
        first = block[0]
        lines += [f"### {dataset} ({first['train_examples']} train, {first['test_examples']} test examples)", "",
                  "| method | accuracy | vs full FT | macro-F1 | trainable params | size on disk | train wall | "
                  "train CPU | peak RSS |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in block:
            gap = f"{100 * (r['accuracy'] - full['accuracy']):+.1f} pts" if full and r is not full else "—"
            pct = 100 * r["trainable_parameters"] / r["total_parameters"]
            lines.append(f"| {r['method']} | {r['accuracy']:.3f} | {gap} | {r['macro_f1']:.3f} | "
                         f"{r['trainable_parameters']:,} ({pct:.2f} %) | {_size(r['size_bytes'])} | "
                         f"{r['train_s']:.0f} s | {r['cpu_s']:.0f} s | {r['peak_rss_mb']:.0f} MiB |")
        lines.append("")
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]], tolerance_pts: float = 3.0) -> list[str]:
    """Where a method loses more than the 1–3 points the literature claims, say so in words."""
    out = []
    for r in rows:
        full = next((f for f in rows if f["dataset"] == r["dataset"] and f["method"] == "full"), None)
        head = next((f for f in rows if f["dataset"] == r["dataset"] and f["method"] == "head"), None)
        if full is not None and r is head and head["accuracy"] >= full["accuracy"]:
            out.append(f"- On {r['dataset']} full fine-tuning has not learnt the task at this budget (accuracy "
                       f"{full['accuracy']:.3f}, macro-F1 {full['macro_f1']:.3f}, no better than the head-only probe's "
                       f"{head['accuracy']:.3f}), so gaps to it say little there; compare the methods with each other.")
        if full is None or r["method"] in ("full", "head"):
            continue
        gap = round(100 * (full["accuracy"] - r["accuracy"]), 1)
        if gap > tolerance_pts:
            out.append(f"- **{r['method']}** on {r['dataset']} is {gap:.1f} points below full fine-tuning "
                       f"({r['accuracy']:.3f} vs {full['accuracy']:.3f}) at this budget.")
    return out


def write_markdown(rows: list[dict[str, Any]], budget: Budget, machine: dict) -> Path:
    notes = verdicts(rows)
    text = "\n".join([
        "# Quality: full fine-tuning vs adapter methods on real data",
        "",
        f"Written by `python -m bench.quality` (`make bench-quality`) on {machine['time_utc']}: base `{BASE}`, "
        f"{budget.steps} steps × batch {budget.batch_size} for every method, seed {budget.seed}, "
        f"{machine['torch_threads']} torch threads on {machine['cpu']} ({machine['cpu_count']} cores; "
        f"load average at the end {machine['load_average'][0]:.1f}). Accuracy is on a fixed seeded sample of each "
        "test split (never trained on). Learning rates: "
        + ", ".join(f"{name} {m.lr:g}" for name, m in METHODS.items()) + " (each method's usual; not tuned per "
        "dataset). `head` trains only the new classification head (a linear probe); the adapter methods train "
        "their head too, as PEFT's `modules_to_save` does. Size on disk is the safetensors a user would ship "
        "(the whole model for full fine-tuning). Wall time depends on what else ran on the machine; CPU time is "
        "the steadier figure.",
        "",
        table(rows),
        "## Where a method falls short",
        "",
        *(notes or ["Every adapter method is within 3 points of full fine-tuning at this budget."]),
        "",
    ])
    return write_text_atomic(common.RESULTS / "quality.md", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("--dataset", action="append", choices=list(DATASETS), help="repeatable; default all")
    parser.add_argument("--method", action="append", choices=list(METHODS), help="repeatable; default all")
    parser.add_argument("--steps", type=int, default=Budget.steps)
    parser.add_argument("--batch-size", type=int, default=Budget.batch_size)
    parser.add_argument("--test-sample", type=int, default=Budget.test_sample)
    parser.add_argument("--seed", type=int, default=Budget.seed)
    parser.add_argument("--quick", action="store_true", help="5 steps and 32 test examples: a smoke run")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite quality.md from quality.json")
    parser.add_argument("--child", nargs=2, metavar=("DATASET", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    budget = Budget(5, args.batch_size, 32, args.seed) if args.quick else Budget(
        args.steps, args.batch_size, args.test_sample, args.seed)
    if args.markdown_only:  # rewrite quality.md from the last full run's JSON
        saved = json.loads((common.RESULTS / "quality.json").read_text())
        print(f"wrote {write_markdown(saved['rows'], Budget(**saved['budget']), saved['machine'])}", file=sys.stderr)
        return 0
    if args.child:
        print(common.PROTOCOL + json.dumps(run_one(*args.child, budget)), flush=True)
        return 0
    rows = run(args.dataset or list(DATASETS), args.method or list(METHODS), budget)
    machine = common.machine_info()
    print(table(rows))
    name = "quality-quick" if args.quick else "quality"
    path = common.write_results(name, {"machine": machine, "budget": asdict(budget),
                                       "rows": rows})
    print(f"wrote {path}", file=sys.stderr)
    if not args.quick and not args.dataset and not args.method:
        print(f"wrote {write_markdown(rows, budget, machine)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
