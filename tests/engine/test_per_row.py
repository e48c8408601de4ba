"""Per-row batches: every row runs its own adapter or composition, equal to running that row alone."""

from __future__ import annotations

import pytest
import torch

import adapterhub as ah
from adapterhub.compose.tuners.lora.layer import LoRALayer
from tests.helpers.tiny import batch, build


def _model(arch: str):
    """Two LoRAs of different ranks and targets, IA³, a bottleneck, and a registered composition."""
    model = ah.AdapterModel(build(arch))
    task = {"task_type": "SEQ_CLS"} if arch.endswith("seqcls") else {}
    model.add_adapter("l4", ah.LoRAConfig(r=4, alpha=8, init_lora_weights=False, **task))
    model.add_adapter("l2", ah.LoRAConfig(r=2, alpha=2, init_lora_weights=False, use_rslora=True, **task))
    model.add_adapter("ia3", ah.IA3Config(init_ia3_weights=False, **task))
    model.add_adapter("bn", ah.BottleneckConfig(init_weights=False, **task))
    model.add_composition("recipe", ah.Stack("l2", "bn"))
    model.config.pad_token_id = 0
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # per-adapter classification heads that really differ
        for name, p in model.named_parameters():
            if ".ah_heads." in name:
                p.add_(torch.randn(p.shape, generator=g))
    return model


def _alone(model, name, ids, mask):
    model.set_active(name)
    try:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).logits
    finally:
        model.set_active(None)


ROWS = ["l4", None, "l2", "ia3", "bn", "recipe", "l4"]


@pytest.mark.parametrize("arch", ["llama-causal", "gpt2", "bert-seqcls", "llama-seqcls"])
def test_per_row_forward_equals_each_row_alone(arch):
    model = _model(arch)
    ids, mask = batch(rows=len(ROWS))
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask, adapter_names=ROWS).logits
    for i, name in enumerate(ROWS):
        expected = _alone(model, name, ids[i : i + 1], mask[i : i + 1])
        torch.testing.assert_close(got[i : i + 1], expected, atol=1e-5, rtol=0, msg=f"row {i} ({name})")
    assert model.ah.state.row_plan is None


def test_per_row_rows_differ_from_each_other():
    model = _model("llama-causal")
    ids, _ = batch(rows=1)
    ids = ids.repeat(3, 1)
    with torch.no_grad():
        out = model(input_ids=ids, adapter_names=["l4", "l2", None]).logits
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])


@pytest.mark.parametrize("arch", ["llama-causal", "gpt2"])
def test_per_row_generate_equals_each_row_alone(arch):
    model = _model(arch)
    ids, mask = batch(rows=5, length=6)
    names = ["l4", "bn", None, "recipe", "l2"]
    with torch.no_grad():
        got = model.generate(input_ids=ids, attention_mask=mask, adapter_names=names, max_new_tokens=5, do_sample=False)
        for i, name in enumerate(names):
            model.set_active(name)
            alone = model.generate(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1], max_new_tokens=5,
                                   do_sample=False)
            assert torch.equal(got[i : i + 1], alone), f"row {i} ({name})"
    assert model.ah.state.row_plan is None


def test_per_row_generate_with_beams_repeats_each_rows_adapter():
    model = _model("llama-causal")
    ids, mask = batch(rows=3, length=5)
    names = ["l4", None, "ia3"]
    kw = dict(max_new_tokens=4, do_sample=False, num_beams=2)
    with torch.no_grad():
        got = model.generate(input_ids=ids, attention_mask=mask, adapter_names=names, **kw)
        for i, name in enumerate(names):
            model.set_active(name)
            assert torch.equal(got[i : i + 1], model.generate(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1], **kw))


