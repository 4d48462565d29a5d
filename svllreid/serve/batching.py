"""Queries that arrive together answered by one call: a worker thread owns the network and, each time
it is free, takes every query that is waiting (up to ``max_batch``) and runs them as one batch.

A query that finds the worker idle runs at once, alone; queries that arrive while it is busy wait for
the running batch only, and then share the next. So batching adds no delay of its own, and under load
the batches grow by themselves. The network is only ever used from the worker thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Q = TypeVar("Q")
R = TypeVar("R")


@dataclass
class BatchStats:
    """Queries answered, the calls that answered them, and the largest batch so far."""

    queries: int = 0
    calls: int = 0
    largest: int = 0
    failed_calls: int = 0


class QueryBatcher(Generic[Q, R]):
    """Runs ``answer(queries) -> results`` (one result per query, in order) on one worker thread."""

    def __init__(self, answer: Callable[[Sequence[Q]], Sequence[R]], *, max_batch: int = 32):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1; got {max_batch}")
        self._answer = answer
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._waiting: queue.SimpleQueue[tuple[Q, Future[R]] | None] = queue.SimpleQueue()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="svllreid-queries", daemon=True)
        self._worker.start()

    def submit(self, query: Q) -> Future[R]:
        """Queue ``query``; the future gets its result, or the exception the batch raised.

        Raises:
            RuntimeError: after :meth:`close`.
        """
        if self._closed:
            raise RuntimeError("the query batcher is closed")
        future: Future[R] = Future()
        self._waiting.put((query, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queries already queued, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._waiting.put(None)
            self._worker.join(timeout)

    def _work(self) -> None:
        while True:
            item = self._waiting.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[Q, Future[R]]]) -> None:
        live = [(q, f) for q, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        self.stats.calls += 1
        self.stats.largest = max(self.stats.largest, len(live))
        try:
            results = list(self._answer([q for q, _ in live]))
            if len(results) != len(live):
                raise RuntimeError(f"the batch gave {len(results)} results for {len(live)} queries")
        except Exception as err:  # every query of the batch learns of it; the worker lives on
            log.exception("a batch of %d queries failed", len(live))
            self.stats.failed_calls += 1
            for _, future in live:
                future.set_exception(err)
            return
        self.stats.queries += len(live)
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)
