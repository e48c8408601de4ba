"""``python -m bench.training_referee`` (``make bench-referee``): does our trainer reach what PEFT's does, seed for seed?

The loss-curve referee in ``make test`` (tests/engine/test_training_referee.py) shows that from the
same starting weights our loop and a plain loop over PEFT's model take the same steps. This bench
asks the other half: with each side's own seeding, as a user runs them, is the distribution of
test accuracy over seeds the same? Ours is ``adapterhub train``'s path (``training.train``); PEFT's
is ``torch.manual_seed(seed)``, ``AutoModelForSequenceClassification.from_pretrained``,
``get_peft_model(<Method>Config(task_type="SEQ_CLS", ...))`` and a plain AdamW loop with the same
linear decay, no gradient clipping, over the same batches (``training._order``).

Protocol (the outside referee's, issue 20): all-MiniLM-L6-v2, BBC News train split, 50 steps x 16
examples, ``max_length`` 96, lr decaying linearly to 0, a seeded sample of 200 test articles
(the deduplicated test split), seeds 0..N-1. Prompt tuning is also run at other virtual-token
counts, to show how sensitive it is. Each run is a child process with one torch thread.

    python -m bench.training_referee                        # the committed table (about 40 minutes)
    python -m bench.training_referee --method prompt_tuning --seeds 5 --tokens 8 --tokens 16 --tokens 32
    python -m bench.training_referee --quick                # 2 steps, 16 test articles: a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from adapterhub.format import write_text_atomic
from bench import common

BASE = "minilm-l6"
STEPS, BATCH, MAX_LENGTH, TEST_SAMPLE = 50, 16, 96, 200
METHODS: dict[str, tuple[float, dict[str, Any]]] = {  # name -> (lr, config shared by both sides)
    "lora": (2e-3, {"r": 8, "alpha": 16, "target_modules": ["query", "value"]}),
    "ia3": (1e-2, {}),
    "prefix_tuning": (1e-2, {"num_virtual_tokens": 16}),
    "prompt_tuning": (3e-2, {"num_virtual_tokens": 16}),
}
PEFT_CONFIGS = {"lora": "LoraConfig", "ia3": "IA3Config", "prefix_tuning": "PrefixTuningConfig",
                "prompt_tuning": "PromptTuningConfig"}
PEFT_NAMES = {"alpha": "lora_alpha"}


def run_one(side: str, method: str, seed: int, config: dict[str, Any], steps: int, test_sample: int) -> dict:
    """One training run and its test accuracy, in this process."""
    import torch

    torch.set_num_threads(1)
    from adapterhub.compose.workflows.catalog import resolve_base_model
    from adapterhub.compose.workflows.data import load_dataset, seeded_sample
    from adapterhub.compose.workflows.evaluate import encode, evaluate, label_ids
    from adapterhub.compose.workflows.training import _order, train

    base = resolve_base_model(BASE, say=lambda m: None)
    train_ds = load_dataset("bbc-news:train")
    test_ds = seeded_sample(load_dataset("bbc-news:test"), test_sample)
    labels = list(train_ds.labels)
    lr = METHODS[method][0]
    if side == "ours":
        with tempfile.TemporaryDirectory() as out:
            result = train(base, train_ds, method, Path(out) / "a", eval_data=test_ds, steps=steps,
                           batch_size=BATCH, lr=lr, max_length=MAX_LENGTH, seed=seed, progress=False, **config)
        return {"accuracy": result.metrics["accuracy"], "final_loss": result.losses[-1]}
    import peft
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
    peft_config = getattr(peft, PEFT_CONFIGS[method])(task_type="SEQ_CLS",
                                                      **{PEFT_NAMES.get(k, k): v for k, v in config.items()})
    model = peft.get_peft_model(model, peft_config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, (steps - s) / steps))
    targets = label_ids(train_ds, labels)
    model.train()
    loss = torch.tensor(0.0)
    for rows in _order(len(train_ds), steps, BATCH, seed):
        batch = encode(tokenizer, [train_ds.examples[i].text for i in rows], MAX_LENGTH, "cpu")
        loss = model(**batch, labels=torch.tensor([targets[i] for i in rows])).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    accuracy = evaluate(model, tokenizer, test_ds, labels=labels, batch_size=16, max_length=MAX_LENGTH,
                        progress=False).metrics["accuracy"]
    return {"accuracy": accuracy, "final_loss": float(loss.detach())}


def _child(side: str, method: str, seed: int, config: dict, steps: int, test_sample: int) -> dict:
    spec = json.dumps({"side": side, "method": method, "seed": seed, "config": config, "steps": steps,
                       "test_sample": test_sample})
    proc = subprocess.run([sys.executable, "-m", "bench.training_referee", "--child", spec],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} {method} seed {seed} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def run(methods: list[str], seeds: int, tokens: list[int], quick: bool) -> dict[str, Any]:
    steps, test_sample = (2, 16) if quick else (STEPS, TEST_SAMPLE)
    rows = []
    for method in methods:
        counts = tokens if method == "prompt_tuning" and tokens else [None]
        for count in counts:
            config = dict(METHODS[method][1])
            if count is not None:
                config["num_virtual_tokens"] = count
            row: dict[str, Any] = {"method": method, "config": config, "lr": METHODS[method][0]}
            for side in ("ours", "peft"):
                runs = [_child(side, method, seed, config, steps, test_sample) for seed in range(seeds)]
                row[side] = [r["accuracy"] for r in runs]
                print(f"{method} {config} {side}: {row[side]}", file=sys.stderr, flush=True)
            rows.append(row)
    return {"protocol": {"base": BASE, "data": "bbc-news:train -> bbc-news:test", "steps": steps, "batch_size": BATCH,
                         "max_length": MAX_LENGTH, "test_sample": test_sample, "schedule": "linear decay to 0",
                         "seeds": list(range(seeds))},
            "rows": rows}


def table(results: dict[str, Any]) -> str:
    p = results["protocol"]
    lines = [f"Protocol: {p['base']}, {p['data']}, {p['steps']} steps x {p['batch_size']}, max_length "
             f"{p['max_length']}, {p['schedule']}, seeded sample of {p['test_sample']} test articles, seeds "
             f"{p['seeds']}; each side seeds itself as its users do.", "",
             "| method | config | lr | ours: accuracy per seed | PEFT: accuracy per seed | ours mean ± std | PEFT mean ± std |",
             "| --- | --- | ---: | --- | --- | ---: | ---: |"]
    for row in results["rows"]:
        config = ", ".join(f"{k}={v}" for k, v in row["config"].items() if k != "target_modules") or "defaults"
        lines.append(f"| {row['method']} | {config} | {row['lr']:g} | {', '.join(f'{a:.3f}' for a in row['ours'])} | "
                     f"{', '.join(f'{a:.3f}' for a in row['peft'])} | {_mean_std(row['ours'])} | "
                     f"{_mean_std(row['peft'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training_referee", description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--method", action="append", choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tokens", action="append", type=int, help="prompt tuning's virtual-token counts")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(run_one(spec["side"], spec["method"], spec["seed"], spec["config"], spec["steps"],
                                 spec["test_sample"])))
        return 0
    results = run(args.method or list(METHODS), args.seeds, args.tokens or [], args.quick)
    name = "training_referee-quick" if args.quick else "training_referee"
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / f"{name}.json",
                      json.dumps({"machine": common.machine_info(), **results}, indent=2) + "\n")
    text = table(results)
    write_text_atomic(args.out / f"{name}.md", f"# Training referee: ours vs PEFT over seeds\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
