"""Short-lived signed upload URLs for the legacy Git LFS transfer.

The LFS client PUTs each object to the ``href`` the batch answer gave it, and sends no
``Authorization`` header there (HF_PROTOCOL.md), so the URL itself must say who may upload what:
the object's sha256 and size, the uploading user and an expiry, signed with HMAC-SHA256 under a
key only the registry holds. A URL cannot be stretched to another object, size, user or time.

The key is ``ADAPTERHUB_SIGNING_KEY`` when set (give every replica the same one), else a random
key kept in the registry home (``signing.key``, mode 0600), made once on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

KEY_FILE = "signing.key"
UPLOAD_URL_TTL_S = 3600  # an hour: enough for a slow link to send a large adapter


def signing_key(configured: str | None, home: Path) -> bytes:
    """The configured key, else the home folder's, created exclusively so two processes agree."""
    if configured:
        return configured.encode()
    path = home / KEY_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
            f.flush()
            os.fsync(f.fileno())
    key = path.read_text().strip()
    if len(key) < 32:  # a file cut short by a crash between create and write
        raise RuntimeError(f"{path} holds no usable signing key; delete it and restart the registry")
    return key.encode()


@dataclass(frozen=True)
class UploadGrant:
    """What a signed URL allows: one object, of one size, by one user, until ``expires``."""

    oid: str
    size: int
    user_id: int
    expires: int

    def message(self) -> bytes:
        return f"lfs-upload:{self.oid}:{self.size}:{self.user_id}:{self.expires}".encode()


def sign(key: bytes, grant: UploadGrant) -> str:
    return hmac.new(key, grant.message(), hashlib.sha256).hexdigest()


def upload_query(key: bytes, oid: str, size: int, user_id: int, now: float | None = None) -> str:
    grant = UploadGrant(oid, size, user_id, int(now if now is not None else time.time()) + UPLOAD_URL_TTL_S)
    return urlencode({"size": size, "user": user_id, "expires": grant.expires, "signature": sign(key, grant)})


def check_grant(key: bytes, grant: UploadGrant, signature: str, now: float | None = None) -> str | None:
    """Why the URL does not allow this upload, or None when it does."""
    if not hmac.compare_digest(sign(key, grant), signature):
        return "the upload URL's signature does not match (ask the LFS batch endpoint for a new one)"
    if grant.expires <= int(now if now is not None else time.time()):
        return "the upload URL has expired (ask the LFS batch endpoint for a new one)"
    return None
