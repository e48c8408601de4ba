"""Multi-adapter serving: one base model in memory, many adapters, requests micro-batched per row.

`AdapterServer` is the engine behind ``adapterhub serve-model`` (the HTTP face is ``http.py``). It
owns the base model and the locks the parts share, and joins the parts, one job each:

- ``resolver.Resolver``: references (``acme/support:prod``) resolved through the registry
  (`Hub.resolve`, canary-aware and sticky per key) behind a short TTL cache keyed by (reference, key);
- ``adapters.AdapterCache``: resolved versions pulled and loaded on a miss in the background, kept
  in an LRU bounded by count and bytes, with `pin` for the ones that must stay;
- ``requests.RequestLimits``: a request refused at once (task, prompt length) before it is queued;
- ``batcher.MicroBatcher`` and ``runner.BatchRunner``: queued rows grouped into one
  ``generate``/forward with per-row ``adapter_names``;
- ``outcomes.OutcomeReporter``: per-arm outcomes reported to the registry in the background,
  best-effort, which is what drives automatic rollout steps and rollbacks.

>>> srv = AdapterServer("models/tiny-llama", Hub())                    # doctest: +SKIP
>>> srv.complete("acme/support:prod", "hello", key="tenant-1").text   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any

from adapterhub.compose.serving.adapters import AdapterCache, Entry
from adapterhub.compose.serving.batcher import MicroBatcher
from adapterhub.compose.serving.metrics import Metrics
from adapterhub.compose.serving.outcomes import OutcomeReporter
from adapterhub.compose.serving.requests import Classification, Completion, Request, RequestLimits
from adapterhub.compose.serving.resolver import Resolved, Resolver
from adapterhub.compose.serving.runner import BatchRunner
from adapterhub.errors import AdapterHubError
from adapterhub.vocab import CLASSIFICATION, LM

ENQUEUE_TRIES = 5  # an adapter evicted between loading and queueing is loaded again, this many times


class AdapterServer:
    """One base model, an LRU of adapters, a micro-batcher and an outcome reporter (see module doc).

    ``base`` is a local transformers folder (or catalogue name), or an already built model with
    ``tokenizer=`` given. ``hub`` is anything with ``resolve(ref, key=)``, ``pull(ref)`` and
    ``report_outcomes(ref, batches, rollout_id=)`` (a `Hub`). Each option goes to the part it
    tunes: ``resolve_ttl`` to the resolver; ``max_adapters``, ``max_bytes`` and ``loader_threads``
    to the adapter cache; ``max_prompt_tokens`` and ``max_new_tokens`` to the request limits;
    ``max_batch`` and ``max_wait_ms`` to the batcher; ``report_interval`` to the reporter.
    """

    def __init__(self, base: Any, hub: Any, *, tokenizer: Any = None, max_adapters: int = 32,
                 max_bytes: int | None = None, resolve_ttl: float = 2.0, max_batch: int = 16,
                 max_wait_ms: float = 5.0, max_prompt_tokens: int | None = None, max_new_tokens: int = 256,
                 report_interval: float = 5.0, device: str | None = None, loader_threads: int = 2):
        from adapterhub.compose.core.model import AdapterModel

        if isinstance(base, (str, Path)):
            model, tokenizer = _load_base(base, tokenizer)
            self.base_name = str(base)
        else:
            if tokenizer is None:
                raise AdapterHubError("AdapterServer(model, ...) needs tokenizer= when given a model object")
            model = base
            self.base_name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        if device:
            model.to(device)
        self.model = AdapterModel(model.eval())
        self.tokenizer = tokenizer
        self.task = CLASSIFICATION.name if "ForSequenceClassification" in type(model).__name__ else LM.name
        self.hub = hub
        positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        self.limits = RequestLimits(self.task, self.base_name, max_prompt_tokens or (positions or 2048),
                                    max_new_tokens, positions)
        self.metrics = Metrics()
        self._tok_lock = threading.Lock()  # a fast tokenizer is not safe to call from several threads at once
        model_lock = threading.Lock()  # attaching/removing adapters vs running batches
        self._closed = threading.Event()
        self.resolver = Resolver(hub, resolve_ttl, self.metrics)
        self.adapters = AdapterCache(self.model, hub, self.metrics, model_lock, base_name=self.base_name,
                                     max_adapters=max_adapters, max_bytes=max_bytes, loader_threads=loader_threads)
        runner = BatchRunner(self.model, tokenizer, model_lock=model_lock, tokenizer_lock=self._tok_lock)
        self.batcher = MicroBatcher(runner, self.metrics, max_batch=max_batch, max_wait=max_wait_ms / 1000,
                                    finish=self._finish)
        self.outcomes = OutcomeReporter(hub, report_interval)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Refuse new requests, answer the queued ones, then send the outcomes counted meanwhile."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.outcomes.stop()
        self.batcher.stop()
        self.adapters.close()
        self.flush_outcomes()

    def __enter__(self) -> AdapterServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ adapters
    def resolve(self, ref: str, key: str | None = None) -> Resolved:
        """The version (and rollout arm) ``ref`` means for ``key`` now (see `Resolver.resolve`)."""
        return self.resolver.resolve(ref, key)

    def ensure_loaded(self, resolved: Resolved | str, timeout: float | None = None) -> Entry:
        """Load (pull first if needed) the resolved version and return its LRU entry; waits."""
        if isinstance(resolved, str):
            resolved = self.resolve(resolved)
        return self.adapters.load_future(resolved.exact).result(timeout)

    def pin(self, ref: str) -> Entry:
        """Load ``ref`` (as it resolves now) and keep it loaded whatever the LRU says."""
        entry = self.ensure_loaded(self.resolve(ref))
        self.adapters.set_pinned(entry, True)
        return entry

    def unpin(self, ref: str) -> None:
        entry = self.adapters.get(self.resolve(ref).exact)
        if entry is not None:
            self.adapters.set_pinned(entry, False)

    def loaded(self) -> list[dict]:
        """The LRU, least recently used first."""
        return self.adapters.listing()

    @property
    def loaded_bytes(self) -> int:
        return self.adapters.bytes

    # ------------------------------------------------------------------ requests
    def encode(self, text: str) -> list[int]:
        with self._tok_lock:
            return self.tokenizer(text, add_special_tokens=self.task == CLASSIFICATION.name)["input_ids"]

    def submit(self, ref: str, prompt: str | list[int], *, key: str | None = None, max_tokens: int = 16,
               kind: str = "generate", resolved: Resolved | None = None) -> Future:
        """Validate one request and queue it; the Future gives a `Completion` or `Classification`.

        Raises at once for an unknown adapter, the wrong task or an oversized prompt. A cold adapter
        is pulled and loaded in the background and the request queued when it is in memory (no
        thread waits meanwhile); an adapter built for another base fails the Future. ``resolved``
        skips the resolve: a Ray replica gets the version (and arm) its router resolved.
        """
        if self._closed.is_set():
            raise AdapterHubError("the server is shutting down")
        ids, max_tokens = self.limits.check(kind, prompt, max_tokens, self.encode)
        resolved = resolved or self.resolve(ref, key)
        out: Future = Future()
        self._enqueue_when_loaded(out, kind, resolved, ids, max_tokens, time.perf_counter(), ENQUEUE_TRIES)
        return out

    def _enqueue_when_loaded(self, out: Future, kind: str, resolved: Resolved, ids: list[int], max_tokens: int,
                             started: float, tries: int) -> None:
        """Queue the request once its adapter is in memory; no thread waits for a cold pull meanwhile."""
        def loaded(fut: Future) -> None:
            try:
                entry = fut.result()
                if not self.adapters.acquire(entry):  # evicted between loading and now
                    if tries <= 1:
                        raise AdapterHubError(f"{resolved.exact} keeps being evicted before it can run; "
                                              "raise max_adapters or max_bytes")
                    self._enqueue_when_loaded(out, kind, resolved, ids, max_tokens, started, tries - 1)
                    return
            except Exception as exc:
                self.record_outcome(resolved, False, time.perf_counter() - started)
                with contextlib.suppress(InvalidStateError):
                    out.set_exception(exc)
                return
            self.batcher.put(Request(kind, resolved, entry, ids, max_tokens, future=out, started=started))

        self.adapters.load_future(resolved.exact).add_done_callback(loaded)

    def complete(self, ref: str, prompt: str, *, key: str | None = None, max_tokens: int = 16,
                 timeout: float | None = 300.0) -> Completion:
        return self.submit(ref, prompt, key=key, max_tokens=max_tokens).result(timeout)

    def classify(self, ref: str, text: str, *, key: str | None = None, timeout: float | None = 300.0) -> Classification:
        return self.submit(ref, text, key=key, kind="classify").result(timeout)

    def _finish(self, row: Request, result: object, error: BaseException | None) -> None:
        """Answer one row exactly once: release its adapter, count it, settle its Future."""
        self.adapters.release(row.entry)
        self.record_outcome(row.resolved, error is None, time.perf_counter() - row.started)
        try:
            if error is not None:
                row.future.set_exception(error)
            else:
                row.future.set_result(result)
        except InvalidStateError:  # the caller gave up (e.g. an HTTP client disconnected and cancelled it)
            pass

    # ------------------------------------------------------------------ outcomes and metrics
    def record_outcome(self, resolved: Resolved, ok: bool, seconds: float | None) -> None:
        """Count one answered (or failed) request in the metrics and the rollout outcomes."""
        self.metrics.observe(resolved.reference, resolved.arm, "ok" if ok else "error", seconds)
        self.outcomes.record(resolved, ok, seconds)

    def flush_outcomes(self) -> int:
        """Send what was counted since the last flush; returns how many batches the registry took."""
        return self.outcomes.flush()

    def metrics_text(self) -> str:
        return self.metrics.render(len(self.adapters), self.loaded_bytes)


def _load_base(path: str | Path, tokenizer: Any = None) -> tuple[Any, Any]:
    """A local base folder as what it was saved as: a sequence classifier, else a causal LM."""
    from adapterhub.compose.workflows.base import load_base, load_tokenizer

    tokenizer = tokenizer or load_tokenizer(path)
    return load_base(path, tokenizer=tokenizer), tokenizer


__all__ = ["AdapterServer"]
