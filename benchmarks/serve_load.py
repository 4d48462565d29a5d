"""Load on ``svllreid serve``: latency and throughput of image and text queries from concurrent clients,
with and without images being added to and removed from the gallery at the same time, against the same
queries made one ``svllreid search`` process at a time; and, run by hand, a soak of the read/write mix
that watches the server's memory and file descriptors.

The script draws a synthetic world (``svllreid data synth``'s generator: people with captions), takes
its first ``--gallery`` images as the gallery, writes a checkpoint of the tiny ViT whose CLIP is the
shipped ``svll-synth`` (so that descriptions mean something), and builds the index with the CLI. It then
starts ``svllreid serve`` as a user would, in its own process on a free localhost port, with a random read
token and write token in ``SVLLREID_TOKEN`` and ``SVLLREID_WRITE_TOKEN``; every request carries its role's
token as ``Authorization: Bearer`` (the writers the write token, everything else the read token). It
measures:

* one client, one query at a time: the latency of image queries (an upload of a query photo) and of
  text queries (a caption of the world), after a warm-up;
* ``--clients`` levels: each client is a thread with its own keep-alive connection that sends
  ``--requests`` queries in a bounded loop, alternating image and text; throughput over the wall time of
  the level, latency percentiles, failed requests (any status but 200 or a transport error). During the
  highest level another thread keeps misbehaving: it hangs up in the middle of uploads and sends garbage;
* the read/write level: ``--writers`` threads, each with its own keep-alive connection, add images in a
  loop (``POST /api/gallery``, 1 and 2 images in turn, from the world's images outside the gallery, with
  an identity and a camera) and remove what their previous addition added (``DELETE /api/gallery/ROW``),
  so that the gallery stays within a few images of its size; at the end each removes what it still
  holds, and the gallery is back at its size (``/healthz`` before and after). While they run,
  ``--readers`` clients query as the levels above do. The same readers first run read-only, just before,
  without the misbehaving thread: the level reports the readers' throughput, latency percentiles and
  failures with writers and without, the ratio of the two p99s against the target of under 3x, and the
  writers' additions and removals with their latency percentiles and failures (any status but 201 / 200,
  an answer that does not list the rows, a transport error);
* the CLI: ``--cli-queries`` image and as many text queries, each one ``svllreid search`` process, timed
  from start to exit, on a copy of the index as it was built (the read/write level leaves its changes in
  the served index's log).

It prints measured numbers only, and the server's own count of encoder calls (how far it batched).

    python benchmarks/serve_load.py --gallery 10000 --clients 1 4 16 --requests 40 --readers 16 --writers 2

``--soak SECONDS`` runs the read/write mix instead (readers and writers as above, without a bound on
requests) for that long: no single-client queries, levels or CLI. Before the mix starts and then every
``--sample-seconds`` it records the server process's resident memory (``VmRSS`` and ``RssAnon``, the
heap's part, of ``/proc/PID/status``; psutil's RSS where there is no ``/proc``) and open file descriptors,
the gallery's images and rows ever numbered (``GET /api/model``), the size of its change log and the
number of added images' files the server keeps, the requests done and failed so far, the readers'
latency since the sample before and the load average. The readers
and writers then stop (the writers removing what they hold) and a sample is taken, the gallery back at its
first size in images. The benchmark then compacts the gallery as an operator would (``svllreid index
compact``, its own process), waits for the server to reload it, and takes the last sample. The verdict,
against the targets:

* no failed request;
* resident memory: the live gallery keeps removed rows numbered, and added images' features in memory,
  until it is compacted, so the server's memory rises between compactions and falls at each (the server
  compacts on its own once enough rows are removed). What counts is the level just after compactions: the
  samples at or after ``--warmup-seconds`` that follow one of the server's compactions (the gallery's
  generation changed since the sample before), split by time into an earlier and a later half. Against the
  earlier half's median (one sample can read several MiB off), the later half's median and the sample after
  the final compaction may each be no higher than the gallery's own growth (its change in images times a
  feature's bytes) plus ``--rss-slack-mb`` for the allocator's noise. With fewer than two compactions the
  reference is the first sample at or after the warm-up, and only the compacted one is compared; when the
  final compaction fails, the report says why and that check is not made. It prints the level after each
  compaction and its least-squares slope in MiB per 1000 requests: a leak makes it climb;
* descriptors: no more after the load than before it, both with no client connected (each count the
  fewest of three reads 50 ms apart, so that a file open for a moment is not taken for growth), with the
  kinds of any new ones.

Run by hand, not in CI:

    python benchmarks/serve_load.py --gallery 10000 --soak 1800 --sample-seconds 30 --readers 16 --writers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

#: Most of the world's spare images the writers keep in memory to upload.
UPLOADS = 256
#: The read/write level's target: the readers' p99 with writers under this many times the read-only one.
P99_TARGET = 3.0


def make_world(folder: Path, gallery: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """Gallery paths, query photos (query-split images, outside the gallery when it allows), captions, and
    images for the writers to add: the world's others outside the gallery and the queries (the gallery's
    own when there are none; an added copy is stored under a new name)."""
    from svllreid.data.datasets import load_caption_dataset
    from svllreid.data.synthesis import generate_synthetic

    # About 16 images an identity (2-6 of 6 cameras, 4 images each), and a tenth more for the queries.
    ids = max(8, int(gallery * 1.15 / 16) + 8)
    root = folder / "world"
    generate_synthetic(root, num_ids=ids, num_cameras=6, images_per_camera=4, seed=7, train_ids=ids // 2)
    every = sorted(str(p) for p in root.rglob("*.jpg"))
    queries = sorted(str(p) for p in (root / "query").glob("*.jpg"))
    rest = [p for p in every if "/query/" not in p]
    if len(rest) < gallery:
        rest = every
    if len(rest) < gallery:
        raise SystemExit(f"the world has {len(every)} images, fewer than --gallery {gallery}")
    captions = [c.caption for c in load_caption_dataset("synthetic_captions", str(root)).split("test")]
    chosen = set(rest[:gallery])
    spare = [p for p in every if p not in chosen and p not in queries]
    return rest[:gallery], queries, captions, spare or rest[:gallery]


def write_checkpoint(path: Path) -> Path:
    import torch

    import svllreid
    from svllreid.config import config_to_dict, load_config
    from svllreid.inference.checkpoint import write_checkpoint as write

    torch.manual_seed(0)
    model = svllreid.create_model("svll-tiny-vit", num_classes=10, image_size=(64, 32), pretrained="svll-synth")
    config = load_config(None, ["data.image_size=[64,32]", "model.arch=svll-tiny-vit", "model.pretrained=svll-synth"])
    meta = {"spec": model.spec.to_dict(), "quick_gelu": False, "config": config_to_dict(config), "stage": 2}
    return write(path, model, meta)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50": float("nan"), "p90": float("nan"), "p95": float("nan"), "p99": float("nan")}
    p50, p90, p95, p99 = np.percentile(np.array(ms), [50, 90, 95, 99])
    return {"p50": float(p50), "p90": float(p90), "p95": float(p95), "p99": float(p99)}


class Tally:
    """Requests of one kind made by several threads: when each ended, its latency (ms), and the failures
    by cause (``HTTP 503``, a transport error's name, an answer that does not say what it should)."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.ms: list[float] = []
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, ms: float, failure: str | None) -> None:
        with self._lock:
            self.ends.append(time.perf_counter())
            self.ms.append(ms)
            if failure is not None:
                self.failures[failure] += 1

    @property
    def done(self) -> int:
        return len(self.ms)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def since(self, moment: float) -> list[float]:
        """Latencies of the requests that ended at ``moment`` (``time.perf_counter()``) or later."""
        with self._lock:
            return [ms for end, ms in zip(self.ends, self.ms, strict=True) if end >= moment]


