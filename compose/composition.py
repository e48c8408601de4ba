"""Composition blocks, as small plain classes (AdapterHub ``adapters``' ``composition.py`` is the model).

A block names adapters (or nested blocks). ``to_dict``/``from_dict`` use the
``{"type", "children", "kwargs"}`` shape so a composition can be saved as a recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapterhub.errors import CompositionError


class Block:
    """Base of every composition block: an ordered tuple of children."""

    def __init__(self, *children: str | Block, **kwargs: Any):
        if not children:
            raise CompositionError(f"{type(self).__name__} needs at least one adapter")
        for child in children:
            if not isinstance(child, (str, Block)):
                raise CompositionError(
                    f"{type(self).__name__} children must be adapter names or blocks, got {type(child).__name__}"
                )
        self.children: tuple[str | Block, ...] = tuple(children)
        self.kwargs = kwargs

    def leaves(self) -> tuple[str, ...]:
        out: list[str] = []
        for child in self.children:
            out.extend(child.leaves() if isinstance(child, Block) else [child])
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "children": [c.to_dict() if isinstance(c, Block) else c for c in self.children],
            "kwargs": dict(self.kwargs),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Block) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        args = [repr(c) for c in self.children] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{type(self).__name__}({', '.join(args)})"


class Stack(Block):
    """Apply adapters in order at every site: bottleneck outputs feed the next, LoRA deltas add,
    prompts and prefixes concatenate, IA³ scalings multiply.

    >>> Stack("lang_de", "sentiment").leaves()
    ('lang_de', 'sentiment')
    """


BLOCKS: dict[str, type[Block]] = {"Stack": Stack}


def block_from_dict(data: dict[str, Any] | str) -> Block | str:
    if isinstance(data, str):
        return data
    if not isinstance(data, dict) or data.get("type") not in BLOCKS:
        raise CompositionError(f"unknown composition block {data!r}; known: {', '.join(BLOCKS)}")
    children = [block_from_dict(c) for c in data.get("children", [])]
    return BLOCKS[data["type"]](*children, **data.get("kwargs", {}))


def normalize(active: str | Block | Sequence[str] | None) -> Block | str | None:
    """Accept a name, a block, or a list of names (a Stack), as PEFT's ``set_adapter`` does."""
    if active is None or isinstance(active, (str, Block)):
        return active
    if isinstance(active, Sequence):
        return Stack(*active) if len(active) != 1 else active[0]
    raise CompositionError(f"cannot activate {active!r}: expected an adapter name, a list of names or a block")


def leaves_of(active: str | Block | None) -> tuple[str, ...]:
    if active is None:
        return ()
    return (active,) if isinstance(active, str) else active.leaves()
