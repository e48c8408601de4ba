"""``adapterhub push | pull | search | show | versions | yank``: adapters and their versions."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Group

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, human_size, json_option, kv_table, note, short_time, table
from adapterhub.eval_protocol import record_summary
from adapterhub.registry.reference import parse_reference


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("ref")
@click.option("--version", "version", metavar="V", help="Semantic version of the new version, e.g. 1.0.0.")
@click.option("--alias", metavar="A", help="Point this alias (e.g. stable) at the new version.")
@click.option("--create-namespace", is_flag=True,
              help="Create the namespace (public, yours) first if it does not exist.")
@json_option
def push(folder: Path, ref: str, version: str | None, alias: str | None, create_namespace: bool,
         as_json: bool) -> None:
    """Upload FOLDER as a new immutable version of REF (ns/name).

    Creates the adapter on first push; uploads only files the registry lacks. A plain PEFT
    folder works: method and base model come from its adapter_config.json. The namespace must
    exist (`adapterhub namespace create NS`), unless --create-namespace.

    \b
    Example:
      adapterhub push out/ acme/sentiment --version 1.0.0 --alias stable
    """
    out = get_hub().push(folder, ref, version=version, alias=alias, create_namespace=create_namespace)
    note(f"pushed {parse_reference(ref).repo_id}@{out['version']}")
    emit(out, as_json, lambda d: kv_table({"version": d["version"], "commit": d.get("commit"),
                                           "files": len(d.get("files", [])), "size": human_size(d.get("size"))}))


@click.command()
@click.argument("ref")
@json_option
def pull(ref: str, as_json: bool) -> None:
    """Download REF into the local cache and print its folder.

    REF is ns/name (stable, else newest), ns/name@1.2.0 or ns/name:alias. With
    ADAPTERHUB_OFFLINE=1 it is answered from the cache only.

    \b
    Example:
      adapterhub pull acme/sentiment:stable
    """
    folder = get_hub().pull(ref)
    emit({"reference": ref, "version": folder.name, "path": str(folder)}, as_json, lambda d: d["path"])


SEARCH_COLUMNS = [
    ("adapter", lambda a: f"{a['namespace']}/{a['name']}"),
    ("latest", lambda a: a.get("latest_version")),
    ("method", lambda a: a.get("method")),
    ("base model", lambda a: a.get("base_model")),
    ("task", lambda a: a.get("task")),
    ("downloads", lambda a: a.get("downloads")),
    ("description", lambda a: a.get("description")),
]


@click.command()
@click.argument("query", required=False)
@click.option("--base-model", help="Only adapters for this base model.")
@click.option("--method", help="lora, ia3, bottleneck, prompt_tuning, prefix_tuning, ...")
@click.option("--task", help="Only adapters for this task.")
@click.option("--tag", help="Only adapters with this tag.")
@click.option("--namespace", help="Only adapters in this namespace.")
@click.option("--library", help="peft, or adapter-transformers (AdapterHub's adapters folders).")
@click.option("--sort", help="newest, downloads or metric:<name>.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@json_option
def search(query, base_model, method, task, tag, namespace, library, sort, limit, as_json) -> None:
    """Find adapters by text and filters.

    \b
    Example:
      adapterhub search sentiment --method lora --sort downloads
      adapterhub search --library adapter-transformers
    """
    items = get_hub().search(query, base_model=base_model, method=method, task=task, tag=tag,
                             namespace=namespace, sort=sort, limit=limit, library=library)
    emit(items, as_json, lambda rows: table(rows, SEARCH_COLUMNS, empty="no adapters match"))


FILE_COLUMNS = [("file", lambda f: f["path"]), ("size", lambda f: human_size(f["size"])),
                ("sha256", lambda f: f["sha256"][:12])]
EVAL_COLUMNS = [("dataset", lambda e: e.get("dataset")),
                ("metrics", lambda e: ", ".join(f"{k}={v}" for k, v in (e.get("metrics") or {}).items())),
                ("how", lambda e: record_summary(e)[0]), ("re-run", lambda e: record_summary(e)[1]),
                ("id", lambda e: e.get("id")), ("by", lambda e: e.get("created_by")),
                ("at", lambda e: short_time(e.get("created_at")))]


def _render_show(d: dict):
    keys = ["namespace", "name", "description", "method", "base_model", "task", "tags", "license",
            "latest_version", "aliases", "downloads", "metrics"]
    parts = [kv_table(d, keys)]
    v = d.get("version")
    if v:
        parts.append(kv_table({"version": v["version"], "commit": v.get("commit"),
                               "created": f"{short_time(v.get('created_at'))} by {v.get('created_by')}",
                               "yanked": v.get("yank_reason") if v.get("yanked") else None,
                               "engines": ", ".join(v.get("engines") or []) or None,
                               "warnings": "; ".join(v.get("warnings") or []) or None}))
        parts.append(table(v.get("files", []), FILE_COLUMNS))
        if v.get("evaluations"):
            parts.append(table(v["evaluations"], EVAL_COLUMNS, title="evaluations"))
    return Group(*parts)


@click.command()
@click.argument("ref")
@json_option
def show(ref: str, as_json: bool) -> None:
    """Show an adapter and the version REF resolves to: files, evaluations, aliases.

    \b
    Example:
      adapterhub show acme/sentiment@1.0.0
    """
    emit(get_hub().show(ref), as_json, _render_show)


VERSION_COLUMNS = [
    ("version", lambda v: v["version"]),
    ("created", lambda v: short_time(v.get("created_at"))),
    ("by", lambda v: v.get("created_by")),
    ("size", lambda v: human_size(v.get("size"))),
    ("files", lambda v: len(v.get("files", []))),
    ("yanked", lambda v: v.get("yank_reason") or "yes" if v.get("yanked") else ""),
]


@click.command()
@click.argument("ref")
@json_option
def versions(ref: str, as_json: bool) -> None:
    """List every version of an adapter, newest first.

    \b
    Example:
      adapterhub versions acme/sentiment
    """
    emit(get_hub().versions(ref), as_json, lambda rows: table(rows, VERSION_COLUMNS, empty="no versions yet"))


@click.command()
@click.argument("ref")
@click.option("--reason", required=True, help="Why (shown to everyone who pulls it).")
@json_option
def yank(ref: str, reason: str, as_json: bool) -> None:
    """Yank an exact version: it stays pullable by version but is never resolved to.

    \b
    Example:
      adapterhub yank acme/sentiment@1.0.1 --reason "wrong labels"
    """
    out = get_hub().yank(ref, reason)
    note(f"yanked {ref}")
    emit(out, as_json, lambda d: None)
