"""``python -m bench.quality`` (``make bench-quality``): does parameter-efficient tuning land within 1-3 %
of full fine-tuning here, on real text, once every method is trained to convergence?

On ``minilm-l6`` (all-MiniLM-L6-v2) × BBC News, Reuters R8 and the election tweets, each method

- ``full`` (every weight trains: the reference), ``head`` (only the new classification head: a linear
  probe, what the frozen encoder gives for free), and the adapters ``lora``, ``lora_fa``, ``pfeiffer``,
  ``ia3``, ``prefix_tuning``, ``prompt_tuning`` (their head trains too, as PEFT's ``modules_to_save``),

runs through the same training loop (``compose.workflows.training.fit``, AdamW, linear decay over the
cap, gradient clipping 1.0) with early stopping (``bench/quality_runs.py``):

- validation: 10 % of the train split, at most 300 examples, drawn with seed 0 and the same for every
  run; the model trains on the rest. The test split is scored once, at the end, in full;
- evaluated every half epoch by accuracy (ties: lower validation loss, then the earlier step);
  patience 3 evaluations; a cap of 6 epochs, which the linear-decay schedule spans; the best
  checkpoint's trainable weights are restored before the test score;
- the learning rate from a sweep on seed 0 over ``LR_GRID`` (two values a factor of about 3 apart
  around each method's usual lr; the best validation accuracy wins, ties: lower validation loss, then
  the smaller lr), then seeds 1 and 2 at the chosen lr; the table gives mean ± std over seeds 0-2.

    full 3e-5, 1e-4 | head 1e-2, 3e-2 | lora, lora_fa, pfeiffer 1e-3, 3e-3 | ia3, prefix_tuning 3e-3, 1e-2
    | prompt_tuning 3e-2, 1e-1

Each run is a fresh child process (so its peak resident memory is its own) with 1 torch thread, and
is cached as a JSON line in ``bench/results/quality_runs.jsonl`` keyed by everything that decides it
(the protocol, method, lr, seed and the sha256 of the train and test data), so an interrupted run
continues where it stopped; delete the file (or pass ``--redo``) after changing the engine. Output:
tables on stdout, ``bench/results/quality.json`` and ``bench/results/quality.md``, built from every
cached run of the current protocol (so runs of single datasets add up to the whole table).

    python -m bench.quality                                  # everything (hours: see the estimate it prints)
    python -m bench.quality --dataset bbc-news --dataset election-tweets --budget-minutes 600
    python -m bench.quality --quick                          # a smoke run into a temporary folder
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from adapterhub.format import write_text_atomic
from bench import common, quality_report
from bench.quality_runs import BASE, METHOD_CONFIGS, Protocol

DATASETS: dict[str, int] = {"bbc-news": 96, "reuters-r8": 96, "election-tweets": 64}  # name -> max_length
LR_GRID: dict[str, list[float]] = {
    "full": [3e-5, 1e-4], "head": [1e-2, 3e-2],
    "lora": [1e-3, 3e-3], "lora_fa": [1e-3, 3e-3], "pfeiffer": [1e-3, 3e-3],
    "ia3": [3e-3, 1e-2], "prefix_tuning": [3e-3, 1e-2], "prompt_tuning": [3e-2, 1e-1],
}
METHODS = list(LR_GRID)
SEEDS = [0, 1, 2]
SWEEP_SEED = 0
THREADS = 1
RUNS_FILE = "quality_runs.jsonl"
ROOT = Path(__file__).resolve().parent.parent  # the children run ``-m bench.quality`` from here
# --quick: two methods, one seed, a 2-value sweep for lora, a handful of steps, tiny slices
QUICK = Protocol(max_length=32, batch_size=8, val_max=24, eval_every=2, patience=1, max_steps=8, test_sample=24)
QUICK_METHODS, QUICK_DATASET, QUICK_GRID = ["full", "lora"], "bbc-news", {"full": [1e-4], "lora": [1e-3, 3e-3]}


def data_facts(dataset: str, protocol: Protocol) -> dict[str, Any]:
    """The sha256 of the train and (scored) test examples, and the fit slice's size: the parent's view."""
    from adapterhub.compose.workflows.data import load_dataset, seeded_sample

    train = load_dataset(f"{dataset}:train")
    test = load_dataset(f"{dataset}:test")
    if protocol.test_sample:
        test = seeded_sample(test, protocol.test_sample, 0)
    return {"train_sha256": train.sha256, "test_sha256": test.sha256, "fit": len(train) - protocol.n_val(len(train)),
            "test": len(test)}


def run_key(dataset: str, method: str, lr: float, seed: int, protocol: Protocol, facts: dict) -> str:
    what = {"base": BASE, "dataset": dataset, "method": method, "config": METHOD_CONFIGS[method], "lr": lr,
            "seed": seed, "protocol": asdict(protocol), "train": facts["train_sha256"], "test": facts["test_sha256"]}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


class RunCache:
    """Finished runs, one JSON line each, appended as they finish (the last line for a key wins)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[row["key"]] = row

    def add(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows[row["key"]] = row


class Bench:
    """The runs of one invocation: which datasets, methods, lrs and seeds, under which protocol, where."""

    def __init__(self, protocol: Protocol, grid: dict[str, list[float]], seeds: list[int], out: Path,
                 threads: int = THREADS, redo: bool = False, max_lengths: dict[str, int] | None = None):
        self.protocol, self.grid, self.seeds, self.out, self.threads = protocol, grid, seeds, out, threads
        self.max_lengths = max_lengths or DATASETS
        self.cache = RunCache(out / RUNS_FILE)
        self.redo: set[str] = set()  # keys to rerun once in this invocation
        self.redo_all = redo
        self.facts: dict[str, dict] = {}

    def proto(self, dataset: str) -> Protocol:
        return replace(self.protocol, max_length=self.max_lengths[dataset])

    def fact(self, dataset: str) -> dict:
        if dataset not in self.facts:
            self.facts[dataset] = data_facts(dataset, self.proto(dataset))
        return self.facts[dataset]

    def key(self, dataset: str, method: str, lr: float, seed: int) -> str:
        return run_key(dataset, method, lr, seed, self.proto(dataset), self.fact(dataset))

    def cached(self, dataset: str, method: str, lr: float, seed: int) -> dict | None:
        return self.cache.rows.get(self.key(dataset, method, lr, seed))

    def get(self, dataset: str, method: str, lr: float, seed: int) -> dict:
        key = self.key(dataset, method, lr, seed)
        if key in self.cache.rows and not (self.redo_all and key not in self.redo):
            return self.cache.rows[key]
        print(f"[quality] {dataset} × {method} lr {lr:g} seed {seed} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "bench.quality", "--child", dataset, method, repr(lr), str(seed),
               "--protocol", json.dumps(asdict(self.proto(dataset))), "--threads", str(self.threads)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "OMP_NUM_THREADS": str(self.threads)})
        reply = [line for line in proc.stdout.splitlines() if line.startswith(common.PROTOCOL)]
        if proc.returncode != 0 or not reply:
            raise RuntimeError(f"{dataset} × {method} lr {lr:g} seed {seed} failed (exit {proc.returncode}); "
                               "its stderr is above")
        row = {"key": key, **json.loads(reply[-1][len(common.PROTOCOL):]), "wall_s": round(time.perf_counter() - t0, 1)}
        self.cache.add(row)
        self.redo.add(key)
        print(f"[quality]   test accuracy {row['accuracy']:.3f} (val {row['val_accuracy']:.3f}, best step "
              f"{row['best_step']} of {row['steps_run']} run) in {row['wall_s']:.0f} s", file=sys.stderr)
        return row

    def sweep(self, dataset: str, methods: list[str]) -> dict[str, float]:
        """Seed 0 at every lr of the grid; the chosen lr per method."""
        chosen = {}
        for method in methods:
            rows = [self.get(dataset, method, lr, SWEEP_SEED) for lr in self.grid[method]]
            chosen[method] = quality_report.pick_lr(rows)
        return chosen

    def seed_runs(self, dataset: str, chosen: dict[str, float]) -> None:
        for method, lr in chosen.items():
            for seed in self.seeds:
                self.get(dataset, method, lr, seed)

    def all_runs(self) -> list[dict]:
        """Every cached run of this protocol and grid (any dataset, method, seed): what the report shows."""
        keys = {self.key(d, m, lr, s) for d in self.max_lengths for m in self.grid for lr in self.grid[m]
                for s in {SWEEP_SEED, *self.seeds}}
        return [r for k, r in self.cache.rows.items() if k in keys]

    def estimate_s(self, done: str, datasets: list[str], methods: list[str]) -> tuple[int, float]:
        """Runs left and their rough wall time, from the sweep just finished on ``done``: per method its
        seconds per step (evaluations included), steps run (in epochs) and start-up, scaled by each
        dataset's steps per epoch, max_length and test size."""
        left, total = 0, 0.0
        base = self.fact(done)
        spe0 = self.proto(done).steps_per_epoch(base["fit"])
        for method in methods:
            rows = [self.cached(done, method, lr, SWEEP_SEED) for lr in self.grid[method]]
            rows = [r for r in rows if r]
            if not rows:
                continue
            epochs = sum(r["steps_run"] for r in rows) / len(rows) / spe0
            per_step = sum(r["train_s"] / r["steps_run"] for r in rows) / len(rows)
            fixed = sum(r["wall_s"] - r["train_s"] - r["test_eval_s"] for r in rows) / len(rows)
            test_per_ex = sum(r["test_eval_s"] / r["test_examples"] for r in rows) / len(rows)
            for dataset in datasets:
                f, p = self.fact(dataset), self.proto(dataset)
                scale = p.max_length / self.proto(done).max_length
                one = fixed + (epochs * p.steps_per_epoch(f["fit"]) * per_step + test_per_ex * f["test"]) * scale
                n = self._left(dataset, method)
                left, total = left + n, total + n * one
        return left, total

    def _left(self, dataset: str, method: str) -> int:
        """Runs still to do for one method on one dataset: the sweep's missing lrs, then the seeds at the
        chosen lr (all but the sweep seed while the sweep is unfinished)."""
        sweep = [self.cached(dataset, method, lr, SWEEP_SEED) for lr in self.grid[method]]
        if all(sweep):
            lr = quality_report.pick_lr(sweep)
            return sum(not self.cached(dataset, method, lr, s) for s in self.seeds)
        return sum(r is None for r in sweep) + sum(s != SWEEP_SEED for s in self.seeds)

    def report(self, machine: dict) -> tuple[dict, str]:
        runs = self.all_runs()
        summary = quality_report.summarise(runs, list(self.grid), self.seeds, SWEEP_SEED)
        text = quality_report.markdown(summary, machine, self.protocol_text())
        data = {"machine": machine, "protocol": asdict(self.protocol), "max_length": self.max_lengths,
                "lr_grid": self.grid, "seeds": self.seeds, "sweep_seed": SWEEP_SEED, "threads": self.threads,
                "summary": summary, "verdicts": {d: quality_report.verdict(d, b) for d, b in summary.items()},
                "runs": sorted(runs, key=lambda r: (r["dataset"], r["method"], r["lr"], r["seed"]))}
        return data, text

    def protocol_text(self) -> str:
        p = self.protocol
        every = f"every {p.eval_every} steps" if p.eval_every else f"{p.evals_per_epoch} times per epoch"
        cap = f"{p.max_epochs:g} epochs" + (f" or {p.max_steps} steps, whichever is fewer" if p.max_steps else "")
        grid = "; ".join(f"{m} {', '.join(f'{lr:g}' for lr in lrs)}" for m, lrs in self.grid.items())
        test = f"a seeded sample of {p.test_sample} of the test split" if p.test_sample else "the whole test split"
        return (f"Base `{BASE}`; max_length {', '.join(f'{d} {n}' for d, n in self.max_lengths.items())}; "
                f"batch {p.batch_size}; AdamW, linear decay over the cap, gradient clipping 1.0, no warmup. "
                f"Validation slice: {p.val_fraction:.0%} of the train split, at most {p.val_max} examples, seed "
                f"{p.val_seed} (the same for every run; the model trains on the rest). Validation {every} by "
                f"accuracy (ties: lower loss, then earlier); patience {p.patience} evaluations; cap {cap}; the best "
                f"checkpoint's trainable weights restored before one score on {test}. Learning rate from a sweep "
                f"on seed {SWEEP_SEED} (best validation accuracy; ties: lower loss, then smaller lr) over: {grid}. "
                f"Seeds {', '.join(map(str, self.seeds))} at the chosen lr; mean ± sample std over them. "
                f"{self.threads} torch thread(s) per run, one run at a time, each in its own process (peak RSS is "
                "the run's own). The claim tested: an adapter's mean test accuracy is at most "
                f"{quality_report.CLAIM_PCT:g} % (relative) below full fine-tuning's. Size on disk: the "
                "safetensors a user would ship (the whole model for full, the head for head). Train wall: the "
                "training loop with its validation passes, mean over seeds.")

    def write(self, name: str = "quality") -> tuple[Path, Path]:
        data, text = self.report(common.machine_info() | {"torch_threads": self.threads})
        js = write_text_atomic(self.out / f"{name}.json", json.dumps(data, indent=2) + "\n")
        md = write_text_atomic(self.out / f"{name}.md", text)
        return js, md


