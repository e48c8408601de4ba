"""Trainable per-site layers that belong to a block, not to an adapter (fusion layers, routers).

They live in a ``ModuleDict`` on each site (``ah_fusions`` / ``ah_routers``) keyed by the block's
``key()``, so that a site finds its own layer without a lookup table and ``state_dict`` names say
where each one sits. A block's layers are saved as their own folder (our schema; PEFT has no such
method): ``adapter_config.json`` holds the block, ``adapter_model.safetensors`` the weights keyed by
site path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file
from torch import nn

from adapterhub import format as fmt
from adapterhub.compose.composition.blocks import Block, block_from_dict
from adapterhub.compose.folder import load
from adapterhub.compose.tuners.site import iter_sites, site_facts
from adapterhub.errors import CompositionError, IncompatibleAdapterError, InvalidAdapterError

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

# (in_features, out_features, the block, the base model's config) -> the block's layer at one site
Factory = Callable[[int, int, Block, object], nn.Module]


def layer_at(site, attr: str, key: str) -> nn.Module | None:
    layers = site._modules.get(attr)
    return layers[key] if layers is not None and key in layers else None


def layers_of(model: AdapterModel, attr: str, key: str) -> dict[str, nn.Module]:
    """Site path -> this block's layer at that site."""
    return {path: site._modules[attr][key] for path, site in iter_sites(model) if layer_at(site, attr, key) is not None}


def share_group(block: Block, path: str, in_features: int) -> object:
    """Sites in one group hold one layer object. A Route's ``scope`` sets the groups: each site its
    own, one per transformer layer (the path up to its first numeric part, ``model.layers.3``), or one
    for the model; a layer's weights only fit one input width, so the width is always in the group."""
    scope = block.kwargs.get("scope", "site")
    if scope == "site":
        return path
    if scope == "layer":
        parts = path.split(".")
        end = next((i + 1 for i, part in enumerate(parts) if part.isdigit()), len(parts))
        return ".".join(parts[:end]), in_features
    return in_features


def unique_layers(layers: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Each shared layer once, under the first site path that holds it (how it is saved and loaded)."""
    seen: set[int] = set()
    out: dict[str, nn.Module] = {}
    for path, layer in layers.items():
        if id(layer) not in seen:
            seen.add(id(layer))
            out[path] = layer
    return out


def ensure_layers(model: AdapterModel, block: Block, attr: str, factory: Factory) -> dict[str, nn.Module]:
    """Create the block's layer at every site that carries one of its adapters (existing ones kept;
    an ``adapters``-style Fuse needs every one of them wherever one is, as ``adapters`` does);
    sites in one ``share_group`` get the same layer object."""
    leaves = set(block.leaves())
    every = block.kwargs.get("style") == "adapters"
    ref = next(model.parameters())
    key = block.key()
    groups: dict[object, nn.Module] = {}
    wanted = []
    for path, site in iter_sites(model):
        present = leaves.intersection(site.ah_adapters.keys())
        if not present:
            continue
        if every and present != leaves:
            raise CompositionError(
                f"{block!r}: {', '.join(sorted(present))} sit(s) at {path!r}, {', '.join(sorted(leaves - present))} "
                "not; adapters fuses only adapters that sit at the same places (the same mh_adapter and "
                "output_adapter)")
        in_f, out_f = site_facts(site, path).in_out_features
        group = share_group(block, path, in_f)
        existing = layer_at(site, attr, key)
        if existing is not None:
            groups.setdefault(group, existing)
        else:
            wanted.append((site, group, in_f, out_f))
    for site, group, in_f, out_f in wanted:
        layer = groups.get(group)
        if layer is None:
            layer = factory(in_f, out_f, block, model.config).to(device=ref.device)
            layer.train(site.training)  # a layer added to an eval-mode model must not add router noise
            groups[group] = layer.requires_grad_(False)  # frozen until train_fusion/train_router
        if attr not in site._modules:
            site.add_module(attr, nn.ModuleDict())
        site._modules[attr][key] = layer
    layers = layers_of(model, attr, key)
    if not layers:
        raise CompositionError(f"{block!r}: none of its adapters is attached to this model")
    return layers


def drop_layers_using(model: AdapterModel, name: str) -> None:
    """Remove every block layer whose block names adapter ``name`` (called when it is deleted)."""
    for _, site in iter_sites(model):
        for attr in ("ah_fusions", "ah_routers"):
            layers = site._modules.get(attr)
            for key in [k for k in (layers or {}) if name in re.split(r"[+\[\]:]", re.sub(r"@\w+", "", k))]:
                del layers[key]


def require_layers(model: AdapterModel, block: Block, attr: str, adder: str) -> None:
    if not layers_of(model, attr, block.key()):
        raise CompositionError(
            f"{type(block).__name__}({block.key()}) has no trained layers on this model; "
            f"call {adder}({block!r}) or load them first"
        )


def train_layers(model: AdapterModel, block: Block, attr: str) -> None:
    """Freeze everything, then unfreeze only this block's layers; activate it; train mode."""
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in layers_of(model, attr, block.key()).values():
        layer.requires_grad_(True)
    model.set_active(block)
    model.train()


