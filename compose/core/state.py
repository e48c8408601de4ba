"""What an ``AdapterModel`` knows about its adapters, declared in one object.

The model is a transformers model whose class was swapped in place, so it has no constructor of
ours to declare fields in; this object is its one extra attribute (``model.ah``). Every module that
reads or changes what is loaded or active goes through it, by its public field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.compose.tuners.site import AdapterState


@dataclass(eq=False)
class ModelAdapters:
    """The adapters on one model: their configs, what is active, and where each came from."""

    # what the sites read on every forward (active names, plans); the same object every site holds
    state: AdapterState = field(default_factory=AdapterState)
    configs: dict[str, AdapterConfig] = field(default_factory=dict)
    active: Any = None  # the active composition (a name, a tuple of names, a Block) or None
    active_name: str | None = None  # the registered composition it came from; a saved recipe keeps it
    compositions: dict[str, Any] = field(default_factory=dict)  # registered name -> Block or name
    sources: dict[str, str] = field(default_factory=dict)  # adapter name -> registry reference loaded
    card_facts: dict[str, dict] = field(default_factory=dict)  # adapter name -> what its card said it is for
