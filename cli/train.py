"""``adapterhub train``: train an adapter of any method on a local base model from a JSONL/CSV file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from adapterhub.cli.output import emit, json_option, kv_table, note
from adapterhub.vocab import TASK_NAMES, TRAINING_PRESETS


def _options(pairs: tuple[str, ...]) -> dict:
    """``--option key=value`` pairs; values are read as JSON where they parse (numbers, lists, true)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _summary(result) -> dict:
    card = result.card
    training = card.get("training", {})
    return {
        "path": str(result.path),
        "name": card.get("name"),
        "method": card.get("recipe", {}).get("method"),
        "task": card.get("task"),
        "labels": card.get("labels"),
        "steps": training.get("steps"),
        "final_loss": training.get("final_loss"),
        "metrics": card.get("metrics", {}),
        "trainable_parameters": training.get("trainable_parameters"),
        "trainable_percent": training.get("trainable_percent"),
        "time_s": training.get("time_s"),
        "data_sha256": card.get("data", {}).get("train", {}).get("sha256"),
    }


@click.command()
@click.option("--base", required=True, metavar="PATH_OR_NAME",
              help="Base model: a local transformers folder (config, weights, tokenizer) or a catalogue name (minilm-l6, smollm2-135m).")
@click.option("--data", required=True, help="Training data: JSONL or CSV with text,label (or text for --task lm).")
@click.option("--method", type=click.Choice(list(TRAINING_PRESETS)), default="lora", show_default=True, help="Adapter method.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Adapter folder to write.")
@click.option("--task", type=click.Choice(TASK_NAMES),
              help="Default: classification when the data has labels, else lm.")
@click.option("--eval-data", help="Held-out data scored after training; the metrics and protocol go into the card.")
@click.option("--eval-sample", type=click.IntRange(1), help="Score a seeded sample of N --eval-data examples.")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (default 100).")
@click.option("--lr", type=float, help="Learning rate (default per method).")
@click.option("--batch-size", type=click.IntRange(1), help="Examples per step (default 8).")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--max-length", type=click.IntRange(1), help="Tokens per example (default 128).")
@click.option("--r", type=click.IntRange(1), help="LoRA rank.")
@click.option("--alpha", type=float, help="LoRA alpha.")
@click.option("--target-modules", help="Comma-separated module names to adapt (default per architecture).")
@click.option("--reduction-factor", type=click.IntRange(1), help="Bottleneck: hidden size / bottleneck width.")
@click.option("--num-virtual-tokens", type=click.IntRange(1), help="Prompt/prefix tuning: virtual tokens.")
@click.option("--option", "extra", multiple=True, metavar="KEY=VALUE", help="Any other config field, e.g. dropout=0.1.")
@click.option("--name", help="Adapter name in the card (default: the --out folder's name).")
@json_option
def train(base, data, method, out, task, eval_data, eval_sample, name, extra, as_json, **hyper) -> None:
    """Train an adapter (--method) on the base model in --base and write it to --out with its card.

    The card records the data's sha256, the labels, the recipe (method, settings, seed), metrics on
    --eval-data, trainable parameters and training time.

    \b
    Example:
      adapterhub train --base models/tiny-bert --data train.jsonl --eval-data test.jsonl \\
          --method lora --r 8 --steps 200 --out out/sentiment
    """
    from adapterhub.compose.workflows.training import train as train_adapter

    if hyper.get("target_modules"):
        hyper["target_modules"] = [m.strip() for m in hyper["target_modules"].split(",") if m.strip()]
    hyper.update(_options(extra))
    if eval_sample and not eval_data:
        raise click.UsageError("--eval-sample samples --eval-data: give --eval-data too")
    result = train_adapter(base, data, method, out, task=task, eval_data=eval_data, eval_sample=eval_sample,
                           name=name, **hyper)
    note(f"wrote {result.path}")
    emit(_summary(result), as_json, _render)


def _render(d: dict):
    return kv_table({**d, "metrics": {k: round(v, 4) for k, v in d["metrics"].items()}})
