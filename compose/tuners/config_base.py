"""The config base shared by every method: PEFT-schema (de)serialisation and common fields.

Each method's config is a dataclass; fields carry ``metadata={"help": ...}`` as PEFT's do. Where
our field name differs from PEFT's (``alpha`` vs ``lora_alpha``) the class lists the rename once in
``PEFT_RENAMES`` so that ``adapter_config.json`` is PEFT's schema and loads in PEFT unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from adapterhub.errors import InvalidAdapterError


@dataclass
class AdapterConfig:
    target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module name suffixes, or one regex matched against full names."}
    )
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules (e.g. a classification head) trained and saved with the adapter."}
    )
    task_type: str | None = field(default=None, metadata={"help": "PEFT task type: CAUSAL_LM, SEQ_CLS, ..."})
    base_model_name_or_path: str | None = field(default=None, metadata={"help": "Recorded in the folder."})

    method: ClassVar[str] = ""
    peft_type: ClassVar[str | None] = None
    PEFT_RENAMES: ClassVar[dict[str, str]] = {}
    # our fields that PEFT does not know: kept in adapterhub.json only
    LOCAL_FIELDS: ClassVar[tuple[str, ...]] = ()
    # shared fields PEFT's config for this method lacks: left out of adapter_config.json while unset,
    # or PEFT warns "Unexpected keyword arguments ... upgrade PEFT" on every load
    PEFT_OMITS: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``adapter_config.json`` dict: PEFT's schema where PEFT has the method."""
        out: dict[str, Any] = {"peft_type": self.peft_type or self.method.upper()}
        for f in dataclasses.fields(self):
            if f.name in self.LOCAL_FIELDS:
                continue
            value = getattr(self, f.name)
            if f.name in self.PEFT_OMITS and value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            out[self.PEFT_RENAMES.get(f.name, f.name)] = value
        if self.peft_type:
            out.setdefault("inference_mode", True)
        return out

    def local_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.LOCAL_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any], local: dict[str, Any] | None = None) -> AdapterConfig:
        """Build from an ``adapter_config.json`` dict, ignoring PEFT keys we do not use."""
        back = {v: k for k, v in cls.PEFT_RENAMES.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in data.items():
            key = back.get(key, key)
            if key in names and key not in cls.LOCAL_FIELDS:
                kwargs[key] = value
        for key, value in (local or {}).items():
            if key in cls.LOCAL_FIELDS:
                kwargs[key] = value
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidAdapterError(f"invalid {cls.__name__}: {exc}") from exc

    def _require_positive(self, **values: Any) -> None:
        for name, value in values.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidAdapterError(f"{type(self).__name__}.{name} must be a positive integer, got {value!r}")


def text_config(model_config: Any) -> Any:
    """The language part of a model's config (multimodal configs nest it), where sizes are read."""
    return model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config


def first_attr(model_config: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` the config sets: architectures spell the same size differently."""
    for name in names:
        value = getattr(model_config, name, None)
        if value is not None:
            return value
    return default