def test_per_row_lora_runs_vectorised_not_per_adapter(monkeypatch):
    """LoRA rows never call an adapter's own forward: one gather + two batched matmuls per site."""
    model = _model("llama-causal")
    ids, mask = batch(rows=4)
    names = ["l4", "l2", None, "l4"]
    expected = [_alone(model, n, ids[i : i + 1], mask[i : i + 1]) for i, n in enumerate(names)]

    def refuse(*args, **kwargs):
        raise AssertionError("per-row LoRA must not run adapters one by one")

    monkeypatch.setattr(LoRALayer, "on_output", refuse)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask, adapter_names=names).logits
    torch.testing.assert_close(got, torch.cat(expected), atol=1e-5, rtol=0)
    bank = model.get_submodule("model.layers.0.self_attn.q_proj")._ah_bank
    assert bank.names == ("l4", "l2")
    assert tuple(bank.A_t.shape) == (3, 32, 4) and tuple(bank.B_t.shape) == (3, 4, 32)  # mixed ranks padded to 4
    assert torch.count_nonzero(bank.A_t[0]) == 0 and torch.count_nonzero(bank.A_t[2, :, 2:]) == 0


def test_per_row_bank_follows_weight_changes():
    model = _model("llama-causal")
    ids, mask = batch(rows=2)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, adapter_names=["l4", "l2"])
        for p in model.adapter_parameters("l4"):
            p.mul_(1.5)
        got = model(input_ids=ids, attention_mask=mask, adapter_names=["l4", "l2"]).logits
    torch.testing.assert_close(got[:1], _alone(model, "l4", ids[:1], mask[:1]), atol=1e-5, rtol=0)


def test_per_row_gradients_reach_lora_weights():
    model = _model("llama-causal")
    for p in model.adapter_parameters("l4"):
        p.requires_grad_(True)
    ids, mask = batch(rows=2)
    loss = model(input_ids=ids, attention_mask=mask, labels=ids, adapter_names=["l4", None]).loss
    loss.backward()
    grads = [p.grad for p in model.adapter_parameters("l4")]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_adapter_names_of_wrong_length_names_both_lengths():
    model = _model("llama-causal")
    ids, mask = batch(rows=3)
    with pytest.raises(ah.CompositionError, match="^adapter_names has 2 entries but the batch has 3 rows$"):
        model(input_ids=ids, attention_mask=mask, adapter_names=["l4", None])
    with pytest.raises(ah.CompositionError, match="^adapter_names has 4 entries but the batch has 3 rows$"):
        model.generate(input_ids=ids, attention_mask=mask, adapter_names=["l4"] * 4, max_new_tokens=2)
    assert model.ah.state.row_plan is None


def test_adapter_names_with_unknown_name_is_not_found():
    model = _model("llama-causal")
    ids, mask = batch(rows=2)
    with pytest.raises(
        ah.AdapterNotFoundError,
        match=r"^adapter_names\[1\]: no adapter or composition named 'nope' on this model "
        r"\(loaded: bn, ia3, l2, l4, recipe\)$",
    ):
        model(input_ids=ids, attention_mask=mask, adapter_names=["l4", "nope"])


def test_adapter_names_refuses_merged_adapters():
    model = _model("llama-causal")
    ids, mask = batch(rows=2)
    model.merge("l4")
    with pytest.raises(ah.CompositionError, match=r"^adapter_names\[1\]: adapter 'l4' is merged into the base; unmerge\(\) first$"):
        model(input_ids=ids, attention_mask=mask, adapter_names=[None, "l4"])


def test_row_plan_is_reset_when_the_forward_fails():
    model = _model("llama-causal")
    bad = torch.full((2, 4), 10_000)  # token ids past the vocabulary: the embedding raises
    with pytest.raises(IndexError):
        model(input_ids=bad, adapter_names=["l4", None])
    assert model.ah.state.row_plan is None
    ids, mask = batch(rows=1)
    model.set_active("l4")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, _alone(model, "l4", ids, mask))


