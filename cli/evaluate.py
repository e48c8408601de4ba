"""``adapterhub eval``: score an adapter (a folder or a registry reference) by its card's protocol, or
re-run a recorded evaluation (``--verify``) and say whether it reproduced."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Group

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, json_option, kv_table, note, table
from adapterhub.eval_protocol import SCORINGS, EvalProtocol
from adapterhub.registry.reference import parse_reference
from adapterhub.vocab import TASK_NAMES


def _protocol_facts(protocol: dict | None) -> dict:
    if not protocol:
        return {}
    p = EvalProtocol.from_dict(protocol)
    facts = {"protocol": p.describe(), "base": p.base, "scoring": p.scoring, "scored tokens": protocol["scored_tokens"]}
    if p.template is not None:
        facts["template sha256"] = p.template.sha256
    if p.software:
        facts["software"] = ", ".join(f"{k} {v}" for k, v in p.software.items())
    for field, change in p.overrides.items():
        facts[f"override {field}"] = f"{change['used']} (card: {change['card']})"
    return facts


def _matrix(labels, matrix, title="confusion matrix"):
    columns = [("true \\ predicted", lambda row: row["label"])]
    columns += [(label, lambda row, j=j: row["counts"][j]) for j, label in enumerate(labels)]
    rows = [{"label": label, "counts": counts} for label, counts in zip(labels, matrix, strict=True)]
    return table(rows, columns, title=title)


def _render(d: dict):
    facts = {"adapter": d["adapter"], "dataset": d["dataset"], "sha256": d["dataset_sha256"],
             "examples": d["n_examples"], "tokens": d.get("n_tokens"),
             **{k: round(v, 4) for k, v in d["metrics"].items()}, **_protocol_facts(d.get("protocol"))}
    if d.get("posted"):
        facts["recorded on"] = d["posted"]["reference"]
    parts = [kv_table(facts)]
    if d.get("confusion_matrix") and d.get("labels"):
        parts.append(_matrix(d["labels"], d["confusion_matrix"]))
    return Group(*parts)


def _render_verify(d: dict):
    parts = []
    for v in d["verifications"]:
        verdict = "reproduced" if v["reproduced"] else "NOT reproduced"
        facts = {"adapter": d["adapter"], "re-ran": v["of"], "verdict": verdict,
                 **{k: round(x, 6) for k, x in v["result"]["metrics"].items()}, **_protocol_facts(v["protocol"])}
        for i, diff in enumerate(v["differences"], 1):
            facts[f"difference {i}"] = diff
        parts.append(kv_table(facts))
    return Group(*parts)


def _version_ref(adapter: str) -> tuple[Path, str | None]:
    if Path(adapter).is_dir():
        return Path(adapter), None
    ref = parse_reference(adapter)
    folder = get_hub().pull(adapter)
    return folder, f"{ref.repo_id}@{folder.name}"  # the snapshot folder is named after its version


def _post(version_ref: str, result, dataset_name: str | None, verification: dict | None = None) -> dict:
    data = EvalProtocol.from_dict(result.protocol).data
    name = dataset_name or replace(data, ref=Path(data.ref).name).label()  # a file by its name, as before
    posted = get_hub().post_eval(version_ref, name, result.dataset_sha256, result.metrics, protocol=result.protocol,
                                 confusion_matrix=result.confusion_matrix, verification=verification)
    note(f"recorded the evaluation on {version_ref}")
    return {**posted, "reference": version_ref}


@click.command("eval")
@click.argument("adapter", metavar="REF_OR_FOLDER")
@click.option("--base", metavar="PATH_OR_NAME",
              help="Base model: a local folder, a catalogue name (minilm-l6) or Hub id. Default: the card's.")
@click.option("--data", help="Data: JSONL/CSV with text,label (or text), or a built-in name:split. Default: the card's.")
@click.option("--task", type=click.Choice(TASK_NAMES), help="Default: what the card's protocol or the adapter declares.")
@click.option("--scoring", type=click.Choice(list(SCORINGS)),
              help="argmax-head (a classifier), constrained-answer (a causal LM choosing among the labels), "
                   "token-nll (perplexity). Default: the card's.")
@click.option("--sample", type=click.IntRange(1), help="Score a seeded sample of N examples. Default: the card's.")
@click.option("--sample-seed", type=int, help="Seed of the sample. Default: the card's (0).")
@click.option("--batch-size", type=click.IntRange(1), help="Default: the card's protocol (16).")
@click.option("--max-length", type=click.IntRange(1), help="Tokens per example. Default: the card's protocol.")
@click.option("--post", is_flag=True, help="Record the result (and its protocol) on the exact version in the registry.")
@click.option("--dataset-name", help="Name the result is recorded under (default: the protocol's data).")
@click.option("--verify", is_flag=True,
              help="Re-run the card's recorded evaluations (or --evaluation ID's) and say whether they reproduce.")
@click.option("--evaluation", "evaluation_id", type=int, help="With --verify: the registry evaluation to re-run.")
@json_option
def evaluate(adapter, base, data, task, scoring, sample, sample_seed, batch_size, max_length, post, dataset_name,
             verify, evaluation_id, as_json) -> None:
    """Evaluate an adapter by the protocol its card was scored with, or as the options say.

    REF_OR_FOLDER is an adapter folder or a registry reference (ns/name@1.0.0, ns/name:stable).
    With no options it scores the card's data, sample, lengths and scoring rule, so the figures are
    the card's; every option that differs is recorded in the result's protocol as an override.
    --verify re-runs a recorded evaluation from its protocol: a classification reproduces when its
    confusion matrix is identical, a perplexity when within 1e-4 relative. It exits 1 when not.

    \b
    Examples:
      adapterhub eval adapterhub/minilm-bbc-news-lora
      adapterhub eval acme/sentiment@1.0.0 --base models/tiny-bert --data test.jsonl --post
      adapterhub eval adapterhub/minilm-bbc-news-lora --verify
    """
    folder, version_ref = _version_ref(adapter)
    if post and version_ref is None:
        raise click.UsageError("--post records the result in the registry: give a registry reference "
                               "such as ns/name@1.0.0, not a folder")
    if evaluation_id is not None and not verify:
        raise click.UsageError("--evaluation names a recorded evaluation to re-run: use it with --verify")
    if verify:
        chosen = {"--base": base, "--data": data, "--task": task, "--scoring": scoring, "--sample": sample,
                  "--sample-seed": sample_seed, "--batch-size": batch_size, "--max-length": max_length}
        given = [k for k, v in chosen.items() if v is not None]
        if given:
            raise click.UsageError(f"--verify re-runs the recorded protocol as it is; drop {', '.join(given)}")
        _verify(folder, version_ref, evaluation_id, post, dataset_name, as_json)
        return
    from adapterhub.compose.workflows.reproduce import evaluate_adapter

    result = evaluate_adapter(folder, base, data, task=task, scoring=scoring, batch_size=batch_size,
                              max_length=max_length, sample=sample, sample_seed=sample_seed)
    out = {"adapter": version_ref or str(folder), **result.to_dict()}
    if post:
        out["posted"] = _post(version_ref, result, dataset_name)
    emit(out, as_json, _render)


def _verify(folder: Path, version_ref: str | None, evaluation_id: int | None, post: bool,
            dataset_name: str | None, as_json: bool) -> None:
    from adapterhub.compose.workflows.reproduce import verify_card, verify_record

    if evaluation_id is None:
        runs = [("card", v) for v in verify_card(folder)]
    else:
        if version_ref is None:
            raise click.UsageError("--evaluation names a registry evaluation: give a registry reference, not a folder")
        records = {e["id"]: e for e in get_hub().evaluations(version_ref)}
        record = records.get(evaluation_id)
        if record is None:
            raise click.UsageError(f"{version_ref} has no evaluation {evaluation_id} "
                                   f"(its evaluations: {', '.join(map(str, records)) or 'none'})")
        if not record.get("protocol"):
            raise click.UsageError(f"evaluation {evaluation_id} was recorded without a protocol, so it cannot be re-run")
        recorded = {"metrics": record["metrics"], "confusion_matrix": record.get("confusion_matrix"),
                    "data_sha256": record.get("dataset_sha256")}
        runs = [(f"evaluation {evaluation_id}",
                 verify_record(folder, EvalProtocol.from_dict(record["protocol"]), recorded))]
    out = {"adapter": version_ref or str(folder), "reproduced": all(v.reproduced for _, v in runs),
           "verifications": [{"of": of, **v.to_dict()} for of, v in runs]}
    if post:
        for (of, v), shown in zip(runs, out["verifications"], strict=True):
            mark = {"reproduced": v.reproduced, "differences": v.differences[:50]}
            mark.update({"of_card": True} if of == "card" else {"of": evaluation_id})
            shown["posted"] = _post(version_ref, v.result, dataset_name, verification=mark)
    emit(out, as_json, _render_verify)
    if not out["reproduced"]:
        sys.exit(1)
