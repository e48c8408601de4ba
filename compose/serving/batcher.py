"""The micro-batcher: rows that arrive within ``max_wait`` (up to ``max_batch``) run together, because
one ``generate`` or forward with per-row ``adapter_names`` (the vectorised LoRA path) costs little
more than one row. A batch that fails is retried row by row, so one bad request never fails its
batch-mates; how a batch runs on the model is `runner.BatchRunner`'s."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from adapterhub.compose.serving.metrics import Metrics
from adapterhub.compose.serving.requests import Request
from adapterhub.errors import AdapterHubError

log = logging.getLogger("adapterhub.serve")
KINDS = ("generate", "classify")

Run = Callable[[list[Request]], list]  # rows of one kind -> their results, in order
Finish = Callable[[Request, object, BaseException | None], None]


class MicroBatcher:
    """One worker thread over a queue of `Request` rows; ``finish`` answers each row exactly once."""

    def __init__(self, run: Run, metrics: Metrics, *, max_batch: int, max_wait: float, finish: Finish):
        self.run, self.metrics = run, metrics
        self.max_batch, self.max_wait, self.finish = max(1, int(max_batch)), max_wait, finish
        self._queue: queue.Queue[Request | None] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="adapterhub-batcher", daemon=True)
        self._worker.start()

    def put(self, row: Request) -> None:
        self._queue.put(row)

    def stop(self, timeout: float = 10) -> None:
        """Run what is queued, then stop the worker."""
        self._queue.put(None)
        self._worker.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            for kind in KINDS:
                rows = [r for r in batch if r.kind == kind]
                if rows:
                    try:
                        self._run_rows(rows)
                    except Exception:  # never let the worker die: every row has been answered or is failed here
                        log.exception("micro-batch worker error")
                        for row in rows:
                            if not row.future.done():
                                self.finish(row, None, AdapterHubError("internal serving error"))
            if stop:
                return

    def _gather(self, first: Request) -> tuple[list[Request], bool]:
        """What arrives within ``max_wait`` of the first row, up to ``max_batch``; True when told to stop."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                nxt = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _run_rows(self, rows: list[Request]) -> None:
        self.metrics.batch(len(rows))
        try:
            results = self.run(rows)
        except Exception as exc:  # one row may be the cause: retry each alone
            if len(rows) == 1:
                self.finish(rows[0], None, exc)
                return
            log.warning("batch of %d failed (%s); retrying row by row", len(rows), exc)
            for row in rows:
                try:
                    result = self.run([row])[0]
                except Exception as row_exc:
                    self.finish(row, None, row_exc)
                else:
                    self.finish(row, result, None)
            return
        for row, result in zip(rows, results, strict=True):
            self.finish(row, result, None)


__all__ = ["KINDS", "MicroBatcher"]
