"""AdapterHub ``adapters``' saved setups (``save_adapter_setup``) as our recipes, and back.

```
setup/
  adapter_setup.json   {"adapter_setup": {"type": "Stack"|"Fuse"|"single", "children": [...]},
                        "head_setup": null or a head name, "version": "adapters.1.3.0"}
  <adapter>/           each adapter, an ``adapters`` folder (``adapters_format``)
  <a,b>/               each Fuse's fusion layers (``adapters_fusion``)
```
Its ``Stack`` and ``Fuse`` are ours (a Fuse as ``Fuse(style="adapters")``); ``Parallel``, ``Split``,
``BatchSplit`` and ``Average`` setups are refused naming the block. Loading is all or nothing:
whatever a failed load attached is removed again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapterhub import adapters_folder as af
from adapterhub.compose.composition.blocks import Block, Fuse, Stack, blocks_in, leaves_of
from adapterhub.errors import InvalidAdapterError
from adapterhub.format import atomic_folder, read_json_object, write_json

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel


def is_adapters_setup(folder: Path) -> bool:
    return (folder / af.SETUP_FILE).is_file()


def block_of(node: Any, where: Path) -> Block | str:
    """Our block for one node of ``adapter_setup``."""
    if not isinstance(node, dict) or not isinstance(node.get("children"), list):
        raise InvalidAdapterError(f"{where}: a setup node must be {{'type', 'children'}}, got {node!r}")
    kind, children = node.get("type"), node["children"]
    if kind == "single":
        if len(children) != 1 or not isinstance(children[0], str):
            raise InvalidAdapterError(f"{where}: a 'single' node names one adapter, got {children!r}")
        return children[0]
    parts = [block_of(c, where) if isinstance(c, dict) else c for c in children]
    if not all(isinstance(p, str | Block) for p in parts):
        raise InvalidAdapterError(f"{where}: setup children must be adapter names or nodes, got {children!r}")
    if kind == "Stack":
        return Stack(*parts)
    if kind == "Fuse":
        return Fuse(*parts, style="adapters")
    raise InvalidAdapterError(f"{where}: adapters' {kind} block has no adapterhub equivalent (we have Stack, Fuse, "
                              "Average, Route)" if kind in ("Parallel", "Split", "BatchSplit", "Average") else
                              f"{where}: unknown setup block type {kind!r}")


def load_adapters_setup(model: AdapterModel, folder: Path) -> Block | str:
    """Load every adapter and fusion the setup names, from its subfolders; return its block."""
    where = folder / af.SETUP_FILE
    setup = read_json_object(where)
    block = block_of(setup.get("adapter_setup"), where)
    attached: list[str] = []
    try:
        for leaf in dict.fromkeys(leaves_of(block)):
            if leaf in model.ah.configs:
                continue
            if not (folder / leaf).is_dir():
                raise InvalidAdapterError(f"{where}: the setup names {leaf!r}, and {folder / leaf} is not there")
            attached.append(model.load_adapter(folder / leaf, name=leaf))
        for fuse in blocks_in(block, Fuse):
            sub = folder / ",".join(str(c) for c in fuse.children)
            if not sub.is_dir():
                raise InvalidAdapterError(f"{where}: the setup fuses {fuse.children}, and {sub} is not there")
            model.load_fusion(sub)
        model._check_composition(block)
    except BaseException:
        for leaf in reversed(attached):
            model.delete_adapter(leaf)
        raise
    return block


def save_adapters_setup(model: AdapterModel, block: Block | str, path: Path, base_id: str | None) -> Path:
    """What ``adapters``' ``save_adapter_setup(path, setup, use_safetensors=True)`` writes."""
    node = node_of(block)
    with atomic_folder(path) as tmp:
        for leaf in dict.fromkeys(leaves_of(block)):
            model.save_adapter(leaf, tmp / leaf, format="adapters", base_model_id=base_id)
        for fuse in blocks_in(block, Fuse):
            model.save_fusion(fuse, tmp / ",".join(str(c) for c in fuse.children), format="adapters",
                              base_model_id=base_id)
        write_json(tmp / af.SETUP_FILE, {"adapter_setup": node, "head_setup": None, "version": af.WRITTEN_VERSION})
    return path


def node_of(block: Block | str) -> dict[str, Any]:
    if isinstance(block, str):
        return {"type": "single", "children": [block]}
    if isinstance(block, Fuse) and block.style != "adapters":
        raise InvalidAdapterError("only a Fuse(style='adapters') is adapters' AdapterFusion; this Fuse is ours")
    if not isinstance(block, Stack | Fuse):
        raise InvalidAdapterError(f"adapters' setups hold Stack and Fuse blocks, not {type(block).__name__}")
    return {"type": type(block).__name__, "children": [node_of(c) for c in block.children]}
