"""Loading an adapter folder (ours or PEFT's) onto a model: everything is checked before the model
changes, and anything attached before a late failure is removed again. Weights are read only as
safetensors, after the folder format's header check; nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adapterhub.adapters_folder import is_adapters_config
from adapterhub.compose.core.fingerprint import check_fingerprint
from adapterhub.compose.folder.adapters_format import load_checked, read_adapters_folder
from adapterhub.compose.folder.keys import PREFIX, PROMPT_KEY, PROMPT_METHOD_PREFIX, adapter_tensors
from adapterhub.compose.folder.save import CARRIED_CARD_FIELDS
from adapterhub.compose.tuners import Tuner, tuner_for_peft_type
from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.compose.tuners.site import base_named_modules, building_for_load, iter_sites
from adapterhub.errors import AdapterNotFoundError, IncompatibleAdapterError, InvalidAdapterError
from adapterhub.format import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    is_pickle_name,
    read_json_object,
)

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

Pull = Callable[[str], Path]  # a registry reference -> the local folder it names


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS_FILE
    if not path.exists():
        pickles = sorted(p.name for p in folder.iterdir() if p.is_file() and is_pickle_name(p.name))
        if pickles:
            raise InvalidAdapterError(
                f"{folder}: only pickle weights ({pickles[0]}); adapterhub never unpickles - convert to safetensors"
            )
        raise InvalidAdapterError(f"{folder}: missing {WEIGHTS_FILE}")
    return load_checked(path)


# ---------------------------------------------------------------------- loading
def resolve_source(source: str | Path, pull: Pull | None) -> Path:
    """A folder path as is; a registry reference through ``pull``, which the caller passes in (the
    engine's one door to the hub is ``compose.core.hub``), so loading knows nothing of the client."""
    path = Path(source)
    if path.is_dir():
        return path
    from adapterhub.registry.reference import looks_like_reference

    if isinstance(source, str) and looks_like_reference(source):
        if pull is None:
            raise AdapterNotFoundError(f"{source}: a registry reference, and no registry was given to pull it from")
        return Path(pull(source))
    raise AdapterNotFoundError(f"{source!s}: no such adapter folder, and not a registry reference (ns/name[@version|:alias])")


def load_adapter(model: AdapterModel, source: str | Path, name: str | None = None, replace: bool = False,
                 set_active: bool = False, pull: Pull | None = None) -> str:
    folder = resolve_source(source, pull)
    reference = None if Path(source).is_dir() else str(source)
    raw = read_json_object(folder / CONFIG_FILE)
    if is_adapters_config(raw):  # AdapterHub's adapters wrote it: mapped onto ours, or refused naming why
        converted = read_adapters_folder(folder, raw, model)
        method, config, tensors, card = converted.method, converted.config, converted.tensors, converted.card
        name = name or card["name"]
    else:
        method = tuner_for_peft_type(raw.get("peft_type"))
        card = read_json_object(folder / CARD_FILE) if (folder / CARD_FILE).exists() else {}
        config = method.config_cls.from_dict(raw, card.get("config_extra"))
        name = name or card.get("name") or _name_from_folder(folder)
        if card:
            check_fingerprint(model, card, name)
        tensors = read_weights(folder)
    sites, heads, prompt = split_keys(tensors, method, folder)
    if replace and name in model.ah.configs:
        hot_swap(model, name, config, tensors)
    else:
        if name in model.ah.configs:
            raise InvalidAdapterError(f"an adapter named {name!r} is already loaded; pass replace=True or another name")
        if method.info.at_sites:
            config.target_modules = _exact_regex(sites) if sites else config.target_modules
        config.modules_to_save = [_exact_regex(heads)] if heads else None
        _check_targets_exist(model, sites + heads, name)
        with building_for_load():  # every tensor is assigned just below
            model.add_adapter(name, config)
        try:
            assign(model, name, tensors, adopt=True)
        except BaseException:
            model.delete_adapter(name)
            raise
        # keep the user's original target list in the config we report and save again
        loaded = model.ah.configs[name]
        if method.info.at_sites and raw.get("target_modules") is not None and "config" not in raw:
            loaded.target_modules = raw["target_modules"]
        loaded.modules_to_save = raw.get("modules_to_save") if heads else None
    model.ah.sources.pop(name, None)
    model.ah.card_facts[name] = {k: card[k] for k in CARRIED_CARD_FIELDS if k in card}
    if reference is not None:
        model.ah.sources[name] = reference  # recipes record where an adapter came from
    if set_active:
        model.set_active(name)
    return name


def split_keys(tensors: dict[str, torch.Tensor], method: Tuner, folder: Path) -> tuple[list[str], list[str], bool]:
    """Sort saved keys into adapter sites, module copies (modules_to_save) and a prompt tensor."""
    sites: set[str] = set()
    heads: set[str] = set()
    prompt = False
    prefix = PROMPT_METHOD_PREFIX if method.info.virtual_tokens else PREFIX
    for key in tensors:
        if key == PROMPT_KEY and method.info.virtual_tokens:
            prompt = True
            continue
        if not key.startswith(prefix):
            raise InvalidAdapterError(f"{folder / WEIGHTS_FILE}: unexpected tensor {key!r} for a {method.name} adapter")
        rest = key[len(prefix):]
        suffix = next((s for s in method.param_suffixes if rest.endswith("." + s)), None)
        if suffix:
            sites.add(rest[: -len(suffix) - 1])
        else:
            heads.add(rest.rsplit(".", 1)[0])
    if method.info.virtual_tokens and not prompt:
        raise InvalidAdapterError(f"{folder / WEIGHTS_FILE}: no {PROMPT_KEY!r} tensor for a {method.name} adapter")
    return sorted(sites), sorted(heads), prompt


def _check_targets_exist(model: AdapterModel, paths: list[str], name: str) -> None:
    modules = dict(base_named_modules(model))
    missing = [p for p in paths if p not in modules]
    if missing:
        raise IncompatibleAdapterError(
            f"adapter {name!r} has weights for {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f", which {type(model).__name__} does not have"
        )


def assign(model: AdapterModel, name: str, tensors: dict[str, torch.Tensor], adopt: bool = False) -> None:
    """Copy saved tensors into the adapter's parameters, naming the module and both shapes on mismatch.

    ``adopt``: parameters just built for this load take the file's tensors as their storage when
    dtype and device already match (each tensor ``load_file`` returns owns its memory): a second
    allocation and a copy of every weight were a third of a hot-load. A hot swap copies in place
    instead, so whoever holds the old parameters (an optimizer, a LoRA bank) sees the new values."""
    params = adapter_tensors(model, name)
    missing = sorted(set(params) - set(tensors))
    if missing:
        raise InvalidAdapterError(f"adapter {name!r}: the weights file lacks {missing[0]!r} ({len(missing)} missing)")
    with torch.no_grad():
        for key, value in tensors.items():
            if key == PROMPT_KEY:
                encoder = model.ah_prompts[name]
                expected = encoder.export_weight().shape
                if tuple(value.shape) != tuple(expected):
                    raise IncompatibleAdapterError(
                        f"adapter {name!r}: prompt tensor has shape {tuple(value.shape)}, this model needs {tuple(expected)}"
                    )
                encoder.import_weight(value)
                continue
            target = params.get(key)
            if target is None:
                raise InvalidAdapterError(f"adapter {name!r}: unexpected tensor {key!r}")
            if target.shape != value.shape:
                raise IncompatibleAdapterError(
                    f"adapter {name!r}: {key.split('.', 2)[-1]} has shape {tuple(value.shape)} in the file, "
                    f"this model needs {tuple(target.shape)}"
                )
            if adopt and value.dtype == target.dtype and value.device == target.device:
                target.data = value
            else:
                target.copy_(value.to(target.dtype))


def hot_swap(model: AdapterModel, name: str, config, tensors: dict[str, torch.Tensor]) -> None:
    """Copy new weights into an existing slot of the same method and shapes: no modules re-wrapped."""
    old = model.ah.configs[name]
    if type(old) is not type(config):
        raise IncompatibleAdapterError(
            f"cannot replace adapter {name!r}: it is {old.method}, the new folder is {config.method}"
        )
    if name in model.merged_adapters:
        raise InvalidAdapterError(f"adapter {name!r} is merged; unmerge() before replacing it")
    changed = [f for f in network_options(config) if getattr(old, f) != getattr(config, f)]
    if changed:  # a bottleneck's options are its network, not its weights: the slot would keep the old one
        raise IncompatibleAdapterError(f"cannot replace adapter {name!r} in place: the new folder sets "
                                       f"{changed[0]}={getattr(config, changed[0])!r} (loaded: {getattr(old, changed[0])!r})")
    params = adapter_tensors(model, name)
    if set(params) != set(tensors) - {PROMPT_KEY}:
        raise IncompatibleAdapterError(f"cannot replace adapter {name!r} in place: the new folder targets other modules")
    assign(model, name, tensors)
    if hasattr(config, "scaling"):
        for _, site in iter_sites(model):
            if name in site.ah_adapters:
                site.ah_adapters[name].scaling = config.scaling
    model.ah.configs[name] = config


def network_options(config) -> list[str]:
    """The options of a bottleneck config that shape its forward (everything but where it sits)."""
    if config.method != "bottleneck":
        return []
    shared = {f.name for f in dataclasses.fields(AdapterConfig)}
    return [f.name for f in dataclasses.fields(config) if f.name not in shared and f.name != "init_weights"]


def _exact_regex(paths: list[str]) -> str:
    return "|".join(re.escape(p) for p in paths)


def _name_from_folder(folder: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", folder.resolve().name).strip("_")
    return name or "adapter"
