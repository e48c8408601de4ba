"""Filling an adapter config from the model it attaches to (default targets, sizes, task heads).

Kept apart from ``model.py`` so that the config rules for each method family sit together and
the model file keeps to attaching and running adapters.
"""

from __future__ import annotations

from adapterhub.compose.arch import arch_spec
from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.errors import InvalidAdapterError


def _text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _first(config, *names, default=None):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def fill_model_facts(model, config: AdapterConfig, method) -> None:
    """Complete ``config`` from the model (default targets, sizes, task heads) before it is attached."""
    model_type = getattr(model.config, "model_type", "")
    module = method.site_module
    if method.kind == "site" and config.target_modules is None:
        spec = arch_spec(model_type)
        if hasattr(module, "fill_defaults"):
            module.fill_defaults(config, spec)
        if config.target_modules is None:
            targets = module.default_targets(spec)
            config.target_modules = targets if isinstance(targets, str) else list(targets)
    elif method.kind == "site" and hasattr(module, "fill_defaults"):
        try:
            module.fill_defaults(config, arch_spec(model_type))
        except InvalidAdapterError:
            module.fill_defaults(config, None)
    if config.task_type is None and model.can_generate():
        # PEFT needs the task type to apply prompt/prefix adapters; a causal LM's is unambiguous
        config.task_type = "CAUSAL_LM"
    if config.task_type == "SEQ_CLS" and config.modules_to_save is None:
        config.modules_to_save = [n for n in ("classifier", "score") if hasattr(model, n)] or None
    if config.base_model_name_or_path is None:
        config.base_model_name_or_path = getattr(model.config, "_name_or_path", None) or None
    if method.kind == "prompt":
        text = _text_config(model.config)
        hidden = _first(text, "hidden_size", "n_embd", "d_model")
        heads = _first(text, "num_attention_heads", "n_head", "num_heads")
        if config.num_layers is None:
            config.num_layers = _first(text, "num_hidden_layers", "n_layer", "num_layers")
        if method.name == "prefix_tuning":
            kv_heads = _first(text, "num_key_value_heads", default=heads)
            head_dim = _first(text, "head_dim", default=hidden // heads)
            if config.num_attention_heads is None:
                config.num_attention_heads = kv_heads
            if config.token_dim is None:
                config.token_dim = head_dim * kv_heads
        else:
            config.num_attention_heads = config.num_attention_heads or heads
            config.token_dim = config.token_dim or hidden
