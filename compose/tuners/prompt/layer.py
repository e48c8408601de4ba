"""The prompt embedding; its weight is saved under PEFT's key ``prompt_embeddings``."""

from __future__ import annotations

import torch
from torch import nn

from adapterhub.compose.tuners.prompt.config import PromptTuningConfig


class PromptEmbedding(nn.Module):

    def __init__(self, config: PromptTuningConfig, word_embeddings: nn.Embedding, init_token_ids=None):
        super().__init__()
        self.num_virtual_tokens = config.num_virtual_tokens
        self.embedding = nn.Embedding(config.num_virtual_tokens, config.token_dim)
        with torch.no_grad():
            if config.prompt_tuning_init == "SAMPLE_VOCAB":
                ids = torch.randint(0, word_embeddings.weight.shape[0], (config.num_virtual_tokens,))
                self.embedding.weight.copy_(word_embeddings.weight[ids].float())
            elif config.prompt_tuning_init == "TEXT" and init_token_ids is not None:
                ids = torch.tensor(list(init_token_ids), dtype=torch.long)
                reps = -(-config.num_virtual_tokens // max(1, len(ids)))
                ids = ids.repeat(reps)[: config.num_virtual_tokens]
                self.embedding.weight.copy_(word_embeddings.weight[ids].float())

    def prompts(self, batch_size: int) -> torch.Tensor:
        return self.embedding.weight.unsqueeze(0).expand(batch_size, -1, -1)

    def export_weight(self) -> torch.Tensor:
        return self.embedding.weight.detach()

    def import_weight(self, weight: torch.Tensor) -> None:
        with torch.no_grad():
            self.embedding.weight.copy_(weight)
