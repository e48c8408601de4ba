"""``adapterhub base register | list | show``: the base models adapters are checked against."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, json_option, kv_table, note, table

BASE_COLUMNS = [
    ("id", lambda b: b["id"]),
    ("aliases", lambda b: ", ".join(b.get("aliases") or [])),
    ("architecture", lambda b: b.get("architecture")),
    ("modules", lambda b: b.get("modules")),
    ("mirror", lambda b: "yes" if b.get("mirror") else "no"),
]


def register_catalogue_or_folder(hub, source: str, hub_id: str | None, aliases: tuple[str, ...], mirror: bool,
                                 say: Callable[[str], None] = note) -> dict:
    """Register a catalogue base (by short name or Hub id: its local folder, converted once if need
    be) or a model folder (``hub_id`` required); what ``adapterhub up`` does for the built-in two."""
    from adapterhub.compose.workflows.catalog import catalogue_entry, resolve_base_model

    entry = catalogue_entry(source) if not Path(source).is_dir() else catalogue_entry(Path(source))
    if entry is not None:
        folder = resolve_base_model(entry.name, say=say)
        hub_id = hub_id or entry.hub_id
        aliases = tuple(dict.fromkeys((*aliases, entry.name, *entry.aliases)))
    elif Path(source).is_dir():
        folder = Path(source)
        if not hub_id:
            raise click.UsageError(f"{source} is not a catalogue base: name its Hugging Face id with --id OWNER/NAME")
    else:
        raise click.UsageError(f"{source!r} is neither a model folder nor a catalogue base")
    say(f"registering {hub_id} from {folder}{' (mirroring its files)' if mirror else ''} ...")
    return hub.register_base(folder, hub_id, aliases, mirror=mirror)


@click.group()
def base() -> None:
    """Base models: what adapters are trained on, by Hugging Face id.

    A registered base lets the registry refuse, at push, an adapter whose tensors fit none of its
    modules, and (mirrored) serve the base itself over the Hugging Face routes, so
    AutoPeftModel.from_pretrained works with only HF_ENDPOINT set.

    \b
    Examples:
      adapterhub base register smollm2-135m --mirror
      adapterhub base register ./my-model --id acme/my-model --alias my-model
      adapterhub base list
    """


@base.command("register")
@click.argument("source")
@click.option("--id", "hub_id", metavar="OWNER/NAME", help="The Hub id (default: the catalogue's, for a catalogue base).")
@click.option("--alias", "aliases", multiple=True, metavar="NAME", help="A short name (repeatable).")
@click.option("--mirror/--no-mirror", default=False, help="Upload its files and serve them under the id.")
@json_option
def register(source: str, hub_id: str | None, aliases: tuple[str, ...], mirror: bool, as_json: bool) -> None:
    """Register SOURCE (a model folder, or a catalogue name such as minilm-l6): admin only.

    The manifest (every module's weight shapes) is read from its safetensors headers.

    \b
    Example:
      adapterhub base register minilm-l6 --mirror
    """
    out = register_catalogue_or_folder(get_hub(), source, hub_id, aliases, mirror)
    emit(out, as_json, lambda d: kv_table({k: d.get(k) for k in ("id", "aliases", "revision", "architecture",
                                                                   "modules", "mirror")}))


@base.command("list")
@json_option
def list_bases(as_json: bool) -> None:
    """Every registered base.

    \b
    Example:
      adapterhub base list --json
    """
    emit(get_hub().bases(), as_json, lambda rows: table(rows, BASE_COLUMNS, title="base models"))


@base.command("show")
@click.argument("ref")
@json_option
def show(ref: str, as_json: bool) -> None:
    """One base by Hub id or alias, with the size of its manifest.

    \b
    Example:
      adapterhub base show smollm2-135m
    """
    out = get_hub().base(ref)
    emit(out, as_json, lambda d: kv_table({"id": d["id"], "aliases": ", ".join(d.get("aliases") or []),
                                           "revision": d.get("revision"), "architecture": d.get("architecture"),
                                           "modules": d.get("modules"), "mirror": d.get("mirror"),
                                           "files": len(d.get("files") or [])}))