class Queries:
    """The request bodies, cycled: query photos (bytes read once) and captions."""

    def __init__(self, photos: list[str], captions: list[str]):
        self.photos = [(Path(p).name, Path(p).read_bytes()) for p in photos]
        self.captions = captions

    def send(self, client: httpx.Client, kind: str, i: int) -> tuple[float, str | None]:
        """One query: its latency (ms) and why it failed (None when it did not)."""
        start = time.perf_counter()
        try:
            if kind == "image":
                name, data = self.photos[i % len(self.photos)]
                answer = client.post("/api/search", files={"image": (name, data, "image/jpeg")}, data={"topk": "10"})
            else:
                answer = client.post("/api/search", json={"text": self.captions[i % len(self.captions)], "topk": 10})
            if answer.status_code != 200:
                failure: str | None = f"HTTP {answer.status_code}"
            else:
                failure = None if len(answer.json()["results"]) == 10 else "not 10 results"
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:  # a transport error, a malformed answer
            failure = type(err).__name__
        return 1000 * (time.perf_counter() - start), failure


def read_loop(
    url: str,
    token: str,
    queries: Queries,
    c: int,
    tallies: dict[str, Tally],
    requests: int | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Client ``c``: ``requests`` queries (else until ``stop``) on one keep-alive connection, alternating
    image and text."""
    with httpx.Client(base_url=url, timeout=60, headers=bearer(token)) as client:
        i = 0
        while (requests is None or i < requests) and not (stop is not None and stop.is_set()):
            kind = "image" if (i + c) % 2 == 0 else "text"
            tallies[kind].record(*queries.send(client, kind, c * (requests or 1009) + i))
            i += 1


class Uploads:
    """What the writers add, bytes read once: writer ``w``'s ``i``-th addition takes 1 or 2 images in turn."""

    def __init__(self, paths: list[str]):
        self.images = [(Path(p).name, Path(p).read_bytes()) for p in paths[:UPLOADS]]

    def count(self, w: int, i: int) -> int:
        return 1 + (w + i) % 2

    def pick(self, w: int, i: int) -> list[tuple[str, bytes]]:
        at = 7 * w + 2 * i
        return [self.images[(at + j) % len(self.images)] for j in range(self.count(w, i))]


@dataclass(frozen=True)
class Held:
    """An image a writer added: its row, the generation that row is numbered in, and its upload."""

    row: int
    generation: str
    upload: tuple[str, bytes]


class Writers:
    """``count`` writer threads, each with its own keep-alive connection: add images, then remove the rows its
    previous addition added, until :meth:`stop` (each adds at least once); then each removes what it holds,
    so that the gallery ends at the size it began with."""

    def __init__(self, url: str, token: str, uploads: Uploads, count: int):
        self.url, self.token, self.uploads = url, token, uploads
        self.adds, self.removes = Tally(), Tally()
        self.images_added = 0
        self.relocated = 0  # removals whose rows a compaction had renumbered: found again by their photo
        self.largest_gallery = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Barrier(count + 1)
        self._threads = [threading.Thread(target=self._loop, args=(w,), daemon=True) for w in range(count)]

    def start(self) -> None:
        """Start the writers, and return once each is about to send its first addition."""
        for thread in self._threads:
            thread.start()
        self._started.wait(120)

    def stop(self) -> None:
        """Stop after the requests under way; wait for the writers to remove what they hold."""
        self._stop.set()
        for thread in self._threads:
            thread.join(300)

    def _loop(self, w: int) -> None:
        held: list[Held] = []
        with httpx.Client(base_url=self.url, timeout=60, headers=bearer(self.token)) as client:
            self._started.wait(120)
            i = 0
            while i == 0 or not self._stop.is_set():
                added = self._add(client, w, i)
                for image in held:
                    self._remove(client, w, image)
                held = added
                i += 1
            for image in held:
                self._remove(client, w, image)

    def _add(self, client: httpx.Client, w: int, i: int) -> list[Held]:
        picked = self.uploads.pick(w, i)
        files = [("image", (name, data, "image/jpeg")) for name, data in picked]
        labels = {"identity": f"load writer {w}", "camera": "load"}
        start = time.perf_counter()
        rows: list[int] = []
        added: list[Held] = []
        try:
            answer = client.post("/api/gallery", files=files, data=labels)
            if answer.status_code != 201:
                failure: str | None = f"HTTP {answer.status_code}"
            else:
                body = answer.json()
                rows = [int(r) for r in body["rows"]]
                added = [Held(row, str(body["generation"]), upload) for row, upload in zip(rows, picked, strict=False)]
                failure = None if len(rows) == len(files) else f"{len(rows)} rows for {len(files)} images"
                with self._lock:
                    self.largest_gallery = max(self.largest_gallery, int(body["gallery_size"]))
                    self.images_added += len(rows)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:  # a transport error, a malformed answer
            failure = type(err).__name__
        self.adds.record(1000 * (time.perf_counter() - start), failure)
        return added

    def _remove(self, client: httpx.Client, w: int, image: Held) -> None:
        """Remove an image by the row and generation its addition gave; when the server has compacted the
        gallery since (409: rows renumbered), find the image again by its photo and remove it there."""
        start = time.perf_counter()
        row = image.row
        try:
            answer = client.delete(f"/api/gallery/{row}", params={"generation": image.generation})
            if answer.status_code == 409:
                with self._lock:
                    self.relocated += 1
                found = self._find(client, w, image)
                if found is None:
                    answer = None
                else:
                    row = found.row
                    answer = client.delete(f"/api/gallery/{row}", params={"generation": found.generation})
            if answer is None:
                failure: str | None = "lost: not found after a compaction"
            elif answer.status_code != 200:
                failure = f"HTTP {answer.status_code}"
            else:
                failure = None if answer.json().get("removed") == row else "another row removed"
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:  # a transport error, a malformed answer
            failure = type(err).__name__
        self.removes.record(1000 * (time.perf_counter() - start), failure)

    def _find(self, client: httpx.Client, w: int, image: Held) -> Held | None:
        """The image's row now: the search by its own photo whose hit has this writer's label and a cosine
        of 1 (the same bytes, encoded alike)."""
        name, data = image.upload
        answer = client.post("/api/search", files={"image": (name, data, "image/jpeg")}, data={"topk": "5"})
        if answer.status_code != 200:
            return None
        body = answer.json()
        for hit in body["results"]:
            if hit.get("identity") == f"load writer {w}" and hit["score"] > 0.9999:
                return Held(int(hit["row"]), str(body["generation"]), image.upload)
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "adds": self.adds.done,
            "images_added": self.images_added,
            "removes": self.removes.done,
            "relocated": self.relocated,
            "failed": self.adds.failed + self.removes.failed,
            "failures": dict(self.adds.failures + self.removes.failures),
            "add_ms": percentiles(self.adds.ms),
            "remove_ms": percentiles(self.removes.ms),
        }


