"""Reference -> version resolution for serving, cached for a short TTL per (reference, key).

Resolving is on every request's path and the registry decides canary arms per key, so answers are
cached per (reference, key) rather than per reference; a registry that is down must not take the
adapters already being served down with it.

>>> Resolver(Hub(), ttl=2.0, metrics=Metrics()).resolve("acme/support:prod", key="tenant-1").exact  # doctest: +SKIP
'acme/support@1.2.0'
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from adapterhub.compose.serving.metrics import Metrics
from adapterhub.errors import AdapterNotFoundError, RegistryError

log = logging.getLogger("adapterhub.serve")

CACHE_SIZE = 100_000  # (reference, key) pairs: one per tenant of a rollout, so bounded well above any fleet


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


class Resolver:
    """A TTL cache over ``hub.resolve`` whose concurrent misses share one registry call.

    ``hub`` is anything with ``resolve(ref, key=)`` (a `Hub`); it is looked up on each miss, not
    bound at construction, so a hub whose ``resolve`` is replaced later is honoured.
    """

    def __init__(self, hub: Any, ttl: float, metrics: Metrics):
        self.hub, self.ttl, self.metrics = hub, ttl, metrics
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str | None], tuple[float, Resolved]] = OrderedDict()
        self._resolving: dict[tuple[str, str | None], Future] = {}  # misses in flight, shared

    def resolve(self, ref: str, key: str | None = None) -> Resolved:
        """The version (and rollout arm) ``ref`` means for ``key`` now, cached for ``ttl`` seconds.

        Concurrent misses of one (reference, key) share one registry call, so a popular adapter whose
        entry expires does not send a burst of resolves. A registry that cannot be reached (or answers
        5xx) fails no request for a reference already resolved: the last answer is served, stale, until
        the registry is back; a reference never resolved before fails with the registry's error.
        """
        cache_key = (ref, key)
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit and hit[0] > time.monotonic():
                self._cache.move_to_end(cache_key)
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
            out = self._fetch(ref, key, hit[1] if hit else None)
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(out)
            return out
        finally:
            with self._lock:
                self._resolving.pop(cache_key, None)

    def _fetch(self, ref: str, key: str | None, last: Resolved | None) -> Resolved:
        """Ask the registry and cache the answer; on a transient failure fall back to ``last``."""
        expires = time.monotonic() + self.ttl
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
            self._cache[(ref, key)] = (expires, out)
            self._cache.move_to_end((ref, key))
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return out


def _transient(exc: RegistryError) -> bool:
    """A failure to reach the registry, or its own fault (5xx): worth serving a stale answer over."""
    return exc.code == "ConnectionError" or (exc.status or 0) >= 500


__all__ = ["CACHE_SIZE", "Resolved", "Resolver", "rollout_alias"]
