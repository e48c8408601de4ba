"""Per-row batches: every row of a batch runs its own adapter, composition, or the bare base model.

``model(input_ids, adapter_names=[...])`` installs a ``RowPlan`` as ``AdapterState.row_plan`` for
the duration of the call. At each site the plan computes the base output once for the whole batch,
then:

- rows whose entry is a single LoRA adapter get their delta in one vectorised pass (the Punica /
  S-LoRA idea): each site keeps a bank of all its LoRA adapters stacked into ``A`` (n+1, r, in) and
  ``B`` (n+1, out, r) (mixed ranks zero-padded, scaling folded into ``B``, slot 0 all zeros for rows
  without LoRA), rows gather their slot and two batched matmuls do the rest; no Python loop over
  adapters runs per token. The bank is rebuilt only when an adapter's tensors change.
- every other entry (bottleneck, IA³, Stack/Fuse/Average/Route, composition names) runs on its
  group of rows through the same executor as a whole-batch composition.

Generation with ``num_return_sequences``/beams repeats each row's entry for its copies. Dropout is
not applied on the per-row path (it serves inference). Rows with prompt or prefix adapters change
sequence lengths; they run as groups (``per_row_prompts``), each group through this plan.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from adapterhub.compose.composition import execute
from adapterhub.compose.composition.blocks import Block, leaves_of
from adapterhub.compose.tuners.lora.layer import LoRALayer
from adapterhub.errors import AdapterNotFoundError, CompositionError
from adapterhub.vocab import METHODS

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

Entry = str | Block | None


class RowPlan:
    """What each row runs; built once per call, applied at every site and head."""

    def __init__(self, model: AdapterModel, names: Sequence[str | Block | None]):
        merged = set(model.merged_adapters)
        resolved: dict[object, Entry] = {}  # each distinct name is checked once, not once per row
        self.entries: list[Entry] = []
        for i, e in enumerate(names):
            key = e if isinstance(e, str) or e is None else id(e)
            if key not in resolved:
                resolved[key] = resolve_entry(model, i, e, merged)
            self.entries.append(resolved[key])
        self.rows = len(self.entries)
        self.lora: list[str | None] = [
            e if isinstance(e, str) and model.ah.configs[e].method == "lora" else None for e in self.entries
        ]
        self.lora_names = frozenset(n for n in self.lora if n)
        groups: dict[str, tuple[Entry, list[int]]] = {}  # entries run through the executor at sites
        virtual: dict[tuple[str, ...], list[int]] = {}  # rows by their prompt/prefix adapters
        for i, e in enumerate(self.entries):
            leaves = leaves_of(e)
            prompts = tuple(n for n in leaves if METHODS[model.ah.configs[n].method].virtual_tokens)
            virtual.setdefault(prompts, []).append(i)
            if self.lora[i] is None and len(prompts) < len(leaves):
                groups.setdefault(repr(e), (e, []))[1].append(i)
        self.groups = [(node, torch.tensor(rows)) for node, rows in groups.values()]
        self._index_cache: dict[tuple, torch.Tensor] = {}
        # only when some row has virtual tokens (see per_row_prompts)
        self.virtual_groups: list[tuple[tuple[str, ...], list[int]]] | None = (
            list(virtual.items()) if set(virtual) != {()} else None)

    # ------------------------------------------------------------------ sites
    def apply(self, site, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        rep = self._repeats(x.shape[0])
        out = site.base_forward(x)
        bank = lora_bank(site, self.lora_names) if self.lora_names else None
        if bank is not None:
            out = self._add_lora_delta(bank, x, out, rep)
        tap = site.__dict__.get("ah_sublayer")  # a bottleneck's residual input, for these rows only
        for node, rows in self.groups:
            rows = expand_rows(rows, rep).to(x.device)
            with tap.selecting(rows) if tap is not None else contextlib.nullcontext():
                sub = execute.site_output(site, node, x.index_select(0, rows), out.index_select(0, rows))
            out = out.index_copy(0, rows, sub)
        return out

    def _add_lora_delta(self, bank: LoRABank, x: torch.Tensor, out: torch.Tensor, rep: int) -> torch.Tensor:
        """``out`` plus each row's own ``x A^T B^T``: two batched matmuls over the rows' gathered slots,
        the second one accumulating straight into the base output (no separate delta tensor)."""
        key = (bank.names, rep, x.device)
        idx = self._index_cache.get(key)
        if idx is None:
            slots = {n: i + 1 for i, n in enumerate(bank.names)}
            idx = torch.tensor([slots.get(n, 0) if n else 0 for n in self.lora]).repeat_interleave(rep).to(x.device)
            self._index_cache[key] = idx
        rows, width = x.shape[0], x.shape[-1]
        x3 = x.reshape(rows, -1, width).to(bank.A_t.dtype)
        h = torch.bmm(x3, bank.A_t.index_select(0, idx))  # (rows, tokens, r)
        out3 = out.reshape(rows, -1, out.shape[-1])
        if out3.dtype != h.dtype:
            return out + torch.bmm(h, bank.B_t.index_select(0, idx)).reshape(out.shape).to(out.dtype)
        return torch.baddbmm(out3, h, bank.B_t.index_select(0, idx)).reshape(out.shape)

    # ------------------------------------------------------------------ heads (modules_to_save)
    def apply_head(self, head, *args, **kwargs):
        x = args[0]
        rep = self._repeats(x.shape[0])
        chosen = [next((n for n in reversed(leaves_of(e)) if n in head.ah_heads), None) for e in self.entries]
        if len(set(chosen)) == 1:
            name = chosen[0]
            return head.ah_heads[name](*args, **kwargs) if name else head.base_head(*args, **kwargs)
        out = head.base_head(*args, **kwargs)
        for name in sorted({n for n in chosen if n}):
            rows = expand_rows(torch.tensor([i for i, n in enumerate(chosen) if n == name]), rep).to(x.device)
            sub = head.ah_heads[name](x.index_select(0, rows), *args[1:], **kwargs)
            out = out.index_copy(0, rows, sub)
        return out

    def _repeats(self, batch: int) -> int:
        if batch % self.rows:
            raise CompositionError(f"adapter_names has {self.rows} entries but the batch has {batch} rows")
        return batch // self.rows


class LoRABank:
    """A site's LoRA adapters stacked for gathering.

    Stored transposed and contiguous, ``A_t`` (n+1, in, r) and ``B_t`` (n+1, r, out), so the rows'
    gathered slots are already the right-hand operands ``bmm`` wants: no strided views per call.
    ``layout`` (which adapters the site holds, which are merged) and ``versions`` (each adapter's
    tensor versions when stacked) say when it is stale."""

    def __init__(self, layout: tuple, versions: dict[str, tuple], names: tuple[str, ...], A: torch.Tensor,
                 B: torch.Tensor):
        self.layout, self.versions, self.names = layout, versions, names
        self.A_t = A.transpose(1, 2).contiguous()
        self.B_t = B.transpose(1, 2).contiguous()


def _versions(layer: LoRALayer) -> tuple:
    a, b = layer.lora_A.weight, layer.lora_B.weight
    return (a._version, b._version, id(a), id(b), layer.scaling)


def lora_bank(site, used: frozenset[str]) -> LoRABank | None:
    """The site's bank, rebuilt only when its adapters change. Only the adapters this call uses are
    checked for new weights (an unused one is checked when a later call uses it), so a forward
    costs the same with 2 or 200 adapters loaded."""
    adapters = site.ah_adapters._modules
    layout = (tuple(adapters), frozenset(site.ah_merged))
    mine = [n for n in used if n in adapters]
    trainable = torch.is_grad_enabled() and any(
        adapters[n].lora_A.weight.requires_grad or adapters[n].lora_B.weight.requires_grad for n in mine)
    cached = site.__dict__.get("_ah_bank")
    if (cached is not None and cached.layout == layout and not trainable
            and all(cached.versions.get(n) == _versions(adapters[n]) for n in mine)):
        return cached
    layers = {n: a for n, a in adapters.items() if isinstance(a, LoRALayer) and n not in site.ah_merged}
    if not layers:
        return None
    bank = _build_bank(layout, layers)
    if not trainable:
        site.__dict__["_ah_bank"] = bank
    return bank


def _build_bank(layout: tuple, layers: dict[str, LoRALayer]) -> LoRABank:
    first = next(iter(layers.values())).lora_A.weight
    r_max = max(a.r for a in layers.values())
    in_f, out_f = first.shape[1], next(iter(layers.values())).lora_B.weight.shape[0]
    A = first.new_zeros(len(layers) + 1, r_max, in_f)
    B = first.new_zeros(len(layers) + 1, out_f, r_max)
    As, Bs = [A[:1]], [B[:1]]
    for a in layers.values():
        As.append(torch.nn.functional.pad(a.lora_A.weight, (0, 0, 0, r_max - a.r)).unsqueeze(0))
        Bs.append(torch.nn.functional.pad(a.lora_B.weight * a.scaling, (0, r_max - a.r)).unsqueeze(0))
    versions = {n: _versions(a) for n, a in layers.items()}
    return LoRABank(layout, versions, tuple(layers), torch.cat(As), torch.cat(Bs))


def resolve_entry(model: AdapterModel, row: int, entry, merged: set[str]) -> Entry:
    """An adapter name, a registered composition name, a block, or None; checked for per-row use."""
    if entry is None:
        return None
    if isinstance(entry, str) and entry not in model.ah.configs:
        if entry not in model.ah.compositions:
            known = ", ".join(sorted([*model.ah.configs, *model.ah.compositions])) or "none"
            raise AdapterNotFoundError(
                f"adapter_names[{row}]: no adapter or composition named {entry!r} on this model (loaded: {known})"
            )
        entry = model.ah.compositions[entry]
    if not isinstance(entry, (str, Block)):
        raise CompositionError(f"adapter_names[{row}] must be an adapter name, a composition or None, got {entry!r}")
    model._check_composition(entry)
    for leaf in leaves_of(entry):
        if leaf in merged:
            raise CompositionError(f"adapter_names[{row}]: adapter {leaf!r} is merged into the base; unmerge() first")
    return entry


@contextlib.contextmanager
def row_plan(model: AdapterModel, names: Sequence[str | Block | None], batch: int | None):
    """Install the plan for one call and always remove it again."""
    if isinstance(names, (str, Block)) or not isinstance(names, Sequence):
        raise CompositionError(f"adapter_names must be a list with one entry per row, got {type(names).__name__}")
    if batch is not None and len(names) != batch:
        raise CompositionError(f"adapter_names has {len(names)} entries but the batch has {batch} rows")
    plan = RowPlan(model, names)
    state = model.ah.state
    previous = state.row_plan
    state.row_plan = plan
    try:
        yield plan
    finally:
        state.row_plan = previous


def expand_rows(rows: torch.Tensor, rep: int) -> torch.Tensor:
    """Row indices after every row was repeated ``rep`` times in place (beams, returned sequences)."""
    if rep == 1:
        return rows
    return (rows[:, None] * rep + torch.arange(rep)).reshape(-1)
