"""Server settings, read from the environment once at start.

>>> s = Settings.from_env({"ADAPTERHUB_HOME": "/tmp/hub"})
>>> s.database_url
'sqlite:////tmp/hub/registry.sqlite'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def default_home(env: Mapping[str, str]) -> Path:
    """``$ADAPTERHUB_HOME``, else ``$XDG_DATA_HOME/adapterhub``, else ``~/.local/share/adapterhub``."""
    if env.get("ADAPTERHUB_HOME"):
        return Path(env["ADAPTERHUB_HOME"]).expanduser()
    xdg = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "adapterhub"


def normalize_database_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and point them at the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _words(value: str | None) -> list[str]:
    """``"a, b c"`` -> ``["a", "b", "c"]`` (lists in variables: commas or spaces)."""
    return [w for w in (value or "").replace(",", " ").split() if w]


@dataclass
class Settings:
    """Everything the server needs to know; nothing else reads the environment."""

    home: Path
    database_url: str = field(repr=False)  # may carry a password
    blob_url: str
    admin_token: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log
    max_upload_bytes: int = 2 * 1024**3
    auth_fail_limit: int = 20
    auth_fail_window_s: float = 60.0
    s3_endpoint_url: str | None = None
    s3_presign: bool = False
    rollout_cache_ttl_s: float = 1.0
    trusted_hosts: list[str] = field(default_factory=list)  # empty: loopback names + the bound address
    cors_origins: list[str] = field(default_factory=list)  # empty: no cross-origin reads
    rate_limit: float = 0.0  # requests a second per client address, per process; 0 = off
    rate_burst: int = 0  # 0: twice the rate (at least 10)
    max_request_bytes: int = 16 * 1024**2  # any body but a blob upload or an HF commit
    # the HF write protocol (shared/HF_PROTOCOL.md): files up to this size travel inside the commit
    # ("regular"), so Xet-era clients push with no environment variable; larger ones go by LFS
    hf_regular_max_bytes: int = 256 * 1024**2
    hf_commit_max_bytes: int = 4 * 1024**3  # one NDJSON commit body, streamed to disk (base64 adds a third)
    signing_key: str | None = field(default=None, repr=False)  # signs LFS upload URLs; None: a key file in home

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = default_home(env)
        return cls(
            home=home,
            database_url=normalize_database_url(
                env.get("ADAPTERHUB_DATABASE_URL") or f"sqlite:///{home / 'registry.sqlite'}"
            ),
            blob_url=env.get("ADAPTERHUB_BLOB_URL") or f"file://{home / 'blobs'}",
            admin_token=env.get("ADAPTERHUB_ADMIN_TOKEN") or None,
            max_upload_bytes=int(env.get("ADAPTERHUB_MAX_UPLOAD_BYTES") or 2 * 1024**3),
            auth_fail_limit=int(env.get("ADAPTERHUB_AUTH_FAIL_LIMIT") or 20),
            auth_fail_window_s=float(env.get("ADAPTERHUB_AUTH_FAIL_WINDOW") or 60.0),
            s3_endpoint_url=env.get("ADAPTERHUB_S3_ENDPOINT_URL") or None,
            s3_presign=(env.get("ADAPTERHUB_S3_PRESIGN") or "").lower() in ("1", "true", "yes"),
            rollout_cache_ttl_s=float(env.get("ADAPTERHUB_ROLLOUT_CACHE_TTL") or 1.0),
            trusted_hosts=_words(env.get("ADAPTERHUB_TRUSTED_HOSTS")),
            cors_origins=_words(env.get("ADAPTERHUB_CORS_ORIGINS")),
            rate_limit=float(env.get("ADAPTERHUB_RATE_LIMIT") or 0.0),
            rate_burst=int(env.get("ADAPTERHUB_RATE_BURST") or 0),
            max_request_bytes=int(env.get("ADAPTERHUB_MAX_REQUEST_BYTES") or 16 * 1024**2),
            hf_regular_max_bytes=int(env.get("ADAPTERHUB_HF_REGULAR_MAX_BYTES") or 256 * 1024**2),
            hf_commit_max_bytes=int(env.get("ADAPTERHUB_HF_COMMIT_MAX_BYTES") or 4 * 1024**3),
            signing_key=env.get("ADAPTERHUB_SIGNING_KEY") or None,
        )

    def __post_init__(self) -> None:
        self.database_url = normalize_database_url(self.database_url)
        self.rate_burst = self.rate_burst or max(10, math.ceil(2 * self.rate_limit))