def misbehave(port: int, token: str, stop: threading.Event, counts: dict[str, int]) -> None:
    """Hang up mid-upload (with a valid token, so that the upload is being read when the client goes away)
    and send garbage, in turn, until ``stop``."""
    head = (
        b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
        b"Authorization: Bearer " + token.encode("ascii") + b"\r\n"
        b'Content-Length: 500000\r\n\r\n--zz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + os.urandom(4000)
    )
    garbage = b"\x00\xffGARBAGE\r\n\r\n" * 20
    while not stop.is_set():
        for name, data, read in (("disconnects", head, False), ("garbage", garbage, True)):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(data)
                    if read:
                        s.shutdown(socket.SHUT_WR)
                        while s.recv(65536):
                            pass
            except OSError:
                pass
            counts[name] += 1
        stop.wait(0.02)


def summary(tallies: dict[str, Tally], wall: float) -> dict[str, Any]:
    """Requests, failures, throughput and latency percentiles of image and text queries."""
    every = tallies["image"].ms + tallies["text"].ms
    return {
        "requests": len(every),
        "failed": tallies["image"].failed + tallies["text"].failed,
        "failures": dict(tallies["image"].failures + tallies["text"].failures),
        "qps": len(every) / wall,
        "all": percentiles(every),
        "image": percentiles(tallies["image"].ms),
        "text": percentiles(tallies["text"].ms),
    }


def readers(url: str, token: str, queries: Queries, clients: int, requests: int) -> dict[str, Any]:
    """``clients`` threads of ``requests`` queries each, as :func:`summary` of them over the wall time."""
    tallies = {"image": Tally(), "text": Tally()}
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda c: read_loop(url, token, queries, c, tallies, requests), range(clients)))
    return summary(tallies, time.perf_counter() - start)


def level(
    url: str, token: str, queries: Queries, clients: int, requests: int, port: int, abuse: bool
) -> dict[str, Any]:
    stop = threading.Event()
    counts = {"disconnects": 0, "garbage": 0}
    bad = threading.Thread(target=misbehave, args=(port, token, stop, counts), daemon=True) if abuse else None
    if bad:
        bad.start()
    measured = readers(url, token, queries, clients, requests)
    stop.set()
    if bad:
        bad.join(10)
    return {"clients": clients, **measured, "abuse": counts if abuse else None}


