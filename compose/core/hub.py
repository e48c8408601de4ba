"""The engine's one door to the registry: a reference becomes a local folder through the client.

Loading, evaluation and recipes take a ``pull`` callable rather than building a client, so they
can be handed another (the UI's per-user one, a test's); this is the one they get by default.
"""

from __future__ import annotations

from pathlib import Path


def pull_from_registry(reference: str) -> Path:
    """The folder of ``reference`` in the local cache, pulled from ``ADAPTERHUB_URL`` if needed."""
    from adapterhub.registry.client import Hub

    return Path(Hub().pull(reference))
