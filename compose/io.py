"""Adapter folders: saving, validating and loading (ours and PEFT's), never unpickling anything.

A folder is ``adapter_config.json`` (PEFT's schema where PEFT has the method),
``adapter_model.safetensors`` (PEFT's key names), and for our format also ``adapterhub.json`` (the
card, with the base model's fingerprint) and a ``README.md``. Folders are written to a temporary
sibling and renamed into place; loads check everything before touching the model, and anything
attached before a late failure is removed again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from adapterhub.compose.fingerprint import check_fingerprint, fingerprint
from adapterhub.compose.tuners import METHODS, Method, method_for_config, method_for_peft_type
from adapterhub.compose.tuners.heads import iter_heads
from adapterhub.compose.tuners.site import base_named_modules, building_for_load, iter_sites
from adapterhub.errors import AdapterNotFoundError, IncompatibleAdapterError, InvalidAdapterError

if TYPE_CHECKING:
    from adapterhub.compose.model import AdapterModel

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
CARD_FILE = "adapterhub.json"
PICKLE_FILES = ("adapter_model.bin", "pytorch_model.bin", "adapter_model.pt", "adapter_model.pkl")
PREFIX = "base_model.model."
PROMPT_METHOD_PREFIX = "base_model."  # PEFT does not wrap the model for prompt-learning methods
PROMPT_KEY = "prompt_embeddings"
FORMATS = ("adapterhub", "peft")
MAX_HEADER = 100 * 1024 * 1024
SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}


# ---------------------------------------------------------------------- saving
def key_prefix(model: AdapterModel, name: str) -> str:
    return PROMPT_METHOD_PREFIX if name in model.ah_prompts else PREFIX


def adapter_state_dict(model: AdapterModel, name: str) -> dict[str, torch.Tensor]:
    """The adapter's tensors under PEFT's key names, detached copies on the CPU."""
    out = _adapter_tensors(model, name)
    if name in model.ah_prompts:
        out[PROMPT_KEY] = model.ah_prompts[name].export_weight()
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}


# what a loaded adapter's card says it is for, kept when the adapter is saved again (a recipe's
# copy of a classifier must still name its task and labels, or it cannot be loaded to classify)
CARRIED_CARD_FIELDS = ("task", "labels", "description", "tags", "license")


def save_adapter(model: AdapterModel, name: str, path: Path, format: str = "adapterhub", card: dict | None = None) -> Path:
    if format not in FORMATS:
        raise InvalidAdapterError(f"unknown folder format {format!r}; use one of {FORMATS}")
    config = model._ah_configs[name]
    method = method_for_config(config)
    if format == "peft" and config.peft_type is None:
        raise InvalidAdapterError(f"adapter {name!r} is a {method.name} adapter, which PEFT cannot load; use format='adapterhub'")
    tensors = adapter_state_dict(model, name)
    path = Path(path)
    with atomic_folder(path) as tmp:
        _write_json(tmp / CONFIG_FILE, config.to_dict())
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if format == "adapterhub":
            carried = model._ah_card_facts.get(name) or {}
            full_card = build_card(model, name, tensors, {**carried, **(card or {})})
            _write_json(tmp / CARD_FILE, full_card)
            (tmp / "README.md").write_text(render_readme(full_card))
    return path


def build_card(model: AdapterModel, name: str, tensors: dict[str, torch.Tensor], extra: dict | None) -> dict[str, Any]:
    config = model._ah_configs[name]
    sites = _site_paths(model, name)
    card: dict[str, Any] = {
        "format_version": 1,
        "name": name,
        "method": method_for_config(config).name,
        "base_model": {
            "name_or_path": config.base_model_name_or_path,
            "fingerprint": fingerprint(model, sites),
        },
        "config_extra": config.local_dict(),
        "trainable_parameters": int(sum(t.numel() for t in tensors.values())),
        "size_bytes": int(sum(t.numel() * t.element_size() for t in tensors.values())),
        "sites": len(sites),
    }
    if getattr(config, "lora_fa", False):
        card["training"] = {"lora_fa": True}
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(card.get(key), dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    return card


def render_readme(card: dict[str, Any]) -> str:
    base = card.get("base_model", {}).get("name_or_path") or card["base_model"]["fingerprint"]["architecture"]
    lines = [
        f"# {card.get('name')}",
        "",
        f"A **{card['method']}** adapter for `{base}`, in adapterhub's folder format "
        "(PEFT-compatible `adapter_config.json` and `adapter_model.safetensors`).",
        "",
        f"- trainable parameters: {card['trainable_parameters']:,}",
        f"- size: {card['size_bytes'] / 1024:.1f} KiB",
    ]
    if card.get("task"):
        lines.append(f"- task: {card['task']}")
    if card.get("metrics"):
        lines += ["", "## Metrics", ""] + [f"- {k}: {v}" for k, v in card["metrics"].items()]
    if card.get("data"):
        lines += ["", "## Data", "", "```json", json.dumps(card["data"], indent=2), "```"]
    lines += ["", "## Use", "", "```python", "import adapterhub as ah", "am = ah.AdapterModel(base_model)",
              f"am.load_adapter('path/to/this/folder', name={card.get('name')!r}, set_active=True)", "```", ""]
    return "\n".join(lines)


def _site_paths(model: AdapterModel, name: str) -> list[str]:
    return [p for p, s in iter_sites(model) if name in s.ah_adapters]


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to fill; on success fsync its files and rename it into
    place (replacing ``path``), on any error remove it, so readers never see a half-written folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync(f)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(tmp: Path, path: Path) -> None:
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


# ---------------------------------------------------------------------- reading and checking
def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidAdapterError(f"{path.parent}: missing {path.name}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidAdapterError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidAdapterError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def check_safetensors(path: Path) -> dict[str, Any]:
    """Validate the header (length, JSON, dtypes, offsets in bounds and not overlapping) without loading."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InvalidAdapterError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER, size - 8):
            raise InvalidAdapterError(f"{path}: safetensors header length {n} is larger than the file ({size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidAdapterError(f"{path}: safetensors header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise InvalidAdapterError(f"{path}: safetensors header is not a JSON object")
    data_len = size - 8 - n
    spans = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, _shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidAdapterError(f"{path}: tensor {key!r} has a malformed header entry") from exc
        if dtype not in SAFETENSORS_DTYPES:
            raise InvalidAdapterError(f"{path}: tensor {key!r} has dtype {dtype}, which adapterhub cannot use")
        if not (0 <= start <= end <= data_len):
            raise InvalidAdapterError(f"{path}: tensor {key!r} offsets {start}-{end} run past the data ({data_len} bytes)")
        spans.append((start, end, key))
    spans.sort()
    for (_s1, e1, k1), (s2, _e2, k2) in zip(spans, spans[1:], strict=False):
        if s2 < e1:
            raise InvalidAdapterError(f"{path}: tensors {k1!r} and {k2!r} overlap")
    return header


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS_FILE
    if not path.exists():
        pickles = [p for p in PICKLE_FILES if (folder / p).exists()]
        if pickles:
            raise InvalidAdapterError(
                f"{folder}: only pickle weights ({pickles[0]}); adapterhub never unpickles - convert to safetensors"
            )
        raise InvalidAdapterError(f"{folder}: missing {WEIGHTS_FILE}")
    check_safetensors(path)
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise InvalidAdapterError(f"{path}: unreadable safetensors file ({exc})") from exc


# ---------------------------------------------------------------------- loading
def resolve_source(source: str | Path) -> Path:
    """A folder path as is; a registry reference pulled through the client (the engine's one door)."""
    path = Path(source)
    if path.is_dir():
        return path
    from adapterhub.registry.reference import looks_like_reference

    if isinstance(source, str) and looks_like_reference(source):
        from adapterhub.registry.client import Hub

        return Path(Hub().pull(source))
    raise AdapterNotFoundError(f"{source!s}: no such adapter folder, and not a registry reference (ns/name[@version|:alias])")


def load_adapter(model: AdapterModel, source: str | Path, name: str | None = None, replace: bool = False, set_active: bool = False) -> str:
    folder = resolve_source(source)
    reference = None if Path(source).is_dir() else str(source)
    raw = read_json(folder / CONFIG_FILE)
    method = method_for_peft_type(raw.get("peft_type"))
    card = read_json(folder / CARD_FILE) if (folder / CARD_FILE).exists() else {}
    config = method.config_cls.from_dict(raw, card.get("config_extra"))
    name = name or card.get("name") or _name_from_folder(folder)
    if card:
        check_fingerprint(model, card, name)
    tensors = read_weights(folder)
    sites, heads, prompt = split_keys(tensors, method, folder)
    if replace and name in model._ah_configs:
        hot_swap(model, name, config, tensors)
    else:
        if name in model._ah_configs:
            raise InvalidAdapterError(f"an adapter named {name!r} is already loaded; pass replace=True or another name")
        if method.kind == "site":
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
        loaded = model._ah_configs[name]
        if method.kind == "site" and raw.get("target_modules") is not None:
            loaded.target_modules = raw["target_modules"]
        loaded.modules_to_save = raw.get("modules_to_save") if heads else None
    model._ah_sources.pop(name, None)
    model._ah_card_facts[name] = {k: card[k] for k in CARRIED_CARD_FIELDS if k in card}
    if reference is not None:
        model._ah_sources[name] = reference  # recipes record where an adapter came from
    if set_active:
        model.set_active(name)
    return name


def split_keys(tensors: dict[str, torch.Tensor], method: Method, folder: Path) -> tuple[list[str], list[str], bool]:
    """Sort saved keys into adapter sites, module copies (modules_to_save) and a prompt tensor."""
    sites: set[str] = set()
    heads: set[str] = set()
    prompt = False
    prefix = PROMPT_METHOD_PREFIX if method.kind == "prompt" else PREFIX
    for key in tensors:
        if key == PROMPT_KEY and method.kind == "prompt":
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
    if method.kind == "prompt" and not prompt:
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
    params = _adapter_tensors(model, name)
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
    old = model._ah_configs[name]
    if type(old) is not type(config):
        raise IncompatibleAdapterError(
            f"cannot replace adapter {name!r}: it is {old.method}, the new folder is {config.method}"
        )
    if name in model.merged_adapters:
        raise InvalidAdapterError(f"adapter {name!r} is merged; unmerge() before replacing it")
    params = _adapter_tensors(model, name)
    if set(params) != set(tensors) - {PROMPT_KEY}:
        raise IncompatibleAdapterError(f"cannot replace adapter {name!r} in place: the new folder targets other modules")
    assign(model, name, tensors)
    if hasattr(config, "scaling"):
        for _, site in iter_sites(model):
            if name in site.ah_adapters:
                site.ah_adapters[name].scaling = config.scaling
    model._ah_configs[name] = config


def _adapter_tensors(model: AdapterModel, name: str) -> dict[str, torch.Tensor]:
    """Live parameters of the adapter's sites and module copies, keyed as PEFT saves them."""
    prefix = key_prefix(model, name)
    out: dict[str, torch.Tensor] = {}
    for path, site in iter_sites(model):
        if name in site.ah_adapters:
            for key, value in site.ah_adapters[name].state_dict(keep_vars=True).items():
                out[f"{prefix}{path}.{key}"] = value
    for path, head in iter_heads(model):
        if name in head.ah_heads:
            for key, value in head.ah_heads[name].state_dict(keep_vars=True).items():
                out[f"{prefix}{path}.{key}"] = value
    return out


def _exact_regex(paths: list[str]) -> str:
    return "|".join(re.escape(p) for p in paths)


def _name_from_folder(folder: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", folder.resolve().name).strip("_")
    return name or "adapter"


__all__ = [
    "METHODS",
    "adapter_state_dict",
    "check_safetensors",
    "load_adapter",
    "read_json",
    "read_weights",
    "save_adapter",
]
