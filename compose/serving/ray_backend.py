"""serve-model on a Ray Serve cluster: replicas with adapter affinity, one HTTP face.

Two deployments. **Replicas** (`AdapterReplica`, N of them or autoscaled) each load the base once
and run the engine's own `AdapterServer`: its adapter LRU (count, bytes, pinning) and its
micro-batcher, which already runs the rows that land on a replica as one per-row forward across
adapters (what ``@serve.batch`` would do per adapter only). Their adapters are
``@serve.multiplexed``: Ray routes a request to a replica that already holds its version, and
when Ray's per-replica LRU evicts a version the replica unloads it too. The **router** (the
ingress) resolves each reference through the registry (canary arm and sticky key included)
*before* routing, so the multiplexed id is the immutable ``ns/name@version``: affinity holds per
version, and an alias move or a rollout step reaches every replica within the resolve TTL. Each
replica reports outcomes to the registry itself, so rollbacks and step-ups see the whole fleet.
The router serves the local server's HTTP app unchanged (`http.create_app`) over `Fleet`, a
stand-in for `AdapterServer`; ``/metrics`` joins every replica's, labelled ``replica``.

Ray is optional (``pip install adapterhub[ray]``): nothing here imports it at module level.

>>> from ray import serve                                                      # doctest: +SKIP
>>> serve.run(ray_deployment("models/tiny-llama", registry="http://hub:8000", replicas=2))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from adapterhub.compose.serving.requests import ReplicaUnavailableError
from adapterhub.compose.serving.resolver import Resolver
from adapterhub.errors import AdapterHubError

BOARD_PUSH_S = 1.0  # how often a replica publishes its metrics and loaded adapters to the router


def labelled(text: str, replica: str, help_seen: set[str]) -> list[str]:
    """One replica's Prometheus text with ``replica="..."`` on every sample; HELP/TYPE lines once."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            if line not in help_seen:
                help_seen.add(line)
                out.append(line)
            continue
        name, _, rest = line.partition(" ")
        tag = f'replica="{replica}"'
        out.append(f"{name[:-1]},{tag}}} {rest}" if name.endswith("}") else f"{name}{{{tag}}} {rest}")
    return out


class Fleet:
    """What the HTTP app asks of a server, answered by the router: resolve here, run on a replica."""

    def __init__(self, handle: Any, hub: Any, tokenizer: Any, base_name: str, task: str, board: Any,
                 resolve_ttl: float):
        from adapterhub.compose.serving.metrics import Metrics

        self.handle, self.hub, self.tokenizer, self.board = handle, hub, tokenizer, board
        self.base_name, self.task = base_name, task
        self.metrics = Metrics()
        self.resolver = Resolver(hub, resolve_ttl, self.metrics)
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="adapterhub-fleet")

    def submit(self, ref: str, prompt: str, *, key: str | None = None, max_tokens: int = 16,
               kind: str = "generate") -> Future:
        """Resolve (raises at once for an unknown adapter), then route by the exact version."""
        resolved = self.resolver.resolve(ref, key)
        response = self.handle.options(multiplexed_model_id=resolved.exact).run.remote(kind, prompt, max_tokens, resolved)
        return self._pool.submit(_result, response)

    def loaded(self) -> list[dict]:
        import ray

        boards = ray.get(self.board.get.remote())
        return [{**e, "replica": replica} for replica, (_text, loaded) in sorted(boards.items()) for e in loaded]

    def metrics_text(self) -> str:
        import ray

        boards = ray.get(self.board.get.remote())
        seen: set[str] = set()
        lines = labelled(self.metrics.render(0, 0), "router", seen)
        for replica, (text, _loaded) in sorted(boards.items()):
            lines += labelled(text, replica, seen)
        return "\n".join(lines) + "\n"


_FLEET: list[Fleet | None] = [None]  # the router of this process (one per Ray replica process)


class _ThisProcessFleet:
    """Stands in, on the app Ray copies into the router's process, for the fleet started there."""

    def __getattr__(self, name: str) -> Any:
        if _FLEET[0] is None:
            raise ReplicaUnavailableError("the router is still starting")
        return getattr(_FLEET[0], name)


