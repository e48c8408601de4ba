"""The words every room shares: adapter methods, training presets and tasks, written once.

The engine, the registry, the CLI and the UI each need these names, and the server and the CLI must
not pay for torch to know them; before this module they were retyped in six places and drifted
(a task was ``"lm"`` here, ``"causal-lm"``, ``"text-generation"`` or ``"CAUSAL_LM"`` there). A task
is one object that knows all of its spellings; a method is one row that says how it attaches, so
the engine branches on a property of the row, never on a string.

>>> task_named("text-generation").peft_task_type
'CAUSAL_LM'
>>> METHODS["prefix_tuning"].virtual_tokens, METHODS["lora"].at_sites
(True, True)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MethodKind(enum.Enum):
    """Where an adapter method lives in the model, which decides how it is built, saved and batched."""

    SITE = "site"  # a small module at Linear/Conv1D sites (LoRA, IA³, bottleneck)
    VIRTUAL_TOKENS = "virtual_tokens"  # learned tokens or KV prefixes before the input (prompt, prefix)


@dataclass(frozen=True)
class MethodInfo:
    """One adapter method: our name, how it attaches, and how PEFT names it."""

    name: str
    kind: MethodKind
    peft_type: str | None  # None: PEFT has no such method; our folder says ``peft_type: NAME.upper()``
    label: str
    mergeable: bool = False  # foldable into the base weights (and back, exactly)
    output_composable: bool = False  # its site output can be fused, averaged or routed

    @property
    def at_sites(self) -> bool:
        return self.kind is MethodKind.SITE

    @property
    def virtual_tokens(self) -> bool:
        return self.kind is MethodKind.VIRTUAL_TOKENS

    @property
    def folder_peft_type(self) -> str:
        """What ``adapter_config.json`` says: PEFT's type where PEFT has the method, else ours."""
        return self.peft_type or self.name.upper()


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("lora", MethodKind.SITE, "LORA", "LoRA", mergeable=True, output_composable=True),
        MethodInfo("ia3", MethodKind.SITE, "IA3", "IA³", mergeable=True),
        MethodInfo("bottleneck", MethodKind.SITE, None, "bottleneck adapter", output_composable=True),
        MethodInfo("prompt_tuning", MethodKind.VIRTUAL_TOKENS, "PROMPT_TUNING", "prompt tuning"),
        MethodInfo("prefix_tuning", MethodKind.VIRTUAL_TOKENS, "PREFIX_TUNING", "prefix tuning"),
    )
}

# what `adapterhub train --method` takes: every method, plus named settings of one (LoRA-FA is LoRA
# with A frozen; Pfeiffer, Houlsby and parallel are AdapterHub's SeqBn, DoubleSeqBn and ParBn bottlenecks)
TRAINING_PRESETS: dict[str, str] = {
    "lora": "lora",
    "lora_fa": "lora",
    "ia3": "ia3",
    "bottleneck": "bottleneck",
    "pfeiffer": "bottleneck",
    "houlsby": "bottleneck",
    "parallel": "bottleneck",
    "prompt_tuning": "prompt_tuning",
    "prefix_tuning": "prefix_tuning",
}


def method_named(name: str) -> MethodInfo:
    """The method called ``name`` (ours, or PEFT's ``peft_type`` in any case)."""
    key = str(name).lower()
    if key in METHODS:
        return METHODS[key]
    for method in METHODS.values():
        if method.folder_peft_type.lower() == key:
            return method
    raise ValueError(f"unknown adapter method {name!r}; known: {', '.join(METHODS)}")


@dataclass(frozen=True)
class Task:
    """One task under each of its names: ours (CLI, cards, datasets), PEFT's and the Hub's."""

    name: str
    peft_task_type: str  # PEFT's ``task_type`` in adapter_config.json
    pipeline_tag: str  # the Hugging Face Hub's pipeline tag, which our cards and search store

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, self.peft_task_type, self.pipeline_tag)

    def __str__(self) -> str:
        return self.name


CLASSIFICATION = Task("classification", "SEQ_CLS", "text-classification")
LM = Task("lm", "CAUSAL_LM", "text-generation")
TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, LM)}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def task_named(value: str | Task | None) -> Task | None:
    """The task any of its spellings names (``lm``, ``CAUSAL_LM``, ``text-generation``), or None."""
    if isinstance(value, Task) or value is None:
        return value
    key = str(value)
    for task in TASKS.values():
        if key in task.spellings or key.upper() == task.peft_task_type:
            return task
    return None


__all__ = [
    "CLASSIFICATION", "LM", "METHODS", "TASKS", "TASK_NAMES", "TRAINING_PRESETS", "MethodInfo", "MethodKind",
    "Task", "method_named", "task_named",
]
