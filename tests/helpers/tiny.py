"""Tiny random-initialised transformers models, built from configs (no download anywhere)."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
)

VOCAB = 96


def llama_config(**kw) -> LlamaConfig:
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128, pad_token_id=0,
                bos_token_id=1, eos_token_id=2)
    base.update(kw)
    return LlamaConfig(**base)


def build(arch: str, seed: int = 0, **kw):
    """``arch`` in llama-causal, llama-seqcls, gpt2, bert-seqcls; returns an eval-mode model."""
    torch.manual_seed(seed)
    if arch == "llama-causal":
        model = LlamaForCausalLM(llama_config(**kw))
    elif arch == "llama-seqcls":
        model = LlamaForSequenceClassification(llama_config(num_labels=3, **kw))
    elif arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=128,
                                           pad_token_id=0, bos_token_id=1, eos_token_id=2, **kw))
    elif arch == "bert-seqcls":
        model = BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                         intermediate_size=64, vocab_size=VOCAB,
                                                         max_position_embeddings=128, num_labels=3, **kw))
    else:
        raise ValueError(arch)
    return model.eval()


def is_causal(arch: str) -> bool:
    return arch in ("llama-causal", "gpt2")


def batch(seed: int = 1, rows: int = 3, length: int = 9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    return ids, mask


ARCHS = ("llama-causal", "llama-seqcls", "gpt2", "bert-seqcls")


def word_tokenizer(words: list[str]):
    """A whitespace word-level tokenizer over ``words`` (plus BERT's special tokens), built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]")
