"""Finding target modules by PEFT's rules: a list matches name suffixes, a string is a full-name regex."""

from __future__ import annotations

import difflib
import re

from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterhub.compose.tuners.site import base_named_modules, site_facts
from adapterhub.errors import InvalidAdapterError, TargetModuleNotFoundError


def matches(name: str, targets: list[str] | tuple[str, ...] | str) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def find_targets(model: nn.Module, targets: list[str] | tuple[str, ...] | str, adapter: str) -> list[str]:
    """Names of the modules ``targets`` selects; raise listing the closest names when one matches nothing."""
    if isinstance(targets, str):
        try:
            re.compile(targets)
        except re.error as exc:
            raise InvalidAdapterError(f"adapter {adapter!r}: target_modules regex {targets!r} is invalid: {exc}") from exc
    names = [n for n, _ in base_named_modules(model) if n]
    found = [n for n in names if matches(n, targets)]
    missing = [] if isinstance(targets, str) else [t for t in targets if not any(matches(n, [t]) for n in found)]
    if not found or missing:
        wanted = targets if isinstance(targets, str) else ", ".join(missing or targets)
        candidates = sorted({n.rsplit(".", 1)[-1] for n, m in base_named_modules(model) if isinstance(m, (nn.Linear, Conv1D))})
        close = difflib.get_close_matches(str(missing[0] if missing else targets), candidates, n=5, cutoff=0.3)
        hint = close or candidates[:8]
        raise TargetModuleNotFoundError(
            f"adapter {adapter!r}: target module(s) {wanted} match nothing in {type(model).__name__}; "
            f"closest names: {', '.join(hint)}"
        )
    return found


def find_heads(model: nn.Module, modules_to_save: list[str] | None, adapter: str) -> list[str]:
    """Modules to copy per adapter. As in PEFT, names that match nothing are skipped (a SEQ_CLS
    config lists both ``classifier`` and ``score``), but a list that matches nothing at all is an error."""
    if not modules_to_save:
        return []
    names = [n for n, _ in base_named_modules(model) if n]
    found = [n for n in names if any(re.fullmatch(t, n) if _is_regex(t) else matches(n, [t]) for t in modules_to_save)]
    if not found:
        raise TargetModuleNotFoundError(
            f"adapter {adapter!r}: modules_to_save {modules_to_save} match nothing in {type(model).__name__}"
        )
    return found


def _is_regex(text: str) -> bool:
    return any(c in text for c in "|\\()[]*+?^$")


def build_sites(model: nn.Module, method, config, adapter: str):
    """Every site layer the adapter needs, built but not attached, and what attaches the method's
    extras at each site (a bottleneck's residual taps): all the checks that can fail run here."""
    built: list[tuple[nn.Module, str, nn.Module]] = []
    for site_name in find_targets(model, config.target_modules, adapter):
        module = model.get_submodule(site_name)
        built.append((module, site_name, method.tuner.build_layer(site_facts(module, site_name), site_name, config)))
    if hasattr(config, "fan_in_fan_out"):
        config.fan_in_fan_out = any(site_facts(m, n).fan_in_fan_out for m, n, _ in built)
    plan = getattr(method.tuner, "plan_sites", None)
    prepare = plan(model, [n for _, n, _ in built], config) if plan else (lambda name, site: None)
    return built, prepare
