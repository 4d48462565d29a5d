"""What ``svllreid serve`` tells its operator: Prometheus metrics (``GET /metrics``) and one JSON
access-log line per request.

Metrics (each app has its own registry, so that apps made in one process do not share counts):

    svllreid_http_requests_total{method, route, status}             requests answered
    svllreid_http_request_duration_seconds{method, route, status}   their time, from the first byte
                                                                     received to the last one sent (histogram)
    svllreid_query_batch_size                                        queries per encoder call (histogram)
    svllreid_encoder_seconds{kind}                                   the time of each encoder call (histogram),
                                                                     by the kinds of query in it: image, text,
                                                                     gallery, or several joined by "+"
    svllreid_query_queue_depth                                       queries waiting for the worker (gauge)
    svllreid_gallery_images                                          images in the gallery (gauge)

``route`` is the route's template (``/api/thumbnail/{row}``), never the path a client sent, and
:data:`UNMATCHED` for every path that is no route: the labels stay few whatever clients ask for.

The access log (logger :data:`ACCESS_LOGGER`, level INFO) gets one JSON object per request, written
when the response has been sent, or when the request failed or its client went away::

    {"time": "2025-06-01T09:30:12.345Z", "client": "10.0.0.7", "method": "POST", "route": "/api/search",
     "status": 200, "duration_ms": 11.83, "bytes": 5120, "request_id": "3f9c2a1b7d4e6058"}

It never holds what was asked (a description, an upload or its file name, a query string), nor a
header: a token in ``Authorization`` stays out of the logs. The request id is also sent to the
client in the ``X-Request-ID`` header, so that a client can name the line of a failed request.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from collections.abc import Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.routing import Match

from svllreid.serve.search_service import Answer, Query

__all__ = [
    "ACCESS_LOGGER",
    "METRICS_CONTENT_TYPE",
    "UNMATCHED",
    "RequestTelemetry",
    "Telemetry",
    "log_access_to_stderr",
]

#: The logger of the access lines.
ACCESS_LOGGER = "svllreid.access"
#: The ``route`` label of every request whose path is no route (a 404, or a redirect to one).
UNMATCHED = "unmatched"
#: The text format that Prometheus scrapes (0.0.4: every Prometheus version reads it).
METRICS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: Methods counted under their own name; any other is counted as "other" (a client chooses the method).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Queries in one encoder call: powers of two up to beyond the largest --max-batch in use.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

access_log = logging.getLogger(ACCESS_LOGGER)


class Telemetry:
    """The metrics of one app, in their own registry.

    Args:
        gallery_size: the number of images in the gallery, read at each scrape (the gallery may change).
        queue_depth: the number of queries waiting for the worker, read at each scrape.
    """

    def __init__(self, *, gallery_size: Callable[[], int], queue_depth: Callable[[], int]):
        self.registry = CollectorRegistry()
        labels = ("method", "route", "status")
        self.requests = Counter(
            "svllreid_http_requests", "HTTP requests answered, by route template and status", labels,
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "svllreid_http_request_duration_seconds",
            "Time to answer an HTTP request, from its first byte received to the last one sent",
            labels,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "svllreid_query_batch_size", "Queries per encoder call", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.encoder_seconds = Histogram(
            "svllreid_encoder_seconds",
            "Time of one encoder call (encoding and ranking a batch of queries), by the kinds of query in it",
            ("kind",),
            registry=self.registry,
        )
        Gauge(
            "svllreid_query_queue_depth", "Queries waiting for the query worker", registry=self.registry
        ).set_function(queue_depth)
        Gauge("svllreid_gallery_images", "Images in the gallery", registry=self.registry).set_function(gallery_size)

    def exposition(self) -> bytes:
        """The metrics in Prometheus's text format (:data:`METRICS_CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def timed(self, answer: Callable[[Sequence[Query]], list[Answer]]) -> Callable[[Sequence[Query]], list[Answer]]:
        """``answer`` (a batch's encoder call), measured: its batch size and time are observed on every
        call, a failed one included (its time was spent all the same)."""

        def timed_answer(queries: Sequence[Query]) -> list[Answer]:
            kind = "+".join(sorted({query.kind for query in queries})) or "none"
            self.batch_size.observe(len(queries))
            start = time.perf_counter()
            try:
                return answer(queries)
            finally:
                self.encoder_seconds.labels(kind).observe(time.perf_counter() - start)

        return timed_answer

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        labels = (method if method in KNOWN_METHODS else "other", route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)


Scope = MutableMapping[str, Any]


class RequestTelemetry:
    """ASGI middleware: counts and times every HTTP request and writes its access line.

    :func:`svllreid.serve.app.create_app` puts it around the whole app, outside every other layer, so
    that it also sees the answers those give themselves: a 413 of :class:`svllreid.serve.app.BodyLimit`,
    a 404, the 500 that answers an exception.
    """

    def __init__(self, app: Callable[..., Any], telemetry: Telemetry):
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = datetime.now(UTC)
        start = time.perf_counter()
        request_id = secrets.token_hex(8)
        status: int | None = None
        sent = 0

        async def measured(message: MutableMapping[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, measured)
        finally:
            # No answer sent (an exception that no layer answered): the server sends a 500 itself.
            answered = 500 if status is None else status
            seconds = time.perf_counter() - start
            route = route_template(scope)
            self.telemetry.observe_request(scope["method"], route, answered, seconds)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                line = {
                    "time": began.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "client": client[0] if client else None,
                    "method": scope["method"],
                    "route": route,
                    "status": answered,
                    "duration_ms": round(1000 * seconds, 2),
                    "bytes": sent,
                    "request_id": request_id,
                }
                access_log.info(json.dumps(line), extra={"access": line})


def route_template(scope: Scope) -> str:
    """The template of the route that answered (or would have answered) the request in ``scope``.

    The router records the route it chose in ``scope["route"]`` (a 405 too: the path matched). A
    request answered before routing (a body over the limit) is matched here against the app's routes.
    """
    route = scope.get("route")
    if route is None and "app" in scope:
        partial = None  # as the router does: a route that takes the method first, else one of the path
        for candidate in getattr(getattr(scope["app"], "router", None), "routes", ()):
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
            if match is Match.PARTIAL and partial is None:
                partial = candidate
        route = route or partial
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class _AccessLines(logging.StreamHandler[IO[str]]):
    """The handler :func:`log_access_to_stderr` installs (a class of its own, to find it again)."""


def log_access_to_stderr(stream: IO[str] | None = None) -> logging.Handler:
    """Write the access lines, one JSON object each, to ``stream`` (standard error by default), whatever
    the level of the server's other logs; replaces the handler an earlier call installed.

    Returns:
        The handler (to remove it again, as tests do).
    """
    for old in [h for h in access_log.handlers if isinstance(h, _AccessLines)]:
        access_log.removeHandler(old)
    handler = _AccessLines(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False  # one line each, even where the root logger has a handler too
    return handler
