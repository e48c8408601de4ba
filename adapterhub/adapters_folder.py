"""AdapterHub's ``adapters`` folder format, the files and the rules of it that every room needs: what
``adapters``' ``save_adapter(..., use_safetensors=True)`` writes, and how to tell such a folder from
ours and PEFT's. Its ``adapter_config.json`` shares our file name and nests its options under
``config``; the engine maps it onto ours and back (``compose/folder/adapters_format.py``), the client
and the server accept and serve it as it is. Standard library only.

>>> is_adapters_config({"config": {"reduction_factor": 16}, "version": "adapters.1.3.0"})
True
>>> is_adapters_config({"peft_type": "LORA", "r": 8})
False
"""

from __future__ import annotations

import re
from typing import Any

WEIGHTS_FILE = "adapter.safetensors"
PICKLE_WEIGHTS_FILE = "pytorch_adapter.bin"  # refused unopened, with the command that converts it
HEAD_CONFIG_FILE = "head_config.json"
HEAD_WEIGHTS_FILE = "model_head.safetensors"
FUSION_CONFIG_FILE = "adapter_fusion_config.json"
FUSION_WEIGHTS_FILE = "model_adapter_fusion.safetensors"
SETUP_FILE = "adapter_setup.json"
LIBRARY_NAMES = ("adapter-transformers", "adapters")  # the Hub's library_name for them
WRITTEN_VERSION = "adapters.1.3.0"  # the ``adapters`` release whose files we write and test against

# The one-line conversion for a pickle-only folder, run where ``adapters`` (and torch) are installed:
# it loads the pickle there, by the user's own choice, and writes the safetensors file we read.
CONVERT_COMMAND = ("python -c \"import torch, safetensors.torch as s; "
                   "s.save_file(torch.load('pytorch_adapter.bin', weights_only=True), 'adapter.safetensors')\"")


def is_adapters_config(config: dict[str, Any]) -> bool:
    """True for an ``adapter_config.json`` written by ``adapters`` (its options nest under ``config``),
    False for ours and PEFT's (flat, with ``peft_type``)."""
    return "peft_type" not in config and (isinstance(config.get("config"), dict)
                                          or str(config.get("version", "")).startswith("adapters."))


# ---------------------------------------------------------------------- what the registry checks
CONFIG_FILE = "adapter_config.json"
# each pickle ``adapters`` writes (``use_safetensors=False``, its default), and its safetensors form
PICKLE_FILES = {PICKLE_WEIGHTS_FILE: WEIGHTS_FILE, "pytorch_model_head.bin": HEAD_WEIGHTS_FILE,
                "pytorch_model_adapter_fusion.bin": FUSION_WEIGHTS_FILE}
SAFETENSORS_FILES = tuple(PICKLE_FILES.values())
JSON_FILES = (CONFIG_FILE, HEAD_CONFIG_FILE, FUSION_CONFIG_FILE, SETUP_FILE)
LIBRARY = LIBRARY_NAMES[0]  # the Hub's library_name (and tag) for these folders
# The top level of an adapter_config.json ``adapters`` writes (``build_full_config``; ``label2id`` with
# ``save_id2label``): key -> (the types it may hold, required). ``save_adapter(meta_dict=...)`` can add
# keys of the user's own; the registry refuses them (a typo there would go unseen), naming the key.
CONFIG_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "config": ((dict,), True), "name": ((str,), True), "model_type": ((str,), True),
    "model_class": ((str, type(None)), False), "model_name": ((str, type(None)), False),
    "hidden_size": ((int, type(None)), False), "version": ((str, type(None)), False),
    "label2id": ((dict, type(None)), False),
}
# ``config.architecture`` -> our method name (None: a bottleneck, ``BnConfig``); LoRA with
# ``composition_mode: "scale"`` is IA³. Other architectures (``mtl_lora``, ``union``, ``reft``) are
# stored under their own name, as a PEFT type we do not implement is.
METHODS = {None: "bottleneck", "lora": "lora", "prompt_tuning": "prompt_tuning", "prefix_tuning": "prefix_tuning"}
_NAME = "[A-Za-z0-9][A-Za-z0-9._-]*"
HUB_ID = re.compile(f"{_NAME}(?:/{_NAME})?")
ARCHITECTURE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
CAUSAL_CLASSES = ("ForCausalLM", "LMHeadModel")


def looks_like_adapters_config(config: dict[str, Any]) -> bool:
    """`is_adapters_config`, and also a config that means to be one but holds a wrong ``config``
    (``"config": []``): the checks below then name the key instead of reading it as PEFT's."""
    return is_adapters_config(config) or ("peft_type" not in config and "config" in config)


