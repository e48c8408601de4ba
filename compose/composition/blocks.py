"""Composition blocks, as small plain classes (AdapterHub ``adapters``' ``composition.py`` is the model).

A block names adapters (or nested blocks). ``to_dict``/``from_dict`` use the
``{"type", "children", "kwargs"}`` shape so a composition can be saved as a recipe. What may nest
in what, and which adapter methods each block can combine, is one table (``ALLOWED_NESTINGS``)
read by one function (``validate``), so the rule is written once.

>>> block = Stack("lang_de", Fuse("a", "b"))
>>> block_from_dict(block.to_dict()) == block
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from adapterhub.errors import CompositionError
from adapterhub.vocab import METHODS

ALL_METHODS = frozenset(METHODS)
# Methods whose per-site output can be combined as "output + delta": the blocks that weigh or
# attend over several outputs at one site need that (IA³ on FFN inputs and prompts have none).
OUTPUT_METHODS = frozenset(m.name for m in METHODS.values() if m.output_composable)


class Block:
    """Base of every composition block: an ordered tuple of children plus explicit keyword options."""

    def __init__(self, *children: str | Block, **kwargs: Any):
        if not children:
            raise CompositionError(f"{type(self).__name__} needs at least one adapter")
        for child in children:
            if not isinstance(child, (str, Block)):
                raise CompositionError(
                    f"{type(self).__name__} children must be adapter names or blocks, got {type(child).__name__}"
                )
        self.children: tuple[str | Block, ...] = tuple(children)
        self.kwargs: dict[str, Any] = kwargs

    def leaves(self) -> tuple[str, ...]:
        out: list[str] = []
        for child in self.children:
            out.extend(child.leaves() if isinstance(child, Block) else [child])
        return tuple(out)

    def key(self) -> str:
        """A module-name-safe identity of the children (fusion/router layers are stored under it)."""
        return "+".join(c if isinstance(c, str) else f"[{type(c).__name__}:{c.key()}]" for c in self.children)

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


# ``adapters``' AdapterFusion options (its ``DynamicAdapterFusionConfig``, the default there), for
# ``Fuse(..., style="adapters")``. Its ``temperature`` (an annealing from 50 down to 1, one step per
# forward) has no static equivalent and is not among them; ``Fuse(temperature=...)`` divides the scores.
ADAPTERS_FUSION_OPTIONS: dict[str, Any] = {
    "key": True, "query": True, "value": True, "query_before_ln": False, "regularization": True,
    "residual_before": False, "value_before_softmax": True, "value_initialized": True, "dropout_prob": None,
}
FUSE_STYLES = ("adapterhub", "adapters")


class Fuse(Block):
    """AdapterFusion: per site, attention over the children's outputs (by default, query from the site input).

    The fusion layers are trainable and added with ``model.add_fusion(Fuse(...))``; the adapters
    stay frozen. ``temperature`` divides the attention scores.

    ``style="adapters"`` is AdapterHub ``adapters``' own fusion (``BertFusion`` at each bottleneck
    site, over bottleneck adapters only): the query is the sublayer's hidden state as the last
    adapter reads it, keys and values are each adapter's bottleneck output before its residual, and
    the residual is added after. ``options`` override ``ADAPTERS_FUSION_OPTIONS`` (its config keys).
    Its layers are other layers than the default style's (the key says so).

    >>> Fuse("a", "b", temperature=2.0).kwargs
    {'temperature': 2.0}
    >>> Fuse("a", "b", style="adapters").key()
    'a+b@adapters'
    """

    def __init__(self, *children: str | Block, temperature: float = 1.0, style: str = "adapterhub",
                 options: dict[str, Any] | None = None):
        if not float(temperature) > 0:
            raise CompositionError(f"Fuse temperature must be > 0, got {temperature!r}")
        if style not in FUSE_STYLES:
            raise CompositionError(f"Fuse style must be one of {', '.join(FUSE_STYLES)}, got {style!r}")
        if style == "adapterhub":
            if options:
                raise CompositionError("Fuse options are adapters' fusion options: pass style='adapters' with them")
            super().__init__(*children, temperature=float(temperature))
            return
        unknown = sorted(set(options or {}) - set(ADAPTERS_FUSION_OPTIONS))
        if unknown:
            raise CompositionError(f"unknown adapters fusion option {unknown[0]!r}; known: "
                                   f"{', '.join(sorted(ADAPTERS_FUSION_OPTIONS))}")
        full = {**ADAPTERS_FUSION_OPTIONS, **(options or {})}
        for name, value in full.items():
            if name == "dropout_prob":
                if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)
                                              and 0 <= value < 1):
                    raise CompositionError(f"Fuse option dropout_prob must be null or in [0, 1), got {value!r}")
            elif not isinstance(value, bool):
                raise CompositionError(f"Fuse option {name} must be true or false, got {value!r}")
        if not (full["query"] or full["key"] or full["value"]):
            raise CompositionError("Fuse options query, key and value are all false: adapters then keeps an "
                                   "unused 'dense' layer instead, which is not supported")
        super().__init__(*children, temperature=float(temperature), style=style, options=full)

    @property
    def style(self) -> str:
        return self.kwargs.get("style", "adapterhub")

    def key(self) -> str:
        """An ``adapters``-style fusion's layers are others than the default's; options that change
        the network (not those that only train or initialise it) are in the key too."""
        if self.style == "adapterhub":
            return super().key()
        changed = sorted(k for k in ("key", "query", "value", "query_before_ln", "residual_before")
                         if self.kwargs["options"][k] != ADAPTERS_FUSION_OPTIONS[k])
        return f"{super().key()}@adapters" + "".join(f"_{_SHORT[k]}" for k in changed)


_SHORT = {"key": "nokey", "query": "noquery", "value": "novalue", "query_before_ln": "qbln",
          "residual_before": "rb"}


class Average(Block):
    """Fixed weighted sum of the children's outputs: ``out + sum_i w_i (out_i - out)``.

    For LoRA that is the sum of the weighted deltas; for bottleneck adapters (whose weights are
    normalised by default) the weighted sum of their outputs.

    >>> Average("a", "b", weights=[3, 1]).weights
    (0.75, 0.25)
    """

    def __init__(self, *children: str | Block, weights: Sequence[float] | None = None, normalize: bool = True):
        raw = [1.0] * len(children) if weights is None else [float(w) for w in weights]
        if len(raw) != len(children):
            raise CompositionError(f"Average has {len(children)} children but {len(raw)} weights")
        if normalize and sum(raw) == 0:
            raise CompositionError("Average weights sum to 0 and cannot be normalised; pass normalize=False")
        super().__init__(*children, weights=raw, normalize=bool(normalize))

    @property
    def weights(self) -> tuple[float, ...]:
        raw = self.kwargs["weights"]
        total = sum(raw) if self.kwargs["normalize"] else 1.0
        return tuple(w / total for w in raw)


ROUTER_SCOPES = ("site", "layer", "shared")


class Route(Block):
    """Mixture of adapter experts: a trainable router picks ``top_k`` children per token.

    Gates are the softmax over the chosen experts' logits (renormalised); ``noise_std`` adds
    Gaussian noise to the logits while training; ``aux_loss_coef`` weighs the load-balancing loss
    added to the model's loss. ``scope`` says how many routers there are: one per adapter site
    (``"site"``), one per transformer layer shared by that layer's sites (``"layer"``), or one for
    the whole model (``"shared"``); sites of different input widths never share one.

    >>> Route("math", "code", top_k=1).kwargs["top_k"]
    1
    >>> Route("math", "code", scope="layer").key()
    'math+code@layer'
    """

    def __init__(self, *children: str | Block, top_k: int = 1, noise_std: float = 0.0, aux_loss_coef: float = 0.01,
                 scope: str = "site"):
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= len(children):
            raise CompositionError(f"Route top_k must be an integer in [1, {len(children)}], got {top_k!r}")
        if float(noise_std) < 0 or float(aux_loss_coef) < 0:
            raise CompositionError("Route noise_std and aux_loss_coef must be >= 0")
        if scope not in ROUTER_SCOPES:
            raise CompositionError(f"Route scope must be one of {', '.join(ROUTER_SCOPES)}, got {scope!r}")
        super().__init__(*children, top_k=top_k, noise_std=float(noise_std), aux_loss_coef=float(aux_loss_coef),
                         scope=scope)

    def key(self) -> str:
        """Routers of another scope are other layers, so the scope is part of the storage key."""
        scope = self.kwargs["scope"]
        return super().key() if scope == "site" else f"{super().key()}@{scope}"


BLOCKS: dict[str, type[Block]] = {"Stack": Stack, "Fuse": Fuse, "Average": Average, "Route": Route}

# block -> the blocks it may contain and the adapter methods its leaves may use (below any depth)
ALLOWED_NESTINGS: dict[type[Block], dict[str, frozenset]] = {
    Stack: {"blocks": frozenset({Stack, Fuse, Average, Route}), "methods": ALL_METHODS},
    Fuse: {"blocks": frozenset({Stack}), "methods": OUTPUT_METHODS},
    Average: {"blocks": frozenset({Stack}), "methods": OUTPUT_METHODS},
    Route: {"blocks": frozenset(), "methods": OUTPUT_METHODS},
}


def validate(active: str | Block | None, method_of: Callable[[str], str]) -> None:
    """Check every nesting and every leaf's method against ``ALLOWED_NESTINGS``; raise naming both."""
    if not isinstance(active, Block):
        return
    _validate(active, method_of, ())


