"""Load on ``svllreid serve``: latency and throughput of image and text queries from concurrent clients,
against the same queries made one ``svllreid search`` process at a time.

The script draws a synthetic world (``svllreid data synth``'s generator: people with captions), takes
its first ``--gallery`` images as the gallery, writes a checkpoint of the tiny ViT whose CLIP is the
shipped ``svll-synth`` (so that descriptions mean something), and builds the index with the CLI. It then
starts ``svllreid serve`` as a user would, in its own process on a free localhost port, and measures:

* one client, one query at a time: the latency of image queries (an upload of a query photo) and of
  text queries (a caption of the world), after a warm-up;
* ``--clients`` levels: each client is a thread with its own keep-alive connection that sends
  ``--requests`` queries in a bounded loop, alternating image and text; throughput over the wall time of
  the level, latency percentiles, failed requests (any status but 200 or a transport error). During the
  highest level another thread keeps misbehaving: it hangs up in the middle of uploads and sends garbage;
* the CLI: ``--cli-queries`` image and as many text queries, each one ``svllreid search`` process, timed
  from start to exit.

It prints measured numbers only, and the server's own count of encoder calls (how far it batched).

    python benchmarks/serve_load.py --gallery 10000 --clients 1 4 16 --requests 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def make_world(folder: Path, gallery: int) -> tuple[list[str], list[str], list[str]]:
    """Gallery paths, query photos (query-split images, outside the gallery when it allows) and captions."""
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
    return rest[:gallery], queries, captions


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


def percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    p50, p95, p99 = np.percentile(np.array(ms), [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


class Queries:
    """The request bodies, cycled: query photos (bytes read once) and captions."""

    def __init__(self, photos: list[str], captions: list[str]):
        self.photos = [(Path(p).name, Path(p).read_bytes()) for p in photos]
        self.captions = captions

    def send(self, client: httpx.Client, kind: str, i: int) -> tuple[float, bool]:
        start = time.perf_counter()
        try:
            if kind == "image":
                name, data = self.photos[i % len(self.photos)]
                answer = client.post("/api/search", files={"image": (name, data, "image/jpeg")}, data={"topk": "10"})
            else:
                answer = client.post("/api/search", json={"text": self.captions[i % len(self.captions)], "topk": 10})
            ok = answer.status_code == 200 and len(answer.json()["results"]) == 10
        except httpx.HTTPError:
            ok = False
        return 1000 * (time.perf_counter() - start), ok


def misbehave(port: int, stop: threading.Event, counts: dict[str, int]) -> None:
    """Hang up mid-upload and send garbage, in turn, until ``stop``."""
    head = (
        b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
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


def level(url: str, queries: Queries, clients: int, requests: int, port: int, abuse: bool) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"image": [], "text": []}
    failed = 0
    lock = threading.Lock()

    def client_loop(c: int) -> None:
        nonlocal failed
        with httpx.Client(base_url=url, timeout=60) as client:
            for i in range(requests):
                kind = "image" if (i + c) % 2 == 0 else "text"
                ms, ok = queries.send(client, kind, c * requests + i)
                with lock:
                    latencies[kind].append(ms)
                    failed += not ok

    stop = threading.Event()
    counts = {"disconnects": 0, "garbage": 0}
    bad = threading.Thread(target=misbehave, args=(port, stop, counts), daemon=True) if abuse else None
    if bad:
        bad.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    wall = time.perf_counter() - start
    stop.set()
    if bad:
        bad.join(10)
    every = latencies["image"] + latencies["text"]
    return {
        "clients": clients,
        "requests": len(every),
        "failed": failed,
        "qps": len(every) / wall,
        "all": percentiles(every),
        "image": percentiles(latencies["image"]),
        "text": percentiles(latencies["text"]),
        "abuse": counts if abuse else None,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=10000, help="gallery images (default 10000)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=40, help="queries per client and level (default 40)")
    parser.add_argument("--single", type=int, default=50, help="one-at-a-time queries of each kind (default 50)")
    parser.add_argument("--cli-queries", type=int, default=5, help="CLI processes per query kind (default 5)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "SVLLREID_CACHE": str(folder / "cache")}
        t0 = time.perf_counter()
        gallery, photos, captions = make_world(folder, args.gallery)
        checkpoint = write_checkpoint(folder / "model.safetensors")
        (folder / "gallery.txt").write_text("\n".join(gallery) + "\n")
        index = folder / "gallery.npz"
        subprocess.run(
            [sys.executable, "-m", "svllreid", "index", "build", "--checkpoint", str(checkpoint), "--images",
             str(folder / "gallery.txt"), "--out", str(index), "--no-progress", "--device", "cpu"],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        setup_s = time.perf_counter() - t0

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (folder / "serve.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "svllreid", "serve", "--index", str(index), "--port", str(port), "--device", "cpu"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            start = time.perf_counter()
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"svllreid serve exited: {(folder / 'serve.log').read_text()}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            startup_s = time.perf_counter() - start
            queries = Queries(photos, captions)
            with httpx.Client(base_url=url, timeout=60) as client:
                for i in range(5):  # warm-up
                    queries.send(client, "image", i)
                    queries.send(client, "text", i)
                single = {}
                for kind in ("image", "text"):
                    runs = [queries.send(client, kind, i) for i in range(args.single)]
                    single[kind] = {**percentiles([ms for ms, _ in runs]), "failed": sum(not ok for _, ok in runs)}
            levels = [level(url, queries, n, args.requests, port, abuse=n == max(args.clients)) for n in args.clients]
            health = httpx.get(f"{url}/healthz").json()
            alive = health["status"] == "ok"
        finally:
            server.terminate()
            server.wait(30)
            log.close()
        cli = cli_times(index, photos, captions, args.cli_queries, env)

    top = max(levels, key=lambda r: r["clients"])
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg()[0],
        "gallery": args.gallery,
        "model": "svll-tiny-vit 64x32 (svll-synth CLIP), fp32, CPU",
        "setup_s": setup_s,
        "server_startup_s": startup_s,
        "single": single,
        "levels": levels,
        "cli": cli,
        "speedup_vs_cli": top["qps"] / cli["qps"],
        "server": {"encoder_calls": health["encoder_calls"], "queries": health["queries"],
                   "largest_batch": health["largest_batch"], "alive_after": alive},
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"svllreid serve under load: {args.gallery:,}-image index, {report['model']}; {report['machine']}")
    print(f"set-up {setup_s:.0f} s (world, checkpoint, index build); server ready {startup_s:.1f} s after start")
    print("\none client, one query at a time (ms):")
    print(f"  {'kind':<6} {'p50':>7} {'p95':>7} {'p99':>7} {'failed':>7}")
    for kind, row in single.items():
        print(f"  {kind:<6} {row['p50']:7.1f} {row['p95']:7.1f} {row['p99']:7.1f} {row['failed']:7d}")
    print("\nconcurrent clients, alternating image and text queries (latency in ms):")
    print(f"  {'clients':>7} {'requests':>8} {'failed':>6} {'q/s':>7} {'p50':>7} {'p95':>7} {'p99':>7}"
          f" {'img p50':>8} {'txt p50':>8}")  # fmt: skip
    for r in levels:
        a = r["all"]
        print(f"  {r['clients']:7d} {r['requests']:8d} {r['failed']:6d} {r['qps']:7.1f} {a['p50']:7.1f}"
              f" {a['p95']:7.1f} {a['p99']:7.1f} {r['image']['p50']:8.1f} {r['text']['p50']:8.1f}")  # fmt: skip
    if top["abuse"]:
        abuse = top["abuse"]
        print(f"  during the {top['clients']}-client level: {abuse['disconnects']} uploads cut off mid-way and "
              f"{abuse['garbage']} garbage requests from another client")  # fmt: skip
    print(f"\none CLI process per query: {cli['queries']} queries, {cli['qps']:.2f} q/s "
          f"(median {cli['image_s']:.2f} s an image query, {cli['text_s']:.2f} s a text query)")  # fmt: skip
    print(f"server at {top['clients']} clients / CLI: {report['speedup_vs_cli']:.0f}x the queries per second")
    s = report["server"]
    print(f"server: {s['queries']} queries in {s['encoder_calls']} batches (largest {s['largest_batch']}); "
          f"answering after the load: {'yes' if alive else 'no'}")  # fmt: skip


if __name__ == "__main__":
    main()
