"""Multi-adapter serving: one base model in memory, many adapters, requests micro-batched per row.

`AdapterServer` is the engine behind ``adapterhub serve-model`` (the HTTP face is ``serve_http``):

- references (``acme/support:prod``) are resolved through the registry (`Hub.resolve`, canary-aware
  and sticky per key) with a short TTL cache keyed by (reference, key);
- resolved versions are pulled and loaded on a miss by a background loader, so a cold adapter never
  blocks requests for adapters already in memory; loaded adapters live in an LRU bounded by count and
  bytes, with `pin` for the ones that must stay;
- requests are validated one by one (adapter loaded and compatible, prompt length) and then queued;
  a worker thread groups what arrives within ``max_wait_ms`` (up to ``max_batch``) into one
  ``generate``/forward with per-row ``adapter_names`` (the vectorised LoRA path). A batch that fails
  is retried row by row, so one bad request never fails its batch-mates;
- per-arm outcomes (requests, errors, latency sums) are reported to the registry in the background,
  best-effort, which is what drives automatic rollout steps and rollbacks.

>>> srv = AdapterServer("models/tiny-llama", Hub())                    # doctest: +SKIP
>>> srv.complete("acme/support:prod", "hello", key="tenant-1").text   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import re
import threading
import time
from collections import OrderedDict, defaultdict
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapterhub.compose.serve_metrics import Metrics
from adapterhub.errors import (
    AdapterHubError,
    AdapterNotFoundError,
    IncompatibleAdapterError,
    InvalidAdapterError,
    RegistryError,
)

log = logging.getLogger("adapterhub.serve")


class PromptTooLongError(AdapterHubError):
    """A prompt longer than the server accepts (HTTP 413)."""


class WrongTaskError(AdapterHubError, ValueError):
    """A completion asked of a classifier base, or a classification of a language-model base (HTTP 400)."""


@dataclass(frozen=True)
class Resolved:
    """What a (reference, key) pair resolved to."""

    reference: str  # as requested, e.g. acme/support:prod
    namespace: str
    name: str
    version: str
    arm: str = "stable"
    rollout_id: int | None = None
    alias: str | None = None  # the alias whose rollout this request counts towards (None for an exact version)

    @property
    def exact(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"


def rollout_alias(ref: str) -> str | None:
    """The alias whose rollout a request for ``ref`` belongs to.

    A bare ``ns/name`` (and the HF revision ``main``) means the ``stable`` alias, so its traffic is
    traffic of a rollout on ``stable`` and is reported there, together with ``ns/name:stable``; an
    exact version is in no rollout.

    >>> rollout_alias("acme/support"), rollout_alias("acme/support:prod"), rollout_alias("acme/support@1.0.0")
    ('stable', 'prod', None)
    """
    from adapterhub.registry.reference import parse_reference

    r = parse_reference(ref)
    if r.version:
        return None
    return "stable" if r.alias in (None, "main") else r.alias


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str
    resolved: Resolved


@dataclass
class Classification:
    label: str
    probabilities: dict[str, float]
    resolved: Resolved


@dataclass
class _Entry:
    """One adapter version in the LRU."""

    exact: str
    name: str  # its name on the model
    bytes: int = 0
    pinned: bool = False
    in_use: int = 0
    labels: list[str] | None = None


@dataclass
class _Request:
    kind: str  # "generate" | "classify"
    resolved: Resolved
    entry: _Entry
    ids: list[int]
    max_tokens: int
    future: Future = field(default_factory=Future)
    started: float = field(default_factory=time.perf_counter)


def _model_name(exact: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", exact).strip("_")[:48]
    return f"{slug}_{hashlib.sha1(exact.encode()).hexdigest()[:8]}"


class AdapterServer:
    """One base model, an LRU of adapters, a micro-batcher and an outcome reporter (see module doc).

    ``base`` is a local transformers folder (or catalogue name), or an already built model with
    ``tokenizer=`` given. ``hub`` is anything with ``resolve(ref, key=)``, ``pull(ref)`` and
    ``report_outcomes(ref, batches, rollout_id=)`` (a `Hub`).
    """

    def __init__(self, base, hub, *, tokenizer=None, max_adapters: int = 32, max_bytes: int | None = None,
                 resolve_ttl: float = 2.0, max_batch: int = 16, max_wait_ms: float = 5.0,
                 max_prompt_tokens: int | None = None, max_new_tokens: int = 256, report_interval: float = 5.0,
                 device: str | None = None, loader_threads: int = 2):
        from adapterhub.compose.model import AdapterModel

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
        self.task = "classification" if "ForSequenceClassification" in type(model).__name__ else "lm"
        self.hub = hub
        self.max_adapters, self.max_bytes = max(1, int(max_adapters)), max_bytes
        self.resolve_ttl, self.max_batch, self.max_wait = resolve_ttl, max(1, int(max_batch)), max_wait_ms / 1000
        positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens or (positions or 2048)
        self.positions = positions
        self.metrics = Metrics()
        self._lock = threading.RLock()  # LRU + resolve cache
        self._tok_lock = threading.Lock()
        self._model_lock = threading.Lock()  # attaching/removing adapters vs running batches
        self._lru: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, Future] = {}
        self._resolve_cache: OrderedDict[tuple[str, str | None], tuple[float, Resolved]] = OrderedDict()
        self._resolving: dict[tuple[str, str | None], Future] = {}  # misses in flight, shared
        self._outcomes: dict[tuple[str, str, int, str], list[float]] = {}  # (ns/name, alias, rollout, arm)
        self._outcome_lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=loader_threads, thread_name_prefix="adapterhub-load")
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = threading.Event()
        self._worker = threading.Thread(target=self._batch_loop, name="adapterhub-batcher", daemon=True)
        self._worker.start()
        self.report_interval = report_interval
        self._reporter = threading.Thread(target=self._report_loop, name="adapterhub-outcomes", daemon=True)
        self._reporter.start()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(None)
        self._worker.join(timeout=10)
        self._loader.shutdown(wait=False, cancel_futures=True)
        self.flush_outcomes()

    def __enter__(self) -> AdapterServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ resolution
    def resolve(self, ref: str, key: str | None = None) -> Resolved:
        """The version (and rollout arm) ``ref`` means for ``key`` now, cached for ``resolve_ttl`` seconds.

        This is on every request's path. Concurrent misses of one (reference, key) share one registry
        call, so a popular adapter whose entry expires does not send a burst of resolves. A registry
        that cannot be reached (or answers 5xx) fails no request for a reference already resolved:
        the last answer is served, stale, until the registry is back; a reference never resolved
        before fails with the registry's error.
        """
        cache_key = (ref, key)
        with self._lock:
            hit = self._resolve_cache.get(cache_key)
            if hit and hit[0] > time.monotonic():
                self._resolve_cache.move_to_end(cache_key)
                self.metrics.cache_event("resolve", True)
                return hit[1]
            flight = self._resolving.get(cache_key)
            owner = flight is None
            if owner:
                flight = self._resolving[cache_key] = Future()
        self.metrics.cache_event("resolve", not owner)
        if not owner:
            return flight.result()
        try:
            out = self._fetch_resolution(ref, key, hit[1] if hit else None)
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(out)
            return out
        finally:
            with self._lock:
                self._resolving.pop(cache_key, None)

    def _fetch_resolution(self, ref: str, key: str | None, last: Resolved | None) -> Resolved:
        """Ask the registry and cache the answer; on a transient failure fall back to ``last``."""
        expires = time.monotonic() + self.resolve_ttl
        try:
            res = self.hub.resolve(ref, key=key)
        except AdapterNotFoundError as exc:
            raise AdapterNotFoundError(f"adapter {ref!r} not found: {exc}") from exc
        except RegistryError as exc:
            if last is None or not _transient(exc):
                raise
            log.warning("registry unavailable (%s); serving %s as last resolved", exc, last.exact)
            self.metrics.cache_event("resolve_stale", True)
            out = last  # kept for another TTL: requests meanwhile do not each wait on the registry
        else:
            out = Resolved(ref, res.namespace, res.name, res.version, res.arm or "stable", res.rollout_id,
                           rollout_alias(ref) if res.rollout_id is not None else None)
        with self._lock:
            self._resolve_cache[(ref, key)] = (expires, out)
            self._resolve_cache.move_to_end((ref, key))
            while len(self._resolve_cache) > 100_000:
                self._resolve_cache.popitem(last=False)
        return out

    # ------------------------------------------------------------------ the adapter LRU
    def ensure_loaded(self, resolved: Resolved | str, timeout: float | None = None) -> _Entry:
        """Load (pull first if needed) the resolved version and return its LRU entry; waits."""
        if isinstance(resolved, str):
            resolved = self.resolve(resolved)
        return self._load_future(resolved.exact).result(timeout)

    def _load_future(self, exact: str) -> Future:
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

    def _load(self, exact: str) -> _Entry:
        try:
            folder = self.hub.pull(exact)  # network: no model lock held
            name = _model_name(exact)
            with self._model_lock:
                try:
                    self.model.load_adapter(folder, name=name, replace=name in self.model.adapters)
                except IncompatibleAdapterError as exc:
                    raise IncompatibleAdapterError(f"{exact} cannot be served on base {self.base_name!r}: {exc}") from exc
                size = sum(p.numel() * p.element_size() for p in self.model.adapter_parameters(name))
            entry = _Entry(exact, name, size, labels=_card_labels(Path(folder)))
            with self._lock:
                self._lru[exact] = entry
                self._evict()
            return entry
        finally:
            with self._lock:
                self._loading.pop(exact, None)

    def _evict(self) -> None:
        """Drop least recently used, unpinned, idle adapters while over the count or byte budget."""
        def over() -> bool:
            total = sum(e.bytes for e in self._lru.values())
            return len(self._lru) > self.max_adapters or (self.max_bytes is not None and total > self.max_bytes)

        for exact in list(self._lru):
            if not over():
                break
            entry = self._lru[exact]
            if entry.pinned or entry.in_use:
                continue
            with self._model_lock:
                self.model.delete_adapter(entry.name)
            del self._lru[exact]
            log.info("evicted %s (%d bytes)", exact, entry.bytes)

    def pin(self, ref: str) -> _Entry:
        """Load ``ref`` (as it resolves now) and keep it loaded whatever the LRU says."""
        entry = self.ensure_loaded(self.resolve(ref))
        with self._lock:
            entry.pinned = True
        return entry

    def unpin(self, ref: str) -> None:
        entry = self._lru.get(self.resolve(ref).exact)
        if entry is not None:
            with self._lock:
                entry.pinned = False
                self._evict()

    def loaded(self) -> list[dict]:
        """The LRU, least recently used first."""
        with self._lock:
            return [{"id": e.exact, "bytes": e.bytes, "pinned": e.pinned} for e in self._lru.values()]

    @property
    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(e.bytes for e in self._lru.values())

    # ------------------------------------------------------------------ requests
    def encode(self, text: str) -> list[int]:
        with self._tok_lock:  # a fast tokenizer is not safe to call from several threads at once
            return self.tokenizer(text, add_special_tokens=self.task == "classification")["input_ids"]

    def submit(self, ref: str, prompt: str | list[int], *, key: str | None = None, max_tokens: int = 16,
               kind: str = "generate") -> Future:
        """Validate one request and queue it; the Future gives a `Completion` or `Classification`.

        Raises at once for an unknown adapter, the wrong task or an oversized prompt. A cold adapter
        is pulled and loaded in the background and the request queued when it is in memory (no
        thread waits meanwhile); an adapter built for another base fails the Future.
        """
        if self._closed.is_set():
            raise AdapterHubError("the server is shutting down")
        if kind == "generate" and self.task != "lm":
            raise WrongTaskError(f"base {self.base_name!r} is a classifier; completions need a causal language model")
        if kind == "classify" and self.task != "classification":
            raise WrongTaskError(f"base {self.base_name!r} is a causal language model; /v1/classify needs a classifier base")
        ids = list(prompt) if isinstance(prompt, list) else self.encode(prompt)
        if not ids:
            raise InvalidAdapterError("empty prompt: nothing to run")
        max_tokens = int(max_tokens) if kind == "generate" else 0
        if max_tokens < 0 or max_tokens > self.max_new_tokens:
            raise PromptTooLongError(f"max_tokens {max_tokens} is outside 0..{self.max_new_tokens}")
        limit = self.max_prompt_tokens
        if self.positions:
            limit = min(limit, self.positions - max_tokens)
        if len(ids) > limit:
            raise PromptTooLongError(f"prompt has {len(ids)} tokens; this server accepts at most {limit}"
                                     + (f" with max_tokens={max_tokens}" if kind == "generate" else ""))
        resolved = self.resolve(ref, key)
        out: Future = Future()
        self._enqueue_when_loaded(out, kind, resolved, ids, max_tokens, time.perf_counter(), tries=5)
        return out

    def _enqueue_when_loaded(self, out: Future, kind: str, resolved: Resolved, ids: list[int], max_tokens: int,
                             started: float, tries: int) -> None:
        """Queue the request once its adapter is in memory; no thread waits for a cold pull meanwhile."""
        def loaded(fut: Future) -> None:
            try:
                entry = fut.result()
                with self._lock:
                    fresh = self._lru.get(resolved.exact) is entry  # not evicted between loading and now
                    if fresh:
                        entry.in_use += 1  # now no eviction can remove it before its batch has run
                if not fresh:
                    if tries <= 1:
                        raise AdapterHubError(f"{resolved.exact} keeps being evicted before it can run; "
                                              "raise max_adapters or max_bytes")
                    self._enqueue_when_loaded(out, kind, resolved, ids, max_tokens, started, tries - 1)
                    return
            except Exception as exc:
                self._record(resolved, False, time.perf_counter() - started)
                with contextlib.suppress(InvalidStateError):
                    out.set_exception(exc)
                return
            self._queue.put(_Request(kind, resolved, entry, ids, max_tokens, future=out, started=started))

        self._load_future(resolved.exact).add_done_callback(loaded)

    def complete(self, ref: str, prompt: str, *, key: str | None = None, max_tokens: int = 16,
                 timeout: float | None = 300.0) -> Completion:
        return self.submit(ref, prompt, key=key, max_tokens=max_tokens).result(timeout)

    def classify(self, ref: str, text: str, *, key: str | None = None, timeout: float | None = 300.0) -> Classification:
        return self.submit(ref, text, key=key, kind="classify").result(timeout)

    # ------------------------------------------------------------------ the micro-batcher
    def _batch_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            stop = False
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=left)
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            for kind in ("generate", "classify"):
                rows = [r for r in batch if r.kind == kind]
                if rows:
                    try:
                        self._run_rows(rows)
                    except Exception:  # never let the worker die: every row has been answered or is failed here
                        log.exception("micro-batch worker error")
                        for row in rows:
                            if not row.future.done():
                                self._finish(row, None, AdapterHubError("internal serving error"))
            if stop:
                return

    def _run_rows(self, rows: list[_Request]) -> None:
        self.metrics.batch(len(rows))
        try:
            results = self._run_batch(rows)
        except Exception as exc:  # one row may be the cause: retry each alone
            if len(rows) == 1:
                self._finish(rows[0], None, exc)
                return
            log.warning("batch of %d failed (%s); retrying row by row", len(rows), exc)
            for row in rows:
                try:
                    result = self._run_batch([row])[0]
                except Exception as row_exc:
                    self._finish(row, None, row_exc)
                else:
                    self._finish(row, result, None)
            return
        for row, result in zip(rows, results, strict=True):
            self._finish(row, result, None)

    def _finish(self, row: _Request, result, error: BaseException | None) -> None:
        with self._lock:
            row.entry.in_use -= 1
        self._record(row.resolved, error is None, time.perf_counter() - row.started)
        try:
            if error is not None:
                row.future.set_exception(error)
            else:
                row.future.set_result(result)
        except InvalidStateError:  # the caller gave up (e.g. an HTTP client disconnected and cancelled it)
            pass

    def _run_batch(self, rows: list[_Request]) -> list:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(r.ids) for r in rows)
        left = rows[0].kind == "generate" or self.tokenizer.padding_side == "left"
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            span = slice(width - len(r.ids), width) if left else slice(0, len(r.ids))
            ids[i, span] = torch.tensor(r.ids)
            mask[i, span] = 1
        device = next(self.model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        names = [r.entry.name for r in rows]
        if rows[0].kind == "generate":
            return self._generate(rows, ids, mask, names, pad)
        return self._classify(rows, ids, mask, names)

    def _generate(self, rows, ids, mask, names, pad) -> list[Completion]:
        steps = max(r.max_tokens for r in rows)
        if steps == 0:
            out = ids
        else:
            with self._model_lock, torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask, adapter_names=names,
                                          max_new_tokens=steps, min_new_tokens=0, do_sample=False,
                                          pad_token_id=pad, num_beams=1)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        results = []
        for i, r in enumerate(rows):
            new = out[i, ids.shape[1]:].tolist()[: r.max_tokens]
            reason = "length"
            for j, t in enumerate(new):
                if t in eos_ids:
                    new, reason = new[:j], "stop"
                    break
            with self._tok_lock:
                text = self.tokenizer.decode(new, skip_special_tokens=True)
            results.append(Completion(text, new, len(r.ids), reason, r.resolved))
        return results

    def _classify(self, rows, ids, mask, names) -> list[Classification]:
        with self._model_lock, torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask, adapter_names=names).logits
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        id2label = getattr(self.model.config, "id2label", None) or {}
        results = []
        for i, r in enumerate(rows):
            labels = r.entry.labels if r.entry.labels and len(r.entry.labels) == probs.shape[1] else [
                str(id2label.get(j, j)) for j in range(probs.shape[1])]
            p = {label: float(probs[i, j]) for j, label in enumerate(labels)}
            results.append(Classification(max(p, key=p.get), p, r.resolved))
        return results

    # ------------------------------------------------------------------ outcomes
    def _record(self, resolved: Resolved, ok: bool, seconds: float | None) -> None:
        self.metrics.observe(resolved.reference, resolved.arm, "ok" if ok else "error", seconds)
        if resolved.rollout_id is None or resolved.alias is None:
            return
        key = (f"{resolved.namespace}/{resolved.name}", resolved.alias, resolved.rollout_id, resolved.arm)
        with self._outcome_lock:
            acc = self._outcomes.setdefault(key, [0, 0, 0.0, 0.0])
            acc[0] += 1
            acc[1] += 0 if ok else 1
            if seconds is not None:
                acc[2] += seconds
                acc[3] += seconds * seconds

    def flush_outcomes(self) -> int:
        """Send what was counted since the last flush; returns how many batches the registry took."""
        with self._outcome_lock:
            pending, self._outcomes = self._outcomes, {}
        grouped: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
        for (repo, alias, rollout_id, arm), (n, errors, lat, lat2) in pending.items():
            grouped[(repo, alias, rollout_id)].append({"arm": arm, "requests": n, "errors": errors,
                                                       "latency_sum": lat, "latency_sq_sum": lat2})
        sent = 0
        for (repo, alias, rollout_id), batches in grouped.items():
            try:
                self.hub.report_outcomes(repo, batches, alias=alias, rollout_id=rollout_id)
                sent += len(batches)
            except Exception as exc:  # best-effort: a registry hiccup never affects serving
                log.warning("could not report outcomes for %s:%s: %s", repo, alias, exc)
        return sent

    def _report_loop(self) -> None:
        while not self._closed.wait(self.report_interval):
            self.flush_outcomes()

    def metrics_text(self) -> str:
        with self._lock:
            n = len(self._lru)
        return self.metrics.render(n, self.loaded_bytes)


def _transient(exc: RegistryError) -> bool:
    """A failure to reach the registry, or its own fault (5xx): worth serving a stale answer over."""
    return exc.code == "ConnectionError" or (exc.status or 0) >= 500


def _card_labels(folder: Path) -> list[str] | None:
    import json

    try:
        card = json.loads((folder / "adapterhub.json").read_text())
    except (OSError, ValueError):
        return None
    labels = card.get("labels") if isinstance(card, dict) else None
    return [str(x) for x in labels] if isinstance(labels, list) else None


def _load_base(path, tokenizer=None):
    """A local base folder as a causal LM, or as a sequence classifier if that is what it was saved as."""
    import json

    from adapterhub.compose.evaluate import _base_folder, load_tokenizer, quiet_transformers

    folder = _base_folder(path)
    tokenizer = tokenizer or load_tokenizer(folder)
    archs = json.loads((folder / "config.json").read_text()).get("architectures") or []
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cls = AutoModelForSequenceClassification if any("SequenceClassification" in a for a in archs) else AutoModelForCausalLM
    with quiet_transformers():
        model = cls.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


__all__ = ["AdapterServer", "Classification", "Completion", "PromptTooLongError", "Resolved", "WrongTaskError",
           "rollout_alias"]