def _validate(block: Block, method_of: Callable[[str], str], enclosing: tuple[type[Block], ...]) -> None:
    rule = ALLOWED_NESTINGS[type(block)]
    if isinstance(block, Fuse) and block.style == "adapters":
        for child in block.children:
            if not isinstance(child, str) or method_of(child) != "bottleneck":
                what = f"a {type(child).__name__} block" if isinstance(child, Block) else \
                    f"{method_of(child)} adapter {child!r}"
                raise CompositionError(f"Fuse(style='adapters') fuses bottleneck adapters only, "
                                       f"as adapters' AdapterFusion does; got {what}")
    for child in block.children:
        if isinstance(child, Block):
            if type(child) not in rule["blocks"]:
                allowed = ", ".join(sorted(b.__name__ for b in rule["blocks"])) or "adapter names only"
                raise CompositionError(
                    f"{type(block).__name__} cannot contain a {type(child).__name__} block "
                    f"({type(block).__name__} may contain: {allowed})"
                )
            _validate(child, method_of, (*enclosing, type(block)))
            continue
        method = method_of(child)
        for outer in (*enclosing, type(block)):
            if method not in ALLOWED_NESTINGS[outer]["methods"]:
                allowed = ", ".join(sorted(ALLOWED_NESTINGS[outer]["methods"]))
                raise CompositionError(
                    f"{outer.__name__} cannot combine {method} adapter {child!r} ({outer.__name__} supports: {allowed})"
                )


