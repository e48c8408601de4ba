"""AdapterHub's `adapters` 1.3 as the referee, both ways: an adapter it makes (stock config, every
parameter seeded random) loads here and gives its logits; one made here, saved with
``format="adapters"``, loads there with its stock config and gives ours. Eval mode, atol 1e-5.

Each direction runs all its cases in one interpreter of the adapters environment (importing torch
and transformers there is most of the cost)."""

from __future__ import annotations

import json

import pytest
import torch

import adapterhub as ah
from adapterhub.compose.folder.keys import adapter_tensors
from tests.helpers.tiny import batch, build
from tests.interop.referee import adapters_logits_many, make_adapters, save_tiny_base

pytestmark = pytest.mark.slow  # each file starts the adapters environment: ~10 s of imports, then the work

ARCHS = {"bert-seqcls": "seqcls", "gpt2": "causal", "llama-causal": "causal"}
BOTTLENECKS = {"seq_bn": {"reduction_factor": 4}, "double_seq_bn": {"reduction_factor": 4},
               "par_bn": {"reduction_factor": 4},
               "bn": {"mh_adapter": True, "output_adapter": True, "reduction_factor": 8, "non_linearity": "gelu",
                      "original_ln_before": True, "residual_before_ln": False, "ln_before": True, "ln_after": True,
                      "adapter_residual_before_ln": True, "scaling": 0.5}}
LORAS = {"lora": {"r": 4, "alpha": 8, "attn_matrices": ["q", "k", "v"]},
         "ia3": {"attn_matrices": ["k", "v"], "intermediate_lora": True}}
# adapters' LoRA on GPT-2 adapts parts of c_attn's fused q, k, v (here q and v): read as one LoRA over it
FUSED = {"lora_qv": ("lora", {"r": 4, "alpha": 16, "attn_matrices": ["q", "v"]}),
         "ia3_kv": ("ia3", {"attn_matrices": ["k", "v"], "intermediate_lora": True})}
CASES = [(a, c, k) for a in ARCHS for c, k in BOTTLENECKS.items()] + [
    (a, c, k) for a in ("bert-seqcls", "llama-causal") for c, k in LORAS.items()]
READ_CASES = CASES + [("gpt2", c, k) for c, k in FUSED.items()]
ATOL = 1e-5


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    return {arch: save_tiny_base(build(arch), root / arch) for arch in ARCHS}


def our_logits(arch: str, base_dir, folder) -> torch.Tensor:
    model = ah.AdapterModel(build(arch))
    model.load_adapter(folder, set_active=True)
    ids, mask = batch()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


@pytest.fixture(scope="module")
def made_there(bases, tmp_path_factory):
    root = tmp_path_factory.mktemp("made-by-adapters")
    jobs = [dict(base_dir=bases[arch], head=ARCHS[arch], config=FUSED[case][0] if case in FUSED else case,
                 kwargs=kwargs[1] if case in FUSED else kwargs, name="x", seed=i, out=root / f"{arch}-{case}")
            for i, (arch, case, kwargs) in enumerate(READ_CASES)]
    folders = make_adapters(jobs)
    ids, mask = batch()
    logits = adapters_logits_many([dict(base_dir=bases[arch], head=ARCHS[arch], adapters=[f], setup="x",
                                        input_ids=ids, attention_mask=mask)
                                   for f, (arch, _, _) in zip(folders, READ_CASES, strict=True)])
    return {case[:2]: (f, t) for case, f, t in zip(READ_CASES, folders, logits, strict=True)}


@pytest.mark.parametrize(("arch", "case"), [c[:2] for c in READ_CASES])
def test_an_adapters_folder_loads_here_with_its_logits(made_there, bases, arch, case):
    folder, theirs = made_there[arch, case]
    ours = our_logits(arch, bases[arch], folder)
    assert (ours - theirs).abs().max().item() < ATOL
    ids, mask = batch()
    with torch.no_grad():
        base = build(arch)(input_ids=ids, attention_mask=mask).logits
    assert (ours - base).abs().max().item() > 1e-3  # the adapter changes something


