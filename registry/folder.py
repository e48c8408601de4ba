"""The registry metadata an adapter folder on disk declares, read before a push (what the folder may
hold is `adapterhub.format`'s, the same rules the server applies).

Torch-free and server-free: the client reads it.
"""

from __future__ import annotations

from pathlib import Path

from adapterhub import adapters_folder as af
from adapterhub.errors import InvalidAdapterError
from adapterhub.format import CARD_FILE, CONFIG_FILE, FormatError, read_json_object
from adapterhub.vocab import method_named, task_named

# The adapter fields a push sends when it creates the adapter (from the card, else PEFT's config)
CREATE_FIELDS = ("description", "task", "method", "base_model", "tags", "license")


def folder_metadata(root: Path) -> dict:
    """Adapter metadata from ``adapterhub.json``, else inferred from PEFT's ``adapter_config.json``
    (or from an ``adapters`` one: `adapters_metadata`; its config is checked as the registry will).

    >>> folder_metadata(Path("peft-lora-folder"))               # doctest: +SKIP
    {'method': 'lora', 'base_model': 'HuggingFaceTB/SmolLM2-135M', 'target_modules': ['q_proj', 'v_proj']}
    """
    card_path, config_path = root / CARD_FILE, root / CONFIG_FILE
    if not card_path.is_file() and not config_path.is_file() and any(
            (root / name).is_file() for name in (af.FUSION_CONFIG_FILE, af.SETUP_FILE)):
        return {"tags": [af.LIBRARY]}  # an adapters fusion or setup folder: no config at its top
    if card_path.is_file():
        card = read_json_object(card_path)
        meta = {k: card.get(k) for k in CREATE_FIELDS}
        if isinstance(meta["base_model"], dict):  # {"id": ..., "fingerprint": ...}
            base = meta["base_model"]
            meta["base_model"] = base.get("id") or base.get("name_or_path") or base.get("name")
        meta["target_modules"] = card.get("target_modules")
        if config_path.is_file():
            meta = {**peft_metadata(read_json_object(config_path), str(config_path)),
                    **{k: v for k, v in meta.items() if v is not None}}
        return {k: v for k, v in meta.items() if v is not None}
    if config_path.is_file():
        return peft_metadata(read_json_object(config_path), str(config_path))
    raise InvalidAdapterError(f"{root} has neither {CARD_FILE} nor {CONFIG_FILE}: not an adapter folder")


def peft_metadata(cfg: dict, what: str = CONFIG_FILE) -> dict:
    """The search fields PEFT's ``adapter_config.json`` implies (the registry fills a new adapter's
    from the first commit a Hugging Face client makes, too); an ``adapters`` config's, `adapters_metadata`."""
    if af.looks_like_adapters_config(cfg):
        return adapters_metadata(cfg, what)
    task = task_named(cfg.get("task_type")) if isinstance(cfg.get("task_type"), str) else None
    meta = {
        "method": _method_name(cfg.get("peft_type")),
        "task": task.pipeline_tag if task else None,
        "base_model": cfg.get("base_model_name_or_path"),
        "target_modules": cfg.get("target_modules"),
    }
    if isinstance(meta["target_modules"], str):
        meta["target_modules"] = [meta["target_modules"]]
    return {k: v for k, v in meta.items() if v is not None}


def adapters_metadata(cfg: dict, what: str = CONFIG_FILE) -> dict:
    """The search fields of AdapterHub's ``adapters`` config (method, task, base, the library's tag),
    once its keys and types pass the registry's rules (`adapters_folder.config_problem`): a push the
    registry would refuse fails here, before anything is uploaded, naming the key."""
    problem = af.config_problem(cfg, what)
    if problem:
        raise FormatError(problem)
    return af.folder_fields(cfg)


def _method_name(peft_type: object) -> str | None:
    """Our name for PEFT's ``peft_type``; a type we do not implement is indexed under its own name."""
    if not peft_type:
        return None
    try:
        return method_named(str(peft_type)).name
    except ValueError:
        return str(peft_type).lower()