def _result(response: Any) -> Any:
    """A replica's answer; a replica that died mid-request is a 503 the client retries."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

    try:
        return response.result()
    except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
        raise ReplicaUnavailableError(f"the replica serving this request went away ({type(exc).__name__}); "
                                      "retry it") from None
    except RayTaskError as exc:  # the replica's own error (an unknown task, a prompt too long): as it was
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, Exception) else exc) from None


def _deployments(max_adapters: int) -> tuple[Any, Any, Any]:
    """The Ray classes, built on first use (Ray stays optional) for one multiplex size."""
    import ray
    from ray import serve

    @ray.remote(num_cpus=0)
    class Board:
        """Each replica's last metrics and loaded adapters, for the router's /metrics and /v1/models."""

        def __init__(self) -> None:
            self.boards: dict[str, tuple[str, list[dict]]] = {}

        def put(self, replica: str, text: str, loaded: list[dict]) -> None:
            self.boards[replica] = (text, loaded)

        def get(self) -> dict[str, tuple[str, list[dict]]]:
            return dict(self.boards)

    class Held:
        """A loaded version as Ray's multiplexer holds it; its eviction unloads it from the replica."""

        def __init__(self, server: Any, exact: str):
            self.server, self.exact = server, exact

        def __del__(self) -> None:
            with contextlib.suppress(Exception):
                self.server.adapters.drop(self.exact)

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class AdapterReplica:
        def __init__(self, base: Any, registry: str | None, token: str | None, board_name: str, options: dict):
            from adapterhub.compose.serving.server import AdapterServer
            from adapterhub.registry.client import Hub

            self.hub = Hub(url=registry, token=token, progress=False)
            self.server = AdapterServer(base, self.hub, **options)
            self.replica = serve.get_replica_context().replica_id.unique_id
            self._board_name, self._stop = board_name, threading.Event()
            threading.Thread(target=self._publish, daemon=True, name="adapterhub-board").start()

        def _publish(self) -> None:
            board = None
            while not self._stop.wait(BOARD_PUSH_S):
                with contextlib.suppress(Exception):
                    board = board or ray.get_actor(self._board_name)
                    board.put.remote(self.replica, self.server.metrics_text(), self.server.loaded())

        @serve.multiplexed(max_num_models_per_replica=max_adapters)
        async def adapter(self, exact: str) -> Held:
            await asyncio.wrap_future(self.server.adapters.load_future(exact))
            return Held(self.server, exact)

        async def run(self, kind: str, prompt: str, max_tokens: int, resolved: Any) -> Any:
            started = time.perf_counter()
            try:
                await self.adapter(serve.get_multiplexed_model_id())
            except Exception:  # a version that cannot load (built for another base): an error outcome,
                self.server.record_outcome(resolved, False, time.perf_counter() - started)  # so rollbacks see it
                raise
            fut = self.server.submit(resolved.reference, prompt, max_tokens=max_tokens, kind=kind, resolved=resolved)
            return await asyncio.wrap_future(fut)

        def __del__(self) -> None:
            with contextlib.suppress(Exception):
                self._stop.set()
                self.server.close()
                self.hub.close()

    from adapterhub.compose.serving.http import create_app

    # the routes must be on the app before @serve.ingress reads it, and Ray serves a copy of it in
    # the router's process: the server behind them is the fleet that process's router starts
    app = create_app(_ThisProcessFleet())

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    @serve.ingress(app)
    class Router:
        def __init__(self, replicas: Any, base: Any, registry: str | None, token: str | None, board_name: str,
                     resolve_ttl: float):
            from adapterhub.compose.workflows.base import load_tokenizer
            from adapterhub.registry.client import Hub
            from adapterhub.vocab import CLASSIFICATION, LM

            board = Board.options(name=board_name, get_if_exists=True, lifetime="detached").remote()
            tokenizer = load_tokenizer(base)
            task = CLASSIFICATION.name if _is_classifier(base) else LM.name
            self.fleet = Fleet(replicas, Hub(url=registry, token=token, progress=False), tokenizer, str(base), task,
                               board, resolve_ttl)
            from adapterhub.compose.serving import ray_backend  # the module itself, not cloudpickle's copy

            ray_backend._FLEET[0] = self.fleet

    return Board, AdapterReplica, Router


def _is_classifier(base: Any) -> bool:
    from transformers import AutoConfig

    from adapterhub.compose.workflows.base import base_folder

    archs = getattr(AutoConfig.from_pretrained(base_folder(base)), "architectures", None) or []
    return any("ForSequenceClassification" in a for a in archs)


def ray_deployment(base: Any, registry: str | None = None, token: str | None = None, *, replicas: int = 1,
                   max_adapters: int = 32, max_bytes: int | None = None, resolve_ttl: float = 2.0,
                   max_batch: int = 16, max_wait_ms: float = 5.0, max_prompt_tokens: int | None = None,
                   max_new_tokens: int = 256, report_interval: float = 5.0, autoscaling: dict | None = None,
                   name: str = "adapterhub") -> Any:
    """A Ray Serve application serving registry adapters on ``base`` (``serve.run`` it, or name it
    in a Serve config file). ``autoscaling`` (``min_replicas``, ``max_replicas``,
    ``target_ongoing_requests``, ...) replaces the fixed ``replicas``."""
    if max_adapters < 1 or replicas < 1:
        raise AdapterHubError("ray_deployment needs replicas >= 1 and max_adapters >= 1")
    _board, replica_cls, router_cls = _deployments(max_adapters)
    options = {"max_adapters": max_adapters, "max_bytes": max_bytes, "resolve_ttl": resolve_ttl,
               "max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_prompt_tokens": max_prompt_tokens,
               "max_new_tokens": max_new_tokens, "report_interval": report_interval}
    scaling = {"autoscaling_config": autoscaling} if autoscaling else {"num_replicas": replicas}
    board_name = f"{name}-board-{int(time.time() * 1000)}"
    replica = replica_cls.options(max_ongoing_requests=max(8, 4 * max_batch), **scaling).bind(
        base, registry, token, board_name, options)
    return router_cls.bind(replica, base, registry, token, board_name, resolve_ttl)


def app_builder(args: dict) -> Any:
    """For a Serve config file (``import_path: adapterhub.compose.serving.ray_backend:app_builder``):
    its ``args`` are `ray_deployment`'s keyword arguments, ``base`` included."""
    args = dict(args)
    return ray_deployment(args.pop("base"), **args)


__all__ = ["Fleet", "app_builder", "labelled", "ray_deployment"]
