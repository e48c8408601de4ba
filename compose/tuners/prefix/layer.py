"""The prefix encoder; it exports the final prefix as PEFT's ``prompt_embeddings`` (MLP folded in)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import DynamicCache

from adapterhub.compose.tuners.prefix.config import PrefixTuningConfig


class PrefixEncoder(nn.Module):

    def __init__(self, config: PrefixTuningConfig):
        super().__init__()
        self.num_virtual_tokens = config.num_virtual_tokens
        self.num_layers = config.num_layers
        self.num_heads = config.num_attention_heads
        self.token_dim = config.token_dim
        out_dim = config.num_layers * 2 * config.token_dim
        if config.prefix_projection:
            hidden = config.encoder_hidden_size or config.token_dim
            self.embedding = nn.Embedding(config.num_virtual_tokens, config.token_dim)
            self.transform = nn.Sequential(nn.Linear(config.token_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))
        else:
            self.embedding = nn.Embedding(config.num_virtual_tokens, out_dim)
            self.transform = None

    def flat(self) -> torch.Tensor:
        """(num_virtual_tokens, num_layers * 2 * token_dim), the layout PEFT saves."""
        weight = self.embedding.weight
        return self.transform(weight) if self.transform is not None else weight

    def key_values(self, batch_size: int, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (key, value), each (batch, kv_heads, num_virtual_tokens, head_dim)."""
        n, heads = self.num_virtual_tokens, self.num_heads
        kv = self.flat().to(dtype).view(n, self.num_layers * 2, heads, self.token_dim // heads)
        kv = kv.permute(1, 2, 0, 3).unsqueeze(1).expand(-1, batch_size, -1, -1, -1)
        return [(kv[2 * i], kv[2 * i + 1]) for i in range(self.num_layers)]

    def export_weight(self) -> torch.Tensor:
        return self.flat().detach()

    def import_weight(self, weight: torch.Tensor) -> None:
        """Loaded prefixes are final values: drop the MLP (as PEFT does in inference mode)."""
        self.transform = None
        self.embedding = nn.Embedding(weight.shape[0], weight.shape[1])
        with torch.no_grad():
            self.embedding.weight.copy_(weight)


def build_prefix_cache(config, kv_per_adapter: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> DynamicCache:
    """One cache holding every active prefix, concatenated along the sequence in stack order."""
    cache = DynamicCache(config=config)
    num_layers = len(kv_per_adapter[0])
    for layer in range(num_layers):
        keys = torch.cat([kv[layer][0] for kv in kv_per_adapter], dim=2)
        values = torch.cat([kv[layer][1] for kv in kv_per_adapter], dim=2)
        cache.update(keys, values, layer)
    return cache
