"""AdapterHub's `adapters` folders that cannot load are refused with the exact reason, and leave the
model (and, saving, the folder) as it was. (That the ones that can load give `adapters`' own logits
is `tests/interop`, with `adapters` 1.3 as the referee.)"""

from __future__ import annotations

import json
import re

import pytest

import adapterhub as ah
from adapterhub import adapters_folder as af
from adapterhub.errors import IncompatibleAdapterError, InvalidAdapterError
from tests.helpers.model_state import assert_model_unchanged, model_snapshot
from tests.helpers.snapshots import folder_state
from tests.helpers.tiny import build

PFEIFFER = {"reduction_factor": 4, "task_type": "SEQ_CLS"}


@pytest.fixture
def written(tmp_path):
    """A Pfeiffer adapter on the tiny BERT, written as `adapters` writes it."""
    model = ah.AdapterModel(build("bert-seqcls"))
    model.add_adapter("x", ah.BottleneckConfig.preset("pfeiffer", **PFEIFFER))
    return model.save_adapter("x", tmp_path / "x", format="adapters")


def edit_config(folder, change) -> None:
    path = folder / "adapter_config.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def refused(folder, error, message: str) -> None:
    model = ah.AdapterModel(build("bert-seqcls"))
    snap = model_snapshot(model)
    with pytest.raises(error, match=message):
        model.load_adapter(folder)
    assert_model_unchanged(model, snap)


def test_the_written_folder_is_what_adapters_writes(written):
    assert sorted(p.name for p in written.iterdir()) == sorted(
        ["adapter_config.json", af.WEIGHTS_FILE, af.HEAD_CONFIG_FILE, af.HEAD_WEIGHTS_FILE])
    raw = json.loads((written / "adapter_config.json").read_text())
    assert af.is_adapters_config(raw) and raw["name"] == "x" and raw["model_type"] == "bert"
    assert raw["config"]["original_ln_before"] is True and raw["config"]["reduction_factor"] == 4
    head = json.loads((written / af.HEAD_CONFIG_FILE).read_text())
    assert head["config"] is None and head["num_labels"] == 3


def test_a_pickle_only_folder_is_refused_unopened_with_the_command_that_converts_it(written):
    (written / af.WEIGHTS_FILE).unlink()
    (written / af.PICKLE_WEIGHTS_FILE).write_bytes(b"\x80\x04 never unpickled")
    refused(written, InvalidAdapterError, re.escape(af.PICKLE_WEIGHTS_FILE) + r".*never unpickles.*"
            + re.escape(af.CONVERT_COMMAND))


def test_weights_that_do_not_fit_the_base_are_refused(written):
    edit_config(written, lambda raw: raw["config"].update(reduction_factor=2))  # the file's width is 32 / 4
    refused(written, IncompatibleAdapterError, r"output\.dense\.adapter_down\.(weight|bias) has shape \(8(, 32)?,?\) "
                                               r"in the file, this model needs \(16(, 32)?,?\)")


def test_another_architecture_is_refused(written):
    model = ah.AdapterModel(build("llama-causal"))
    snap = model_snapshot(model)
    with pytest.raises(IncompatibleAdapterError, match="model_type 'bert', this model is 'llama'"):
        model.load_adapter(written)
    assert_model_unchanged(model, snap)


@pytest.mark.parametrize(("change", "message"), [
    (lambda raw: raw["config"].update(frobnicate=1), "unknown bottleneck option 'frobnicate'"),
    (lambda raw: raw["config"].update(use_gating=True), r"gated adapters \(use_gating=True\)"),
    (lambda raw: raw["config"].update(phm_layer=True), "Compacter's PHM layers"),
    (lambda raw: raw["config"].update(scaling="learned"), "a learned scaling is not supported"),
    (lambda raw: raw["config"].update(reduction_factor={"0": 2, "default": 4}), "per-layer reduction factors"),
    (lambda raw: raw["config"].update(architecture="prompt_tuning"), "to the embedding layer.s output"),
    (lambda raw: raw.update(config={"architecture": "lora", "r": 4, "frobnicate": 1}),
     "unknown LoRA option 'frobnicate'"),
    (lambda raw: raw.pop("name"), "no adapter 'name'"),
])
def test_options_that_do_not_map_are_refused_naming_the_option(written, change, message):
    edit_config(written, change)
    refused(written, InvalidAdapterError, message)


def test_a_flex_head_is_refused_with_what_to_do(written):
    path = written / af.HEAD_CONFIG_FILE
    head = json.loads(path.read_text())
    path.write_text(json.dumps({**head, "config": {"head_type": "classification", "layers": 2}}))
    refused(written, InvalidAdapterError, r"flex heads \(classification\) are not mapped.*remove head_config\.json")


def test_a_method_adapters_has_differently_is_not_written_and_nothing_is_left(tmp_path, written):
    model = ah.AdapterModel(build("bert-seqcls"))
    model.add_adapter("p", ah.PromptTuningConfig(num_virtual_tokens=4, task_type="SEQ_CLS"))
    before = folder_state(written)
    with pytest.raises(InvalidAdapterError, match="prompt and prefix tuning are other networks"):
        model.save_adapter("p", written, format="adapters")
    assert folder_state(written) == before
    with pytest.raises(InvalidAdapterError, match="prompt and prefix tuning are other networks"):
        model.save_adapter("p", tmp_path / "new", format="adapters")
    assert not (tmp_path / "new").exists()


def test_a_hot_swap_to_other_bottleneck_options_is_refused(tmp_path, written):
    model = ah.AdapterModel(build("bert-seqcls"))
    model.load_adapter(written, name="x")
    other = ah.AdapterModel(build("bert-seqcls"))
    other.add_adapter("x", ah.BottleneckConfig.preset("pfeiffer", original_ln_before=False, **PFEIFFER))
    folder = other.save_adapter("x", tmp_path / "raw")
    snap = model_snapshot(model)
    with pytest.raises(IncompatibleAdapterError, match="sets original_ln_before=False"):
        model.load_adapter(folder, name="x", replace=True)
    assert_model_unchanged(model, snap)