def config_problem(config: dict[str, Any], what: str = CONFIG_FILE) -> str | None:
    """What is wrong with an ``adapters`` adapter_config.json, one sentence naming the key; None if
    nothing: the outer keys and their types (`CONFIG_FIELDS`), then the options every reader relies on."""
    for key in config:
        if key not in CONFIG_FIELDS:
            return (f"{what}: unknown key {key!r} in an adapters config (it holds "
                    f"{', '.join(sorted(CONFIG_FIELDS))})")
    for key, (types, required) in CONFIG_FIELDS.items():
        if key not in config:
            if required:
                return f"{what}: an adapters config needs {key!r}"
            continue
        value = config[key]
        if not isinstance(value, types) or isinstance(value, bool):
            kinds = " or ".join("null" if t is type(None) else _KINDS[t] for t in types)
            return f"{what}: {key!r} must be {kinds}, got {_short(value)}"
    options = config["config"]
    if config.get("hidden_size") is not None and config["hidden_size"] <= 0:
        return f"{what}: 'hidden_size' must be a positive integer, got {config['hidden_size']}"
    arch = options.get("architecture")
    if arch is not None and not (isinstance(arch, str) and ARCHITECTURE.fullmatch(arch)):
        return f"{what}: 'config.architecture' must be an architecture name such as 'lora', got {_short(arch)}"
    for key in ("r", "prompt_length", "prefix_length"):
        value = options.get(key)
        if value is not None and (type(value) is not int or value <= 0):
            return f"{what}: 'config.{key}' must be a positive integer, got {_short(value)}"
    rf = options.get("reduction_factor")
    if rf is not None and not (isinstance(rf, dict) or (type(rf) in (int, float) and rf > 0)):
        return f"{what}: 'config.reduction_factor' must be a positive number or an object, got {_short(rf)}"
    return None


def method_of(config: dict[str, Any]) -> str | None:
    """Our method name for an adapters config (``bottleneck``, ``lora``, ``ia3``, ``prompt_tuning``,
    ``prefix_tuning``), another architecture's own name, or None for a config that names none."""
    options = config.get("config")
    if not isinstance(options, dict):
        return None
    arch = options.get("architecture")
    if arch == "lora" and options.get("composition_mode") == "scale":
        return "ia3"
    if arch in METHODS:
        return METHODS[arch]
    return arch if isinstance(arch, str) and ARCHITECTURE.fullmatch(arch) else None


def base_model_of(config: dict[str, Any]) -> str | None:
    """The base an adapters config names: its ``model_name`` when that is a Hub id (not a local path)."""
    name = config.get("model_name")
    if isinstance(name, str) and HUB_ID.fullmatch(name) and ".." not in name and len(name) <= 200:
        return name
    return None


def task_of(config: dict[str, Any]) -> str | None:
    """The Hub's pipeline tag the model class implies (``text-classification``, ``text-generation``)."""
    cls = config.get("model_class")
    if not isinstance(cls, str):
        return None
    if cls.endswith("ForSequenceClassification"):
        return "text-classification"
    return "text-generation" if cls.endswith(CAUSAL_CLASSES) else None


def convert_command(pickle_name: str) -> str:
    """`CONVERT_COMMAND` for one of `PICKLE_FILES` (the weights, the head or the fusion)."""
    return CONVERT_COMMAND.replace(PICKLE_WEIGHTS_FILE, pickle_name).replace(WEIGHTS_FILE, PICKLE_FILES[pickle_name])


def pickle_advice(path: str) -> str | None:
    """For a path naming one of ``adapters``' pickles, what to run instead of pushing it; else None.
    Short enough to reach a Hugging Face client whole (an error header holds 500 characters)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    if name not in PICKLE_FILES:
        return None
    return (f"{name} is adapters' pickle form of {PICKLE_FILES[name]}: convert it where you trust it, in its "
            f"folder: {convert_command(name)} and delete {name} (or save with use_safetensors=True)")


_KINDS = {dict: "an object", str: "a string", int: "an integer"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_adapters_folder(config: dict[str, Any] | None, paths: list[str] | tuple[str, ...] = ()) -> bool:
    """True for a folder ``adapters`` wrote: its ``adapter_config.json`` is one of its configs, or
    (a fusion's or a setup's folder, with no adapter config at its top) it holds their files."""
    if config and looks_like_adapters_config(config):
        return True
    return not config and any(p in (FUSION_CONFIG_FILE, SETUP_FILE) for p in paths)


def folder_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The search fields of an ``adapters`` folder from its ``adapter_config.json``: the method, the
    task its model class implies, the base (a Hub id) and the library's tag."""
    fields = {"method": method_of(config), "task": task_of(config), "base_model": base_model_of(config),
              "tags": [LIBRARY]}
    return {k: v for k, v in fields.items() if v is not None}
