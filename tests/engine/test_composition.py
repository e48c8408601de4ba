"""Composition blocks: the nesting table, serialisation, and Stack / Average / Fuse on every method."""

from __future__ import annotations

import pytest
import torch

import adapterhub as ah
from adapterhub.compose.composition import execute
from adapterhub.compose.composition.blocks import ALLOWED_NESTINGS, Block, block_from_dict
from tests.helpers.tiny import batch, build


def _logits(model, ids, mask=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def _perturb(model, name, seed=5, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_parameters(name):
            p.add_(torch.randn(p.shape, generator=g) * scale)


# ---------------------------------------------------------------------- blocks as data
def test_blocks_round_trip_through_their_dict():
    block = ah.Stack("lang", ah.Fuse("a", ah.Stack("b", "c"), temperature=2.0), ah.Average("d", "e", weights=[3, 1]),
                     ah.Route("f", "g", top_k=2, noise_std=0.1))
    data = block.to_dict()
    assert data["type"] == "Stack" and data["children"][1] == {
        "type": "Fuse", "children": ["a", {"type": "Stack", "children": ["b", "c"], "kwargs": {}}],
        "kwargs": {"temperature": 2.0},
    }
    assert block_from_dict(data) == block
    assert ah.Average("d", "e", weights=[3, 1]).weights == (0.75, 0.25)
    assert ah.Average("d", "e", weights=[3, 1], normalize=False).weights == (3.0, 1.0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ah.Average("a", "b", weights=[1.0]), "^Average has 2 children but 1 weights$"),
        (lambda: ah.Average("a", "b", weights=[1, -1]), "^Average weights sum to 0"),
        (lambda: ah.Route("a", "b", top_k=3), r"^Route top_k must be an integer in \[1, 2\], got 3$"),
        (lambda: ah.Fuse("a", "b", temperature=0), "^Fuse temperature must be > 0, got 0$"),
        (lambda: ah.Fuse(), "^Fuse needs at least one adapter$"),
        (lambda: block_from_dict({"type": "Split", "children": ["a"]}), "^unknown composition block"),
    ],
)
def test_bad_block_arguments_are_refused(make, message):
    with pytest.raises(ah.CompositionError, match=message):
        make()


def test_nesting_table_covers_every_block():
    assert set(ALLOWED_NESTINGS) == {ah.Stack, ah.Fuse, ah.Average, ah.Route}
    assert all(issubclass(b, Block) for rule in ALLOWED_NESTINGS.values() for b in rule["blocks"])


def _mixed_model():
    model = ah.AdapterModel(build("llama-causal"))
    model.add_adapter("l1", ah.LoRAConfig(r=4, init_lora_weights=False))
    model.add_adapter("l2", ah.LoRAConfig(r=2, init_lora_weights=False))
    model.add_adapter("b1", ah.BottleneckConfig(original_ln_before=False, init_weights=False))
    model.add_adapter("b2", ah.BottleneckConfig(original_ln_before=False, init_weights=False))
    model.add_adapter("i", ah.IA3Config(init_ia3_weights=False))
    model.add_adapter("p", ah.PromptTuningConfig(num_virtual_tokens=2))
    return model


@pytest.mark.parametrize(
    "block, message",
    [
        (ah.Fuse("l1", "p"), r"^Fuse cannot combine prompt_tuning adapter 'p' \(Fuse supports: bottleneck, lora\)$"),
        (ah.Average("l1", "i"), r"^Average cannot combine ia3 adapter 'i' \(Average supports: bottleneck, lora\)$"),
        (ah.Fuse(ah.Stack("l1", "p"), "l2"), r"^Fuse cannot combine prompt_tuning adapter 'p'"),
        (ah.Fuse("l1", ah.Route("l1", "l2")), r"^Fuse cannot contain a Route block \(Fuse may contain: Stack\)$"),
        (ah.Route(ah.Stack("l1", "b1"), "l2"), r"^Route cannot contain a Stack block \(Route may contain: adapter names only\)$"),
        (ah.Average("l1", ah.Fuse("l1", "l2")), r"^Average cannot contain a Fuse block \(Average may contain: Stack\)$"),
    ],
)
def test_unsupported_nesting_names_the_block_and_the_method(block, message):
    model = _mixed_model()
    with pytest.raises(ah.CompositionError, match=message):
        model.set_active(block)
    assert model.active_composition is None


