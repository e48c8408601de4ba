"""The shared vocabulary: one home for method and task names, and every room agreeing with it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adapterhub import vocab


def test_vocab_imports_no_third_party_package():
    code = ("import sys, adapterhub.vocab; "
            "bad = sorted(m for m in ('torch', 'transformers', 'fastapi', 'numpy') if m in sys.modules); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("spelling", ["lm", "CAUSAL_LM", "causal_lm", "text-generation"])
def test_every_spelling_of_a_task_names_the_same_task(spelling):
    assert vocab.task_named(spelling) is vocab.LM


def test_an_unknown_task_is_none_and_a_task_is_itself():
    assert vocab.task_named("summarisation") is None
    assert vocab.task_named(vocab.CLASSIFICATION) is vocab.CLASSIFICATION


def test_method_named_takes_ours_or_peft_spelling_and_refuses_others():
    assert vocab.method_named("LORA") is vocab.METHODS["lora"]
    assert vocab.method_named("BOTTLENECK").name == "bottleneck"
    with pytest.raises(ValueError, match="unknown adapter method 'dora'"):
        vocab.method_named("dora")


def test_the_engine_implements_exactly_the_vocabulary():
    from adapterhub.compose.tuners import TUNERS

    assert set(TUNERS) == set(vocab.METHODS)
    for name, tuner in TUNERS.items():
        info = vocab.METHODS[name]
        assert tuner.info is info
        assert tuner.config_cls.method == name
        assert tuner.config_cls().to_dict()["peft_type"] == info.folder_peft_type


@pytest.mark.parametrize("name", list(vocab.METHODS))
def test_each_tuner_module_meets_its_kind_contract(name):
    from adapterhub.compose.tuners import TUNERS
    from adapterhub.compose.tuners.contract import SiteTuner, VirtualTokenTuner

    contract = SiteTuner if vocab.METHODS[name].at_sites else VirtualTokenTuner
    wanted = {n for n in vars(contract) if not n.startswith("_")}
    missing = sorted(n for n in wanted if not callable(getattr(TUNERS[name].tuner, n, None)))
    assert not missing, f"tuners/{name}/model.py lacks {missing}"


def test_composition_rules_read_the_method_table():
    from adapterhub.compose.composition.blocks import ALL_METHODS, OUTPUT_METHODS

    assert ALL_METHODS == set(vocab.METHODS)
    assert OUTPUT_METHODS == {"lora", "bottleneck"}
