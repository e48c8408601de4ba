"""The adapters in memory over one base model: an LRU bounded by count and bytes, loaded in the
background on a miss so a cold adapter never blocks requests for the ones already loaded."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterhub.compose.serving.metrics import Metrics
from adapterhub.errors import IncompatibleAdapterError, InvalidAdapterError
from adapterhub.format import CARD_FILE, read_json_object

log = logging.getLogger("adapterhub.serve")


@dataclass
class Entry:
    """One adapter version in memory: its name on the model, its size, and who holds it."""

    exact: str
    name: str  # its name on the model
    bytes: int = 0
    pinned: bool = False
    in_use: int = 0  # queued or running rows: an entry in use is never evicted
    labels: list[str] | None = None


class AdapterCache:
    """Exact versions (``ns/name@1.0.0``) -> `Entry`, least recently used first.

    ``model_lock`` is the one the batcher holds while a batch runs: attaching or removing an adapter
    waits for it, so no batch ever sees the model change under it.
    """

    def __init__(self, model: Any, hub: Any, metrics: Metrics, model_lock: threading.Lock, *, base_name: str,
                 max_adapters: int, max_bytes: int | None, loader_threads: int):
        self.model, self.hub, self.metrics, self.model_lock = model, hub, metrics, model_lock
        self.base_name = base_name
        self.max_adapters, self.max_bytes = max(1, int(max_adapters)), max_bytes
        self._lock = threading.RLock()
        self._lru: OrderedDict[str, Entry] = OrderedDict()
        self._loading: dict[str, Future] = {}
        self._loader = ThreadPoolExecutor(max_workers=loader_threads, thread_name_prefix="adapterhub-load")

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)

    def get(self, exact: str) -> Entry | None:
        with self._lock:
            return self._lru.get(exact)

    def load_future(self, exact: str) -> Future:
        """A Future of the entry: done at once on a hit; on a miss one shared background load."""
        with self._lock:
            entry = self._lru.get(exact)
            if entry is not None:
                self._lru.move_to_end(exact)
                self.metrics.cache_event("adapter", True)
                done: Future = Future()
                done.set_result(entry)
                return done
            self.metrics.cache_event("adapter", False)
            fut = self._loading.get(exact)
            if fut is None:
                fut = self._loading[exact] = self._loader.submit(self._load, exact)
            return fut

    def acquire(self, entry: Entry) -> bool:
        """Hold ``entry`` for a queued row, if it is still the one loaded (not evicted meanwhile)."""
        with self._lock:
            fresh = self._lru.get(entry.exact) is entry
            if fresh:
                entry.in_use += 1  # now no eviction can remove it before its batch has run
            return fresh

    def release(self, entry: Entry) -> None:
        with self._lock:
            entry.in_use -= 1

    def _load(self, exact: str) -> Entry:
        try:
            folder = self.hub.pull(exact)  # network: no model lock held
            name = model_name(exact)
            with self.model_lock:
                try:
                    self.model.load_adapter(folder, name=name, replace=name in self.model.adapters)
                except IncompatibleAdapterError as exc:
                    raise IncompatibleAdapterError(f"{exact} cannot be served on base {self.base_name!r}: {exc}") from exc
                size = sum(p.numel() * p.element_size() for p in self.model.adapter_parameters(name))
            entry = Entry(exact, name, size, labels=card_labels(Path(folder)))
            self.metrics.adapter_loaded(exact)
            with self._lock:
                self._lru[exact] = entry
                self.evict()
            return entry
        finally:
            with self._lock:
                self._loading.pop(exact, None)

    def evict(self) -> None:
        """Drop least recently used, unpinned, idle adapters while over the count or byte budget."""
        with self._lock:
            for exact in list(self._lru):
                if not self._over_budget():
                    break
                entry = self._lru[exact]
                if entry.pinned or entry.in_use:
                    continue
                with self.model_lock:
                    self.model.delete_adapter(entry.name)
                del self._lru[exact]
                log.info("evicted %s (%d bytes)", exact, entry.bytes)

    def drop(self, exact: str) -> bool:
        """Unload ``exact`` now unless pinned or in use (Ray Serve's multiplexer evicted it: memory
        follows the router's view of what this replica holds); True if it was unloaded."""
        with self._lock:
            entry = self._lru.get(exact)
            if entry is None or entry.pinned or entry.in_use:
                return False
            with self.model_lock:
                self.model.delete_adapter(entry.name)
            del self._lru[exact]
            log.info("dropped %s (%d bytes)", exact, entry.bytes)
            return True

    def _over_budget(self) -> bool:
        total = sum(e.bytes for e in self._lru.values())
        return len(self._lru) > self.max_adapters or (self.max_bytes is not None and total > self.max_bytes)

    def set_pinned(self, entry: Entry, pinned: bool) -> None:
        with self._lock:
            entry.pinned = pinned
            if not pinned:
                self.evict()

    def listing(self) -> list[dict]:
        """The LRU, least recently used first."""
        with self._lock:
            return [{"id": e.exact, "bytes": e.bytes, "pinned": e.pinned} for e in self._lru.values()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(e.bytes for e in self._lru.values())


def model_name(exact: str) -> str:
    """A name for the version on the model: readable, unique, and free of the '.' adapter names refuse."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", exact).strip("_")[:48]
    return f"{slug}_{hashlib.sha1(exact.encode()).hexdigest()[:8]}"


def card_labels(folder: Path) -> list[str] | None:
    """The class names a classifier adapter's card declares, if it declares them."""
    try:
        card = read_json_object(folder / CARD_FILE)
    except (OSError, InvalidAdapterError):
        return None
    labels = card.get("labels")
    return [str(x) for x in labels] if isinstance(labels, list) else None


__all__ = ["AdapterCache", "Entry", "card_labels", "model_name"]
