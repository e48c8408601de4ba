"""AdapterFusion both ways with AdapterHub's `adapters` 1.3 as the referee (eval mode, atol 1e-5).

An AdapterFusion made by `adapters` over two Pfeiffer (seq_bn) adapters it made too loads here as
``Fuse("a", "b", style="adapters")`` with its trained weights and gives its logits; ours, saved with
``save_fusion(..., format="adapters")``, loads there with ``load_adapter_fusion`` and gives ours: on
BERT (post-LN), GPT-2 and LLaMA (pre-LN), with the fusion options that change the network, and over
Houlsby and parallel adapters. Every `adapters` job of the module runs in one interpreter of its
environment (the imports are most of the cost), so the folders of our side are written first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import adapterhub as ah
from adapterhub.compose.composition.blocks import ADAPTERS_FUSION_OPTIONS
from adapterhub.compose.folder.keys import adapter_tensors
from tests.helpers.tiny import batch, build
from tests.interop.referee import run_batch, save_tiny_base

pytestmark = pytest.mark.slow  # each file starts the adapters environment: ~10 s of imports, then the work

ARCHS = {"bert-seqcls": "seqcls", "gpt2": "causal", "llama-causal": "causal"}
ATOL = 1e-5
# ours -> adapters: (arch, the two adapters' preset, fusion options)
OURS = [(arch, "seq_bn", {}) for arch in ARCHS] + [
    ("bert-seqcls", "seq_bn", {"query_before_ln": True}),
    ("bert-seqcls", "seq_bn", {"residual_before": True}),
    ("gpt2", "seq_bn", {"query_before_ln": True, "residual_before": True}),
    ("llama-causal", "seq_bn", {"value": False, "regularization": False, "value_initialized": False}),  # static
    ("bert-seqcls", "seq_bn", {"value_before_softmax": False, "key": False}),
    ("bert-seqcls", "double_seq_bn", {}),
    ("llama-causal", "double_seq_bn", {}),
    ("gpt2", "par_bn", {}),
    ("bert-seqcls", "par_bn", {}),
]


def _make(base, head, config, name, seed, out) -> list[str]:
    return ["make", "--base", base, "--head", head, "--config", config, "--kwargs",
            json.dumps({"reduction_factor": 4}), "--name", name, "--seed", seed, "--out", out]


def _logits(base, head, adapters, inputs, out, fusion) -> list[str]:
    argv = ["logits", "--base", base, "--head", head, "--inputs", inputs, "--out", out]
    for folder in adapters:
        argv += ["--adapter", folder]
    return [*argv, "--fusion", fusion, "--setup", json.dumps({"fuse": ["a", "b"]})]


def our_pair(arch: str, preset: str, options: dict, seed: int) -> ah.AdapterModel:
    """Two of our bottleneck adapters and an adapters-style Fuse over them, every parameter seeded
    random: queries and keys large enough that the attention is far from uniform."""
    model = ah.AdapterModel(build(arch))
    for name in ("a", "b"):
        model.add_adapter(name, ah.BottleneckConfig.preset(preset, reduction_factor=4))
    g = torch.Generator().manual_seed(seed)
    for name in ("a", "b"):
        for param in adapter_tensors(model, name).values():
            param.data = torch.randn(param.shape, generator=g) * 0.2
    fuse = ah.Fuse("a", "b", style="adapters", options=options)
    model.add_fusion(fuse)
    for n, param in model.named_parameters():
        if ".ah_fusions." in n:
            noise = torch.randn(param.shape, generator=g)
            param.data = (torch.eye(param.shape[0]) + 0.1 * noise) if n.endswith("value.weight") else 0.5 * noise
    model.set_active(fuse)
    return model


@pytest.fixture(scope="module")
def referee(tmp_path_factory):
    """Runs every `adapters` job once: theirs (make a, make b, fusion, logits) per arch, then the
    logits of each of our pairs. Returns the folders and logits of both."""
    root = tmp_path_factory.mktemp("fusion")
    ids, mask = batch()
    inputs = root / "inputs.safetensors"
    save_file({"input_ids": ids.contiguous(), "attention_mask": mask.contiguous()}, str(inputs))
    bases = {arch: save_tiny_base(build(arch), root / "bases" / arch) for arch in ARCHS}
    jobs, theirs = [], {}
    for i, (arch, head) in enumerate(ARCHS.items()):
        folders = [root / "theirs" / arch / name for name in ("a", "b")]
        fusion = root / "theirs" / arch / "a,b"
        jobs += [_make(bases[arch], head, "seq_bn", name, 10 * i + k, f) for k, (name, f) in
                 enumerate(zip(("a", "b"), folders, strict=True))]
        jobs.append(["fusion", "--base", bases[arch], "--head", head, "--adapter", folders[0], "--adapter", folders[1],
                     "--seed", 10 * i + 5, "--out", fusion])
        jobs.append(_logits(bases[arch], head, folders, inputs, root / f"theirs-{arch}.safetensors", fusion))
        theirs[arch] = (folders, fusion, root / f"theirs-{arch}.safetensors")
    ours = []
    for i, (arch, preset, options) in enumerate(OURS):
        model = our_pair(arch, preset, options, seed=100 + i)
        out = root / "ours" / str(i)
        folders = [model.save_adapter(n, out / n, format="adapters") for n in ("a", "b")]
        fusion = model.save_fusion(model.ah.active, out / "a,b", format="adapters")
        with torch.no_grad():
            expected = model(input_ids=ids, attention_mask=mask).logits
            base = build(arch)(input_ids=ids, attention_mask=mask).logits
        assert (expected - base).abs().max().item() > 1e-3, (arch, preset, options)
        jobs.append(_logits(bases[arch], ARCHS[arch], folders, inputs, out / "logits.safetensors", fusion))
        ours.append((expected, out / "logits.safetensors", fusion))
    run_batch(jobs, timeout=400)
    return {"theirs": {a: (f, fu, load_file(str(lg))["logits"]) for a, (f, fu, lg) in theirs.items()},
            "ours": [(e, load_file(str(lg))["logits"], fu) for e, lg, fu in ours]}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_an_adapters_fusion_loads_as_our_fuse_with_its_logits(referee, arch, tmp_path):
    folders, fusion, expected = referee["theirs"][arch]
    model = ah.AdapterModel(build(arch))
    for folder in folders:
        model.load_adapter(folder)
    fuse = model.load_fusion(fusion)
    assert fuse == ah.Fuse("a", "b", style="adapters")
    model.set_active(fuse)
    ids, mask = batch()
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask).logits
        model.set_active(ah.Stack("b"))
        only_b = model(input_ids=ids, attention_mask=mask).logits
    assert (ours - expected).abs().max().item() < ATOL
    assert (ours - only_b).abs().max().item() > 1e-4  # the fusion is not its last adapter alone
    # and back: the same files adapters wrote (but the base's name)
    again = model.save_fusion(fuse, tmp_path / "again", format="adapters")
    written, read = (json.loads((d / "adapter_fusion_config.json").read_text()) for d in (again, fusion))
    assert {**written, "model_name": None} == {**read, "model_name": None}
    mine, theirs = (load_file(str(d / "model_adapter_fusion.safetensors")) for d in (again, fusion))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.mark.parametrize("case", range(len(OURS)), ids=[f"{a}-{p}-{'-'.join(o) or 'default'}" for a, p, o in OURS])
def test_our_fuse_saved_as_adapters_gives_our_logits_there(referee, case):
    expected, theirs, fusion = referee["ours"][case]
    assert (expected - theirs).abs().max().item() < ATOL
    config = json.loads((fusion / "adapter_fusion_config.json").read_text())
    assert config["adapter_names"] == ["a", "b"] and config["name"] == "a,b"
    assert config["config"] == {**ADAPTERS_FUSION_OPTIONS, **OURS[case][2], "temperature": False}


# ---------------------------------------------------------------------- what does not map (no referee)

def _pair_model() -> ah.AdapterModel:
    return our_pair("gpt2", "seq_bn", {}, seed=0)


def _edited(tmp_path: Path, config=None, weights=None) -> Path:
    model = _pair_model()
    folder = model.save_fusion(model.ah.active, tmp_path / "fusion", format="adapters")
    if config:
        raw = json.loads((folder / "adapter_fusion_config.json").read_text())
        config(raw)
        (folder / "adapter_fusion_config.json").write_text(json.dumps(raw))
    if weights:
        tensors = load_file(str(folder / "model_adapter_fusion.safetensors"))
        weights(tensors)
        save_file(tensors, str(folder / "model_adapter_fusion.safetensors"))
    return folder


def _fresh_pair() -> ah.AdapterModel:
    model = ah.AdapterModel(build("gpt2"))
    for name in ("a", "b"):
        model.add_adapter(name, ah.BottleneckConfig.preset("seq_bn", reduction_factor=4))
    return model


@pytest.mark.parametrize(("config", "weights", "message"), [
    (lambda c: c["config"].update(temperature=True), None, r"temperature=True is not supported: adapters anneals"),
    (lambda c: c["config"].update(gated=True), None, r"unknown AdapterFusion option 'gated'"),
    (lambda c: c.update(model_type="bert"), None, r"an adapters fusion for model_type 'bert', this model is 'gpt2'"),
    (lambda c: c.update(adapter_names=["a", "zz"], name="a,zz"), None, r"zz"),
    (None, lambda t: t.pop(next(iter(t))), r"the weights file lacks"),
    (None, lambda t: t.update({"transformer.h.0.attention_adapters.adapter_fusion_layer.a,b.query.weight":
                               torch.zeros(32, 32)}), r"attention_adapters.* is not a layer of fusion 'a,b' at a bottleneck site of a, b"),
    (None, lambda t: t.update({"transformer.h.0.output_adapters.adapter_fusion_layer.a,b.value.bias":
                               torch.zeros(32)}), r"'value.bias' is not a parameter of this fusion's config"),
    (lambda c: c["config"].update(value=False), None, r"'value.weight' is not a parameter"),
])
def test_what_does_not_map_is_refused_and_changes_nothing(tmp_path, config, weights, message):
    folder = _edited(tmp_path, config, weights)
    model = _fresh_pair()
    before = set(model.state_dict())
    with pytest.raises((ah.InvalidAdapterError, ah.IncompatibleAdapterError, ah.AdapterNotFoundError,
                        ah.CompositionError), match=message):
        model.load_fusion(folder)
    assert set(model.state_dict()) == before


def test_a_fusion_over_lora_or_a_pickle_only_folder_is_refused(tmp_path):
    folder = _edited(tmp_path)
    model = ah.AdapterModel(build("gpt2"))
    model.add_adapter("a", ah.BottleneckConfig.preset("seq_bn", reduction_factor=4))
    model.add_adapter("b", ah.LoRAConfig(r=2))
    with pytest.raises(ah.InvalidAdapterError, match=r"fuses bottleneck adapters only.*lora adapter 'b'"):
        model.load_fusion(folder)
    (folder / "model_adapter_fusion.safetensors").rename(folder / "pytorch_model_adapter_fusion.bin")
    with pytest.raises(ah.InvalidAdapterError, match=r"only pickle weights .*pytorch_model_adapter_fusion.bin"):
        _fresh_pair().load_fusion(folder)


def test_our_own_fusion_style_is_not_written_as_adapters(tmp_path):
    model = _pair_model()
    model.add_fusion(ah.Fuse("a", "b"))
    with pytest.raises(ah.InvalidAdapterError, match=r"adapterhub's own fusion .* style='adapters'"):
        model.save_fusion(ah.Fuse("a", "b"), tmp_path / "x", format="adapters")
    with pytest.raises(ah.InvalidAdapterError, match=r"temperature=2.0 has no adapters equivalent"):
        model.save_fusion(ah.Fuse("a", "b", style="adapters", temperature=2.0), tmp_path / "y", format="adapters")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# ---------------------------------------------------------------------- the adapters style in our engine

def test_an_adapters_style_fuse_needs_its_adapters_at_the_same_sites():
    model = ah.AdapterModel(build("llama-causal"))
    model.add_adapter("a", ah.BottleneckConfig.preset("seq_bn", reduction_factor=4))
    model.add_adapter("b", ah.BottleneckConfig.preset("double_seq_bn", reduction_factor=4))
    with pytest.raises(ah.CompositionError, match=r"b sit\(s\) at 'model.layers.0.self_attn.o_proj', a not"):
        model.add_fusion(ah.Fuse("a", "b", style="adapters"))
    assert not any(".ah_fusions." in k for k in model.state_dict())
    model.add_fusion(ah.Fuse("a", "b"))  # our own style fuses whatever sits at a site


def test_per_row_recipes_and_training_run_the_adapters_style(tmp_path):
    model = our_pair("bert-seqcls", "seq_bn", {}, seed=3)
    fuse = model.ah.active
    ids, mask = batch()
    with torch.no_grad():
        whole = model(input_ids=ids, attention_mask=mask).logits
        model.add_composition("fused", fuse)
        rows = model(input_ids=ids, attention_mask=mask, adapter_names=["fused", None, "fused"]).logits
        model.set_active(None)
        base = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(rows[[0, 2]], whole[[0, 2]], atol=1e-6) and torch.allclose(rows[1], base[1], atol=1e-6)

    model.save_composition(tmp_path / "recipe", fuse, name="fused2")
    fresh = ah.AdapterModel(build("bert-seqcls"))
    assert fresh.load_composition(tmp_path / "recipe", set_active=True) == fuse
    with torch.no_grad():
        assert torch.allclose(fresh(input_ids=ids, attention_mask=mask).logits, whole, atol=1e-6)

    fresh.train_fusion(fuse)
    trainable = [n for n, p in fresh.named_parameters() if p.requires_grad]
    assert trainable and all(".ah_fusions.a+b@adapters." in n for n in trainable)
    fresh(input_ids=ids, attention_mask=mask).logits.sum().backward()  # BERT's 0.1 attention dropout on the scores
    assert all(p.grad is not None for p in fresh.parameters() if p.requires_grad)
    assert set(fresh.fusion_weights(fuse)) == {f"bert.encoder.layer.{i}.output.dense" for i in range(2)}
