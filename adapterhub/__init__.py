"""adapterhub: a self-hostable hub for parameter-efficient adapters.

The public API, re-exported lazily so that ``import adapterhub`` (and the registry server) never
pays for torch: the engine's names load on first use.

>>> import adapterhub as ah
>>> ah.parse_reference("acme/sentiment:stable").alias
'stable'
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

# A strict editable install links every file into one adapterhub/ tree (which editors follow); a
# checkout's own ./adapterhub, first on sys.path when run from the root, holds only this folder, so
# the subpackages are found in the linked tree (ARCHITECTURE.md, "Installing").
__path__ = pkgutil.extend_path(__path__, __name__)

from adapterhub.errors import (  # noqa: E402
    AdapterHubError,
    AdapterNotFoundError,
    AuthenticationError,
    CompositionError,
    IncompatibleAdapterError,
    InvalidAdapterError,
    InvalidReferenceError,
    OfflineError,
    RegistryError,
    TargetModuleNotFoundError,
)
from adapterhub.registry.reference import Reference, parse_reference

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    "AdapterModel": "adapterhub.compose.core.model",
    "LoRAConfig": "adapterhub.compose.tuners.lora.config",
    "BottleneckConfig": "adapterhub.compose.tuners.bottleneck.config",
    "PromptTuningConfig": "adapterhub.compose.tuners.prompt.config",
    "PrefixTuningConfig": "adapterhub.compose.tuners.prefix.config",
    "IA3Config": "adapterhub.compose.tuners.ia3.config",
    "Stack": "adapterhub.compose.composition.blocks",
    "Fuse": "adapterhub.compose.composition.blocks",
    "Average": "adapterhub.compose.composition.blocks",
    "Route": "adapterhub.compose.composition.blocks",
    "Hub": "adapterhub.registry.client",
    "AdapterServer": "adapterhub.compose.serving.server",
    "ray_deployment": "adapterhub.compose.serving.ray_backend",  # needs adapterhub[ray]
}

__all__ = [
    "AdapterHubError",
    "AdapterNotFoundError",
    "AuthenticationError",
    "CompositionError",
    "IncompatibleAdapterError",
    "InvalidAdapterError",
    "InvalidReferenceError",
    "OfflineError",
    "Reference",
    "RegistryError",
    "TargetModuleNotFoundError",
    "parse_reference",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adapterhub' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