def health(url: str, token: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{url}/healthz", headers=bearer(token), timeout=30).json()
    return answer


def read_write_level(
    url: str, tokens: dict[str, str], queries: Queries, uploads: Uploads, clients: int, writers: int, requests: int
) -> dict[str, Any]:
    """``clients`` readers of ``requests`` queries each, read-only and then while ``writers`` add and remove
    images; the readers start once every writer is about to send its first addition."""
    start = time.perf_counter()
    before = health(url, tokens["read"])["images"]
    read_only = readers(url, tokens["read"], queries, clients, requests)
    writing = Writers(url, tokens["write"], uploads, writers)
    writing.start()
    with_writers = readers(url, tokens["read"], queries, clients, requests)
    writing.stop()
    after = health(url, tokens["read"])["images"]
    ratio = with_writers["all"]["p99"] / read_only["all"]["p99"]
    return {
        "readers": clients,
        "writers": writers,
        "read_only": read_only,
        "read": with_writers,
        "write": writing.summary(),
        "p99_ratio": ratio,
        "p99_target": P99_TARGET,
        "p99_target_holds": bool(ratio < P99_TARGET),
        "gallery_before": before,
        "gallery_after": after,
        "gallery_largest": writing.largest_gallery,
        "wall_s": time.perf_counter() - start,
    }


def process_usage(pid: int) -> dict[str, Any]:
    """Resident memory (MiB: ``VmRSS``, and ``RssAnon``, the heap's part) and open file descriptors of process
    ``pid``, from /proc; psutil's RSS and descriptor count where there is no /proc (no ``RssAnon`` then).
    The descriptors are the fewest of three counts 50 ms apart: a file open for a moment (the change log
    while it is read) is not growth."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        fields = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
        rss, anon = (int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon"))
        fds = []
        for attempt in range(3):
            fds.append(sum(1 for _ in (proc / "fd").iterdir()))
            if attempt < 2:
                time.sleep(0.05)
        return {"rss_mb": rss, "anon_mb": anon, "fds": min(fds)}
    try:
        import psutil
    except ImportError:
        raise SystemExit("--soak reads the server's memory from /proc (Linux), or needs psutil installed") from None
    server = psutil.Process(pid)
    fds = []
    for attempt in range(3):
        fds.append(server.num_fds())
        if attempt < 2:
            time.sleep(0.05)
    return {"rss_mb": server.memory_info().rss / 2**20, "anon_mb": None, "fds": min(fds)}


def descriptor_kinds(pid: int) -> dict[str, int]:
    """What process ``pid`` has open, counted by kind (``socket``, ``pipe``, ``anon_inode:...``) or path;
    empty where there is no /proc."""
    kinds: Counter[str] = Counter()
    folder = Path(f"/proc/{pid}/fd")
    if not folder.is_dir():
        return {}
    for fd in folder.iterdir():
        try:
            target = str(fd.readlink())
        except OSError:  # closed since it was listed
            continue
        kinds[target.split(":[")[0]] += 1
    return dict(kinds)


def soak(
    url: str,
    tokens: dict[str, str],
    server: subprocess.Popen[bytes],
    index: Path,
    queries: Queries,
    uploads: Uploads,
    args: argparse.Namespace,
    env: dict[str, str],
) -> dict[str, Any]:
    """The read/write mix for ``args.soak`` seconds with a sample every ``args.sample_seconds`` (and one before
    it starts, one after it stops, and one after the gallery was then compacted), and the verdict against the
    targets. A server that exits ends the soak at the next sample."""
    pid = server.pid
    reads = {"image": Tally(), "text": Tally()}
    writing = Writers(url, tokens["write"], uploads, args.writers)
    stop = threading.Event()
    log = index.with_name(index.name + ".log")
    stored = index.with_name(index.name + ".images")  # where the server keeps added images' files
    with httpx.Client(base_url=url, timeout=30, headers=bearer(tokens["read"])) as client:
        dim = int(client.get("/api/model").json()["index"]["dim"])

        def counts() -> dict[str, int]:
            return {
                "reads": reads["image"].done + reads["text"].done,
                "reads_failed": reads["image"].failed + reads["text"].failed,
                "writes": writing.adds.done + writing.removes.done,
                "writes_failed": writing.adds.failed + writing.removes.failed,
            }

        def sample(start: float, previous: float) -> dict[str, Any]:
            now = time.perf_counter()
            latest = reads["image"].since(previous) + reads["text"].since(previous)
            images: int | None
            rows: int | None
            generation: str | None
            try:
                facts = client.get("/api/model").json()["index"]
                images, rows, generation = int(facts["images"]), int(facts["rows"]), str(facts["generation"])
            except (httpx.HTTPError, ValueError, KeyError):  # counted as the readers' failures meanwhile
                images = rows = generation = None
            return {
                "t_s": round(now - start, 1),
                **process_usage(pid),
                "images": images,
                "rows": rows,
                "generation": generation,
                "log_mb": log.stat().st_size / 2**20 if log.exists() else 0.0,
                "files": sum(1 for _ in stored.iterdir()) if stored.is_dir() else 0,
                **counts(),
                # None, not NaN, before the first query: --json writes standard JSON
                "read_p50": percentiles(latest)["p50"] if latest else None,
                "read_p99": percentiles(latest)["p99"] if latest else None,
                "load_1m": os.getloadavg()[0],
            }

        start = time.perf_counter()
        samples = [sample(start, start)]
        kinds_before = descriptor_kinds(pid)
        writing.start()
        threads = [
            threading.Thread(target=read_loop, args=(url, tokens["read"], queries, c, reads, None, stop), daemon=True)
            for c in range(args.readers)
        ]
        for thread in threads:
            thread.start()
        taken = start
        for k in range(1, int(args.soak // args.sample_seconds) + 1):
            time.sleep(max(0.0, start + k * args.sample_seconds - time.perf_counter()))
            if server.poll() is not None:
                break
            samples.append(sample(start, taken))
            taken = time.perf_counter()
        if server.poll() is None:
            time.sleep(max(0.0, start + args.soak - time.perf_counter()))
        stop.set()
        for thread in threads:
            thread.join(120)
        writing.stop()

        def exit_seen() -> dict[str, Any] | None:
            return (
                None if server.poll() is None else {"code": server.returncode, "seen_at_s": time.perf_counter() - start}
            )

        exited = exit_seen()
        compacted: dict[str, Any] | None = None
        compaction: dict[str, Any] | None = None
        if exited is None:
            stopped = {**sample(start, taken), "after": True}
            compacted, compaction = compact_served(client, index, stopped["generation"], start, sample, env)
            exited = exit_seen()  # it may have died while the gallery was compacted or reloaded
            if exited is not None:
                compacted = None
            kinds_after = descriptor_kinds(pid) if exited is None else kinds_before
        else:  # nothing left to measure: the last sample taken while it ran, with the requests' counts
            stopped = {**samples[-1], **counts(), "t_s": round(time.perf_counter() - start, 1), "after": True}
            kinds_after = kinds_before
    final = compacted or stopped
    memory = memory_verdict(samples, compacted, warmup_seconds=args.warmup_seconds, dim=dim, slack_mb=args.rss_slack_mb)
    failed = final["reads_failed"] + final["writes_failed"]
    new_kinds = {k: n - kinds_before.get(k, 0) for k, n in kinds_after.items() if n > kinds_before.get(k, 0)}
    return {
        "seconds": args.soak,
        "sample_seconds": args.sample_seconds,
        "warmup_seconds": args.warmup_seconds,
        "readers": args.readers,
        "writers": args.writers,
        "server_pid": pid,
        "dim": dim,
        "samples": [*samples, stopped, *([compacted] if compacted is not None else [])],
        "read": summary(reads, args.soak),
        "write": writing.summary(),
        "verdict": {
            "server_exited": exited,
            "failed": failed,
            "requests": final["reads"] + final["writes"],
            "no_failed_request": failed == 0,
            "compaction": compaction,
            **memory,
            "rss_holds": None if exited is not None else memory["rss_holds"],
            "stopped_rss_mb": stopped["rss_mb"],
            "stopped_rows_held_beyond_images": (
                stopped["rows"] - stopped["images"]
                if stopped["rows"] is not None and stopped["images"] is not None
                else None
            ),
            "fd_growth": final["fds"] - samples[0]["fds"],
            "fds_most_under_load": max(s["fds"] for s in samples),
            "fds_hold": exited is None and bool(final["fds"] <= samples[0]["fds"]),
            "new_descriptors": new_kinds,
            "gallery_back_at_start": final["images"] == samples[0]["images"],
        },
    }


def memory_verdict(
    samples: list[dict[str, Any]],
    compacted: dict[str, Any] | None,
    *,
    warmup_seconds: float,
    dim: int,
    slack_mb: float,
) -> dict[str, Any]:
    """The soak's memory target from its samples (the first taken before the load, the others under it) and
    ``compacted``, the sample after the gallery was compacted at the end (None when it was not).

    The live gallery holds removed rows and added images' features until it is compacted, so RSS rises
    between compactions and falls at each: what counts is the level just after compactions. The samples
    at or after ``warmup_seconds`` that follow one of the server's compactions (another ``generation`` than
    the last sample that read one) are split into an earlier and a later half by time; their medians, not
    one sample each (one sample can read several MiB off), give:

    * ``trend``: the later median less the earlier one (two compactions at least);
    * ``end``: the compacted sample less the earlier median (the first sample at or after the warm-up when
      fewer than two compactions came), the state the gallery started from.

    Each is allowed the gallery's own growth (its change in images times a feature's float32 bytes) plus
    ``slack_mb``. ``rss_holds`` is whether every check that could be made holds, None when none could."""
    troughs = []
    known: str | None = None  # the generation of the last sample that read one
    for sample in samples:
        moved = known is not None and sample["generation"] not in (None, known)
        if moved and sample["t_s"] >= warmup_seconds:
            troughs.append(sample)
        known = sample["generation"] or known
    loaded = [x for x in samples if x["t_s"] >= warmup_seconds] or samples[-1:]
    half = len(troughs) // 2
    early, late = (troughs[:half], troughs[half:]) if half else ([loaded[0]], [])

    def median(key: str, among: list[dict[str, Any]]) -> float | None:
        values = [x[key] for x in among if x[key] is not None]
        return float(np.median(values)) if values else None

    def own_mb(images_after: float | None, images_before: float | None) -> float:
        if images_after is None or images_before is None:
            return 0.0
        return max(0.0, images_after - images_before) * dim * 4 / 2**20

    reference = float(np.median([x["rss_mb"] for x in early]))
    checks: dict[str, dict[str, Any]] = {}
    if late:
        growth = float(np.median([x["rss_mb"] for x in late])) - reference
        own = own_mb(median("images", late), median("images", early))
        checks["trend"] = {"growth_mb": growth, "gallery_own_mb": own, "holds": growth <= own + slack_mb}
    if compacted is not None:
        growth = compacted["rss_mb"] - reference
        own = own_mb(compacted["images"], median("images", early))
        checks["end"] = {"growth_mb": growth, "gallery_own_mb": own, "holds": growth <= own + slack_mb}
    x = [(t["reads"] + t["writes"]) / 1000 for t in troughs]
    slope = float(np.polyfit(x, [t["rss_mb"] for t in troughs], 1)[0]) if len(set(x)) > 1 else None
    return {
        "compactions_after_warmup": len(troughs),
        "trough_rss_mb": [(t["t_s"], t["rss_mb"]) for t in troughs],
        "reference": "troughs" if half else "first after warm-up",
        "reference_rss_mb": reference,
        "reference_t_s": [x["t_s"] for x in early],
        "later_t_s": [x["t_s"] for x in late],
        "checks": checks,
        "rss_slack_mb": slack_mb,
        # None, not NaN, where there is no slope: --json writes standard JSON
        "trough_slope_mb_per_1000_requests": slope,
        "rss_holds": all(c["holds"] for c in checks.values()) if checks else None,
    }


def compact_served(
    client: httpx.Client, index: Path, generation: str | None, start: float, sample: Any, env: dict[str, str]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Compact the served gallery as an operator would (``svllreid index compact``, its own process, up to 10
    minutes), wait until the server has reloaded it (another generation than ``generation``, and as many
    rows as images, up to 60 s), and sample the server then: the sample, marked ``compacted``, or None when
    the compaction failed or the server did not reload it in time; and what happened (``ok``, ``reason``,
    ``seconds``), kept in the report either way."""
    began = time.perf_counter()

    def outcome(ok: bool, reason: str | None) -> dict[str, Any]:
        return {"ok": ok, "reason": reason, "seconds": round(time.perf_counter() - began, 1)}

    command = [sys.executable, "-m", "svllreid", "index", "compact", "--index", str(index)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    except (subprocess.TimeoutExpired, OSError) as err:
        return None, outcome(False, f"svllreid index compact: {type(err).__name__}: {err}")
    if done.returncode != 0:
        return None, outcome(False, f"svllreid index compact exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        try:
            facts = client.get("/api/model").json()["index"]
        except (httpx.HTTPError, ValueError, KeyError) as err:
            return None, outcome(False, f"the server did not answer after the compaction: {type(err).__name__}")
        if facts.get("generation") != generation and int(facts["rows"]) == int(facts["images"]):
            time.sleep(1.0)  # the old snapshot's arrays go once the searches holding them end
            return {**sample(start, time.perf_counter()), "after": True, "compacted": True}, outcome(True, None)
        time.sleep(0.5)
    return None, outcome(False, "the server did not reload the compacted gallery within 60 s")


def cli_times(index: Path, photos: list[str], captions: list[str], count: int, env: dict[str, str]) -> dict[str, Any]:
    """Seconds of one ``svllreid search`` process per query, image and text."""
    base = [sys.executable, "-m", "svllreid", "search", "--index", str(index), "--topk", "10", "--json"]
    times: dict[str, list[float]] = {"image": [], "text": []}
    for i in range(count):
        for kind, extra in (("image", ["--query", photos[i % len(photos)]]), ("text", ["--text", captions[i]])):
            start = time.perf_counter()
            subprocess.run([*base, *extra], check=True, capture_output=True, env=env)
            times[kind].append(time.perf_counter() - start)
    every = times["image"] + times["text"]
    return {
        "queries": len(every),
        "qps": len(every) / sum(every),
        "image_s": statistics.median(times["image"]),
        "text_s": statistics.median(times["text"]),
    }


def server_errors(log: str) -> list[str]:
    """The last lines of the server's log from its first error on (nothing when it logged none)."""
    lines = log.splitlines()
    first = next((i for i, line in enumerate(lines) if "Traceback" in line or "ERROR" in line), None)
    return [] if first is None else lines[first:][-60:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=10000, help="gallery images (default 10000)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=40, help="queries per client and level (default 40)")
    parser.add_argument("--single", type=int, default=50, help="one-at-a-time queries of each kind (default 50)")
    parser.add_argument("--cli-queries", type=int, default=5, help="CLI processes per query kind (default 5)")
    parser.add_argument("--readers", type=int, default=16, help="readers of the read/write level (default 16)")
    parser.add_argument(
        "--writers", type=int, default=2, help="writers of the read/write level (default 2; 0: no such level)"
    )
    parser.add_argument(
        "--soak", type=float, default=None, metavar="SECONDS", help="run the read/write mix this long instead"
    )
    parser.add_argument("--sample-seconds", type=float, default=30.0, help="soak: seconds between samples (30)")
    parser.add_argument(
        "--warmup-seconds", type=float, default=60.0, help="soak: compactions this early are not compared (60)"
    )
    parser.add_argument(
        "--rss-slack-mb", type=float, default=8.0, help="soak: RSS growth allowed for the allocator's noise (8 MiB)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.soak is not None and (args.writers < 1 or args.readers < 1 or args.soak < args.sample_seconds):
        parser.error("--soak needs --readers and --writers of at least 1, and SECONDS of at least --sample-seconds")

    # Two random tokens, a reader's and a writer's, for the server and its clients.
    tokens = {"read": secrets.token_urlsafe(32), "write": secrets.token_urlsafe(32)}
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "SVLLREID_CACHE": str(folder / "cache")}
        t0 = time.perf_counter()
        gallery, photos, captions, spare = make_world(folder, args.gallery)
        checkpoint = write_checkpoint(folder / "model.safetensors")
        (folder / "gallery.txt").write_text("\n".join(gallery) + "\n")
        index = folder / "gallery.npz"
        subprocess.run(
            [sys.executable, "-m", "svllreid", "index", "build", "--checkpoint", str(checkpoint), "--images",
             str(folder / "gallery.txt"), "--out", str(index), "--no-progress", "--device", "cpu"],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        as_built = shutil.copy2(index, folder / "as-built.npz")  # for the CLI: the served one changes
        setup_s = time.perf_counter() - t0

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (folder / "serve.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "svllreid", "serve", "--index", str(index), "--port", str(port), "--device", "cpu"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**env, "SVLLREID_TOKEN": tokens["read"], "SVLLREID_WRITE_TOKEN": tokens["write"]},
        )  # fmt: skip
        read_write = soaked = None
        levels: list[dict[str, Any]] = []
        try:
            start = time.perf_counter()
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"svllreid serve exited: {(folder / 'serve.log').read_text()}")
                try:
                    if httpx.get(f"{url}/healthz", headers=bearer(tokens["read"]), timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            startup_s = time.perf_counter() - start
            queries = Queries(photos, captions)
            uploads = Uploads(spare)
            with httpx.Client(base_url=url, timeout=60, headers=bearer(tokens["read"])) as client:
                for i in range(5):  # warm-up
                    queries.send(client, "image", i)
                    queries.send(client, "text", i)
                single = {}
                if args.soak is None:
                    for kind in ("image", "text"):
                        runs = [queries.send(client, kind, i) for i in range(args.single)]
                        single[kind] = {
                            **percentiles([ms for ms, _ in runs]),
                            "failed": sum(f is not None for _, f in runs),
                        }
            if args.soak is not None:
                soaked = soak(url, tokens, server, index, queries, uploads, args, env)
            else:
                top_clients = max(args.clients)
                levels = [
                    level(url, tokens["read"], queries, n, args.requests, port, abuse=n == top_clients)
                    for n in args.clients
                ]
                if args.writers:
                    read_write = read_write_level(
                        url, tokens, queries, uploads, args.readers, args.writers, args.requests
                    )
            try:
                health_after = health(url, tokens["read"])
            except httpx.HTTPError as err:  # the server is gone: the report says so rather than stopping here
                health_after = {"status": f"unreachable ({type(err).__name__})"}
            alive = health_after["status"] == "ok"
        finally:
            server.terminate()
            server.wait(30)
            log.close()
        errors = server_errors((folder / "serve.log").read_text())
        cli = cli_times(Path(as_built), photos, captions, args.cli_queries, env) if args.soak is None else None

    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg()[0],
        "gallery": args.gallery,
        "model": "svll-tiny-vit 64x32 (svll-synth CLIP), fp32, CPU",
        "setup_s": setup_s,
        "server_startup_s": startup_s,
        "server": {"encoder_calls": health_after.get("encoder_calls"), "queries": health_after.get("queries"),
                   "largest_batch": health_after.get("largest_batch"), "alive_after": alive},
        "server_log_errors": errors,
    }  # fmt: skip
    if soaked is not None:
        report["soak"] = soaked
    else:
        assert cli is not None
        top = max(levels, key=lambda r: r["clients"])
        report |= {"single": single, "levels": levels, "read_write": read_write, "cli": cli,
                   "speedup_vs_cli": top["qps"] / cli["qps"]}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"svllreid serve under load: {args.gallery:,}-image index, {report['model']}; {report['machine']}")
    print(f"set-up {setup_s:.0f} s (world, checkpoint, index build); server ready {startup_s:.1f} s after start")
    if soaked is not None:
        print_soak(soaked)
    else:
        print_levels(report)
    s = report["server"]
    print(f"server: {s['queries']} queries in {s['encoder_calls']} batches (largest {s['largest_batch']}); "
          f"answering after the load: {'yes' if alive else 'no'}; load average (1 min) at the end "
          f"{report['load_average']:.2f}")  # fmt: skip
    if errors:
        print("the server logged errors; its log from the first one:\n  " + "\n  ".join(errors))


def print_levels(report: dict[str, Any]) -> None:
    print("\none client, one query at a time (ms):")
    print(f"  {'kind':<6} {'p50':>7} {'p95':>7} {'p99':>7} {'failed':>7}")
    for kind, row in report["single"].items():
        print(f"  {kind:<6} {row['p50']:7.1f} {row['p95']:7.1f} {row['p99']:7.1f} {row['failed']:7d}")
    print("\nconcurrent clients, alternating image and text queries (latency in ms):")
    print(f"  {'clients':>7} {'requests':>8} {'failed':>6} {'q/s':>7} {'p50':>7} {'p95':>7} {'p99':>7}"
          f" {'img p50':>8} {'txt p50':>8}")  # fmt: skip
    for r in report["levels"]:
        a = r["all"]
        print(f"  {r['clients']:7d} {r['requests']:8d} {r['failed']:6d} {r['qps']:7.1f} {a['p50']:7.1f}"
              f" {a['p95']:7.1f} {a['p99']:7.1f} {r['image']['p50']:8.1f} {r['text']['p50']:8.1f}")  # fmt: skip
    top = max(report["levels"], key=lambda r: r["clients"])
    if top["abuse"]:
        abuse = top["abuse"]
        print(f"  during the {top['clients']}-client level: {abuse['disconnects']} uploads cut off mid-way and "
              f"{abuse['garbage']} garbage requests from another client")  # fmt: skip
    rw = report["read_write"]
    if rw:
        print_read_write(rw)
    cli = report["cli"]
    print(f"\none CLI process per query: {cli['queries']} queries, {cli['qps']:.2f} q/s "
          f"(median {cli['image_s']:.2f} s an image query, {cli['text_s']:.2f} s a text query)")  # fmt: skip
    print(f"server at {top['clients']} clients / CLI: {report['speedup_vs_cli']:.0f}x the queries per second")


def print_read_write(rw: dict[str, Any]) -> None:
    print(f"\n{rw['readers']} readers, read-only and then while {rw['writers']} writers add and remove images "
          f"(latency in ms):")  # fmt: skip
    print(f"  {'readers':<13} {'requests':>8} {'failed':>6} {'q/s':>7} {'p50':>7} {'p90':>7} {'p99':>7}")
    for name, r in (("read-only", rw["read_only"]), ("with writers", rw["read"])):
        a = r["all"]
        print(f"  {name:<13} {r['requests']:8d} {r['failed']:6d} {r['qps']:7.1f} {a['p50']:7.1f} {a['p90']:7.1f}"
              f" {a['p99']:7.1f}")  # fmt: skip
    verdict = "holds" if rw["p99_target_holds"] else "does not hold"
    print(
        f"  read p99 with writers / read-only: {rw['p99_ratio']:.2f}x (target under {rw['p99_target']:g}x: {verdict})"
    )
    w = rw["write"]
    print(f"  writers: {w['adds']} additions ({w['images_added']} images; p50 {w['add_ms']['p50']:.1f}, p99 "
          f"{w['add_ms']['p99']:.1f}), {w['removes']} removals (p50 {w['remove_ms']['p50']:.1f}, p99 "
          f"{w['remove_ms']['p99']:.1f}; {w['relocated']} found again after a compaction), {w['failed']} failed"
          f"{failures(w['failures'])}")  # fmt: skip
    if rw["read"]["failed"] or rw["read_only"]["failed"]:
        print(f"  readers' failures: {failures(rw['read_only']['failures'])} read-only, "
              f"{failures(rw['read']['failures'])} with writers")  # fmt: skip
    print(f"  gallery: {rw['gallery_before']} images before, {rw['gallery_after']} after "
          f"(at most {rw['gallery_largest']} as the writers' additions answered)")  # fmt: skip


def failures(causes: dict[str, int]) -> str:
    return f" ({', '.join(f'{n} {cause}' for cause, n in causes.items())})" if causes else ""


def print_soak(s: dict[str, Any]) -> None:
    def ms(value: float | None) -> str:
        return f"{value:7.1f}" if value is not None else f"{'-':>7}"

    print(f"\nsoak: {s['seconds']:g} s of {s['readers']} readers and {s['writers']} writers; a sample of the server "
          f"(process {s['server_pid']}) every {s['sample_seconds']:g} s, one after the load stopped and one after the "
          f"gallery was then compacted")  # fmt: skip
    print(f"  {'t_s':>7} {'rss_mb':>7} {'anon_mb':>7} {'fds':>4} {'images':>7} {'rows':>7} {'log_mb':>6}"
          f" {'files':>5} {'reads':>7} {'failed':>6} {'writes':>6} {'failed':>6} {'rd_p50':>7} {'rd_p99':>7}"
          f" {'load':>5}")  # fmt: skip
    for r in s["samples"]:
        t = f"{r['t_s']:.0f}" + ("c" if r.get("compacted") else "*" if r.get("after") else "")
        anon = f"{r['anon_mb']:7.1f}" if r["anon_mb"] is not None else f"{'-':>7}"
        print(f"  {t:>7} {r['rss_mb']:7.1f} {anon} {r['fds']:4d} {r['images']!s:>7} {r['rows']!s:>7} "
              f"{r['log_mb']:6.2f} {r['files']:5d} {r['reads']:7d} {r['reads_failed']:6d} {r['writes']:6d} "
              f"{r['writes_failed']:6d} {ms(r['read_p50'])} {ms(r['read_p99'])} {r['load_1m']:5.2f}")  # fmt: skip
    print(
        "  (*: after the readers and writers stopped, the writers having removed what they held; c: then after "
        "`svllreid index compact` and the server's reload; files: the added images' files the server keeps; "
        "rd_p50/p99: the readers' latency in ms since the sample before)"
    )
    r, w, v = s["read"], s["write"], s["verdict"]
    print(f"  readers: {r['requests']} queries, {r['qps']:.1f} q/s, p50 {r['all']['p50']:.1f} p90 {r['all']['p90']:.1f}"
          f" p99 {r['all']['p99']:.1f} ms, {r['failed']} failed{failures(r['failures'])}")  # fmt: skip
    print(f"  writers: {w['adds']} additions ({w['images_added']} images; p50 {w['add_ms']['p50']:.1f}, p99 "
          f"{w['add_ms']['p99']:.1f} ms), {w['removes']} removals (p50 {w['remove_ms']['p50']:.1f}, p99 "
          f"{w['remove_ms']['p99']:.1f} ms; {w['relocated']} found again after a compaction), {w['failed']} failed"
          f"{failures(w['failures'])}")  # fmt: skip

    def mark(ok: bool) -> str:
        return "holds" if ok else "DOES NOT HOLD"

    print("verdict:")
    print(f"  no failed request: {v['failed']} of {v['requests']} failed: {mark(v['no_failed_request'])}")
    if v["server_exited"]:
        print(f"  the server EXITED (code {v['server_exited']['code']}), seen {v['server_exited']['seen_at_s']:.0f} s "
              "into the soak; the last row is the last sample taken while it ran: memory and descriptors are not "
              "compared")  # fmt: skip
        return

    def verdict_of(ok: bool | None) -> str:
        return "cannot tell" if ok is None else mark(ok)

    after = f"the server's {v['compactions_after_warmup']} compactions since {s['warmup_seconds']:g} s of warm-up"
    print(f"  no growth in RSS beyond the gallery's own: {verdict_of(v['rss_holds'])}; the level after {after}:")
    if v["trough_rss_mb"]:
        print("    " + ", ".join(f"{rss:.1f} at {t:.0f} s" for t, rss in v["trough_rss_mb"]) + " (MiB)")
    if v["trough_slope_mb_per_1000_requests"] is not None:
        print(f"    least-squares slope: {v['trough_slope_mb_per_1000_requests']:+.4f} MiB per 1000 requests")
    reference = (
        f"the median of the earlier half of those ({', '.join(f'{t:.0f}' for t in v['reference_t_s'])} s)"
        if v["reference"] == "troughs"
        else f"the first sample after the warm-up ({v['reference_t_s'][0]:.0f} s; fewer than two compactions)"
    )
    print(f"    reference: {v['reference_rss_mb']:.1f} MiB, {reference}")
    names = {"trend": "the later half's median", "end": "the gallery compacted after the load"}
    for name, check in v["checks"].items():
        print(f"    {names[name]}: {check['growth_mb']:+.1f} MiB; allowed: the gallery's own growth "
              f"{check['gallery_own_mb']:.2f} MiB + {v['rss_slack_mb']:g} MiB of allocator noise: "
              f"{mark(check['holds'])}")  # fmt: skip
    c = v["compaction"]
    if c is not None and not c["ok"]:
        print(f"    the gallery was NOT compacted after the load ({c['seconds']:.0f} s): {c['reason']}")
    elif c is not None:
        print(f"    (compacted and reloaded in {c['seconds']:.1f} s; just before, {v['stopped_rss_mb']:.1f} MiB with "
              f"{v['stopped_rows_held_beyond_images']} removed rows still held)")  # fmt: skip
    new = ", ".join(f"{n} {kind}" for kind, n in v["new_descriptors"].items())
    print(f"  descriptors: {v['fd_growth']:+d} from before the load to after it, both with no client connected "
          f"({v['fds_most_under_load']} at most under the load){f'; new: {new}' if new else ''}: "
          f"{mark(v['fds_hold'])}")  # fmt: skip
    if not v["gallery_back_at_start"]:
        print("  note: the gallery did not end at its first size in images")


if __name__ == "__main__":
    main()
