"""Forward and generate with active prompt-tuning and prefix-tuning adapters.

Forward follows PEFT's semantics (so logits match PEFT's): the attention mask grows by the number of
virtual tokens, prompt embeddings are prepended to the input embeddings, prefixes enter through the
model's own KV-cache interface. Unlike PEFT, the logits of a causal LM are trimmed back to the input
length so that ``logits[:, i]`` always belongs to ``input_ids[:, i]``.

Generation puts the virtual tokens in the KV cache once, then lets transformers' ``generate`` run
unchanged over placeholder ids standing for the cached positions, which are cut from the output.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from adapterhub.compose.tuners.prefix.layer import PrefixEncoder, build_prefix_cache


def split_prompt_adapters(encoders):
    prefixes = [e for e in encoders if isinstance(e, PrefixEncoder)]
    prompts = [e for e in encoders if not isinstance(e, PrefixEncoder)]
    return prompts, prefixes


def _ones(batch: int, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(batch, n, dtype=like.dtype, device=like.device)


def prompt_forward(model, encoders, forward, kwargs: dict):
    prompts, prefixes = split_prompt_adapters(encoders)
    input_ids = kwargs.get("input_ids")
    inputs_embeds = kwargs.get("inputs_embeds")
    ref = input_ids if input_ids is not None else inputs_embeds
    batch, length = ref.shape[0], ref.shape[1]
    n_prompt = sum(p.num_virtual_tokens for p in prompts)
    n_prefix = sum(p.num_virtual_tokens for p in prefixes)
    mask = kwargs.get("attention_mask")
    if mask is not None:
        kwargs["attention_mask"] = torch.cat([_ones(batch, n_prefix + n_prompt, mask), mask], dim=1)
    if prefixes:
        dtype = model.get_input_embeddings().weight.dtype
        kwargs["past_key_values"] = build_prefix_cache(
            model.config, [p.key_values(batch, dtype) for p in prefixes]
        )
        if kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = kwargs["position_ids"] + n_prefix
    if prompts:
        if inputs_embeds is None:
            inputs_embeds = model.get_input_embeddings()(input_ids)
        virtual = torch.cat([p.prompts(batch) for p in prompts], dim=1).to(inputs_embeds.dtype)
        kwargs["inputs_embeds"] = torch.cat([virtual, inputs_embeds], dim=1)
        kwargs["input_ids"] = None
        kwargs["position_ids"] = None
        if kwargs.get("token_type_ids") is not None:
            tt = kwargs["token_type_ids"]
            kwargs["token_type_ids"] = torch.cat([torch.zeros(batch, n_prompt, dtype=tt.dtype, device=tt.device), tt], 1)
        labels = kwargs.get("labels")
        if labels is not None and labels.dim() == 2 and labels.shape[1] == length:
            kwargs["labels"] = torch.cat([torch.full((batch, n_prompt), -100, dtype=labels.dtype, device=labels.device), labels], 1)
    out = forward(**kwargs)
    logits = getattr(out, "logits", None)
    if prompts and logits is not None and logits.dim() == 3 and logits.shape[1] == n_prompt + length:
        out.logits = logits[:, n_prompt:]
    return out


def prompt_generate(model, encoders, forward, generate, kwargs: dict):
    prompts, prefixes = split_prompt_adapters(encoders)
    input_ids = kwargs.pop("input_ids")
    batch = input_ids.shape[0]
    mask = kwargs.pop("attention_mask", None)
    if mask is None:
        mask = torch.ones_like(input_ids)
    dtype = model.get_input_embeddings().weight.dtype
    # generate repeats each row for its beams / returned sequences but cannot repeat a cache it
    # was handed, so the virtual tokens' cache is built for every copy already
    config = kwargs.get("generation_config") or model.generation_config
    copies = max(kwargs.get("num_beams") or config.num_beams or 1,
                 kwargs.get("num_return_sequences") or config.num_return_sequences or 1)
    rows = batch * copies
    if prefixes:
        cache = build_prefix_cache(model.config, [p.key_values(rows, dtype) for p in prefixes])
    else:
        cache = DynamicCache(config=model.config)
    n_prefix = sum(p.num_virtual_tokens for p in prefixes)
    n_prompt = sum(p.num_virtual_tokens for p in prompts)
    if prompts:
        virtual = torch.cat([p.prompts(rows) for p in prompts], dim=1).to(dtype)
        forward(
            inputs_embeds=virtual,
            attention_mask=_ones(rows, n_prefix + n_prompt, mask),
            past_key_values=cache,
            use_cache=True,
        )
    n = n_prefix + n_prompt
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = model.generation_config.eos_token_id
    if isinstance(pad, (list, tuple)):
        pad = pad[0]
    placeholder = torch.full((batch, n), int(pad or 0), dtype=input_ids.dtype, device=input_ids.device)
    out = generate(
        input_ids=torch.cat([placeholder, input_ids], dim=1),
        attention_mask=torch.cat([_ones(batch, n, mask), mask], dim=1),
        past_key_values=cache,
        **kwargs,
    )
    sequences = out.sequences if hasattr(out, "sequences") else out
    sequences = sequences[:, n:]
    if hasattr(out, "sequences"):
        out.sequences = sequences
        return out
    return sequences
