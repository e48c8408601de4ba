"""AdapterHub ``adapters``' AdapterFusion folders onto our ``Fuse``, and ours back into them.

``adapters``' ``save_adapter_fusion(dir, "a,b", use_safetensors=True)`` writes
``adapter_fusion_config.json`` (its ``AdapterFusionConfig`` under ``config``, the fused adapters under
``adapter_names``) and ``model_adapter_fusion.safetensors``: per bottleneck site
``<sublayer>.adapter_fusion_layer.a,b.{query,key}.{weight,bias}`` and ``...value.weight``. It maps onto
``Fuse("a", "b", style="adapters", options=...)`` (``fusion.AdaptersFusionLayer``, the same network)
over bottleneck adapters already loaded under those names; every option maps but ``temperature:
true`` (``adapters`` anneals it from 50 down to 1, one step per forward), which is refused, as is a
fusion over adapters of another method.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from adapterhub import adapters_folder as af
from adapterhub.compose.composition import block_layers, fusion
from adapterhub.compose.composition import blocks as composition
from adapterhub.compose.composition.blocks import ADAPTERS_FUSION_OPTIONS, Fuse
from adapterhub.compose.core.arch import Sublayer, arch_spec
from adapterhub.compose.folder.adapters_format import load_checked
from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.compose.tuners.site import iter_sites
from adapterhub.errors import CompositionError, IncompatibleAdapterError, InvalidAdapterError
from adapterhub.format import atomic_folder, read_json_object, write_json

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

PICKLE_FILE = "pytorch_model_adapter_fusion.bin"
LAYER_ATTR = "adapter_fusion_layer"
# the parameters of adapters' BertFusion, by the option that creates each
PARAMS = {"query.weight": "query", "query.bias": "query", "key.weight": "key", "key.bias": "key",
          "value.weight": "value"}


def is_adapters_fusion(folder: Path) -> bool:
    return (Path(folder) / af.FUSION_CONFIG_FILE).is_file()


def fusion_prefix(sub: Sublayer) -> str:
    """Where ``adapters`` keeps a sublayer's fusion layers: its bottleneck layer, which holds the adapters."""
    if not sub.adapters_at.endswith(".adapters"):
        raise AssertionError(f"arch table: adapters_at {sub.adapters_at!r} does not end in '.adapters'")
    return sub.adapters_at[: -len(".adapters")] + f".{LAYER_ATTR}"


def read_adapters_fusion(model: AdapterModel, folder: Path) -> tuple[Fuse, dict[str, torch.Tensor]]:
    """The fusion folder at ``folder`` as our block and its tensors under our layer keys
    (``<site path>.<parameter>``); raises naming the file and the option or tensor that does not map."""
    folder = Path(folder)
    where = folder / af.FUSION_CONFIG_FILE
    raw = read_json_object(where)
    options = raw.get("config")
    if not isinstance(options, dict):
        raise InvalidAdapterError(f"{where}: an adapters fusion config without its 'config' object")
    model_type = getattr(model.config, "model_type", "")
    if raw.get("model_type") not in (None, model_type):
        raise IncompatibleAdapterError(f"{folder}: an adapters fusion for model_type {raw['model_type']!r}, "
                                       f"this model is {model_type!r}")
    hidden = getattr(model.config, "hidden_size", None)
    if raw.get("hidden_size") not in (None, hidden):
        raise IncompatibleAdapterError(f"{folder}: an adapters fusion for hidden size {raw['hidden_size']}, "
                                       f"this model's is {hidden}")
    block = fuse_of(where, raw, options)
    for leaf in block.leaves():
        model._require(leaf)
    try:
        composition.validate(block, lambda n: model.ah.configs[n].method)
    except CompositionError as exc:
        raise InvalidAdapterError(f"{folder}: {exc}") from None
    name = raw.get("name") or ",".join(block.leaves())
    return block, our_tensors(model, folder, read_weights(folder), str(name), block)


def fuse_of(where: Path, raw: dict[str, Any], options: dict[str, Any]) -> Fuse:
    unknown = sorted(set(options) - set(ADAPTERS_FUSION_OPTIONS) - {"temperature"})
    if unknown:
        raise InvalidAdapterError(f"{where}: unknown AdapterFusion option {unknown[0]!r}")
    if options.get("temperature", False):
        raise InvalidAdapterError(
            f"{where}: temperature={options['temperature']!r} is not supported: adapters anneals that temperature "
            "from 50 down to 1 by one step per forward, a state no saved fusion carries (adapterhub's "
            "Fuse(temperature=...) is a constant)")
    names = raw.get("adapter_names")
    if names is None and isinstance(raw.get("name"), str):
        names = raw["name"].split(",")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidAdapterError(f"{where}: 'adapter_names' must be a list of the fused adapters' names")
    ours = {k: v for k, v in options.items() if k != "temperature"}
    if "value_initialized" in ours:  # adapters types it str, uses its truth; it only initialises
        ours["value_initialized"] = bool(ours["value_initialized"])
    try:
        return Fuse(*names, style="adapters", options=ours)
    except CompositionError as exc:
        raise InvalidAdapterError(f"{where}: {exc}") from None


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / af.FUSION_WEIGHTS_FILE
    if not path.exists():
        if (folder / PICKLE_FILE).exists():
            command = af.CONVERT_COMMAND.replace(af.PICKLE_WEIGHTS_FILE, PICKLE_FILE).replace(
                af.WEIGHTS_FILE, af.FUSION_WEIGHTS_FILE)
            raise InvalidAdapterError(f"{folder}: only pickle weights ({PICKLE_FILE}); adapterhub never unpickles. "
                                      f"Convert it where you trust the file: cd {folder} && {command}")
        raise InvalidAdapterError(f"{folder}: missing {af.FUSION_WEIGHTS_FILE}")
    return load_checked(path)


