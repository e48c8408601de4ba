"""What a method's ``tuners/<method>/model.py`` provides, by the kind of method it is.

The core never asks which method it holds: it asks the method's row (``adapterhub.vocab``) where
the method lives and calls the functions below on its model module. A new method is a new folder
that meets one of these two contracts, plus one row in ``adapterhub.vocab.METHODS`` and one in
``adapterhub.compose.tuners.TUNERS``.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from adapterhub.compose.tuners.config_base import AdapterConfig


class SiteTuner(Protocol):
    """A method that puts a small module at ``Linear``/``Conv1D`` sites (LoRA, IA³, bottleneck)."""

    def default_targets(self, spec: Any) -> tuple[str, ...] | str:
        """The sites to attach at when the config names none, from the architecture's row."""

    def build_layer(self, site: nn.Module, name: str, config: AdapterConfig) -> nn.Module:
        """The per-site module; ``site`` carries ``in_out_features`` and ``fan_in_fan_out``."""

    def trainable_parameters(self, layer: nn.Module, config: AdapterConfig) -> list[nn.Parameter]:
        """What ``train_adapter`` unfreezes (LoRA-FA: only B)."""

    # optional: fill_defaults(config, spec) completes method options from the architecture's row


class VirtualTokenTuner(Protocol):
    """A method that puts learned tokens or KV prefixes before the input (prompt, prefix tuning)."""

    def fill_defaults(self, config: AdapterConfig, text_config: Any) -> None:
        """Sizes the config leaves open, from the model's (text) config."""

    def build_encoder(self, model: nn.Module, config: AdapterConfig, tokenizer: Any = None) -> nn.Module:
        """The module that yields the virtual tokens (``prompts(batch)`` or ``key_values(batch, dtype)``)."""
