"""Per-row batches whose rows carry prompt-tuning or prefix-tuning adapters: run group by group.

Virtual tokens change a row's sequence (prompt tuning prepends embeddings, prefix tuning prepends
keys and values), so rows with different virtual tokens cannot share one pass the way LoRA rows
share a bank. ``RowPlan.virtual_groups`` splits the batch by each row's prompt/prefix adapters; each
group runs as one sub-batch with those encoders and a per-row plan for the rest of its entries
(LoRA rows of a group still share the vectorised pass), and the groups' outputs go back in row
order. A batch with one prompt adapter among LoRA rows therefore costs two passes, not one per row.

What comes back: every tensor whose shape beyond the batch agrees across the groups (a causal LM's
logits are trimmed to the input length, a classifier's are rows x labels). Caches, hidden states
and attentions of groups with different virtual-token counts cannot be stacked and come back as
None. Losses are not merged (each group's is a mean over its own tokens), so ``labels`` are
refused. Generation pads the shorter groups' sequences with the pad token, as a batch pads rows
that finished early.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from adapterhub.compose.batching import per_row
from adapterhub.errors import CompositionError

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel


def forward(model: AdapterModel, plan: per_row.RowPlan, kwargs: dict) -> Any:
    """``model(**kwargs, adapter_names=...)`` for a plan with virtual-token groups."""
    if kwargs.get("labels") is not None:
        raise CompositionError(
            "labels cannot be combined with adapter_names that mix prompt/prefix adapters (each group's loss "
            "is its own mean); compute the loss from the returned logits"
        )
    outs, groups = [], []
    for encoders, rows, names in _groups(model, plan):
        sub = _rows_of(kwargs, rows, plan.rows)
        with per_row.row_plan(model, names, None):
            outs.append(model.forward_with_virtual_tokens((), sub, encoders))
        groups.append(rows)
    return _merge_outputs(outs, groups, plan.rows)


def generate(model: AdapterModel, plan: per_row.RowPlan, kwargs: dict) -> torch.Tensor:
    """``model.generate(**kwargs, adapter_names=...)`` for a plan with virtual-token groups."""
    if kwargs.get("return_dict_in_generate"):
        raise CompositionError(
            "return_dict_in_generate cannot be combined with adapter_names that mix prompt/prefix adapters: "
            "the groups' scores and caches have different lengths"
        )
    pad = kwargs.get("pad_token_id", model.generation_config.pad_token_id)
    if pad is None:
        pad = model.generation_config.eos_token_id
    pad = int((pad[0] if isinstance(pad, (list, tuple)) else pad) or 0)
    parts = []
    for encoders, rows, names in _groups(model, plan):
        sub = _rows_of(kwargs, rows, plan.rows)
        with per_row.row_plan(model, names, None):
            parts.append((rows, model.generate_with_virtual_tokens(sub, encoders)))
    copies = parts[0][1].shape[0] // len(parts[0][0])  # num_return_sequences / beams kept per row
    width = max(seq.shape[1] for _, seq in parts)
    first = parts[0][1]
    out = first.new_full((plan.rows * copies, width), pad)
    for rows, seq in parts:
        index = per_row.expand_rows(torch.tensor(rows), copies).to(seq.device)
        out[index, : seq.shape[1]] = seq
    return out


def _groups(model: AdapterModel, plan: per_row.RowPlan):
    for key, rows in plan.virtual_groups:
        yield [model.ah_prompts[n] for n in key], rows, [plan.entries[i] for i in rows]


def _rows_of(kwargs: dict, rows: list[int], batch: int) -> dict:
    """The call's keyword arguments for these rows: every tensor with the batch as its first dimension is sliced."""
    index = torch.tensor(rows)
    return {k: v.index_select(0, index.to(v.device)) if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == batch
            else v for k, v in kwargs.items()}


def _merge_outputs(outs: list, groups: list[list[int]], batch: int):
    first = outs[0]
    if hasattr(first, "keys"):
        merged = {k: _merge([o.get(k) for o in outs], groups, batch) for k in first.keys()}
        return type(first)(**{k: v for k, v in merged.items() if v is not None})
    return _merge(list(outs), groups, batch)


def _merge(values: list, groups: list[list[int]], batch: int):
    """Stack the groups' values back in row order; None where their shapes disagree."""
    if all(isinstance(v, torch.Tensor) for v in values):
        if any(v.dim() == 0 or v.shape[0] != len(rows) for v, rows in zip(values, groups, strict=True)):
            return None
        if len({tuple(v.shape[1:]) for v in values}) != 1:
            return None
        out = values[0].new_empty((batch, *values[0].shape[1:]))
        for v, rows in zip(values, groups, strict=True):
            out[torch.tensor(rows, device=v.device)] = v
        return out
    if all(isinstance(v, tuple) for v in values) and len({len(v) for v in values}) == 1:
        parts = [_merge([v[i] for v in values], groups, batch) for i in range(len(values[0]))]
        return None if any(p is None for p in parts) else tuple(parts)
    return None
