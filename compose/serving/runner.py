"""One batch of rows on the model: padded to one tensor, run with per-row ``adapter_names``.

Apart from the batcher so that what a row's answer is (greedy tokens up to the first EOS, or the
card's labels with their probabilities) is read in one place, with torch only here.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from adapterhub.compose.serving.requests import Classification, Completion, Request


class BatchRunner:
    """Runs rows of one kind together on ``model`` (an `AdapterModel`).

    ``model_lock`` keeps adapters from being attached or removed while a batch runs;
    ``tokenizer_lock`` is held for decoding, because a fast tokenizer is not safe to call from
    several threads at once and requests are encoded on other threads meanwhile.
    """

    def __init__(self, model: Any, tokenizer: Any, *, model_lock: threading.Lock, tokenizer_lock: threading.Lock):
        self.model, self.tokenizer = model, tokenizer
        self.model_lock, self.tokenizer_lock = model_lock, tokenizer_lock

    def __call__(self, rows: list[Request]) -> list[Completion] | list[Classification]:
        """Left-padded for generation (new tokens must follow every prompt), else as the tokenizer pads."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(r.ids) for r in rows)
        left = rows[0].kind == "generate" or self.tokenizer.padding_side == "left"
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            span = slice(width - len(r.ids), width) if left else slice(0, len(r.ids))
            ids[i, span] = torch.tensor(r.ids)
            mask[i, span] = 1
        device = next(self.model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        names = [r.entry.name for r in rows]
        if rows[0].kind == "generate":
            return self._generate(rows, ids, mask, names, pad)
        return self._classify(rows, ids, mask, names)

    def _generate(self, rows, ids, mask, names, pad) -> list[Completion]:
        steps = max(r.max_tokens for r in rows)
        if steps == 0:
            out = ids
        else:
            with self.model_lock, torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask, adapter_names=names,
                                          max_new_tokens=steps, min_new_tokens=0, do_sample=False,
                                          pad_token_id=pad, num_beams=1)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        results = []
        for i, r in enumerate(rows):
            new = out[i, ids.shape[1]:].tolist()[: r.max_tokens]
            reason = "length"
            for j, t in enumerate(new):
                if t in eos_ids:
                    new, reason = new[:j], "stop"
                    break
            with self.tokenizer_lock:
                text = self.tokenizer.decode(new, skip_special_tokens=True)
            results.append(Completion(text, new, len(r.ids), reason, r.resolved))
        return results

    def _classify(self, rows, ids, mask, names) -> list[Classification]:
        with self.model_lock, torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask, adapter_names=names).logits
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        id2label = getattr(self.model.config, "id2label", None) or {}
        results = []
        for i, r in enumerate(rows):
            labels = r.entry.labels if r.entry.labels and len(r.entry.labels) == probs.shape[1] else [
                str(id2label.get(j, j)) for j in range(probs.shape[1])]
            p = {label: float(probs[i, j]) for j, label in enumerate(labels)}
            results.append(Classification(max(p, key=p.get), p, r.resolved))
        return results


__all__ = ["BatchRunner"]
