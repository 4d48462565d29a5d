"""What ``svllreid serve`` tells its operator: ``/metrics`` in Prometheus's format (requests by route
template and status, their latency, batch sizes, queue depth, gallery size, encoder time), and one
JSON access-log line per request that holds no query, file name or token."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("prometheus_client", reason="svllreid serve needs the serve extra: pip install 'svllreid[serve]'")

from prometheus_client.parser import text_string_to_metric_families

from svllreid.cli import main
from tests.serve.conftest import free_port, wait_until_up

ACCESS_FIELDS = {"time", "client", "method", "route", "status", "duration_ms", "bytes", "request_id"}


@pytest.fixture
def fresh(service: Any) -> Iterator[Any]:
    """An app of its own over the session's service (its metrics start at zero), with a 256 KiB body limit."""
    from fastapi.testclient import TestClient

    from svllreid.serve.app import create_app

    with TestClient(create_app(service, max_upload_bytes=256 * 1024), raise_server_exceptions=False) as client:
        yield client


def scrape(client: Any) -> dict[str, Any]:
    """``/metrics`` parsed: each family by name, and each sample by (name, frozenset of its labels)."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {family.name: family for family in text_string_to_metric_families(answer.text)}
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families.values()
        for sample in family.samples
    }
    return {"families": families, "samples": samples}


def value(scraped: dict[str, Any], name: str, **labels: str) -> float:
    return scraped["samples"].get((name, frozenset(labels.items())), 0.0)


def requests_of(scraped: dict[str, Any], method: str, route: str, status: int) -> float:
    return value(scraped, "svllreid_http_requests_total", method=method, route=route, status=str(status))


def photo_upload(world: dict, name: str = "q.jpg", **fields: str) -> dict[str, Any]:
    return {"files": {"image": (name, Path(world["images"][3]).read_bytes(), "image/jpeg")}, "data": fields}


def test_metrics_count_requests_by_route_template_and_status_and_time_the_encoder(fresh: Any, world: dict) -> None:
    assert fresh.get("/api/thumbnail/3").status_code == 200
    assert fresh.get("/api/thumbnail/4").status_code == 200
    assert fresh.get("/api/image/999").status_code == 404  # a route's own 404
    assert fresh.get("/no/such/page").status_code == 404  # no route: one label for every such path
    assert fresh.get("/api/search").status_code == 405
    big = {"files": {"image": ("big.jpg", b"\xff" * (300 * 1024), "image/jpeg")}}
    assert fresh.post("/api/search", **big).status_code == 413  # refused before routing
    assert fresh.post("/api/search", json={"text": "a man in a red coat", "topk": 3}).status_code == 200
    assert fresh.post("/api/search", json={"gallery": 5, "topk": 3}).status_code == 200
    assert fresh.post("/api/search", **photo_upload(world, topk="3")).status_code == 200

    scraped = scrape(fresh)
    assert requests_of(scraped, "GET", "/api/thumbnail/{row}", 200) == 2
    assert requests_of(scraped, "GET", "/api/image/{row}", 404) == 1
    assert requests_of(scraped, "GET", "unmatched", 404) == 1
    assert requests_of(scraped, "GET", "/api/search", 405) == 1
    assert requests_of(scraped, "POST", "/api/search", 413) == 1
    assert requests_of(scraped, "POST", "/api/search", 200) == 3
    routes = {dict(labels).get("route") for _, labels in scraped["samples"]} - {None}
    assert routes == {"/api/thumbnail/{row}", "/api/image/{row}", "unmatched", "/api/search"}  # no raw path

    latency = scraped["families"]["svllreid_http_request_duration_seconds"]
    assert latency.type == "histogram"
    labels = {"method": "POST", "route": "/api/search", "status": "200"}
    buckets = [
        (float(s.labels["le"]), s.value)
        for s in latency.samples
        if s.name.endswith("_bucket") and {k: s.labels[k] for k in labels} == labels
    ]
    assert buckets[-1] == (float("inf"), 3) and [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert value(scraped, "svllreid_http_request_duration_seconds_count", **labels) == 3
    assert value(scraped, "svllreid_http_request_duration_seconds_sum", **labels) > 0

    # Three queries one after another: three encoder calls of one query each, one of each kind.
    assert value(scraped, "svllreid_query_batch_size_count") == 3
    assert value(scraped, "svllreid_query_batch_size_sum") == 3
    assert value(scraped, "svllreid_query_batch_size_bucket", le="1.0") == 3
    for kind in ("image", "text", "gallery"):
        assert value(scraped, "svllreid_encoder_seconds_count", kind=kind) == 1
        assert value(scraped, "svllreid_encoder_seconds_sum", kind=kind) > 0
    assert value(scraped, "svllreid_gallery_images") == 58
    assert value(scraped, "svllreid_query_queue_depth") == 0
    # The scrape before this one is counted too.
    assert requests_of(scrape(fresh), "GET", "/metrics", 200) == 1


def test_a_request_answered_before_routing_gets_the_route_the_router_would_have_chosen() -> None:
    from fastapi import FastAPI

    from svllreid.serve.telemetry import route_template

    app = FastAPI()
    app.get("/x/{name}")(lambda name: name)
    app.post("/x/stats")(lambda: 0)

    def scope(method: str, path: str) -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "app": app}

    assert route_template(scope("POST", "/x/stats")) == "/x/stats"  # the route that takes the method
    assert route_template(scope("PUT", "/x/stats")) == "/x/{name}"  # none does: the first of the path (a 405)
    assert route_template(scope("GET", "/y")) == "unmatched"


def test_the_queue_depth_counts_the_queries_waiting_for_the_worker(fresh: Any, service: Any) -> None:
    batcher = fresh.app.state.batcher
    real = batcher._answer
    started, release = threading.Event(), threading.Event()

    def held(queries: Any) -> Any:
        started.set()
        release.wait(60)  # a hang guard only: the test releases it
        return real(queries)

    batcher._answer = held
    try:
        first = batcher.submit(service.gallery_query(1, 2))
        assert started.wait(30)
        waiting = [batcher.submit(service.gallery_query(row, 2)) for row in (2, 3, 4)]
        assert value(scrape(fresh), "svllreid_query_queue_depth") == 3
        release.set()
        assert all(len(f.result(60).results) == 2 for f in [first, *waiting])
    finally:
        release.set()
        batcher._answer = real
    assert value(scrape(fresh), "svllreid_query_queue_depth") == 0


def test_the_gallery_size_is_read_at_each_scrape() -> None:
    from svllreid.serve.telemetry import Telemetry

    size = [58]
    telemetry = Telemetry(gallery_size=lambda: size[0], queue_depth=lambda: 0)
    families = {f.name: f for f in text_string_to_metric_families(telemetry.exposition().decode())}
    assert families["svllreid_gallery_images"].samples[0].value == 58
    size[0] = 61  # the live gallery grows: the next scrape says so
    families = {f.name: f for f in text_string_to_metric_families(telemetry.exposition().decode())}
    assert families["svllreid_gallery_images"].samples[0].value == 61


def test_each_app_counts_its_own_requests(service: Any) -> None:
    from fastapi.testclient import TestClient

    from svllreid.serve.app import create_app

    with TestClient(create_app(service)) as one, TestClient(create_app(service)) as other:
        one.get("/healthz")
        one.get("/healthz")
        other.get("/healthz")
        assert requests_of(scrape(one), "GET", "/healthz", 200) == 2
        assert requests_of(scrape(other), "GET", "/healthz", 200) == 1


@pytest.fixture
def access_lines(caplog: pytest.LogCaptureFixture) -> Any:
    """A function giving the access lines logged so far, each parsed (they must be JSON objects)."""
    caplog.set_level(logging.INFO, logger="svllreid.access")

    def lines() -> list[dict[str, Any]]:
        return [json.loads(r.getMessage()) for r in caplog.records if r.name == "svllreid.access"]

    return lines


SECRET_TEXT = "a woman in a mauve-and-saffron raincoat"
SECRET_NAME = "holiday-photo-of-jane-doe.jpg"
SECRET_TOKEN = "s3cr3t-t0ken-value"


def test_one_access_line_per_request_without_queries_names_or_tokens(
    fresh: Any, world: dict, access_lines: Any, caplog: pytest.LogCaptureFixture
) -> None:
    auth = {"Authorization": f"Bearer {SECRET_TOKEN}"}
    answers = [
        fresh.post("/api/search", json={"text": SECRET_TEXT, "topk": 2}, headers=auth),
        fresh.post("/api/search", data={"text": SECRET_TEXT}, headers=auth),
        fresh.post("/api/search", **photo_upload(world, SECRET_NAME, topk="2")),
        fresh.get("/api/thumbnail/7", headers=auth),
        fresh.get(f"/api/{SECRET_TEXT}?text={SECRET_TEXT}"),  # no route: 404
        fresh.post("/api/search", files={"image": (SECRET_NAME, b"\xff" * (300 * 1024), "image/jpeg")}),  # 413
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 404, 413]
    assert answers[2].json()["query"]["filename"] == SECRET_NAME  # the client gets it back; the log does not
    lines = access_lines()
    assert len(lines) == len(answers)
    for line, answer in zip(lines, answers, strict=True):
        assert set(line) == ACCESS_FIELDS
        assert line["status"] == answer.status_code and line["request_id"] == answer.headers["x-request-id"]
        assert line["bytes"] == len(answer.content) and line["duration_ms"] >= 0
        assert line["client"] == "testclient" and line["time"].endswith("Z") and "T" in line["time"]
    assert [(x["method"], x["route"]) for x in lines] == [
        ("POST", "/api/search"), ("POST", "/api/search"), ("POST", "/api/search"), ("GET", "/api/thumbnail/{row}"),
        ("GET", "unmatched"), ("POST", "/api/search"),
    ]  # fmt: skip
    assert len({x["request_id"] for x in lines}) == len(lines)
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    for secret in (SECRET_TEXT, "mauve", SECRET_NAME, "jane-doe", SECRET_TOKEN):
        assert secret not in logged


def test_a_500_and_a_client_that_went_away_get_one_line_each(
    fresh: Any, access_lines: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(queries: Any) -> Any:
        raise RuntimeError("the model fell over")

    monkeypatch.setattr(fresh.app.state.batcher, "_answer", broken)
    failed = fresh.post("/api/search", json={"text": "a man"})
    assert failed.status_code == 500
    monkeypatch.undo()

    # A client that sends half an upload and hangs up: the app answers it 400, to nobody.
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/search", "raw_path": b"/api/search", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"multipart/form-data; boundary=zz"), (b"content-length", b"2000")],
        "client": ("10.1.2.3", 5000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    parts = [
        {
            "type": "http.request",
            "body": b'--zz\r\nContent-Disposition: form-data; name="text"\r\n\r\nhal',
            "more_body": True,
        },
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return parts.pop(0) if parts else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(fresh.app(scope, receive, send))
    assert sent[0]["status"] == 400
    lines = access_lines()
    assert [(x["route"], x["status"], x["client"]) for x in lines] == [
        ("/api/search", 500, "testclient"),
        ("/api/search", 400, "10.1.2.3"),
    ]
    assert lines[0]["request_id"] == failed.headers["x-request-id"] and lines[0]["bytes"] == len(failed.content) > 0
    scraped = scrape(fresh)
    assert requests_of(scraped, "POST", "/api/search", 500) == 1
    assert requests_of(scraped, "POST", "/api/search", 400) == 1


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    """The loggers that ``svllreid serve`` and uvicorn configure, as they were before the test."""
    names = ["svllreid.access", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_svllreid_serve_writes_one_json_line_per_request_to_stderr(
    world: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restored_loggers: None
) -> None:
    """The command as a user runs it (--verbose: uvicorn logs at INFO), its server on a real port: each
    request is one JSON line on standard error, and uvicorn's own access line is off."""
    import uvicorn

    port = free_port()
    options: dict[str, Any] = {}
    statuses: list[int] = []

    def run(app: Any, **given: Any) -> None:  # uvicorn.run, with a client beside it that stops it
        options.update(given)
        server = uvicorn.Server(uvicorn.Config(app, **given))

        def client() -> None:
            try:
                wait_until_up(port)
                url = f"http://127.0.0.1:{port}"
                statuses.append(httpx.get(f"{url}/healthz", timeout=60).status_code)
                statuses.append(httpx.post(f"{url}/api/search", json={"text": SECRET_TEXT}, timeout=60).status_code)
                statuses.append(httpx.get(f"{url}/api/image/x", timeout=60).status_code)
            finally:
                server.should_exit = True

        thread = threading.Thread(target=client)
        thread.start()
        server.run()
        thread.join(60)

    monkeypatch.setattr(uvicorn, "run", run)
    assert main(["--verbose", "serve", "--index", str(world["index"]), "--device", "cpu", "--port", str(port)]) == 0
    assert statuses == [200, 200, 404] and options["access_log"] is False
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [(x["method"], x["route"], x["status"], x["client"]) for x in lines] == [
        ("GET", "/healthz", 200, "127.0.0.1"),
        ("POST", "/api/search", 200, "127.0.0.1"),
        ("GET", "/api/image/{row}", 404, "127.0.0.1"),
    ]
    assert all(set(x) == ACCESS_FIELDS for x in lines)
    assert SECRET_TEXT not in err and "svllreid.access" not in err  # bare JSON lines, not the root's format
    assert '"GET /healthz HTTP/1.1"' not in err  # uvicorn's own access line
