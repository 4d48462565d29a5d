"""Load on ``svllreid serve``: latency and throughput of image and text queries from concurrent clients,
with and without images being added to and removed from the gallery at the same time, against the same
queries made one ``svllreid search`` process at a time.

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
    """Requests of one kind made by several threads: their latencies (ms), and the failures by cause
    (``HTTP 503``, a transport error's name, an answer that does not say what it should)."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, ms: float, failure: str | None) -> None:
        with self._lock:
            self.ms.append(ms)
            if failure is not None:
                self.failures[failure] += 1

    @property
    def done(self) -> int:
        return len(self.ms)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


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
    requests: int,
) -> None:
    """Client ``c``: ``requests`` queries on one keep-alive connection, alternating image and text."""
    with httpx.Client(base_url=url, timeout=60, headers=bearer(token)) as client:
        for i in range(requests):
            kind = "image" if (i + c) % 2 == 0 else "text"
            tallies[kind].record(*queries.send(client, kind, c * requests + i))


class Uploads:
    """What the writers add, bytes read once: writer ``w``'s ``i``-th addition takes 1 or 2 images in turn."""

    def __init__(self, paths: list[str]):
        self.images = [(Path(p).name, Path(p).read_bytes()) for p in paths[:UPLOADS]]

    def count(self, w: int, i: int) -> int:
        return 1 + (w + i) % 2

    def pick(self, w: int, i: int) -> list[tuple[str, bytes]]:
        at = 7 * w + 2 * i
        return [self.images[(at + j) % len(self.images)] for j in range(self.count(w, i))]


class Writers:
    """``count`` writer threads, each with its own keep-alive connection: add images, then remove the rows its
    previous addition added, until :meth:`stop` (each adds at least once); then each removes what it holds,
    so that the gallery ends at the size it began with."""

    def __init__(self, url: str, token: str, uploads: Uploads, count: int):
        self.url, self.token, self.uploads = url, token, uploads
        self.adds, self.removes = Tally(), Tally()
        self.images_added = 0
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
        held: list[int] = []
        with httpx.Client(base_url=self.url, timeout=60, headers=bearer(self.token)) as client:
            self._started.wait(120)
            i = 0
            while i == 0 or not self._stop.is_set():
                rows = self._add(client, w, i)
                for row in held:
                    self._remove(client, row)
                held = rows
                i += 1
            for row in held:
                self._remove(client, row)

    def _add(self, client: httpx.Client, w: int, i: int) -> list[int]:
        files = [("image", (name, data, "image/jpeg")) for name, data in self.uploads.pick(w, i)]
        labels = {"identity": f"load writer {w}", "camera": "load"}
        start = time.perf_counter()
        rows: list[int] = []
        try:
            answer = client.post("/api/gallery", files=files, data=labels)
            if answer.status_code != 201:
                failure: str | None = f"HTTP {answer.status_code}"
            else:
                body = answer.json()
                rows = [int(r) for r in body["rows"]]
                failure = None if len(rows) == len(files) else f"{len(rows)} rows for {len(files)} images"
                with self._lock:
                    self.largest_gallery = max(self.largest_gallery, int(body["gallery_size"]))
                    self.images_added += len(rows)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:  # a transport error, a malformed answer
            failure = type(err).__name__
        self.adds.record(1000 * (time.perf_counter() - start), failure)
        return rows

    def _remove(self, client: httpx.Client, row: int) -> None:
        start = time.perf_counter()
        try:
            answer = client.delete(f"/api/gallery/{row}")
            if answer.status_code != 200:
                failure: str | None = f"HTTP {answer.status_code}"
            else:
                failure = None if answer.json().get("removed") == row else "another row removed"
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:  # a transport error, a malformed answer
            failure = type(err).__name__
        self.removes.record(1000 * (time.perf_counter() - start), failure)

    def summary(self) -> dict[str, Any]:
        return {
            "adds": self.adds.done,
            "images_added": self.images_added,
            "removes": self.removes.done,
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
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

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
        read_write = None
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
                for kind in ("image", "text"):
                    runs = [queries.send(client, kind, i) for i in range(args.single)]
                    single[kind] = {
                        **percentiles([ms for ms, _ in runs]),
                        "failed": sum(f is not None for _, f in runs),
                    }
            top_clients = max(args.clients)
            levels = [
                level(url, tokens["read"], queries, n, args.requests, port, abuse=n == top_clients)
                for n in args.clients
            ]
            if args.writers:
                read_write = read_write_level(url, tokens, queries, uploads, args.readers, args.writers, args.requests)
            health_after = health(url, tokens["read"])
            alive = health_after["status"] == "ok"
        finally:
            server.terminate()
            server.wait(30)
            log.close()
        errors = server_errors((folder / "serve.log").read_text())
        cli = cli_times(Path(as_built), photos, captions, args.cli_queries, env)

    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg()[0],
        "gallery": args.gallery,
        "model": "svll-tiny-vit 64x32 (svll-synth CLIP), fp32, CPU",
        "setup_s": setup_s,
        "server_startup_s": startup_s,
        "server": {"encoder_calls": health_after["encoder_calls"], "queries": health_after["queries"],
                   "largest_batch": health_after["largest_batch"], "alive_after": alive},
        "server_log_errors": errors,
    }  # fmt: skip
    top = max(levels, key=lambda r: r["clients"])
    report |= {"single": single, "levels": levels, "read_write": read_write, "cli": cli,
               "speedup_vs_cli": top["qps"] / cli["qps"]}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"svllreid serve under load: {args.gallery:,}-image index, {report['model']}; {report['machine']}")
    print(f"set-up {setup_s:.0f} s (world, checkpoint, index build); server ready {startup_s:.1f} s after start")
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
          f"{w['remove_ms']['p99']:.1f}), {w['failed']} failed{failures(w['failures'])}")  # fmt: skip
    if rw["read"]["failed"] or rw["read_only"]["failed"]:
        print(f"  readers' failures: {failures(rw['read_only']['failures'])} read-only, "
              f"{failures(rw['read']['failures'])} with writers")  # fmt: skip
    print(f"  gallery: {rw['gallery_before']} images before, {rw['gallery_after']} after "
          f"(at most {rw['gallery_largest']} as the writers' additions answered)")  # fmt: skip


def failures(causes: dict[str, int]) -> str:
    return f" ({', '.join(f'{n} {cause}' for cause, n in causes.items())})" if causes else ""


if __name__ == "__main__":
    main()