def block_from_dict(data: dict[str, Any] | str) -> Block | str:
    if isinstance(data, str):
        return data
    if not isinstance(data, dict) or data.get("type") not in BLOCKS:
        raise CompositionError(f"unknown composition block {data!r}; known: {', '.join(BLOCKS)}")
    children = [block_from_dict(c) for c in data.get("children", [])]
    try:
        return BLOCKS[data["type"]](*children, **data.get("kwargs", {}))
    except TypeError as exc:
        raise CompositionError(f"bad kwargs for {data['type']}: {exc}") from exc


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


def chain_of(active: str | Block | None) -> tuple[str | Block, ...]:
    """The top-level sequence a site runs: nested Stacks flattened, other blocks kept whole."""
    if active is None:
        return ()
    if isinstance(active, Stack):
        out: list[str | Block] = []
        for child in active.children:
            out.extend(chain_of(child))
        return tuple(out)
    return (active,)


def needs_executor(active: str | Block | None) -> bool:
    """True when something other than a plain chain of adapters is involved (Fuse, Average, Route)."""
    return any(isinstance(item, Block) for item in chain_of(active))


def blocks_in(active: str | Block | None, kind: type[Block]) -> list[Block]:
    """Every block of type ``kind`` inside ``active`` (itself included), outermost first."""
    if not isinstance(active, Block):
        return []
    found = [active] if isinstance(active, kind) else []
    for child in active.children:
        found.extend(blocks_in(child, kind))
    return found