def test_per_row_accepts_blocks_and_composition_names():
    model = _model("llama-causal")
    model.add_fusion(ah.Fuse("l4", "bn"))
    model.add_composition("fused", ah.Fuse("l4", "bn", temperature=2.0))
    ids, mask = batch(rows=3)
    names = ["fused", ah.Average("l4", "l2", weights=[0.3, 0.7]), "recipe"]
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask, adapter_names=names).logits
    for i, name in enumerate(names):
        torch.testing.assert_close(got[i : i + 1], _alone(model, name, ids[i : i + 1], mask[i : i + 1]), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- prompt and prefix rows (run by group)
def _with_virtual_tokens(arch: str):
    model = _model(arch)
    task = {"task_type": "SEQ_CLS"} if arch.endswith("seqcls") else {}
    model.add_adapter("p", ah.PromptTuningConfig(num_virtual_tokens=3, **task))
    model.add_adapter("p5", ah.PromptTuningConfig(num_virtual_tokens=5, **task))
    model.add_adapter("pre", ah.PrefixTuningConfig(num_virtual_tokens=4, **task))
    with torch.no_grad():  # prompts that really differ from each other and from no prompt
        g = torch.Generator().manual_seed(5)
        for name, p in model.named_parameters():
            if ".ah_prompts." in name:
                p.copy_(torch.randn(p.shape, generator=g))
    return model


VIRTUAL_ROWS = ["p", "l4", None, "pre", ah.Stack("l4", "p"), "p", "p5", "ia3", ah.Stack("l2", "pre")]


@pytest.mark.parametrize("arch", ["llama-causal", "gpt2", "bert-seqcls"])
def test_per_row_forward_with_prompt_and_prefix_rows_equals_each_row_alone(arch):
    model = _with_virtual_tokens(arch)
    ids, mask = batch(rows=len(VIRTUAL_ROWS))
    mask[2, -3:] = 0  # a padded row
    passes = []
    hook = model.get_input_embeddings().register_forward_hook(lambda *_: passes.append(1))
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask, adapter_names=VIRTUAL_ROWS)
    hook.remove()
    assert len(passes) == 4  # one pass per distinct set of virtual tokens: none, p, pre, p5
    assert got.logits.shape[:2] == (len(VIRTUAL_ROWS), ids.shape[1]) if arch != "bert-seqcls" else got.logits.shape[0] == len(VIRTUAL_ROWS)
    for i, name in enumerate(VIRTUAL_ROWS):
        expected = _alone(model, name, ids[i : i + 1], mask[i : i + 1])
        torch.testing.assert_close(got.logits[i : i + 1], expected, atol=1e-5, rtol=0, msg=f"row {i} ({name})")
    assert model.ah.state.row_plan is None


@pytest.mark.parametrize("arch", ["llama-causal", "gpt2"])
@pytest.mark.slow
def test_per_row_generate_with_prompt_and_prefix_rows_equals_each_row_alone(arch):
    model = _with_virtual_tokens(arch)
    ids, mask = batch(rows=len(VIRTUAL_ROWS), length=6)
    ids[3, :2], mask[3, :2] = 0, 0  # a left-padded row
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        got = model.generate(input_ids=ids, attention_mask=mask, adapter_names=VIRTUAL_ROWS, **kw)
        for i, name in enumerate(VIRTUAL_ROWS):
            model.set_active(name)
            alone = model.generate(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1], **kw)
            width = alone.shape[1]
            assert torch.equal(got[i : i + 1, :width], alone), f"row {i} ({name})"
            assert (got[i, width:] == 0).all()  # a group that stopped early is padded, as a batch pads its rows
        model.set_active(None)
        # beams: the virtual tokens' cache is built for every copy (it failed even for one prompt adapter)
        beams = model.generate(input_ids=ids[:4], attention_mask=mask[:4], adapter_names=VIRTUAL_ROWS[:4],
                               num_beams=2, num_return_sequences=2, **kw)
        assert beams.shape[0] == 8
        for i, name in enumerate(VIRTUAL_ROWS[:4]):
            model.set_active(name)
            alone = model.generate(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1], num_beams=2,
                                   num_return_sequences=2, **kw)
            assert torch.equal(beams[2 * i : 2 * i + 2, : alone.shape[1]], alone), f"row {i} ({name}) beams"


def test_per_row_prompt_groups_refuse_what_cannot_be_merged():
    model = _with_virtual_tokens("llama-causal")
    ids, mask = batch(rows=2)
    with pytest.raises(ah.CompositionError, match=r"^labels cannot be combined with adapter_names that mix prompt/prefix"):
        model(input_ids=ids, attention_mask=mask, labels=ids, adapter_names=["p", "l4"])
    with pytest.raises(ah.CompositionError, match=r"^return_dict_in_generate cannot be combined with adapter_names"):
        model.generate(input_ids=ids, attention_mask=mask, adapter_names=["p", None], max_new_tokens=2,
                       return_dict_in_generate=True)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, adapter_names=["p", "pre"], use_cache=True)
    assert out.past_key_values is None  # the groups' caches have different lengths: not stacked
    assert model.ah.state.row_plan is None
