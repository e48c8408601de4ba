"""``adapterhub serve-model``: one base model, many registry adapters, an OpenAI-compatible HTTP API."""

from __future__ import annotations

import click

from adapterhub.cli.output import note


@click.command("serve-model")
@click.option("--base", "base", required=True, metavar="PATH",
              help="Local transformers folder of the base model (or a catalogue name).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--registry", metavar="URL", help="Registry URL (default: the root --url, ADAPTERHUB_URL, else local).")
@click.option("--max-adapters", default=32, show_default=True, type=click.IntRange(min=1),
              help="Adapters kept in memory (least recently used are evicted).")
@click.option("--max-bytes", type=click.IntRange(min=1), help="Bytes of adapter weights kept in memory.")
@click.option("--max-batch", default=16, show_default=True, type=click.IntRange(min=1), help="Rows per micro-batch.")
@click.option("--max-wait-ms", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="How long a micro-batch waits for more requests.")
@click.option("--max-prompt-tokens", type=click.IntRange(min=1), help="Longer prompts are refused with 413.")
@click.option("--pin", "pins", multiple=True, metavar="REF", help="Load REF at start and never evict it (repeatable).")
@click.option("--device", help="torch device (default: the model's, i.e. CPU).")
@click.option("--report-interval", default=5.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between outcome reports to the registry (they drive rollouts).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one process; ray: Ray Serve replicas with adapter affinity (pip install adapterhub[ray]).")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(min=1),
              help="With --backend ray: replicas, each holding the base and its own adapter LRU.")
def serve_model(base: str, host: str, port: int, registry: str | None, max_adapters: int, max_bytes: int | None,
                max_batch: int, max_wait_ms: float, max_prompt_tokens: int | None, pins: tuple[str, ...],
                device: str | None, report_interval: float, backend: str, replicas: int) -> None:
    """Serve adapters from the registry on one base model (OpenAI-compatible HTTP API).

    The request's "model" is an adapter reference; its "user" field (or the X-Adapterhub-Key
    header) is the sticky key for canary rollouts. Endpoints: POST /v1/completions,
    /v1/chat/completions, /v1/classify; GET /v1/models, /metrics.

    \b
    Example:
      adapterhub serve-model --base models/tiny-llama --port 8080
      curl -s localhost:8080/v1/completions -H 'content-type: application/json' \\
        -d '{"model": "acme/support:prod", "prompt": "Hello", "max_tokens": 16, "user": "tenant-7"}'
      adapterhub serve-model --base models/tiny-llama --backend ray --replicas 2
    """
    root = click.get_current_context().find_root()
    if backend == "ray":
        _serve_ray(base, host, port, registry or root.params.get("url"), replicas, pins, device,
                   max_adapters=max_adapters, max_bytes=max_bytes, max_batch=max_batch, max_wait_ms=max_wait_ms,
                   max_prompt_tokens=max_prompt_tokens, report_interval=report_interval)
        return
    import uvicorn

    from adapterhub.compose.serving.http import create_app
    from adapterhub.compose.serving.server import AdapterServer
    from adapterhub.registry.client import Hub

    hub = Hub(url=registry or root.params.get("url"))
    server = AdapterServer(base, hub, max_adapters=max_adapters, max_bytes=max_bytes, max_batch=max_batch,
                           max_wait_ms=max_wait_ms, max_prompt_tokens=max_prompt_tokens, device=device,
                           report_interval=report_interval)
    try:
        for ref in pins:
            server.pin(ref)
            note(f"pinned {ref}")
        note(f"serving {server.task} base {base} on http://{host}:{port} (registry {hub.url})")
        uvicorn.run(create_app(server), host=host, port=port, log_level="warning")
    finally:
        server.close()
        hub.close()


def _serve_ray(base: str, host: str, port: int, registry: str | None, replicas: int, pins: tuple[str, ...],
               device: str | None, **options) -> None:
    """A local Ray cluster (or the one RAY_ADDRESS names) serving `ray_deployment` until Ctrl-C."""
    import time

    if pins or device:
        raise click.UsageError("--pin and --device are for --backend local; with ray, set them per replica "
                               "in a Serve config (see the README)")
    try:
        import ray
        from ray import serve
    except ImportError:
        raise click.UsageError("--backend ray needs Ray Serve: pip install 'adapterhub[ray]'") from None
    from adapterhub.compose.serving.ray_backend import ray_deployment
    from adapterhub.registry import config

    ray.init(ignore_reinit_error=True)
    serve.start(http_options={"host": host, "port": port})
    serve.run(ray_deployment(base, registry=config.resolve_url(registry), token=config.resolve_token(),
                             replicas=replicas, **options), route_prefix="/")
    note(f"serving base {base} on http://{host}:{port} with {replicas} Ray replica(s) (registry "
         f"{config.resolve_url(registry)}); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
