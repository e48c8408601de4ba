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

from adapterhub.compose.block_layers import layer_at

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
        dtype = self.query.weight.dtype
        stacked = torch.stack([o.to(dtype) for o in outs], dim=-2)  # (..., n, d)
        q = self.query(x.to(dtype)).unsqueeze(-1)  # (..., d, 1)
        scores = (self.key(stacked) @ q).squeeze(-1) / (math.sqrt(stacked.shape[-1]) * temperature)
        probs = scores.softmax(dim=-1)
        self.last_weights = probs.detach().reshape(-1, probs.shape[-1]).mean(0)
        return (probs.unsqueeze(-1) * self.value(stacked)).sum(-2).to(outs[0].dtype)


def new_layer(in_features: int, out_features: int, children: int) -> FusionLayer:
    return FusionLayer(in_features, out_features, children)


def combine(site, block, x: torch.Tensor, out: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    """Executor hook (see ``execute.COMBINERS``)."""
    layer = layer_at(site, ATTR, block.key())
    if layer is None:  # set_active checks the layers exist, so this is a site none of them covers
        return out
    return layer(x, outs, block.kwargs["temperature"])
