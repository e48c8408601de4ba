"""Content-addressed blob storage: a local folder, or an S3-compatible bucket.

Uploads are streamed to a temp file (named after the writing process), hashed on the way,
fsynced and then renamed (local) or uploaded (S3) under their sha256, so a reader never sees a
partial blob and identical files are stored once.

>>> store = open_blobstore("file:///tmp/blobs", Path("/tmp"))
>>> with store.upload() as up:
...     up.write(b"hello")
>>> store.commit(up)  # -> "2cf24dba..."
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

CHUNK = 1024 * 1024
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class StorageError(Exception):
    """The blob store could not do its part; ``status``/``code`` are what the API answers."""

    status, code = 503, "BlobStoreUnavailable"


class StorageFull(StorageError):
    """No space left where blobs are written: the client may retry once an operator frees space."""

    status, code = 507, "InsufficientStorage"


class StorageUnavailable(StorageError):
    """The bucket did not answer (down, unreachable, 5xx): transient, so 503 rather than 500."""


@contextlib.contextmanager
def _disk_full_as_storage_full(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise StorageFull(f"the blob store has no space left ({what}); nothing was stored") from exc
        raise


class Upload:
    """A temp file being written; ``sha256``/``size`` are known once it is closed."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._h = hashlib.sha256()
        self.size = 0
        self.sha256 = ""

    def write(self, data: bytes) -> None:
        with _disk_full_as_storage_full("writing an upload"):
            self._f.write(data)
        self._h.update(data)
        self.size += len(data)

    def close(self) -> None:
        if not self._f.closed:
            with _disk_full_as_storage_full("flushing an upload"):
                self._f.flush()
                os.fsync(self._f.fileno())
            self._f.close()
            self.sha256 = self._h.hexdigest()

    def discard(self) -> None:
        """Drop the temp file, even when closing it fails (a full disk fails the final flush
        again, and a temp file left behind would keep the disk full)."""
        try:
            if not self._f.closed:
                with contextlib.suppress(OSError):
                    self._f.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.discard()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BlobStore(ABC):
    """Where blob bytes live. Metadata (which blobs exist, their size) lives in the database."""

    def __init__(self, tmp_dir: Path):
        self.tmp_dir = tmp_dir
        tmp_dir.mkdir(parents=True, exist_ok=True)

    def upload(self) -> Upload:
        return Upload(self.tmp_dir / f"upload-{os.getpid()}-{uuid.uuid4().hex}.part")

    def sweep_temp(self) -> int:
        """Delete temp uploads left by dead processes (a crash mid-upload); return how many."""
        swept = 0
        for p in self.tmp_dir.glob("upload-*.part"):
            try:
                pid = int(p.name.split("-")[1])
            except (IndexError, ValueError):
                pid = -1
            if pid == os.getpid() or pid < 0 or not _pid_alive(pid):
                p.unlink(missing_ok=True)
                swept += 1
        return swept

    @abstractmethod
    def commit(self, upload: Upload) -> str:
        """Move a closed upload under its sha256 (dropping it if the blob exists); return the sha."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def iter_bytes(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield bytes ``[start, end)`` of a blob."""

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.iter_bytes(sha256, start, end))

    def presigned_url(self, sha256: str, filename: str) -> str | None:
        return None


class LocalBlobStore(BlobStore):
    """Blobs as files ``<root>/sha256/ab/cd/<sha256>``; temp files in ``<root>/tmp``."""

    def __init__(self, root: Path):
        self.root = root
        super().__init__(root / "tmp")

    def path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def commit(self, upload: Upload) -> str:
        upload.close()
        dest = self.path(upload.sha256)
        if dest.exists():
            upload.path.unlink(missing_ok=True)
            return upload.sha256
        with _disk_full_as_storage_full("creating a blob folder"):
            dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(upload.path, dest)
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return upload.sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def iter_bytes(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with open(self.path(sha256), "rb") as f:
            f.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                chunk = f.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk


@contextlib.contextmanager
def _s3_unavailable(what: str) -> Iterator[None]:
    """Turn "the bucket did not answer" (refused, timed out, cut off, 5xx) into `StorageUnavailable`,
    so the API answers 503 instead of a 500 with a traceback; other S3 errors pass unchanged."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        yield
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if status >= 500:
            raise StorageUnavailable(f"the blob store answered {status} while {what}; retry later") from exc
        raise
    except (BotoConnectionError, HTTPClientError) as exc:
        raise StorageUnavailable(f"the blob store is unreachable while {what}; retry later ({exc})") from exc


class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix>/sha256/<sha256>`` in an S3-compatible bucket (boto3).

    Timeouts and retries are short so that an unreachable bucket costs a request seconds, not
    the minutes of botocore's defaults (60 s timeouts, 5 attempts), before it answers 503."""

    def __init__(self, bucket: str, prefix: str, tmp_dir: Path, endpoint_url: str | None, presign: bool):
        import boto3
        from botocore.config import Config

        super().__init__(tmp_dir)
        self.bucket, self.prefix, self.presign = bucket, prefix.strip("/"), presign
        config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3})
        self.s3 = boto3.client("s3", endpoint_url=endpoint_url, config=config)

    def key(self, sha256: str) -> str:
        return f"{self.prefix}/sha256/{sha256}" if self.prefix else f"sha256/{sha256}"

    def commit(self, upload: Upload) -> str:
        upload.close()
        try:
            if not self.exists(upload.sha256):
                with _s3_unavailable("storing a blob"):
                    self.s3.upload_file(str(upload.path), self.bucket, self.key(upload.sha256))
        finally:
            upload.path.unlink(missing_ok=True)
        return upload.sha256

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with _s3_unavailable("looking a blob up"):
                self.s3.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except ClientError:  # 404, or 403 where the caller may not list the bucket
            return False
        return True

    def iter_bytes(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if end is not None and end <= start:
            return
        rng = f"bytes={start}-" + ("" if end is None else str(end - 1))
        with _s3_unavailable("reading a blob"):
            body = self.s3.get_object(Bucket=self.bucket, Key=self.key(sha256), Range=rng)["Body"]
            yield from body.iter_chunks(CHUNK)

    def presigned_url(self, sha256: str, filename: str) -> str | None:
        if not self.presign:
            return None
        from adapterhub.registry.server.responses import content_disposition  # (it imports this module)

        return self.s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(sha256),
                    "ResponseContentDisposition": content_disposition(filename.rsplit("/", 1)[-1]),
                    "ResponseContentType": "application/octet-stream"},
            ExpiresIn=3600,
        )


def open_blobstore(url: str, home: Path, endpoint_url: str | None = None, presign: bool = False) -> BlobStore:
    """``file:///path`` or ``s3://bucket/prefix`` (endpoint from ``ADAPTERHUB_S3_ENDPOINT_URL``)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    if parsed.scheme == "s3":
        return S3BlobStore(parsed.netloc, parsed.path, home / "tmp", endpoint_url, presign)
    if parsed.scheme == "":
        return LocalBlobStore(Path(url))
    raise ValueError(f"unsupported ADAPTERHUB_BLOB_URL {url!r}: use file:///path or s3://bucket/prefix")
