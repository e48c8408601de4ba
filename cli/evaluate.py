"""``adapterhub eval``: score an adapter (a folder or a registry reference) on a data file."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Group

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, json_option, kv_table, note, table
from adapterhub.registry.reference import parse_reference
from adapterhub.vocab import TASK_NAMES


def _render(d: dict):
    facts = {"adapter": d["adapter"], "dataset": d["dataset"], "sha256": d["dataset_sha256"],
             "examples": d["n_examples"], "tokens": d.get("n_tokens"),
             **{k: round(v, 4) for k, v in d["metrics"].items()}}
    if d.get("posted"):
        facts["recorded on"] = d["posted"]["reference"]
    parts = [kv_table(facts)]
    matrix, labels = d.get("confusion_matrix"), d.get("labels")
    if matrix and labels:
        columns = [("true \\ predicted", lambda row: row["label"])]
        columns += [(label, lambda row, j=j: row["counts"][j]) for j, label in enumerate(labels)]
        rows = [{"label": label, "counts": counts} for label, counts in zip(labels, matrix, strict=True)]
        parts.append(table(rows, columns, title="confusion matrix"))
    return Group(*parts)


@click.command("eval")
@click.argument("adapter", metavar="REF_OR_FOLDER")
@click.option("--base", required=True, metavar="PATH_OR_NAME",
              help="Base model the adapter was trained on: a local folder or a catalogue name (minilm-l6, smollm2-135m).")
@click.option("--data", required=True, help="Evaluation data: JSONL or CSV with text,label (or text for lm).")
@click.option("--task", type=click.Choice(TASK_NAMES), help="Default: what the adapter declares.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--max-length", type=click.IntRange(1), default=256, show_default=True, help="Tokens per example.")
@click.option("--post", is_flag=True, help="Record the result in the registry (REF must be a registry reference).")
@click.option("--dataset-name", help="Name the result is recorded under (default: the data file's name).")
@json_option
def evaluate(adapter, base, data, task, batch_size, max_length, post, dataset_name, as_json) -> None:
    """Evaluate an adapter: accuracy, macro-F1 and confusion matrix, or perplexity for a language model.

    REF_OR_FOLDER is an adapter folder or a registry reference (ns/name@1.0.0, ns/name:stable).
    With --post the metrics are recorded on the exact version evaluated, with the sha256 of the
    examples.

    \b
    Example:
      adapterhub eval acme/sentiment@1.0.0 --base models/tiny-bert --data test.jsonl --post
    """
    from adapterhub.compose.workflows.evaluate import evaluate_adapter

    is_folder = Path(adapter).is_dir()
    if post and is_folder:
        raise click.UsageError("--post records the result in the registry: give a registry reference "
                               "such as ns/name@1.0.0, not a folder")
    folder, version_ref = Path(adapter), None
    if not is_folder:
        ref = parse_reference(adapter)
        folder = get_hub().pull(adapter)
        version_ref = f"{ref.repo_id}@{folder.name}"  # the snapshot folder is named after its version
    result = evaluate_adapter(folder, base, data, task=task, batch_size=batch_size, max_length=max_length)
    out = {"adapter": version_ref or str(folder), **result.to_dict()}
    if post:
        name = dataset_name or Path(data).name
        posted = get_hub().post_eval(version_ref, name, result.dataset_sha256, result.metrics)
        out["posted"] = {**posted, "reference": version_ref}
        note(f"recorded the evaluation on {version_ref}")
    emit(out, as_json, _render)
