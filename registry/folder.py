"""What an adapter folder on disk holds, read before a push: its files (refusing, from names alone,
what the registry would refuse, so a bad push fails before a byte is uploaded) and its metadata.

Torch-free and server-free: the client reads it; the same rules as the server come from
`registry/limits.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from adapterhub.errors import InvalidAdapterError
from adapterhub.registry.limits import (
    MAX_FILES_PER_VERSION,
    file_set_problem,
    is_pickle_name,
    segment_problem,
)

# The adapter fields a push sends when it creates the adapter (from the card, else PEFT's config)
CREATE_FIELDS = ("description", "task", "method", "base_model", "tags", "license")


def scan_folder(root: Path) -> list[Path]:
    """Every file under ``root``, sorted. Refuses what the registry would refuse and can be seen
    from names alone (symlinks, special files, pickles, control characters, too many files), so
    that such a push fails before it creates an adapter or uploads a byte."""
    if not root.is_dir():
        raise InvalidAdapterError(f"{root} is not a folder")
    if root.is_symlink():
        raise InvalidAdapterError(f"refusing to push {root}: it is a symlink; push the folder it points to")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        files = set(filenames)
        for entry in sorted(dirnames + filenames):
            path = Path(dirpath) / entry
            if path.is_symlink():
                raise InvalidAdapterError(f"refusing to push {path}: symlinks are not allowed in an adapter folder")
            problem = "backslashes are not allowed" if "\\" in entry else segment_problem(entry)
            if problem:
                raise InvalidAdapterError(f"refusing to push {str(path)!r}: {problem}")
            if entry not in files:
                continue
            if not path.is_file():
                raise InvalidAdapterError(f"refusing to push {path}: not a regular file")
            if is_pickle_name(entry):
                raise InvalidAdapterError(
                    f"refusing to push {path}: pickle-based weights can run code when loaded; save them as safetensors")
            found.append(path)
            if len(found) > MAX_FILES_PER_VERSION:  # stop walking: a home folder pushed by mistake is huge
                raise InvalidAdapterError(f"refusing to push {root}: it holds more than {MAX_FILES_PER_VERSION} "
                                          "files, the most a version may hold")
    if not found:
        raise InvalidAdapterError(f"{root} is empty: nothing to push")
    problem = file_set_problem(p.relative_to(root).as_posix() for p in found)
    if problem:
        raise InvalidAdapterError(f"refusing to push {root}: {problem}")
    return sorted(found)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidAdapterError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidAdapterError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def folder_metadata(root: Path) -> dict:
    """Adapter metadata from ``adapterhub.json``, else inferred from PEFT's ``adapter_config.json``.

    >>> folder_metadata(Path("peft-lora-folder"))               # doctest: +SKIP
    {'method': 'lora', 'base_model': 'HuggingFaceTB/SmolLM2-135M', 'target_modules': ['q_proj', 'v_proj']}
    """
    card_path, config_path = root / "adapterhub.json", root / "adapter_config.json"
    if card_path.is_file():
        card = _read_json(card_path)
        meta = {k: card.get(k) for k in CREATE_FIELDS}
        if isinstance(meta["base_model"], dict):  # {"id": ..., "fingerprint": ...}
            base = meta["base_model"]
            meta["base_model"] = base.get("id") or base.get("name_or_path") or base.get("name")
        meta["target_modules"] = card.get("target_modules")
        if config_path.is_file():
            meta = {**_peft_metadata(_read_json(config_path)), **{k: v for k, v in meta.items() if v is not None}}
        return {k: v for k, v in meta.items() if v is not None}
    if config_path.is_file():
        return _peft_metadata(_read_json(config_path))
    raise InvalidAdapterError(f"{root} has neither adapterhub.json nor adapter_config.json: not an adapter folder")


def _peft_metadata(cfg: dict) -> dict:
    meta = {
        "method": str(cfg["peft_type"]).lower() if cfg.get("peft_type") else None,
        "base_model": cfg.get("base_model_name_or_path"),
        "target_modules": cfg.get("target_modules"),
    }
    if isinstance(meta["target_modules"], str):
        meta["target_modules"] = [meta["target_modules"]]
    return {k: v for k, v in meta.items() if v is not None}
