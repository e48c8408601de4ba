"""PEFT as an independent referee: folders cross both ways with identical logits."""

from __future__ import annotations

import peft
import pytest
import torch

import adapterhub as ah
from tests.helpers.configs import method_config
from tests.helpers.tiny import batch, build, is_causal

ARCHS = ("llama-causal", "llama-seqcls", "gpt2", "bert-seqcls")
CASES = ("lora", "ia3", "prompt", "prefix")
VIRTUAL = 4


def peft_config(case: str, arch: str):
    task = peft.TaskType.SEQ_CLS if arch.endswith("seqcls") else peft.TaskType.CAUSAL_LM
    if case == "lora":
        return peft.LoraConfig(r=4, lora_alpha=8, task_type=task, init_lora_weights=False)
    if case == "ia3":
        return peft.IA3Config(task_type=task, init_ia3_weights=False)
    if case == "prompt":
        return peft.PromptTuningConfig(num_virtual_tokens=VIRTUAL, task_type=task)
    return peft.PrefixTuningConfig(num_virtual_tokens=VIRTUAL, task_type=task)


def _perturb(params) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * 0.5)


def _logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def _peft_logits(model, ids, mask, case, arch):
    out = _logits(model, ids, mask)
    if case == "prompt" and is_causal(arch):
        out = out[:, VIRTUAL:]  # PEFT returns the virtual positions too; ours are trimmed
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.slow
def test_our_peft_folder_loads_in_peft(case, arch, tmp_path):
    ours = ah.AdapterModel(build(arch))
    ours.add_adapter("a", method_config(case, arch), set_active=True)
    _perturb(ours.adapter_parameters("a"))
    ids, mask = batch()
    expected = _logits(ours, ids, mask)
    ours.save_adapter("a", tmp_path / "a", format="peft")
    assert not (tmp_path / "a" / "adapterhub.json").exists()
    theirs = peft.PeftModel.from_pretrained(build(arch), tmp_path / "a").eval()
    torch.testing.assert_close(_peft_logits(theirs, ids, mask, case, arch), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("case", CASES)
def test_peft_folder_loads_in_ours(case, arch, tmp_path):
    theirs = peft.get_peft_model(build(arch), peft_config(case, arch))
    _perturb([p for p in theirs.parameters() if p.requires_grad])
    theirs.eval()
    ids, mask = batch()
    expected = _peft_logits(theirs, ids, mask, case, arch)
    theirs.save_pretrained(tmp_path / "p")
    ours = ah.AdapterModel(build(arch))
    name = ours.load_adapter(tmp_path / "p", name="p", set_active=True)
    assert name == "p"
    torch.testing.assert_close(_logits(ours, ids, mask), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama-causal", "gpt2"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.slow
def test_generate_matches_peft(case, arch, tmp_path):
    theirs = peft.get_peft_model(build(arch), peft_config(case, arch))
    _perturb([p for p in theirs.parameters() if p.requires_grad])
    theirs.eval()
    theirs.save_pretrained(tmp_path / "p")
    ids, mask = batch(rows=2, length=6)
    with torch.no_grad():
        expected = theirs.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    ours = ah.AdapterModel(build(arch))
    ours.load_adapter(tmp_path / "p", set_active=True)
    with torch.no_grad():
        got = ours.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(got[:, -5:], expected[:, -5:])
    assert torch.equal(got[:, :6], ids)