def test_fuse_without_fusion_layers_says_how_to_add_them():
    model = _mixed_model()
    with pytest.raises(ah.CompositionError, match=r"^Fuse\(l1\+b1\) has no trained layers on this model; call add_fusion"):
        model.set_active(ah.Fuse("l1", "b1"))
    with pytest.raises(ah.CompositionError, match=r"^add_fusion\(\) expects a Fuse block, got Stack\('l1', 'b1'\)$"):
        model.add_fusion(ah.Stack("l1", "b1"))


def test_composition_names_are_checked_and_usable():
    model = _mixed_model()
    with pytest.raises(ah.CompositionError, match="^'l1' is already an adapter's name"):
        model.add_composition("l1", ah.Stack("l1", "l2"))
    with pytest.raises(ah.AdapterNotFoundError, match="no adapter named 'zz'"):
        model.add_composition("x", ah.Stack("l1", "zz"))
    model.add_composition("both", ah.Stack("l1", "l2"))
    model.set_active("both")
    assert model.active_composition == ah.Stack("l1", "l2") and model.active_adapters == ("l1", "l2")
    model.delete_adapter("l2")
    assert "both" not in model.compositions


# ---------------------------------------------------------------------- Stack
@pytest.mark.parametrize("arch", ["llama-causal", "gpt2", "bert-seqcls"])
@pytest.mark.parametrize("case", ["lora", "ia3"])
def test_stack_of_lora_or_ia3_equals_both_merged(arch, case):
    """LoRA deltas add and IA³ scalings multiply: stacking equals folding both into the base."""
    model = ah.AdapterModel(build(arch))
    for name in ("a", "b"):
        cfg = ah.LoRAConfig(r=4, init_lora_weights=False) if case == "lora" else ah.IA3Config(init_ia3_weights=False)
        model.add_adapter(name, cfg)
    ids, mask = batch()
    model.set_active(ah.Stack("a", "b"))
    stacked = _logits(model, ids, mask)
    model.set_active("a")
    assert not torch.allclose(_logits(model, ids, mask), stacked, atol=1e-4)
    model.set_active(None)
    model.merge("a")
    model.merge("b")
    torch.testing.assert_close(_logits(model, ids, mask), stacked, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama-causal", "gpt2", "bert-seqcls"])
def test_stack_of_bottlenecks_is_sequential(arch):
    model = ah.AdapterModel(build(arch))
    # on the raw sublayer output (no residual read), so that a site can be driven with any x below
    model.add_adapter("a", ah.BottleneckConfig(original_ln_before=False, init_weights=False))
    model.add_adapter("b", ah.BottleneckConfig(original_ln_before=False, init_weights=False))
    model.add_adapter("identity", ah.BottleneckConfig(init_weights="mam_adapter"))  # zero up projection
    ids, mask = batch()
    model.set_active("a")
    alone = _logits(model, ids, mask)
    model.set_active(ah.Stack("a", "identity"))
    torch.testing.assert_close(_logits(model, ids, mask), alone, atol=1e-6, rtol=0)
    model.set_active(ah.Stack("a", "b"))
    ab = _logits(model, ids, mask)
    model.set_active(ah.Stack("b", "a"))
    assert not torch.allclose(ab, _logits(model, ids, mask), atol=1e-4)
    site = next(m for n, m in model.named_modules() if hasattr(m, "ah_adapters") and "a" in m.ah_adapters)
    x = torch.randn(2, 3, site.weight.shape[1] if not hasattr(site, "nf") else site.weight.shape[0])
    with torch.no_grad():
        a, b = site.ah_adapters["a"], site.ah_adapters["b"]
        expected = b.adapter_output(a.adapter_output(site.base_forward(x), None, None), None, None)
        torch.testing.assert_close(execute.site_output(site, ah.Stack("a", "b"), x), expected)


@pytest.mark.parametrize("case", ["prompt", "prefix"])
def test_stack_of_prompts_concatenates_them(case):
    model = ah.AdapterModel(build("llama-causal"))
    make = ah.PromptTuningConfig if case == "prompt" else ah.PrefixTuningConfig
    model.add_adapter("a", make(num_virtual_tokens=2))
    model.add_adapter("b", make(num_virtual_tokens=3))
    model.add_adapter("ab", make(num_virtual_tokens=5))
    with torch.no_grad():
        weights = [model.ah_prompts[n].export_weight() for n in ("a", "b")]
        model.ah_prompts["ab"].import_weight(torch.cat(weights))
    ids, mask = batch()
    model.set_active(ah.Stack("a", "b"))
    stacked = _logits(model, ids, mask)
    model.set_active("ab")
    torch.testing.assert_close(stacked, _logits(model, ids, mask), atol=1e-5, rtol=0)


def test_stack_mixes_methods():
    model = _mixed_model()
    ids, mask = batch()
    model.set_active(ah.Stack("p", "i", "l1", "b1"))
    out = _logits(model, ids, mask)
    assert out.shape == (3, 9, 96) and torch.isfinite(out).all()


# ---------------------------------------------------------------------- Average
def test_average_of_loras_is_the_weighted_sum_of_their_deltas(tmp_path):
    model = ah.AdapterModel(build("gpt2"))
    model.add_adapter("a", ah.LoRAConfig(r=4, init_lora_weights=False))
    model.add_adapter("b", ah.LoRAConfig(r=2, alpha=4, init_lora_weights=False))
    weights = {"a": 0.25, "b": 0.75}
    for name, w in weights.items():  # reference: each adapter's B scaled by its weight, stacked
        model.save_adapter(name, tmp_path / name)
        model.load_adapter(tmp_path / name, name=f"{name}_w")
        with torch.no_grad():
            for n, p in model.named_parameters():
                if f"ah_adapters.{name}_w.lora_B" in n:
                    p.mul_(w)
    ids, mask = batch()
    model.set_active(ah.Average("a", "b", weights=[1, 3]))
    averaged = _logits(model, ids, mask)
    model.set_active(ah.Stack("a_w", "b_w"))
    torch.testing.assert_close(averaged, _logits(model, ids, mask), atol=1e-5, rtol=0)


def test_average_of_bottlenecks_is_the_weighted_sum_of_their_outputs():
    model = _mixed_model()
    site = model.get_submodule("model.layers.0.mlp.down_proj")
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        expected = 0.2 * execute.site_output(site, "b1", x) + 0.8 * execute.site_output(site, "b2", x)
        got = execute.site_output(site, ah.Average("b1", "b2", weights=[1, 4]), x)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    ids, mask = batch()
    model.set_active("b1")
    alone = _logits(model, ids, mask)
    model.set_active(ah.Average("b1"))
    torch.testing.assert_close(_logits(model, ids, mask), alone, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- Fuse
@pytest.mark.parametrize("pair", [("l1", "l2"), ("b1", "b2"), ("l1", "b1")])
def test_untrained_fusion_is_the_mean_of_its_adapters(pair):
    model = _mixed_model()
    fuse = ah.Fuse(*pair)
    model.add_fusion(fuse)
    ids, mask = batch()
    model.set_active(fuse)
    fused = _logits(model, ids, mask)
    model.set_active(ah.Average(*pair))
    torch.testing.assert_close(fused, _logits(model, ids, mask), atol=1e-5, rtol=0)
    weights = model.fusion_weights(fuse)
    assert weights and all(torch.allclose(w, torch.full((2,), 0.5)) for w in weights.values())


def _fusion_data():
    ids = torch.tensor([[5, 6, 7, 8] * 3] * 4) + torch.arange(4)[:, None] * 10
    return ids, torch.ones_like(ids)


def test_train_fusion_trains_only_fusion_layers_and_saves_as_its_own_folder(tmp_path):
    model = _mixed_model()
    fuse = ah.Fuse("l1", "b1", temperature=0.5)
    model.add_fusion(fuse)
    model.train_fusion(fuse)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".ah_fusions.l1+b1." in n for n in trainable)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = _fusion_data()
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    model.eval()
    expected = _logits(model, ids, mask)
    heat = model.fusion_weights(fuse)
    assert "model.layers.1.mlp.down_proj" in heat and heat["model.layers.1.mlp.down_proj"].shape == (2,)

    for name in ("l1", "b1"):
        model.save_adapter(name, tmp_path / name)
    model.save_fusion(fuse, tmp_path / "fusion")
    assert not any(".ah_fusions." in k for k in model.base_state_dict())
    fresh = ah.AdapterModel(build("llama-causal"))
    for name in ("l1", "b1"):
        fresh.load_adapter(tmp_path / name)
    loaded = fresh.load_fusion(tmp_path / "fusion")
    assert loaded == fuse
    fresh.set_active(loaded)
    torch.testing.assert_close(_logits(fresh, ids, mask), expected, atol=1e-5, rtol=0)


def test_load_fusion_needs_its_adapters(tmp_path):
    model = _mixed_model()
    model.add_fusion(ah.Fuse("l1", "b1"))
    model.save_fusion(ah.Fuse("l1", "b1"), tmp_path / "f")
    fresh = ah.AdapterModel(build("llama-causal"))
    with pytest.raises(ah.AdapterNotFoundError, match="no adapter named 'l1'"):
        fresh.load_fusion(tmp_path / "f")


def test_fusion_inside_a_stack():
    model = _mixed_model()
    model.add_fusion(ah.Fuse("b1", "b2"))
    ids, mask = batch()
    model.set_active(ah.Stack("l1", ah.Fuse("b1", "b2")))
    stacked = _logits(model, ids, mask)
    model.set_active(ah.Stack("l1", ah.Average("b1", "b2")))
    torch.testing.assert_close(stacked, _logits(model, ids, mask), atol=1e-5, rtol=0)


def test_deleting_an_adapter_drops_the_fusions_that_use_it():
    model = _mixed_model()
    model.add_fusion(ah.Fuse("l1", "b1"))
    model.add_fusion(ah.Fuse("b1", "b2"))
    model.delete_adapter("l1")
    assert not any(".ah_fusions.l1+b1." in k for k in model.state_dict())
    assert any(".ah_fusions.b1+b2." in k for k in model.state_dict())


def test_merge_refuses_an_active_fusion_or_average():
    model = _mixed_model()
    model.set_active(ah.Average("l1", "l2"))
    with pytest.raises(ah.InvalidAdapterError, match=r"^cannot merge the active composition Average\('l1', 'l2'"):
        model.merge()
    assert model.merged_adapters == ()


@pytest.mark.parametrize("grad", [False, True])
def test_fusion_layer_matches_the_adapterfusion_formula_with_trained_weights(grad):
    """The layer projects each adapter output by key and value, as written in the paper; ours folds
    them (see FusionLayer.forward). Checked with random weights and biases, with and without autograd."""
    from adapterhub.compose.composition.fusion import FusionLayer

    torch.manual_seed(0)
    layer = FusionLayer(12, 8, 3)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    x = torch.randn(2, 5, 12)
    outs = [torch.randn(2, 5, 8) for _ in range(3)]
    q = layer.query(x)
    scores = torch.stack([(layer.key(o) * q).sum(-1) for o in outs], -1) / (8 ** 0.5 * 0.7)
    probs = scores.softmax(-1)
    expected = sum(probs[..., i : i + 1] * layer.value(o) for i, o in enumerate(outs))
    with torch.set_grad_enabled(grad):
        got = layer(x, outs, 0.7)
        again = layer(x, outs, 0.7)  # the folded weights are reused without autograd
    torch.testing.assert_close(got, expected.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, got)
    torch.testing.assert_close(layer.last_weights, probs.detach().reshape(-1, 3).mean(0))
    with torch.no_grad():
        layer.query.weight.add_(1.0)  # a changed weight is folded again
        q = layer.query(x)
        scores = torch.stack([(layer.key(o) * q).sum(-1) for o in outs], -1) / (8 ** 0.5 * 0.7)
        expected = sum(scores.softmax(-1)[..., i : i + 1] * layer.value(o) for i, o in enumerate(outs))
        torch.testing.assert_close(layer(x, outs, 0.7), expected, atol=1e-5, rtol=1e-5)
