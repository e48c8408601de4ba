"""A base model's manifest: its sizes and every module's weight shapes, read without torch.

The registry checks each adapter pushed for a registered base against this manifest
(`adapterhub.base_compat`), so it must be cheap to build and to store: it comes from the folder's
``config.json`` and the JSON headers of its safetensors files, never from the tensors themselves,
and the registry stores it as plain JSON. Standard library only, so the client (``adapterhub base
register``) and the server build and read it without a model stack.

The manifest::

    {"architecture": "LlamaForCausalLM",          # config["architectures"][0], or None
     "model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30,
     "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
     "content_sha256": "...",                     # see content_sha256
     "modules": {"model.layers.0.self_attn.q_proj": {"weight": [576, 576]}, ...}}

Sizes come from the text config where the config nests one (``text_config``: a vision-language
model's adapters attach to its language model). ``num_key_value_heads`` is the number of heads that
keep keys and values (``num_attention_heads`` where the model has no grouped-query attention) and
``head_dim`` their width: prefix tuning's tensors are sized by them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from adapterhub.format import FormatError, parse_json, read_json_object, safetensors_header_length

MODEL_CONFIG = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# where configs nest the language model's sizes, and how architectures spell each size
TEXT_CONFIG_KEYS = ("text_config",)
SIZE_NAMES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
    "num_key_value_heads": ("num_key_value_heads",),
    "head_dim": ("head_dim",),
    "vocab_size": ("vocab_size",),
}
# a causal LM that ties its output head to its input embedding saves the embedding alone
CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_CHUNK = 1 << 20


def base_manifest(folder: Path, content_hash: bool = True) -> dict[str, Any]:
    """The manifest of the Hugging Face model saved in ``folder`` (``config.json`` and
    ``model.safetensors`` or the shards ``model.safetensors.index.json`` lists); a FormatError
    naming the file when one is missing or unreadable. ``content_hash=False`` leaves out the
    revision (``content_sha256`` None): reading every weight byte is the only slow part, and
    checking shapes does not need it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError(f"{folder} is not a folder")
    config = read_json_object(folder / MODEL_CONFIG)
    files = weight_files(folder)
    modules: dict[str, dict[str, list[int]]] = {}
    for path in files:
        for key, shape in tensor_shapes(path).items():
            module, _, param = key.rpartition(".")
            modules.setdefault(module, {})[param] = shape
    sizes = model_sizes(config)
    architectures = config.get("architectures")
    architecture = architectures[0] if isinstance(architectures, list) and architectures else None
    _tied_head(modules, config, architecture, sizes)
    return {
        "architecture": architecture if isinstance(architecture, str) else None,
        "model_type": config.get("model_type"),
        **sizes,
        "content_sha256": content_sha256([folder / MODEL_CONFIG, *files]) if content_hash else None,
        "modules": dict(sorted(modules.items())),
    }


def model_sizes(config: dict[str, Any]) -> dict[str, int | None]:
    """The sizes adapters are shaped by, from the text config where there is one."""
    text = _text_config(config)
    sizes: dict[str, int | None] = {}
    for field, names in SIZE_NAMES.items():
        value = next((c[n] for c in (text, config) for n in names if _is_size(c.get(n))), None)
        sizes[field] = value
    if sizes["num_key_value_heads"] is None:
        sizes["num_key_value_heads"] = sizes["num_attention_heads"]
    if sizes["head_dim"] is None and sizes["hidden_size"] and sizes["num_attention_heads"]:
        sizes["head_dim"] = sizes["hidden_size"] // sizes["num_attention_heads"]
    return sizes


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding the model's weights: the index's shards, or the single file."""
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise FormatError(f"{index}: needs a 'weight_map' of tensor names to shard files")
        names = sorted({str(v) for v in weight_map.values()})
        for name in names:
            if Path(name).name != name or name in (".", ".."):
                raise FormatError(f"{index}: shard {name!r} is not a file name in {folder}")
            if not (folder / name).is_file():
                raise FormatError(f"{index}: lists shard {name}, which {folder} does not have")
        return [folder / name for name in names]
    single = folder / SINGLE_FILE
    if single.is_file():
        return [single]
    pickled = sorted(p.name for p in folder.glob("*.bin"))
    hint = f" (it holds {', '.join(pickled)}: save the model with safe_serialization)" if pickled else ""
    raise FormatError(f"{folder}: missing {SINGLE_FILE} or {INDEX_FILE}{hint}")


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Every tensor's shape from a safetensors file's header; no tensor is read. Dtypes are not
    checked (a base may be stored in formats an adapter may not), shapes are."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = safetensors_header_length(f.read(8), size, str(path))
        header = parse_json(f.read(n), f"{path}: header")
    if not isinstance(header, dict):
        raise FormatError(f"{path}: header must be a JSON object")
    shapes: dict[str, list[int]] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise FormatError(f"{path}: tensor {key!r} has a bad shape {shape!r}")
        shapes[key] = shape
    return shapes


def content_sha256(files: list[Path]) -> str:
    """One digest for the model's content: sha256 over ``name NUL sha256-of-file LF`` for each file,
    sorted by name, so that the same weights and config give the same revision wherever they lie."""
    digests = sorted((p.name, file_sha256(p)) for p in files)
    outer = hashlib.sha256()
    for name, digest in digests:
        outer.update(f"{name}\0{digest}\n".encode())
    return outer.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    for key in TEXT_CONFIG_KEYS:
        nested = config.get(key)
        if isinstance(nested, dict):
            return nested
    return config


def _is_size(value: Any) -> bool:
    return type(value) is int and value > 0


def _tied_head(modules: dict[str, dict[str, list[int]]], config: dict[str, Any], architecture: Any,
               sizes: dict[str, int | None]) -> None:
    """A tied output head is a module of the model though not of the file: list it as ``lm_head``
    with the input embedding's shape, so that an adapter on it (LoRA on ``lm_head``) is judged."""
    if "lm_head" in modules or not isinstance(architecture, str) or not architecture.endswith(CAUSAL_LM_SUFFIXES):
        return
    if _text_config(config).get("tie_word_embeddings", config.get("tie_word_embeddings", True)) is False:
        return
    want = [sizes["vocab_size"], sizes["hidden_size"]]
    for path, params in modules.items():
        last = path.rsplit(".", 1)[-1]
        if params.get("weight") == want and ("emb" in last or last == "wte"):
            modules["lm_head"] = {"weight": list(want)}
            return