def our_tensors(model: AdapterModel, folder: Path, tensors: dict[str, torch.Tensor], name: str,
                block: Fuse) -> dict[str, torch.Tensor]:
    sublayers = arch_spec(getattr(model.config, "model_type", "")).sublayers
    sites = {path for path, _ in iter_sites(model)}
    options = block.kwargs["options"]
    marker = f".{LAYER_ATTR}.{name}."
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        at, _, param = key.partition(marker)
        at = f"{at}.{LAYER_ATTR}"
        site = None
        for candidate in (at, f"{model.base_model_prefix}.{at}"):
            for sub in sublayers:
                head, tail = fusion_prefix(sub).split("{b}")
                match = re.fullmatch(f"{re.escape(head)}(?P<b>{sub.block}){re.escape(tail)}", candidate)
                if match and match["b"] + sub.site in sites:
                    site = match["b"] + sub.site
        if not param or site is None:
            raise InvalidAdapterError(f"{folder}/{af.FUSION_WEIGHTS_FILE}: tensor {key!r} is not a layer of fusion "
                                      f"{name!r} at a bottleneck site of {', '.join(block.leaves())} in this "
                                      f"{type(model).__name__}")
        if param not in PARAMS or not options[PARAMS[param]]:
            raise InvalidAdapterError(f"{folder}/{af.FUSION_WEIGHTS_FILE}: tensor {key!r}: {param!r} is not a "
                                      "parameter of this fusion's config")
        out[f"{site}.{param}"] = value
    return out


def load_adapters_fusion(model: AdapterModel, folder: Path) -> Fuse:
    """Load ``adapters``' fusion folder onto the bottleneck adapters it names (loaded first); return its block."""
    block, tensors = read_adapters_fusion(model, folder)
    return block_layers.install_layers(model, block, fusion.ATTR, fusion.new_layer, tensors, Path(folder))


def save_adapters_fusion(model: AdapterModel, fuse: Fuse, path: Path, base_id: str | None = None) -> Path:
    """Write ``fuse``'s layers as ``adapters``' ``save_adapter_fusion(..., use_safetensors=True)`` does."""
    if fuse.style != "adapters":
        raise InvalidAdapterError(
            f"{fuse!r} is adapterhub's own fusion (its query reads the site's input and it attends over the "
            "adapters' whole outputs), another network than adapters' AdapterFusion; Fuse(..., style='adapters') "
            "is that one: add and train it, or load one made by adapters")
    if fuse.kwargs["temperature"] != 1.0:
        raise InvalidAdapterError(f"{fuse!r}: temperature={fuse.kwargs['temperature']} has no adapters equivalent "
                                  "(its temperature option is an annealing from 50 down to 1)")
    configs = [model.ah.configs[n] for n in fuse.leaves()]
    for option in ("mh_adapter", "output_adapter"):
        values = {getattr(c, option) for c in configs if isinstance(c, BottleneckConfig)}
        if len(values) > 1:
            raise InvalidAdapterError(f"{fuse!r}: its adapters differ in {option}, and adapters fuses only adapters "
                                      "that sit at the same places")
    layers = block_layers.unique_layers(block_layers.layers_of(model, fusion.ATTR, fuse.key()))
    if not layers:
        raise CompositionError(f"{fuse!r} has no layers on this model to save")
    sublayers = arch_spec(model.config.model_type).sublayers
    name = ",".join(fuse.leaves())
    weights: dict[str, torch.Tensor] = {}
    for site, layer in layers.items():
        found = [(sub, m) for sub in sublayers if (m := re.fullmatch(sub.site_pattern, site))]
        if not found:
            raise InvalidAdapterError(f"{fuse!r} has a layer at {site!r}, where adapters puts no fusion layer")
        sub, match = found[0]
        at = fusion_prefix(sub).format(b=match["b"])
        for param, tensor in layer.state_dict().items():
            weights[f"{at}.{name}.{param}"] = tensor.detach().to("cpu").contiguous().clone()
    config = {
        "adapter_names": list(fuse.leaves()), "config": {**fuse.kwargs["options"], "temperature": False},
        "hidden_size": model.config.hidden_size, "model_class": type(model).__name__, "model_name": base_id or "",
        "model_type": model.config.model_type, "name": name, "version": af.WRITTEN_VERSION,
    }
    with atomic_folder(Path(path)) as tmp:
        write_json(tmp / af.FUSION_CONFIG_FILE, config)
        save_file(weights, str(tmp / af.FUSION_WEIGHTS_FILE), metadata={"format": "pt"})
    return Path(path)
