"""The engine's loaders (`load_adapter`, `load_composition`) and its per-row forward: every catalogued
bad input raises the typed error with the exact message, and leaves the model exactly as it was
(adapters, compositions, active setting, every tensor), with nothing unpickled.

One model serves every case, so anything a refusal left attached would show in the next one too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

import adapterhub as ah
from adapterhub.errors import (
    AdapterNotFoundError,
    CompositionError,
    IncompatibleAdapterError,
    InvalidAdapterError,
)
from adapterhub.format import DTYPE_BYTES
from tests.bad_inputs.support import (
    HUGE_HEADER,
    NOT_JSON_HEADER,
    OVERLAPPING,
    PAST_THE_END,
    TRIPWIRE,
    UNKNOWN_DTYPE,
    UNUSABLE_DTYPE,
    edit_config,
    pickle_only,
    write_file,
    zip_bomb,
)
from tests.helpers.model_state import assert_model_unchanged, model_snapshot
from tests.helpers.tiny import batch, build, llama_config

WEIGHTS = "adapter_model.safetensors"
ZIP_BOMB = zip_bomb()


def _lora(model, name: str = "a", **kw) -> ah.AdapterModel:
    am = ah.AdapterModel(model) if not isinstance(model, ah.AdapterModel) else model
    am.add_adapter(name, ah.LoRAConfig(r=2, init_lora_weights=False, **kw))
    return am


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """The good folders every bad one starts from: an adapter for this model, one for a wider llama,
    one for GPT-2, and a recipe of two adapters the model does not have."""
    root = tmp_path_factory.mktemp("sources")
    out = {"good": _lora(build("llama-causal", seed=3)).save_adapter("a", root / "good")}
    wide = _lora(LlamaForCausalLM(llama_config(hidden_size=48)))
    out["wide"] = wide.save_adapter("a", root / "wide")
    (out["wide"] / "adapterhub.json").unlink()  # a plain PEFT folder: only the tensors can tell
    out["gpt2"] = _lora(build("gpt2")).save_adapter("a", root / "gpt2")
    donor = _lora(_lora(build("llama-causal", seed=4), "c"), "d")
    out["recipe"] = donor.save_composition(root / "recipe", active=ah.Stack("c", "d"))
    return out


@pytest.fixture(scope="module")
def model(sources) -> ah.AdapterModel:
    """Two LoRA adapters, a named composition, one active: a model with something to lose."""
    am = ah.AdapterModel(build("llama-causal"))
    am.load_adapter(sources["good"], name="a")
    am.load_adapter(sources["good"], name="b")
    am.add_composition("ab", ah.Stack("a", "b"))
    am.set_active("a")
    return am


# -- how a bad folder is made from a good one ----------------------------------------------
def _rename_targets(folder: Path) -> None:
    tensors = load_file(folder / WEIGHTS)
    save_file({k.replace("q_proj", "q_prj"): v for k, v in tensors.items()}, folder / WEIGHTS)
    edit_config(target_modules=["q_prj", "v_proj"])(folder)


def _composition(data: dict) -> Callable[[Path], object]:
    def edit(folder: Path) -> None:
        recipe = json.loads((folder / "composition.json").read_text())
        (folder / "composition.json").write_text(json.dumps({**recipe, **data}))
    return edit


@dataclass(frozen=True)
class EngineCase:
    """``source`` names a good folder, ``edit`` breaks a copy of it; ``call(model, folder)`` must raise
    ``error`` with exactly ``message`` (``{folder}`` is the broken copy)."""

    id: str
    call: Callable[[ah.AdapterModel, Path], object]
    error: type[Exception]
    message: str
    source: str = "good"
    edit: Callable[[Path], object] | None = None


def load(model: ah.AdapterModel, folder: Path):
    return model.load_adapter(folder, name="x")


def recipe(model: ah.AdapterModel, folder: Path):
    return model.load_composition(folder)


def rows(names: list) -> Callable[[ah.AdapterModel, Path], object]:
    ids, mask = batch(rows=3)
    return lambda model, folder: model(input_ids=ids, attention_mask=mask, adapter_names=names)


DTYPES = ", ".join(DTYPE_BYTES)


def bad_weights(id: str, data: bytes, detail: str) -> EngineCase:
    return EngineCase(id, load, InvalidAdapterError, f"{{folder}}/{WEIGHTS}: {detail}", edit=write_file(WEIGHTS, data))


CASES = [
    # -- adapters whose shapes or base model disagree ------------------------------------
    EngineCase("shapes disagree", load, IncompatibleAdapterError,
               "adapter 'x': model.layers.0.self_attn.q_proj.lora_A.weight has shape (2, 48) in the file, "
               "this model needs (2, 32)", source="wide"),
    EngineCase("fingerprint of another architecture", load, IncompatibleAdapterError,
               "adapter 'x' was trained for gpt2 (GPT2LMHeadModel hidden 32, 2 layers); "
               "this model is llama (LlamaForCausalLM hidden 32, 2 layers)", source="gpt2"),
    EngineCase("target modules that match nothing", load, IncompatibleAdapterError,
               "adapter 'x' has weights for 'model.layers.0.self_attn.q_prj' (and 1 more), "
               "which LlamaForCausalLM does not have", edit=_rename_targets),
    # -- adapter_config.json -------------------------------------------------------------
    EngineCase("config not json", load, InvalidAdapterError,
               "{folder}/adapter_config.json is not valid JSON: Expecting property name enclosed in double quotes: "
               "line 1 column 2 (char 1)", edit=write_file("adapter_config.json", b"{not json")),
    EngineCase("unknown peft_type", load, InvalidAdapterError,
               "unknown peft_type 'NOPE' in adapter_config.json; supported: BOTTLENECK, IA3, LORA, PREFIX_TUNING, "
               "PROMPT_TUNING", edit=edit_config(peft_type="NOPE")),
    EngineCase("r = 0", load, InvalidAdapterError,
               "invalid LoRAConfig: LoRAConfig.r must be a positive integer, got 0", edit=edit_config(r=0)),
    EngineCase("negative r", load, InvalidAdapterError,
               "invalid LoRAConfig: LoRAConfig.r must be a positive integer, got -4", edit=edit_config(r=-4)),
    # -- weights files -------------------------------------------------------------------
    bad_weights("header length 2^62", HUGE_HEADER,
                f"header length {2**62} exceeds the limit or the file size ({len(HUGE_HEADER)} bytes)"),
    bad_weights("header not json", NOT_JSON_HEADER, "header is not valid JSON: Expecting property name "
                "enclosed in double quotes: line 1 column 2 (char 1)"),
    bad_weights("offsets past the end", PAST_THE_END, "tensor 'w' offsets [0, 8] lie outside the data (4 bytes)"),
    bad_weights("overlapping tensors", OVERLAPPING, "tensors 'a' and 'b' overlap"),
    bad_weights("dtype the engine cannot use", UNUSABLE_DTYPE, "tensor 'w' has dtype 'F8_E4M3', which adapterhub cannot load "
                f"(one of {DTYPES})"),
    bad_weights("unknown dtype", UNKNOWN_DTYPE, f"tensor 'w' has dtype 'Q4', which adapterhub cannot load (one of {DTYPES})"),
    bad_weights("0-byte weights", b"", "0 bytes is too short for a safetensors file"),
    bad_weights("zip bomb as weights", ZIP_BOMB, f"header length {int.from_bytes(ZIP_BOMB[:8], 'little')} "
                f"exceeds the limit or the file size ({len(ZIP_BOMB)} bytes)"),
    *[EngineCase(f"pickle {s}", load, InvalidAdapterError,
                 f"{{folder}}: only pickle weights (adapter_model{s}); adapterhub never unpickles - convert to safetensors",
                 edit=pickle_only(s)) for s in (".bin", ".pt", ".pkl")],
    # -- composition recipes -------------------------------------------------------------
    EngineCase("recipe names a missing adapter", recipe, InvalidAdapterError,
               "{folder}/composition.json: the composition names 'ghost', which the recipe lacks", source="recipe",
               edit=_composition({"composition": ah.Stack("c", "ghost").to_dict()})),
    EngineCase("recipe nests illegally", recipe, CompositionError,
               "Average cannot contain a Fuse block (Average may contain: Stack)", source="recipe",
               edit=_composition({"composition": ah.Average("c", ah.Fuse("c", "d")).to_dict()})),
    EngineCase("recipe with an unknown block", recipe, CompositionError,
               "unknown composition block {{'type': 'Mix', 'children': ['c', 'd']}}; known: Stack, Fuse, Average, Route",
               source="recipe", edit=_composition({"composition": {"type": "Mix", "children": ["c", "d"]}})),
    # -- per-row forward -----------------------------------------------------------------
    EngineCase("adapter_names longer than the batch", rows(["a", "b", None, "a"]), CompositionError,
               "adapter_names has 4 entries but the batch has 3 rows"),
    EngineCase("adapter_names shorter than the batch", rows(["a", "b"]), CompositionError,
               "adapter_names has 2 entries but the batch has 3 rows"),
    EngineCase("adapter_names names a missing adapter", rows(["a", "ghost", None]), AdapterNotFoundError,
               "adapter_names[1]: no adapter or composition named 'ghost' on this model (loaded: a, ab, b)"),
    EngineCase("adapter_names is not a list", rows("a"), CompositionError,
               "adapter_names must be a list with one entry per row, got str"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_engine_refuses(model, sources, tmp_path, case):
    folder = tmp_path / case.source
    shutil.copytree(sources[case.source], folder)
    if case.edit:
        case.edit(folder)
    snap = model_snapshot(model)
    with torch.no_grad(), pytest.raises(case.error) as info:
        case.call(model, folder)
    assert str(info.value) == case.message.format(folder=folder)
    assert_model_unchanged(model, snap)
    assert model.ah.state.row_plan is None  # a refused per-row call leaves no plan installed
    assert not TRIPWIRE.exists(), "a pickle was unpickled"