def save_layers(model: AdapterModel, block: Block, attr: str, peft_type: str, path: Path) -> Path:
    layers = unique_layers(layers_of(model, attr, block.key()))
    if not layers:
        raise CompositionError(f"{block!r} has no layers on this model to save")
    tensors = {
        f"{site}.{name}": t.detach().to("cpu").contiguous().clone()
        for site, layer in layers.items()
        for name, t in layer.state_dict().items()
    }
    path = Path(path)
    with fmt.atomic_folder(path) as tmp:
        fmt.write_json(tmp / fmt.CONFIG_FILE, {"peft_type": peft_type, "composition": block.to_dict()})
        save_file(tensors, str(tmp / fmt.WEIGHTS_FILE), metadata={"format": "pt"})
    return path


def load_layers(model: AdapterModel, path: Path, attr: str, peft_type: str, factory: Factory) -> Block:
    """Read a block folder, check it fully, then build the layers and copy the weights in."""
    path = Path(path)
    raw = fmt.read_json_object(path / fmt.CONFIG_FILE)
    if raw.get("peft_type") != peft_type:
        raise InvalidAdapterError(f"{path}: expected a {peft_type} folder, found peft_type {raw.get('peft_type')!r}")
    block = block_from_dict(raw.get("composition"))
    if not isinstance(block, Block):
        raise InvalidAdapterError(f"{path}: 'composition' must be a block")
    for leaf in block.leaves():
        model._require(leaf)
    return install_layers(model, block, attr, factory, load.read_weights(path), path)


def install_layers(model: AdapterModel, block: Block, attr: str, factory: Factory,
                   tensors: dict[str, torch.Tensor], path: Path) -> Block:
    """Build ``block``'s layers and copy ``tensors`` (``<site path>.<layer parameter>``) into them;
    any tensor without a layer to go to, or a layer without its tensors, fails and changes nothing."""
    sites = dict(iter_sites(model))
    for key in tensors:
        site_path = key.rsplit(".", 2)[0]
        if site_path not in sites:
            raise IncompatibleAdapterError(f"{path}: weights for {site_path!r}, which this model does not have")
    existing = set(layers_of(model, attr, block.key()))
    layers = ensure_layers(model, block, attr, factory)
    try:
        _assign(layers, tensors, path)
    except BaseException:
        for site_path in set(layers) - existing:
            del sites[site_path]._modules[attr][block.key()]
        raise
    return block


def _assign(layers: dict[str, nn.Module], tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = {f"{site}.{name}": t for site, layer in unique_layers(layers).items()
                for name, t in layer.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise InvalidAdapterError(f"{path}: the weights file lacks {missing[0]!r} ({len(missing)} missing)")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise InvalidAdapterError(f"{path}: the weights file has {unexpected[0]!r}, which no layer of this block "
                                  f"takes ({len(unexpected)} such)")
    for key, target in expected.items():
        if tensors[key].shape != target.shape:
            raise IncompatibleAdapterError(
                f"{path}: {key} has shape {tuple(tensors[key].shape)} in the file, this model needs {tuple(target.shape)}"
            )
    with torch.no_grad():
        for key, target in expected.items():
            target.copy_(tensors[key].to(target.dtype))
