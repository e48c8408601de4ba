"""The one `Hub` a CLI invocation talks to, built from the root ``--url`` flag (else the environment)."""

from __future__ import annotations

import click

from adapterhub.registry.client import Hub


def get_hub(token: str | None = None) -> Hub:
    """The invocation's Hub (or, with ``token``, a fresh one using that token)."""
    root = click.get_current_context().find_root()
    url = root.params.get("url")
    if token is not None:
        hub = Hub(url=url, token=token)
        root.call_on_close(hub.close)
        return hub
    hub = root.meta.get("adapterhub.hub")
    if hub is None:
        hub = root.meta["adapterhub.hub"] = Hub(url=url)
        root.call_on_close(hub.close)
    return hub
