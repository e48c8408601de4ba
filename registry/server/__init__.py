"""The registry server (FastAPI + SQLModel). Never imports torch or `adapterhub.compose`.

>>> from adapterhub.registry.server import create_app, serve, Settings
"""

from adapterhub.registry.server.app import create_app, serve
from adapterhub.registry.server.settings import Settings

__all__ = ["Settings", "create_app", "serve"]