def our_adapter(arch: str, case: str, seed: int) -> ah.AdapterModel:
    """One of our adapters with every parameter seeded random, as `adapters` would configure it."""
    model = ah.AdapterModel(build(arch))
    task = {"task_type": "SEQ_CLS"} if arch.endswith("seqcls") else {}
    if case in BOTTLENECKS:
        kwargs = {k: v for k, v in BOTTLENECKS[case].items()}
        config = (ah.BottleneckConfig(**kwargs, **task) if case == "bn"
                  else ah.BottleneckConfig.preset(case, **kwargs, **task))
    elif case == "lora":
        config = ah.LoRAConfig(r=4, alpha=8, target_modules=["query", "key", "value"] if arch.startswith("bert")
                               else ["q_proj", "k_proj", "v_proj"], **task)
    else:
        targets = ["key", "value", "intermediate.dense"] if arch.startswith("bert") else ["k_proj", "v_proj", "down_proj"]
        config = ah.IA3Config(target_modules=targets, feedforward_modules=[], **task)
    model.add_adapter("x", config, set_active=True)
    g = torch.Generator().manual_seed(seed)
    for key, param in adapter_tensors(model, "x").items():
        param.data = torch.randn(param.shape, generator=g) * 0.05 + (1.0 if key.endswith("ia3_l") else 0.0)
    return model


def test_our_adapters_load_in_adapters_with_the_stock_config(bases, tmp_path):
    ids, mask = batch()
    jobs, expected = [], []
    for i, (arch, case, _) in enumerate(CASES):
        model = our_adapter(arch, case, seed=100 + i)
        folder = model.save_adapter("x", tmp_path / f"{arch}-{case}", format="adapters")
        written = json.loads((folder / "adapter_config.json").read_text())
        assert written["version"].startswith("adapters.") and isinstance(written["config"], dict)
        with torch.no_grad():
            expected.append(model(input_ids=ids, attention_mask=mask).logits)
            base = build(arch)(input_ids=ids, attention_mask=mask).logits
        assert (expected[-1] - base).abs().max().item() > 1e-3, (arch, case)  # so a dropped adapter shows
        jobs.append(dict(base_dir=bases[arch], head=ARCHS[arch], adapters=[folder], setup="x",
                         input_ids=ids, attention_mask=mask))
    for (arch, case, _), theirs, ours in zip(CASES, adapters_logits_many(jobs), expected, strict=True):
        assert (ours - theirs).abs().max().item() < ATOL, (arch, case)


def test_a_stack_of_bottlenecks_is_adapters_stack(bases, tmp_path):
    """Each adapter of a Stack reads the running output as its sublayer's output (and, Pfeiffer,
    re-applies the LayerNorm); the sublayer's own residual and LayerNorm close it once: as in `adapters`."""
    ids, mask = batch()
    jobs = [dict(base_dir=bases[arch], head=ARCHS[arch], config=config, kwargs={"reduction_factor": 4}, name=name,
                 seed=7 + i, out=tmp_path / f"{arch}-{name}")
            for arch in ARCHS for i, (name, config) in enumerate((("a", "seq_bn"), ("b", "double_seq_bn")))]
    folders = make_adapters(jobs)
    pairs = [folders[i:i + 2] for i in range(0, len(folders), 2)]
    theirs = adapters_logits_many([dict(base_dir=bases[arch], head=ARCHS[arch], adapters=pair,
                                        setup={"stack": ["a", "b"]}, input_ids=ids, attention_mask=mask)
                                   for arch, pair in zip(ARCHS, pairs, strict=True)])
    for arch, pair, expected in zip(ARCHS, pairs, theirs, strict=True):
        model = ah.AdapterModel(build(arch))
        for folder in pair:
            model.load_adapter(folder)
        model.set_active(ah.Stack("a", "b"))
        with torch.no_grad():
            ours = model(input_ids=ids, attention_mask=mask).logits
        assert (ours - expected).abs().max().item() < ATOL, arch


def test_a_hub_style_flex_head_loads_onto_the_models_own_head(bases, tmp_path):
    """AdapterHub's hub adapters carry `adapters`' flex heads (made with AutoAdapterModel): a two-layer
    tanh classification head over the first token is BERT's pooler and classifier."""
    folder, = make_adapters([dict(base_dir=bases["bert-seqcls"], head="flexcls", config="seq_bn",
                                  kwargs={"reduction_factor": 4}, name="topic", seed=3, out=tmp_path / "flex")])
    head = json.loads((folder / "head_config.json").read_text())
    assert head["config"]["head_type"] == "classification" and head["config"]["layers"] == 2
    ids, mask = batch()
    theirs, = adapters_logits_many([dict(base_dir=bases["bert-seqcls"], head="flexcls", adapters=[folder],
                                         setup="topic", input_ids=ids, attention_mask=mask)])
    ours = our_logits("bert-seqcls", bases["bert-seqcls"], folder)
    assert (ours - theirs).abs().max().item() < ATOL
