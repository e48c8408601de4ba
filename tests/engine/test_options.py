"""Initialisation and scaling options, checked against their definitions and against PEFT."""

from __future__ import annotations

import peft
import torch

import adapterhub as ah
from tests.helpers.tiny import batch, build


class WordTokenizer:
    """A stand-in tokenizer: any callable returning ``{"input_ids": [...]}`` works for TEXT init."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [10 + len(word) for word in text.split()]}


def test_prompt_text_init_copies_the_texts_token_embeddings():
    model = ah.AdapterModel(build("llama-causal"))
    cfg = ah.PromptTuningConfig(num_virtual_tokens=5, prompt_tuning_init="TEXT", prompt_tuning_init_text="a bb ccc")
    model.add_adapter("p", cfg, tokenizer=WordTokenizer())
    rows = model.ah_prompts["p"].embedding.weight
    vocab = model.get_input_embeddings().weight
    expected_ids = [11, 12, 13, 11, 12]  # the text's tokens, repeated to fill the prompt
    torch.testing.assert_close(rows, vocab[expected_ids])


def test_prompt_text_init_without_tokenizer_is_a_clear_error():
    model = ah.AdapterModel(build("llama-causal"))
    cfg = ah.PromptTuningConfig(num_virtual_tokens=5, prompt_tuning_init="TEXT", prompt_tuning_init_text="hi")
    try:
        model.add_adapter("p", cfg)
    except ah.InvalidAdapterError as exc:
        assert "needs a tokenizer" in str(exc)
    else:
        raise AssertionError("expected InvalidAdapterError")
    assert model.adapters == {}


def test_prompt_sample_vocab_init_uses_vocabulary_rows():
    model = ah.AdapterModel(build("llama-causal"))
    model.add_adapter("p", ah.PromptTuningConfig(num_virtual_tokens=6, prompt_tuning_init="SAMPLE_VOCAB"))
    vocab = model.get_input_embeddings().weight
    for row in model.ah_prompts["p"].embedding.weight:
        assert torch.isclose(vocab, row).all(dim=1).any()


def test_prefix_projection_is_folded_into_the_saved_prefix(tmp_path):
    model = ah.AdapterModel(build("llama-causal"))
    model.add_adapter("x", ah.PrefixTuningConfig(num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=16, task_type="CAUSAL_LM"))
    model.set_active("x")
    ids, mask = batch()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
    model.save_adapter("x", tmp_path / "x", format="peft")
    theirs = peft.PeftModel.from_pretrained(build("llama-causal"), tmp_path / "x").eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=0)


def test_rslora_scaling_matches_peft(tmp_path):
    theirs = peft.get_peft_model(
        build("llama-causal"), peft.LoraConfig(r=4, lora_alpha=8, use_rslora=True, init_lora_weights=False)
    ).eval()
    theirs.save_pretrained(tmp_path / "p")
    ids, mask = batch()
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask).logits
    ours = ah.AdapterModel(build("llama-causal"))
    ours.load_adapter(tmp_path / "p", set_active=True)
    site = ours.get_submodule("model.layers.0.self_attn.q_proj")
    assert site.ah_adapters["p"].scaling == 8 / 2  # alpha / sqrt(r)
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=0)


def test_lora_regex_targets_and_lora_fa_card(tmp_path):
    import json

    model = ah.AdapterModel(build("llama-causal"))
    model.add_adapter("a", ah.LoRAConfig(r=2, lora_fa=True, target_modules=r".*layers\.1\.self_attn\.(q|k)_proj"))
    sites = [n for n, m in model.named_modules() if hasattr(m, "ah_adapters") and "a" in m.ah_adapters]
    assert sites == ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj"]
    folder = model.save_adapter("a", tmp_path / "a")
    card = json.loads((folder / "adapterhub.json").read_text())
    config = json.loads((folder / "adapter_config.json").read_text())
    assert card["training"] == {"lora_fa": True} and card["config_extra"] == {"lora_fa": True}
    assert "lora_fa" not in config and config["peft_type"] == "LORA"
