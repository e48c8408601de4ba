"""The NDJSON body of a Hugging Face commit, read with bounded memory.

A regular file rides in its line as base64, so one line can be as large as the file (a third
more). ``huggingface_hub`` writes each line with ``json.dumps``, so a file line starts with
`FILE_PREFIX`; such a line's content is decoded as it streams, straight into a temp upload, and
only the short rest of the line is parsed as JSON. Any other line (another client's key order, a
header, a deletion) is read whole, up to `LINE_CAP`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator

from fastapi.concurrency import run_in_threadpool

from adapterhub.registry.server.blobstore import BlobStore, Upload
from adapterhub.registry.server.errors import ApiError

FILE_PREFIX = b'{"key": "file", "value": {"content": "'
LINE_CAP = 16 * 1024 * 1024  # a whole line read into memory: headers, LFS pointers, small files in other key orders
DECODE_CHUNK = 4 * 1024 * 1024


class CommitBody:
    """Lines and streamed file contents from the request body; counts bytes against ``body_max``."""

    def __init__(self, stream: AsyncIterator[bytes], body_max: int):
        self._chunks = stream.__aiter__()
        self._buf = bytearray()
        self._seen, self._max, self._eof = 0, body_max, False
        self.number = 0  # the line being read, 1-based

    async def _fill(self) -> bool:
        if self._eof:
            return False
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._eof = True
            return False
        self._seen += len(chunk)
        if self._seen > self._max:
            raise ApiError(413, "TooLarge", f"the commit body is over {self._max} bytes "
                                            "(ADAPTERHUB_HF_COMMIT_MAX_BYTES); split it into several commits")
        self._buf += chunk
        return True

    async def starts_file_line(self) -> bool:
        """True when the next line is a file line in `huggingface_hub`'s own layout."""
        while len(self._buf) < len(FILE_PREFIX) and b"\n" not in self._buf and await self._fill():
            pass
        return self._buf.startswith(FILE_PREFIX)

    async def line(self) -> bytes | None:
        """The next line (without its newline), None at the end of the body."""
        while (cut := self._buf.find(b"\n")) < 0:
            if len(self._buf) > LINE_CAP:
                raise ApiError(413, "TooLarge", f"commit line {self.number + 1} is over {LINE_CAP} bytes")
            if not await self._fill():
                if not self._buf:
                    return None
                cut = len(self._buf)
                break
        out = bytes(self._buf[:cut])
        del self._buf[:cut + 1]
        self.number += 1
        return out

    async def file_content(self, store: BlobStore, limit: int, what: str) -> tuple[Upload, bytes]:
        """Decode a file line's base64 content into a closed temp upload, then return it with the
        line's JSON made whole again around an empty content (to read its path and encoding)."""
        del self._buf[:len(FILE_PREFIX)]
        up, pending, padded = store.upload(), b"", False
        try:
            while True:
                quote = self._buf.find(b'"')
                end = len(self._buf) if quote < 0 else quote
                take = min(end, DECODE_CHUNK)
                data = pending + bytes(self._buf[:take])
                del self._buf[:take]
                cut = len(data) - len(data) % 4
                if cut:
                    if padded:
                        raise ApiError(400, "InvalidCommit", f"commit line {self.number + 1}: {what}content is not "
                                                             "valid base64 (data after the padding)")
                    try:
                        decoded = base64.b64decode(data[:cut], validate=True)
                    except (binascii.Error, ValueError):
                        raise ApiError(400, "InvalidCommit", f"commit line {self.number + 1}: {what}content is "
                                                             "not valid base64") from None
                    padded = data[cut - 1:cut] == b"="
                    if up.size + len(decoded) > limit:
                        raise ApiError(413, "TooLarge", f"a file sent inside a commit may be at most {limit} bytes "
                                                        "(larger files go by LFS: the preupload answers 'lfs')")
                    await run_in_threadpool(up.write, decoded)
                pending = data[cut:]
                if quote >= 0 and take == end:
                    del self._buf[:1]
                    break
                if take == end and not await self._fill():
                    raise ApiError(400, "InvalidCommit", f"commit line {self.number + 1}: the body ends inside a file")
            if pending:
                raise ApiError(400, "InvalidCommit", f"commit line {self.number + 1}: {what}content is not valid "
                                                     "base64 (its length is not a multiple of 4)")
            await run_in_threadpool(up.close)
            rest = await self.line()
        except BaseException:
            up.discard()
            raise
        return up, FILE_PREFIX + b'"' + (rest or b"")
