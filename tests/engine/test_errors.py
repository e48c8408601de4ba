"""Bad input: each error is specific, names both sides, and leaves the model as it was."""

from __future__ import annotations

import json
import struct

import pytest
import torch

import adapterhub as ah
from tests.helpers.model_state import assert_model_unchanged as _unchanged
from tests.helpers.model_state import model_snapshot as _snapshot
from tests.helpers.tiny import batch, build, llama_config


def _saved(tmp_path, arch="llama-causal", **kw):
    model = ah.AdapterModel(build(arch, **kw))
    model.add_adapter("a", ah.LoRAConfig(r=2, init_lora_weights=False))
    return model.save_adapter("a", tmp_path / "a")


def test_adapter_for_another_hidden_size_names_both(tmp_path):
    folder = _saved(tmp_path)
    from transformers import LlamaForCausalLM

    other = ah.AdapterModel(LlamaForCausalLM(llama_config(hidden_size=48, num_attention_heads=4, num_key_value_heads=2)))
    snap = _snapshot(other)
    with pytest.raises(ah.IncompatibleAdapterError, match=r"LlamaForCausalLM hidden 32.*this model has LlamaForCausalLM hidden 48"):
        other.load_adapter(folder)
    _unchanged(other, snap)


def test_adapter_for_another_architecture_is_refused(tmp_path):
    folder = _saved(tmp_path)
    bert = ah.AdapterModel(build("bert-seqcls"))
    with pytest.raises(ah.IncompatibleAdapterError, match="trained for llama.*this model is bert"):
        bert.load_adapter(folder)


def test_peft_folder_with_wrong_shapes_names_module_and_shapes(tmp_path):
    folder = _saved(tmp_path)
    (folder / "adapterhub.json").unlink()  # a plain PEFT folder: only the tensors can tell
    from transformers import LlamaForCausalLM

    other = ah.AdapterModel(LlamaForCausalLM(llama_config(hidden_size=48, num_attention_heads=4, num_key_value_heads=2)))
    snap = _snapshot(other)
    with pytest.raises(ah.IncompatibleAdapterError, match=r"q_proj.lora_A.weight has shape \(2, 32\) in the file, this model needs \(2, 48\)"):
        other.load_adapter(folder)
    _unchanged(other, snap)


def test_target_that_matches_nothing_lists_closest_names():
    model = ah.AdapterModel(build("llama-causal"))
    snap = _snapshot(model)
    with pytest.raises(ah.TargetModuleNotFoundError, match=r"q_prj.*match nothing.*closest names: .*q_proj"):
        model.add_adapter("a", ah.LoRAConfig(target_modules=["q_prj", "v_proj"]))
    _unchanged(model, snap)


def test_truncated_safetensors_is_refused(tmp_path):
    folder = _saved(tmp_path)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    model = ah.AdapterModel(build("llama-causal"))
    snap = _snapshot(model)
    with pytest.raises(ah.InvalidAdapterError, match="offsets .* lie outside the data"):
        model.load_adapter(folder)
    _unchanged(model, snap)


@pytest.mark.parametrize(
    "payload, message",
    [
        (struct.pack("<Q", 2**62) + b"{}", "header length 4611686018427387904 exceeds the limit or the file size"),
        (struct.pack("<Q", 4) + b"nope", "header is not valid JSON"),
        (b"\x01\x02", "2 bytes is too short for a safetensors file"),
    ],
)
def test_malformed_safetensors_header(tmp_path, payload, message):
    folder = _saved(tmp_path)
    (folder / "adapter_model.safetensors").write_bytes(payload)
    model = ah.AdapterModel(build("llama-causal"))
    with pytest.raises(ah.InvalidAdapterError, match=message):
        model.load_adapter(folder)
    assert model.adapters == {}


def test_pickle_weights_are_refused_without_unpickling(tmp_path):
    folder = _saved(tmp_path)
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04 this would run code if unpickled")
    model = ah.AdapterModel(build("llama-causal"))
    with pytest.raises(ah.InvalidAdapterError, match="never unpickles"):
        model.load_adapter(folder)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"peft_type": "LOKR"}, "unknown peft_type 'LOKR'"),
        ({"r": 0}, "r must be a positive integer, got 0"),
        ({"r": -4}, "r must be a positive integer, got -4"),
    ],
)
def test_bad_config_is_refused(tmp_path, edit, message):
    folder = _saved(tmp_path)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg.update(edit)
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    model = ah.AdapterModel(build("llama-causal"))
    with pytest.raises(ah.InvalidAdapterError, match=message):
        model.load_adapter(folder)
    assert model.adapters == {}


def test_missing_config_and_invalid_json(tmp_path):
    folder = _saved(tmp_path)
    (folder / "adapter_config.json").write_text("{not json")
    model = ah.AdapterModel(build("llama-causal"))
    with pytest.raises(ah.InvalidAdapterError, match="adapter_config.json is not valid JSON"):
        model.load_adapter(folder)
    (folder / "adapter_config.json").unlink()
    with pytest.raises(ah.InvalidAdapterError, match="missing adapter_config.json"):
        model.load_adapter(folder)


def test_missing_tensor_leaves_nothing_attached(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _saved(tmp_path)
    tensors = load_file(folder / "adapter_model.safetensors")
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, folder / "adapter_model.safetensors")
    model = ah.AdapterModel(build("llama-causal"))
    ids, mask = batch()
    before = model(input_ids=ids).logits
    with pytest.raises(ah.InvalidAdapterError, match="lacks"):
        model.load_adapter(folder)
    assert model.adapters == {}
    assert not any(".ah_adapters." in k for k in model.state_dict())
    torch.testing.assert_close(model(input_ids=ids).logits, before)


def test_unknown_source_and_duplicate_names(tmp_path):
    model = ah.AdapterModel(build("llama-causal"))
    with pytest.raises(ah.AdapterNotFoundError, match="no such adapter folder"):
        model.load_adapter(tmp_path / "nope")
    folder = _saved(tmp_path)
    model.load_adapter(folder, name="x")
    with pytest.raises(ah.InvalidAdapterError, match="already loaded"):
        model.load_adapter(folder, name="x")
    with pytest.raises(ah.AdapterNotFoundError, match="no adapter named 'y'.*loaded: x"):
        model.set_active("y")


def test_bottleneck_cannot_be_saved_for_peft_or_merged(tmp_path):
    model = ah.AdapterModel(build("bert-seqcls"))
    model.add_adapter("b", ah.BottleneckConfig())
    with pytest.raises(ah.InvalidAdapterError, match="PEFT cannot load"):
        model.save_adapter("b", tmp_path / "b", format="peft")
    with pytest.raises(ah.InvalidAdapterError, match="cannot be merged"):
        model.merge("b")
    assert not (tmp_path / "b").exists()
