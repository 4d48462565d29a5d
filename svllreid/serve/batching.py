"""Queries that arrive together answered by one call: a worker thread owns the network and, each time
it is free, takes every query that is waiting (up to ``max_batch``) and runs them as one batch.

A query that finds the worker idle runs at once, alone; queries that arrive while it is busy wait for
the running batch only, and then share the next. So batching adds no delay of its own, and under load
the batches grow by themselves. The network is only ever used from the worker thread: other work that
needs it (encoding images added to the gallery) is handed to the worker with :meth:`QueryBatcher.run` and
runs between two batches, so queries wait for it at most as long as for one batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["BatchStats", "Q", "QueryBatcher", "R"]

log = logging.getLogger(__name__)

Q = TypeVar("Q")
R = TypeVar("R")
T = TypeVar("T")


@dataclass
class _Job:
    """Work for the worker thread besides queries (:meth:`QueryBatcher.run`)."""

    work: Callable[[], Any]
    future: Future[Any]

    def execute(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            self.future.set_result(self.work())
        except Exception as err:  # the job's own failure, for its caller: the worker lives on
            self.future.set_exception(err)


@dataclass
class BatchStats:
    """Queries answered, the calls made to answer them (failed ones too), the largest batch so far, and
    the calls that failed (a failed batch is then answered query by query)."""

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
        self._waiting: queue.SimpleQueue[tuple[Q, Future[R]] | _Job | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()  # submit's check and put against close's sentinel
        self._worker = threading.Thread(target=self._work, name="svllreid-queries", daemon=True)
        self._worker.start()

    @property
    def alive(self) -> bool:
        """Whether the worker still answers queries."""
        return self._worker.is_alive()

    @property
    def waiting(self) -> int:
        """Queries queued and not yet taken by the worker (a metric's reading: it may change at once)."""
        return self._waiting.qsize()

    def submit(self, query: Q) -> Future[R]:
        """Queue ``query``; the future gets its result, or the exception its answer raised.

        Raises:
            RuntimeError: after :meth:`close`, or when the worker has stopped.
        """
        future: Future[R] = Future()
        with self._lock:
            if self._closed or not self.alive:
                raise RuntimeError("the query batcher is closed" if self._closed else "the query worker has stopped")
            self._waiting.put((query, future))
        return future

    def run(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job()`` on the worker thread, alone, after the batch now running; the future gets its result
        or its exception.

        Raises:
            RuntimeError: after :meth:`close`, or when the worker has stopped.
        """
        future: Future[T] = Future()
        with self._lock:
            if self._closed or not self.alive:
                raise RuntimeError("the query batcher is closed" if self._closed else "the query worker has stopped")
            self._waiting.put(_Job(job, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queries already queued, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._waiting.put(None)  # after every query submitted before: those are answered first
        self._worker.join(timeout)

    def _work(self) -> None:
        try:
            self._serve()
        finally:  # stopped (closed, or killed by a BaseException): no waiting query is left hanging
            with self._lock:
                self._closed = True
            while True:
                try:
                    item = self._waiting.get_nowait()
                except queue.Empty:
                    break
                future = item.future if isinstance(item, _Job) else item[1] if item is not None else None
                if future is not None and future.set_running_or_notify_cancel():
                    future.set_exception(RuntimeError("the query worker has stopped"))

    def _serve(self) -> None:
        while True:
            item = self._waiting.get()
            if item is None:
                return
            if isinstance(item, _Job):
                item.execute()
                continue
            batch = [item]
            stop = False
            job: _Job | None = None
            while len(batch) < self.max_batch:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                if isinstance(more, _Job):  # after the queries that came before it
                    job = more
                    break
                batch.append(more)
            self._run(batch)
            if job is not None:
                job.execute()
            if stop:
                return

    def _run(self, batch: list[tuple[Q, Future[R]]]) -> None:
        live = [(q, f) for q, f in batch if f.set_running_or_notify_cancel()]  # a cancelled one is dropped
        if live:
            self._answer_batch(live)

    def _answer_batch(self, live: list[tuple[Q, Future[R]]]) -> None:
        try:
            results = self._call([q for q, _ in live])
        except BaseException as err:
            if not isinstance(err, Exception):  # the worker is ending: its own batch fails too, then it stops
                for _, future in live:
                    future.set_exception(RuntimeError("the query worker has stopped"))
                raise
            if len(live) > 1:  # one bad query must not fail the others: answer each alone
                log.warning("a batch of %d queries failed (%s); answering them one by one", len(live), err)
                for item in live:
                    self._answer_batch([item])
                return
            log.error("a query failed", exc_info=err)  # its own failure; the worker lives on
            live[0][1].set_exception(err)
            return
        self.stats.queries += len(live)
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)

    def _call(self, queries: list[Q]) -> list[R]:
        self.stats.calls += 1
        self.stats.largest = max(self.stats.largest, len(queries))
        try:
            results = list(self._answer(queries))
            if len(results) != len(queries):
                raise RuntimeError(f"the batch gave {len(results)} results for {len(queries)} queries")
        except Exception:
            self.stats.failed_calls += 1
            raise
        return results