def _minutes(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def run(bench: Bench, datasets: list[str], methods: list[str], budget_minutes: float | None = None) -> bool:
    """Sweep then seeds, dataset by dataset; after the first sweep, print the estimate for the rest (and
    stop there, False, when it exceeds ``budget_minutes``). The report is rewritten after each dataset."""
    for i, dataset in enumerate(datasets):
        t0 = time.perf_counter()
        chosen = bench.sweep(dataset, methods)
        if i == 0:
            left, secs = bench.estimate_s(dataset, datasets, methods)
            print(f"[quality] sweep on {dataset}: {_minutes(time.perf_counter() - t0)}; chosen lr "
                  + ", ".join(f"{m} {lr:g}" for m, lr in chosen.items())
                  + f". Estimate: {left} runs left, about {_minutes(secs)} more (rough: scaled from this sweep)",
                  file=sys.stderr, flush=True)
            if budget_minutes is not None and secs > 60 * budget_minutes:
                print(f"[quality] stopping: the estimate exceeds --budget-minutes {budget_minutes:g}; the runs so "
                      f"far are cached in {bench.cache.path}, a rerun continues from them", file=sys.stderr)
                return False
        bench.seed_runs(dataset, chosen)
        bench.write()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=(
        "Every method trained to convergence (early stopping, an lr sweep, 3 seeds) vs full fine-tuning; "
        "the module docstring has the protocol."))
    parser.add_argument("--dataset", action="append", choices=list(DATASETS), help="repeatable; default all")
    parser.add_argument("--method", action="append", choices=METHODS, help="repeatable; default all")
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds 0..N-1 (default %(default)s)")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads per run (default %(default)s)")
    parser.add_argument("--max-epochs", type=float, default=Protocol.max_epochs)
    parser.add_argument("--patience", type=int, default=Protocol.patience)
    parser.add_argument("--budget-minutes", type=float, help="stop after the first sweep if the estimate exceeds it")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results; --quick: a temporary one)")
    parser.add_argument("--redo", action="store_true", help="rerun the selected runs even when cached")
    parser.add_argument("--quick", action="store_true", help="2 methods, 1 seed, 8 steps, tiny slices: a smoke run")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the report from the cached runs")
    parser.add_argument("--child", nargs=4, metavar=("DATASET", "METHOD", "LR", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from bench.quality_runs import run_one

        dataset, method, lr, seed = args.child
        row = run_one(dataset, method, float(lr), int(seed), Protocol(**json.loads(args.protocol)), args.threads)
        print(common.PROTOCOL + json.dumps(row), flush=True)
        return 0
    if args.quick:
        out = args.out or Path(tempfile.mkdtemp(prefix="quality-quick-"))
        methods = args.method or QUICK_METHODS
        grid = {m: QUICK_GRID.get(m, LR_GRID[m][:1]) for m in methods}
        bench = Bench(QUICK, grid, [0], out, threads=1, redo=args.redo,
                      max_lengths={QUICK_DATASET: QUICK.max_length})
        datasets = [QUICK_DATASET]
    else:
        protocol = replace(Protocol(), max_epochs=args.max_epochs, patience=args.patience)
        bench = Bench(protocol, LR_GRID, list(range(args.seeds)), args.out or common.RESULTS, args.threads, args.redo)
        datasets, methods = args.dataset or list(DATASETS), args.method or METHODS
    if not args.markdown_only and not run(bench, datasets, methods, args.budget_minutes):
        return 0
    if not bench.all_runs():
        print(f"no cached runs of this protocol in {bench.cache.path}; nothing written", file=sys.stderr)
        return 1
    js, md = bench.write()
    print(md.read_text())
    print(f"wrote {js} and {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
