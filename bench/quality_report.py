"""The quality bench's tables and sentences, from its cached runs (pure: no torch, no training).

``summarise`` picks each method's learning rate from the seed-0 sweep (best validation accuracy; ties:
lower validation loss, then the smaller lr), averages the seeds at that lr, and measures the gap to
full fine-tuning; ``table`` and ``verdict`` turn that into Markdown and a sentence per dataset.
"""

from __future__ import annotations

import statistics
from typing import Any

CLAIM_PCT = 3.0  # "PEFT lands within 1-3 % of full fine-tuning": the upper end, relative to full's accuracy
REFERENCE = "full"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value: a spread needs two seeds)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def pick_lr(sweep: list[dict[str, Any]]) -> float:
    """The sweep run (seed 0) with the best validation accuracy; ties: lower validation loss, smaller lr."""
    return min(sweep, key=lambda r: (-r["val_accuracy"], r["val_loss"], r["lr"]))["lr"]


def summarise(runs: list[dict[str, Any]], methods: list[str], seeds: list[int],
              sweep_seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per dataset, per method: the chosen lr, mean and std over ``seeds`` at it, and the gap to full."""
    out: dict[str, dict[str, Any]] = {}
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        block: dict[str, Any] = {}
        for method in methods:
            mine = [r for r in runs if r["dataset"] == dataset and r["method"] == method]
            sweep = [r for r in mine if r["seed"] == sweep_seed]
            if not sweep:
                continue
            lr = pick_lr(sweep)
            chosen = sorted((r for r in mine if r["lr"] == lr and r["seed"] in seeds), key=lambda r: r["seed"])
            acc, acc_sd = mean_std([r["accuracy"] for r in chosen])
            f1, f1_sd = mean_std([r["macro_f1"] for r in chosen])
            block[method] = {
                "lr": lr, "seeds": [r["seed"] for r in chosen],
                "sweep": {f"{r['lr']:g}": {"val_accuracy": r["val_accuracy"], "val_loss": round(r["val_loss"], 4)}
                          for r in sorted(sweep, key=lambda r: r["lr"])},
                "accuracy": acc, "accuracy_std": acc_sd, "macro_f1": f1, "macro_f1_std": f1_sd,
                "per_seed_accuracy": [r["accuracy"] for r in chosen],
                "best_step": statistics.fmean(r["best_step"] for r in chosen),
                "best_epoch": statistics.fmean(r["best_epoch"] for r in chosen),
                "steps_run": statistics.fmean(r["steps_run"] for r in chosen),
                "stopped_early": sum(r["stopped_early"] for r in chosen),
                "trainable_parameters": chosen[0]["trainable_parameters"],
                "total_parameters": chosen[0]["total_parameters"], "size_bytes": chosen[0]["size_bytes"],
                "train_s": statistics.fmean(r["train_s"] for r in chosen),
                "cpu_s": statistics.fmean(r["cpu_s"] for r in chosen),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in chosen),
                "test_examples": chosen[0]["test_examples"], "train_examples": chosen[0]["fit_examples"],
                "val_examples": chosen[0]["val_examples"],
            }
        ref = block.get(REFERENCE)
        for method, m in block.items():
            if ref is None or method == REFERENCE:
                m["gap_pts"] = m["gap_pct"] = None
                continue
            m["gap_pts"] = 100 * (m["accuracy"] - ref["accuracy"])
            m["gap_pct"] = 100 * (m["accuracy"] - ref["accuracy"]) / ref["accuracy"]
        out[dataset] = block
    return out


def _pm(mean: float, sd: float | None) -> str:
    return f"{mean:.3f} ± {sd:.3f}" if sd is not None else f"{mean:.3f} ± n/a"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


TABLE_HEADER = ("| method | accuracy (mean ± std) | macro-F1 (mean ± std) | vs full FT | lr | best step (epoch) | "
                "trainable params | size on disk | train wall | peak RSS |")


def table(dataset: str, block: dict[str, Any]) -> str:
    """One dataset's Markdown table (a heading, the header, a row per method)."""
    first = next(iter(block.values()))
    n_seeds = max(len(m["seeds"]) for m in block.values())
    lines = [f"### {dataset} ({first['train_examples']} train, {first['val_examples']} validation, "
             f"{first['test_examples']} test examples; {n_seeds} seed{'s' if n_seeds > 1 else ''})", "",
             TABLE_HEADER, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method, m in block.items():
        gap = "—" if m["gap_pts"] is None else f"{m['gap_pts']:+.1f} pts ({m['gap_pct']:+.1f} %)"
        pct = 100 * m["trainable_parameters"] / m["total_parameters"]
        capped = " †" if m["stopped_early"] < len(m["seeds"]) else ""
        lines.append(
            f"| {method} | {_pm(m['accuracy'], m['accuracy_std'])} | {_pm(m['macro_f1'], m['macro_f1_std'])} | "
            f"{gap} | {m['lr']:g} | {m['best_step']:.0f} ({m['best_epoch']:.1f}){capped} | "
            f"{m['trainable_parameters']:,} ({pct:.2f} %) | {_size(m['size_bytes'])} | {m['train_s']:.0f} s | "
            f"{m['peak_rss_mb']:.0f} MiB |")
    if any(m["stopped_early"] < len(m["seeds"]) for m in block.values()):
        lines += ["", "† at least one seed ran to the cap without early stopping: it may not have converged."]
    return "\n".join(lines)


def sweep_line(block: dict[str, Any]) -> str:
    """The seed-0 validation accuracy at each lr tried, the chosen one starred."""
    parts = []
    for method, m in block.items():
        tried = ", ".join(f"{lr}{'*' if float(lr) == m['lr'] else ''} ({v['val_accuracy']:.3f})"
                          for lr, v in m["sweep"].items())
        parts.append(f"{method}: {tried}")
    return "Validation accuracy per lr (seed 0; * chosen): " + "; ".join(parts) + "."


def _names(items: list[tuple[str, float]]) -> str:
    return ", ".join(f"{name} ({pct:+.1f} %)" for name, pct in items)


def verdict(dataset: str, block: dict[str, Any], claim_pct: float = CLAIM_PCT) -> str:
    """A plain sentence from the numbers: does "within 1-3 % of full fine-tuning" hold here, for whom."""
    ref = block.get(REFERENCE)
    adapters = {k: m for k, m in block.items() if k not in (REFERENCE, "head")}
    if ref is None:
        return f"On {dataset} there is no full fine-tuning run, so the claim cannot be tested here."
    if not adapters:
        return f"On {dataset} no adapter method ran, so the claim cannot be tested here."
    head = block.get("head")
    text = f"On {dataset}, full fine-tuning reaches {_pm(ref['accuracy'], ref['accuracy_std'])} accuracy"
    if head is not None and head["accuracy"] >= ref["accuracy"]:
        text += (f", no better than the head-only probe ({head['accuracy']:.3f}), so full fine-tuning has not "
                 "learnt the task here and gaps to it say little")
    within = [(k, m["gap_pct"]) for k, m in adapters.items() if m["gap_pct"] >= -claim_pct]
    below = [(k, m["gap_pct"]) for k, m in adapters.items() if m["gap_pct"] < -claim_pct]
    if not below:
        text += f"; the claim holds for every adapter method tested ({_names(within)})."
    elif not within:
        text += f"; the claim fails for every adapter method tested ({_names(below)})."
    else:
        text += (f"; the claim holds for {len(within)} of {len(adapters)} adapter methods ({_names(within)}) "
                 f"and fails for {_names(below)}.")
    noisy = [k for k, m in adapters.items() if m["gap_pct"] < -claim_pct and m["accuracy_std"] is not None
             and ref["accuracy_std"] is not None
             and -m["gap_pts"] / 100 < 2 * max(m["accuracy_std"], ref["accuracy_std"])]
    if noisy:
        text += f" For {', '.join(noisy)} the shortfall is within twice the seed-to-seed spread."
    if head is not None and head.get("gap_pct") is not None:
        text += f" The head-only probe (the frozen encoder's baseline) is at {head['gap_pct']:+.1f} %."
    return text


def markdown(summary: dict[str, dict[str, Any]], machine: dict, protocol_text: str) -> str:
    lines = ["# Quality: full fine-tuning vs adapter methods, each trained to convergence", "",
             f"Written by `python -m bench.quality` (`make bench-quality`) on {machine['time_utc']}. "
             f"Machine: {machine['cpu']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} torch thread(s) "
             f"per run, torch {machine['torch']}, transformers {machine['transformers']}, "
             f"revision {machine.get('adapterhub_revision') or 'unknown'}.", "", "## Protocol", "", protocol_text, ""]
    lines += ["## Verdicts", ""] + [f"- {verdict(d, b)}" for d, b in summary.items()] + [""]
    for dataset, block in summary.items():
        lines += [table(dataset, block), "", sweep_line(block), ""]
    return "\n".join(lines)
