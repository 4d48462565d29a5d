"""Queries that arrive together share one encoder call, give the same answers as alone, and a real
server keeps answering every good request while other clients disconnect mid-upload or send garbage."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from svllreid.serve.batching import QueryBatcher


def test_queries_waiting_while_the_worker_is_busy_share_the_next_call() -> None:
    calls: list[list[int]] = []
    started = threading.Event()
    release = threading.Event()

    def answer(queries: Any) -> list[int]:
        calls.append(list(queries))
        started.set()
        release.wait(5)
        return [q * 10 for q in queries]

    batcher: QueryBatcher[int, int] = QueryBatcher(answer, max_batch=4)
    first = batcher.submit(0)
    assert started.wait(5)
    waiting = [batcher.submit(i) for i in range(1, 7)]  # arrive while the first call runs
    release.set()
    assert first.result(5) == 0 and [f.result(5) for f in waiting] == [10, 20, 30, 40, 50, 60]
    assert calls == [[0], [1, 2, 3, 4], [5, 6]]  # alone at once, then batches of at most max_batch
    assert (batcher.stats.calls, batcher.stats.queries, batcher.stats.largest) == (3, 7, 4)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(1)


def test_a_failed_batch_fails_its_own_queries_only() -> None:
    def answer(queries: Any) -> list[int]:
        if -1 in queries:
            raise ValueError("bad batch")
        return list(queries)

    batcher: QueryBatcher[int, int] = QueryBatcher(answer)
    with pytest.raises(ValueError, match="bad batch"):
        batcher.submit(-1).result(5)
    assert batcher.submit(3).result(5) == 3 and batcher.stats.failed_calls == 1
    short: QueryBatcher[int, int] = QueryBatcher(lambda queries: [])
    with pytest.raises(RuntimeError, match="0 results for 1 queries"):
        short.submit(1).result(5)
    batcher.close()
    short.close()


def test_a_mixed_batch_answers_each_query_as_it_would_be_answered_alone(service: Any, world: dict) -> None:
    images = [Path(p).read_bytes() for p in world["images"][:5]]
    queries = [
        service.image_query(images[0], 5),
        service.text_query(world["captions"][0].caption, 3),
        service.gallery_query(9, 4),
        service.image_query(images[3], 7),
        service.text_query(world["captions"][9].caption, 6),
        service.image_query(images[4], 2),
    ]
    together = service.answer(queries)
    alone = [service.answer([q])[0] for q in queries]
    assert [a.query["kind"] for a in together] == ["image", "text", "gallery", "image", "text", "image"]
    for batched, single, query in zip(together, alone, queries, strict=True):
        assert len(batched.results) == query.topk
        assert [r["index"] for r in batched.results] == [r["index"] for r in single.results]
        np.testing.assert_allclose(
            [r["score"] for r in batched.results], [r["score"] for r in single.results], atol=1e-5
        )


def post_text(url: str, text: str) -> int:
    return httpx.post(f"{url}/api/search", json={"text": text, "topk": 3}, timeout=30).status_code


def test_concurrent_requests_are_batched_by_the_server(live_server: dict, world: dict) -> None:
    url = live_server["url"]
    batcher = live_server["app"].state.batcher
    before = (batcher.stats.calls, batcher.stats.queries)
    gate = threading.Event()
    real = batcher._answer

    def slow_first(queries: Any) -> Any:  # hold the worker so that the others queue up behind it
        gate.wait(5)
        return real(queries)

    batcher._answer = slow_first
    try:
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(post_text, url, c.caption) for c in world["captions"][:16]]
            time.sleep(1.0)
            gate.set()
            statuses = [f.result() for f in futures]
    finally:
        batcher._answer = real
    assert statuses == [200] * 16
    calls, queries = batcher.stats.calls - before[0], batcher.stats.queries - before[1]
    assert queries == 16 and calls <= 3, (calls, queries)
    health = httpx.get(f"{url}/healthz").json()
    assert health["largest_batch"] >= 8


def raw(port: int, data: bytes, *, read: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if not read:
            return b""
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_the_server_survives_clients_that_disconnect_mid_upload_or_send_garbage(live_server: dict, world) -> None:
    url, port = live_server["url"], live_server["port"]
    photo = Path(world["images"][0]).read_bytes()
    head = (
        b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
        b'Content-Length: 200000\r\n\r\n--zz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    abuse = [
        (head + photo[:1000], False),  # declares 200 kB, sends 1 kB, hangs up
        (b"\x00\xffGARBAGE\r\n\r\n" * 50, True),
        (b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", True),
        (b"GET /api/image/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"POST /api/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         b"Content-Type: multipart/form-data; boundary=zz\r\n\r\nZZZZ\r\nnot hex\r\n", True),
    ]  # fmt: skip
    answers: list[bytes] = []

    def misbehave() -> None:
        for _ in range(3):
            for data, read in abuse:
                answers.append(raw(port, data, read=read))

    def good(i: int) -> int:
        if i % 2:
            return post_text(url, world["captions"][i].caption)
        files = {"image": ("q.jpg", photo, "image/jpeg")}
        return httpx.post(f"{url}/api/search", files=files, data={"topk": "2"}, timeout=30).status_code

    with ThreadPoolExecutor(6) as pool:
        bad = pool.submit(misbehave)
        statuses = list(pool.map(good, range(24)))
        bad.result()
    assert statuses == [200] * 24  # no good request lost
    assert not any(b"root:" in a for a in answers)
    assert all(a == b"" or a.startswith(b"HTTP/1.1 4") for a in answers), answers
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
