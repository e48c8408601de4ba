"""Recipes: a composition saved as a folder, so it can be shared (and later pushed) like an adapter.

```
recipe/
  composition.json    {"format_version", "name", "composition": {"type", "children", "kwargs"},
                       "adapters": {name: {"folder", "reference"}}, "fusions": [...], "routers": [...]}
  <adapter>/          each adapter the composition names, as an ordinary adapter folder
  fusion-0/ router-0/ trained Fuse / Route layers, as block folders (see ``block_layers``)
```
Each adapter also records the registry reference it was loaded from, when it came from the
registry, so a recipe can be rebuilt from references alone. Loading takes an adapter from the
model if one of that name is already loaded, else from its folder, else from its reference; a
failure removes whatever this load attached.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapterhub import format as fmt
from adapterhub.compose.composition import block_layers, fusion, routing
from adapterhub.compose.composition.blocks import Block, Fuse, Route, block_from_dict, blocks_in, leaves_of
from adapterhub.errors import InvalidAdapterError

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

FORMAT_VERSION = 1
LAYER_KINDS = (("fusions", Fuse, fusion), ("routers", Route, routing))


def save_composition(model: AdapterModel, path: Path, active: Block | str, name: str | None) -> Path:
    model._check_composition(active)
    leaves = list(dict.fromkeys(leaves_of(active)))
    # each adapter's own save is atomic into the temporary folder; the whole recipe appears at once
    with fmt.atomic_folder(path) as tmp:
        recipe: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "composition": active.to_dict() if isinstance(active, Block) else active,
            "adapters": {},
        }
        for leaf in leaves:
            model.save_adapter(leaf, tmp / leaf)
            recipe["adapters"][leaf] = {"folder": leaf, "reference": model.ah.sources.get(leaf)}
        for field, kind, module in LAYER_KINDS:
            entries = []
            for i, block in enumerate(_unique(blocks_in(active, kind))):
                folder = f"{field[:-1]}-{i}"
                block_layers.save_layers(model, block, module.ATTR, module.PEFT_TYPE, tmp / folder)
                entries.append({"folder": folder, "composition": block.to_dict()})
            recipe[field] = entries
        fmt.write_json(tmp / fmt.RECIPE_FILE, recipe)
    return path


def load_composition(model: AdapterModel, path: Path, pull: Callable[[str], Path] | None = None) -> Block | str:
    recipe = fmt.read_json_object(path / fmt.RECIPE_FILE)
    if recipe.get("format_version") != FORMAT_VERSION:
        raise InvalidAdapterError(
            f"{path / fmt.RECIPE_FILE}: format_version {recipe.get('format_version')!r}, this adapterhub reads {FORMAT_VERSION}"
        )
    active = block_from_dict(recipe.get("composition"))
    adapters = recipe.get("adapters") or {}
    missing = [leaf for leaf in leaves_of(active) if leaf not in adapters and leaf not in model.ah.configs]
    if missing:
        raise InvalidAdapterError(f"{path / fmt.RECIPE_FILE}: the composition names {missing[0]!r}, which the recipe lacks")
    attached: list[str] = []
    try:
        for leaf, entry in adapters.items():
            if leaf in model.ah.configs:
                continue
            folder = path / str(entry.get("folder") or leaf)
            source = folder if folder.is_dir() else entry.get("reference")
            if not source:
                raise InvalidAdapterError(f"{path}: adapter {leaf!r} has neither a folder nor a reference")
            attached.append(model.load_adapter(source, name=leaf, pull=pull))
        for field, _kind, module in LAYER_KINDS:
            for entry in recipe.get(field) or []:
                block_layers.load_layers(model, path / entry["folder"], module.ATTR, module.PEFT_TYPE, module.new_layer)
        if recipe.get("name"):
            model.add_composition(recipe["name"], active)
        else:
            model._check_composition(active)
    except BaseException:
        for leaf in reversed(attached):
            model.delete_adapter(leaf)
        raise
    return active


def _unique(blocks: list[Block]) -> list[Block]:
    seen: dict[str, Block] = {}
    for block in blocks:
        seen.setdefault(block.key(), block)
    return list(seen.values())
