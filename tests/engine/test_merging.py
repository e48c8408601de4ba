"""Weight-space merges of LoRA adapters, checked against outputs and against PEFT's add_weighted_adapter."""

from __future__ import annotations

import peft
import pytest
import torch

import adapterhub as ah
from tests.helpers.tiny import batch, build

METHODS = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")
SEED = 1234


def _logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def _model(arch="llama-causal"):
    """Three LoRAs: ranks 4 and 2, one with rsLoRA, one on other target modules."""
    model = ah.AdapterModel(build(arch))
    model.add_adapter("a", ah.LoRAConfig(r=4, alpha=8, init_lora_weights=False))
    model.add_adapter("b", ah.LoRAConfig(r=2, alpha=4, use_rslora=True, init_lora_weights=False))
    targets = ["q_proj", "down_proj"] if arch.startswith("llama") else ["c_attn", "c_fc"]
    model.add_adapter("c", ah.LoRAConfig(r=3, alpha=3, init_lora_weights=False, target_modules=targets))
    return model


@pytest.mark.parametrize("arch", ["llama-causal", "gpt2"])
def test_cat_merge_equals_the_weighted_sum_of_outputs(arch):
    model = _model(arch)
    ids, mask = batch()
    weights = [0.7, -0.4, 1.3]
    model.set_active(ah.Average("a", "b", "c", weights=weights, normalize=False))
    expected = _logits(model, ids, mask)
    config = model.merge_adapters(["a", "b", "c"], weights, method="cat", new_name="m")
    assert config.r == 9 and config.scaling == 1.0 and not config.use_rslora
    model.set_active("m")
    torch.testing.assert_close(_logits(model, ids, mask), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_merging_one_adapter_with_weight_one_reproduces_it(method):
    model = _model()
    ids, mask = batch()
    for name in ("a", "b"):
        model.set_active(name)
        expected = _logits(model, ids, mask)
        model.merge_adapters([name], [1.0], method=method, density=0.5, new_name=f"{name}_{method}")
        model.set_active(f"{name}_{method}")
        torch.testing.assert_close(_logits(model, ids, mask), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["linear", "svd", "ties", "dare_linear", "magnitude_prune"])
def test_different_ranks_are_merged_not_refused(method):
    model = _model()
    config = model.merge_adapters(["a", "b", "c"], [0.5, 0.3, 0.2], method=method, density=0.6, new_name="m")
    assert config.r == 4
    model.set_active("m")
    ids, mask = batch()
    assert torch.isfinite(_logits(model, ids, mask)).all()


def test_svd_merge_with_full_rank_is_exact_and_truncation_is_best():
    model = _model()
    ids, mask = batch()
    model.set_active(ah.Average("a", "b", weights=[0.6, 0.4], normalize=False))
    expected = _logits(model, ids, mask)
    model.merge_adapters(["a", "b"], [0.6, 0.4], method="svd", svd_rank=6, new_name="full")
    model.set_active("full")
    torch.testing.assert_close(_logits(model, ids, mask), expected, atol=1e-5, rtol=0)
    model.merge_adapters(["a", "b"], [0.6, 0.4], method="svd", svd_rank=1, new_name="r1")
    site = model.get_submodule("model.layers.0.self_attn.q_proj")
    exact = sum(w * site.ah_adapters[n].delta_weight(site) for n, w in (("a", 0.6), ("b", 0.4)))
    got = site.ah_adapters["r1"].delta_weight(site)
    assert torch.linalg.matrix_rank(got) == 1
    s = torch.linalg.svdvals(exact)
    torch.testing.assert_close(torch.linalg.norm(exact - got), torch.linalg.norm(s[1:]), atol=1e-5, rtol=1e-4)


def _peft_pair(monkeypatch):
    """A PEFT model with two rank-4 LoRAs (PEFT needs equal ranks for most methods)."""
    theirs = peft.get_peft_model(build("llama-causal"), peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False),
                                 adapter_name="t1")
    theirs.add_adapter("t2", peft.LoraConfig(r=4, lora_alpha=16, init_lora_weights=False))
    original = peft.tuners.lora.LoraModel.inject_adapter

    def inject_then_seed(self, *args, **kwargs):  # DARE draws start from the same seed in both libraries
        result = original(self, *args, **kwargs)
        torch.manual_seed(SEED)
        return result

    monkeypatch.setattr(peft.tuners.lora.LoraModel, "inject_adapter", inject_then_seed)
    return theirs.eval()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.slow
def test_merge_matches_peft_add_weighted_adapter(method, tmp_path, monkeypatch):
    theirs = _peft_pair(monkeypatch)
    theirs.save_pretrained(tmp_path / "p")
    ours = ah.AdapterModel(build("llama-causal"))
    for name in ("t1", "t2"):
        ours.load_adapter(tmp_path / "p" / name, name=name)
    weights, density = [0.8, -0.5], 0.5
    theirs.base_model.add_weighted_adapter(["t1", "t2"], weights, "m", combination_type=method, density=density)
    theirs.set_adapter("m")
    ids, mask = batch()
    expected = _logits(theirs, ids, mask)
    torch.manual_seed(SEED)
    ours.merge_adapters(["t1", "t2"], weights, method=method, density=density, new_name="m")
    ours.set_active("m")
    torch.testing.assert_close(_logits(ours, ids, mask), expected, atol=1e-5, rtol=0)


def test_merged_adapter_saves_and_reloads_in_ours_and_peft(tmp_path):
    model = _model()
    model.merge_adapters(["a", "b", "c"], [0.5, 0.5, 1.0], method="cat", new_name="m")
    model.set_active("m")
    ids, mask = batch()
    expected = _logits(model, ids, mask)
    model.save_adapter("m", tmp_path / "ours")
    model.save_adapter("m", tmp_path / "peft", format="peft")
    fresh = ah.AdapterModel(build("llama-causal"))
    fresh.load_adapter(tmp_path / "ours", set_active=True)
    torch.testing.assert_close(_logits(fresh, ids, mask), expected, atol=1e-6, rtol=0)
    theirs = peft.PeftModel.from_pretrained(build("llama-causal"), tmp_path / "peft").eval()
    torch.testing.assert_close(_logits(theirs, ids, mask), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(names=["a", "bn"], weights=[1, 1]), "^merge_adapters merges LoRA adapters; 'bn' is a bottleneck adapter$"),
        (dict(names=["a", "b"], weights=[1]), "^merge_adapters got 2 adapters but 1 weights$"),
        (dict(names=["a", "b"], weights=[1, 1], method="mean"), "^unknown merge method 'mean'; use one of linear, cat"),
        (dict(names=["a", "b"], weights=[1, 1], method="ties"), r"^merge method 'ties' needs density in \[0, 1\], got None$"),
        (dict(names=["a", "b"], weights=[1, 1], new_name="a"), "^an adapter named 'a' already exists"),
        (dict(names=["a", "zz"], weights=[1, 1]), "no adapter named 'zz'"),
    ],
)
def test_bad_merge_arguments_are_refused(kwargs, message):
    model = _model()
    model.add_adapter("bn", ah.BottleneckConfig())
    before = set(model.adapters)
    error = ah.AdapterNotFoundError if "zz" in kwargs["names"] else ah.InvalidAdapterError
    with pytest.raises(error, match=message):
        model.merge_adapters(**kwargs)
    assert set(model.adapters) == before
