"""Filling an adapter config from the model it attaches to (default targets, sizes, task heads).

Kept apart from ``model.py`` so that the config rules for each method family sit together and
the model file keeps to attaching and running adapters.
"""

from __future__ import annotations

from adapterhub.compose.core.arch import arch_spec
from adapterhub.compose.tuners.config_base import AdapterConfig, text_config
from adapterhub.errors import InvalidAdapterError
from adapterhub.vocab import CLASSIFICATION, LM


def fill_model_facts(model, config: AdapterConfig, method) -> None:
    """Complete ``config`` from the model (default targets, sizes, task heads) before it is attached."""
    model_type = getattr(model.config, "model_type", "")
    module = method.tuner
    if method.info.at_sites and config.target_modules is None:
        spec = arch_spec(model_type)
        if hasattr(module, "fill_defaults"):
            module.fill_defaults(config, spec)
        if config.target_modules is None:
            targets = module.default_targets(spec)
            config.target_modules = targets if isinstance(targets, str) else list(targets)
    elif method.info.at_sites and hasattr(module, "fill_defaults"):
        try:
            module.fill_defaults(config, arch_spec(model_type))
        except InvalidAdapterError:
            module.fill_defaults(config, None)
    if config.task_type is None and model.can_generate():
        # PEFT needs the task type to apply prompt/prefix adapters; a causal LM's is unambiguous
        config.task_type = LM.peft_task_type
    if config.task_type == CLASSIFICATION.peft_task_type and config.modules_to_save is None:
        config.modules_to_save = [n for n in ("classifier", "score") if hasattr(model, n)] or None
    if config.base_model_name_or_path is None:
        config.base_model_name_or_path = getattr(model.config, "_name_or_path", None) or None
    if method.info.virtual_tokens:
        method.tuner.fill_defaults(config, text_config(model.config))
