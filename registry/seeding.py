"""Push the seed adapters (``seed_adapters/<name>/``) into a registry, with their metrics as evaluations.

Used by ``adapterhub seed`` and by ``adapterhub up`` on a registry's first start, so a new user's
first page shows real adapters with honest numbers. Idempotent: versions already published are
skipped (versions are immutable), so running it twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adapterhub.errors import AdapterNotFoundError
from adapterhub.eval_protocol import card_results
from adapterhub.format import CARD_FILE, CONFIG_FILE, RECIPE_FILE, read_json_object
from adapterhub.registry.client import Hub

NAMESPACE = "adapterhub"
VERSION = "1.0.0"


def seed_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / CONFIG_FILE).is_file() or (p / RECIPE_FILE).is_file())


def seed_registry(hub: Hub, root: Path, say: Callable[[str], None] = print) -> list[str]:
    """Publish every seed folder as ``adapterhub/<name>@1.0.0`` (alias ``stable``); return the refs pushed."""
    hub.create_namespace(NAMESPACE, exist_ok=True)
    pushed = []
    for folder in seed_folders(root):
        ref = f"{NAMESPACE}/{folder.name}"
        if any(v["version"] == VERSION for v in _versions(hub, ref)):
            continue
        hub.push(folder, ref, version=VERSION, alias="stable")
        card = read_json_object(folder / CARD_FILE) if (folder / CARD_FILE).is_file() else {}
        results = card_results(card)
        test = (card.get("data") or {}).get("test") or {}
        if not results and card.get("metrics") and test.get("sha256"):  # a card older than protocols
            metrics = {k: v for k, v in card["metrics"].items() if isinstance(v, (int, float))}
            hub.post_eval(f"{ref}@{VERSION}", test.get("source", "test"), test["sha256"], metrics)
        for protocol, recorded in results:  # the card's figures, each with how it was scored
            metrics = {k: v for k, v in recorded["metrics"].items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            hub.post_eval(f"{ref}@{VERSION}", protocol.data.label(), recorded["data_sha256"] or "", metrics,
                          protocol=protocol.to_dict(), confusion_matrix=recorded["confusion_matrix"])
        pushed.append(ref)
        say(f"seeded {ref}@{VERSION}")
    return pushed


def _versions(hub: Hub, ref: str) -> list[dict]:
    try:
        return hub.versions(ref)
    except AdapterNotFoundError:  # not created yet
        return []
