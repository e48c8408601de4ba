"""AdapterFusion (Pfeiffer et al., 2021): per site, attention over the outputs of several adapters.

The query comes from the site's input, keys and values from each adapter's output at the site.
The query starts at zero and the value projection at the identity, so an untrained fusion is
exactly the mean of its adapters' outputs and training moves it from there. The attention
weights of the last forward are kept on each layer (``last_weights``, averaged over tokens) so that
``model.fusion_weights(fuse)`` can draw a per-layer heatmap.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from adapterhub.compose.composition.block_layers import layer_at

ATTR = "ah_fusions"
PEFT_TYPE = "ADAPTER_FUSION"


class FusionLayer(nn.Module):
    """``softmax(q(x) . k(o_i) / (sqrt(d) T))``-weighted sum of ``v(o_i)`` over adapter outputs ``o_i``."""

    def __init__(self, in_features: int, out_features: int, children: int):
        super().__init__()
        self.query = nn.Linear(in_features, out_features)
        self.key = nn.Linear(out_features, out_features)
        self.value = nn.Linear(out_features, out_features, bias=False)
        with torch.no_grad():
            nn.init.zeros_(self.query.weight)
            nn.init.zeros_(self.query.bias)
            nn.init.normal_(self.key.weight, std=0.02)
            nn.init.zeros_(self.key.bias)
            self.value.weight.copy_(torch.eye(out_features))
        self.children_count = children
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, outs: list[torch.Tensor], temperature: float) -> torch.Tensor:
        """The formula above, computed without projecting every adapter's output twice.

        ``k(o_i) . q = o_i . (W_k^T q) + b_k . q``: the last term is the same for every ``i`` and
        cancels in the softmax, so one ``W_k^T q`` per token replaces n key projections; and with a
        bias-free value projection ``sum_i p_i v(o_i) = v(sum_i p_i o_i)``, one projection replaces
        n. Out of training, query and key fold into one matrix. A Fuse of two adapters went from
        five d x d products per site to two."""
        dtype = self.query.weight.dtype
        stacked = torch.stack([o.to(dtype) for o in outs], dim=-2)  # (..., n, d)
        if torch.is_grad_enabled():
            qk = self.query(x.to(dtype)) @ self.key.weight  # (..., d): W_k^T q(x)
        else:
            qk = torch.nn.functional.linear(x.to(dtype), *self._folded_query_key())
        scores = (stacked @ qk.unsqueeze(-1)).squeeze(-1) / (math.sqrt(stacked.shape[-1]) * temperature)
        probs = scores.softmax(dim=-1)
        self.last_weights = probs.detach().reshape(-1, probs.shape[-1]).mean(0)
        mixed = (probs.unsqueeze(-2) @ stacked).squeeze(-2)  # (..., d)
        return self.value(mixed).to(outs[0].dtype)

    def _folded_query_key(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` with ``x W^T + b = W_k^T q(x)``, for use without autograd: one product per
        token instead of two. Folded again only when a weight changes."""
        q_w, q_b, k_w = self.query.weight, self.query.bias, self.key.weight
        stamp = tuple((id(t), t._version) for t in (q_w, q_b, k_w))
        folded = self.__dict__.get("_folded")
        if folded is None or folded[0] != stamp:
            folded = (stamp, k_w.t() @ q_w, q_b @ k_w)
            self.__dict__["_folded"] = folded
        return folded[1], folded[2]


def new_layer(in_features: int, out_features: int, children: int) -> FusionLayer:
    return FusionLayer(in_features, out_features, children)


def combine(site, block, x: torch.Tensor, out: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    """Executor hook (see ``execute.COMBINERS``)."""
    layer = layer_at(site, ATTR, block.key())
    if layer is None:  # set_active checks the layers exist, so this is a site none of them covers
        return out
    return layer(x, outs, block.kwargs["temperature"])
