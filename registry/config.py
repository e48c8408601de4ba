"""Where the client finds its settings: flags > environment > the stored login > defaults.

One job: answer "which URL, which token, which home folder, offline or not", and keep the token
that ``adapterhub login`` stores (a file readable by its owner only, mode 0600).

>>> import os; os.environ["ADAPTERHUB_HOME"] = "/tmp/ah-doc"
>>> str(home())
'/tmp/ah-doc'
"""

from __future__ import annotations

import os
from pathlib import Path

from adapterhub.format import write_text_atomic

DEFAULT_URL = "http://127.0.0.1:8000"
TRUTHY = {"1", "true", "yes", "on"}


def home() -> Path:
    """``ADAPTERHUB_HOME``, else ``$XDG_DATA_HOME/adapterhub``, else ``~/.local/share/adapterhub``."""
    explicit = os.environ.get("ADAPTERHUB_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "adapterhub"


def cache_dir() -> Path:
    return home() / "cache"


def token_path() -> Path:
    return home() / "token"


def offline() -> bool:
    return os.environ.get("ADAPTERHUB_OFFLINE", "").strip().lower() in TRUTHY


def debug() -> bool:
    return os.environ.get("ADAPTERHUB_DEBUG", "").strip().lower() in TRUTHY


def resolve_url(url: str | None = None) -> str:
    return (url or os.environ.get("ADAPTERHUB_URL") or DEFAULT_URL).rstrip("/")


def resolve_token(token: str | None = None) -> str | None:
    """An explicit token, else ``ADAPTERHUB_TOKEN``, else the one ``adapterhub login`` stored."""
    return token or os.environ.get("ADAPTERHUB_TOKEN") or read_token()


def read_token() -> str | None:
    try:
        value = token_path().read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return value or None


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` atomically to ``path`` with mode 0600 (never readable by group or others)."""
    return write_text_atomic(path, text, mode=0o600)


def store_token(token: str) -> Path:
    return write_private(token_path(), token.strip() + "\n")


def delete_token() -> bool:
    """Remove the stored token; True when there was one."""
    try:
        token_path().unlink()
    except FileNotFoundError:
        return False
    return True
