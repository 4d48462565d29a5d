"""Build time, search speed, recall and peak memory of the gallery index backends (:mod:`svllreid.search`).

The features are seeded synthetic L2-normalised float32 vectors shaped like re-identification features:
identity centres (``--identities``) vary along a few shared factors (a 32-d latent space, like clothing,
build or pose) plus a part of their own, and every image is noise around its identity's centre, so that
a query's nearest neighbours are the images of its identity, then of look-alike identities, with no
clean cluster structure. Gallery images are spread over the identities at random (a few each); queries
are further images of gallery identities.

The data and a float64 brute-force reference top-k are made once, in a subprocess; every backend then
runs in a fresh subprocess too, so that its peak RSS (``resource.getrusage``: the data, the index, build
and search) is its own (on Linux a child's peak counts its parent's memory at the fork). Per backend:
build time, batch search time (all queries in one call) per query and as queries/s, the latency of a
one-query search (median of up to 20, as ``svllreid search`` does), recall@k (the fraction of the
reference top-k ids found), then the saved file's size and load time. The load average at the start is
printed too, since other processes on a shared machine lengthen the times. The table holds measured
numbers only.

    python benchmarks/search_speed.py --gallery 100000 --queries 1000 --dim 512
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from svllreid.search import BACKENDS


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_features(
    gallery: int, queries: int, dim: int, identities: int, seed: int = 0, latent: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Gallery ``[gallery, dim]`` and query ``[queries, dim]`` unit features (see the module docstring).

    At 100,000 x 512 with 10,000 identities a query's cosine similarity to its nearest gallery image is
    about 0.7, to its 10th 0.56, to its 100th 0.3.
    """
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((latent, dim), dtype=np.float32)
    shared = _unit(rng.standard_normal((identities, latent), dtype=np.float32) @ factors)
    own = rng.standard_normal((identities, dim), dtype=np.float32) * np.float32(0.5 / np.sqrt(dim))
    centres = _unit(shared + own)

    def images(ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), dim), np.float32)
        for lo in range(0, len(ids), 8192):  # float32 chunks: no [N, D] float64 temporaries
            part = ids[lo : lo + 8192]
            noise = rng.standard_normal((len(part), dim), dtype=np.float32) * np.float32(0.7 / np.sqrt(dim))
            out[lo : lo + len(part)] = _unit(centres[part] + noise)
        return out

    gallery_ids = rng.integers(0, identities, gallery)
    return images(gallery_ids), images(rng.choice(gallery_ids, queries))


def reference_topk(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ids of each query's k most similar gallery items (set only, unordered), by float64 brute force."""
    g = gallery.astype(np.float64)
    k = min(k, len(g))
    out = np.empty((len(queries), k), np.int64)
    step = max(1, 2**25 // len(g))  # ~256 MB of float64 scores at a time
    for lo in range(0, len(queries), step):
        scores = queries[lo : lo + step].astype(np.float64) @ g.T
        out[lo : lo + step] = np.argpartition(scores, len(g) - k, axis=1)[:, len(g) - k :]
    return out


def prepare(data: Path, args: argparse.Namespace) -> None:
    """Write the features and the reference top-k into ``data`` (in a subprocess: see the docstring)."""
    start = time.perf_counter()
    gallery, queries = make_features(args.gallery, args.queries, args.dim, args.identities, args.seed)
    reference = reference_topk(gallery, queries, args.topk)
    for name, array in (("gallery", gallery), ("queries", queries), ("reference", reference)):
        np.save(data / f"{name}.npy", array)
    print(f"{time.perf_counter() - start:.1f}")


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def worker(backend: str, data: Path, topk: int) -> dict[str, Any]:
    """Build, search, save and load one backend (in this fresh process) and return its measurements."""
    from svllreid.search import GalleryIndex

    gallery, queries, reference = (np.load(data / f"{name}.npy") for name in ("gallery", "queries", "reference"))
    paths = [f"images/{i:07d}.jpg" for i in range(len(gallery))]
    load = os.getloadavg()[0]

    start = time.perf_counter()
    index = GalleryIndex.build(gallery, paths, meta={"benchmark": True}, backend=backend)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    result = index.search(queries, topk)
    search_s = time.perf_counter() - start
    single = []
    for q in queries[:20]:
        start = time.perf_counter()
        index.search(q, topk)
        single.append(time.perf_counter() - start)
    peak_rss = _peak_rss_gb()

    k = reference.shape[1]
    found = [len(np.intersect1d(result.indices[i, :k], reference[i])) for i in range(len(queries))]
    file = data / f"{backend}.index"
    index.save(file)
    del index
    start = time.perf_counter()
    params = GalleryIndex.load(file).params
    load_s = time.perf_counter() - start
    return {
        "backend": backend,
        "params": " ".join(f"{key}={value}" for key, value in params.items()),
        "build_s": build_s,
        "ms_per_query": 1e3 * search_s / len(queries),
        "queries_per_s": len(queries) / search_s,
        "one_query_ms": 1e3 * float(np.median(single)),
        "recall": sum(found) / (k * len(queries)),
        "load_s": load_s,
        "file_mb": file.stat().st_size / 2**20,
        "peak_rss_gb": peak_rss,
        "load": load,
    }


def _faiss_missing() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000, help="gallery images")
    parser.add_argument("--queries", type=int, default=1000, help="query images")
    parser.add_argument("--dim", type=int, default=512, help="feature width")
    parser.add_argument("--identities", type=int, default=10_000, help="identities the images show")
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="exact,faiss-flat,faiss-ivf,faiss-hnsw", help="comma-separated")
    parser.add_argument("--small", action="store_true", help="a quick run: 2000 x 64 gallery, 100 queries")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.small:
        args.gallery, args.queries, args.dim, args.identities = 2000, 100, 64, 200
    if args.prepare:
        prepare(args.data, args)
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.topk)))
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")

    with tempfile.TemporaryDirectory(prefix="search_speed.") as tmp:
        data = Path(tmp)
        cmd = [sys.executable, __file__, "--prepare", "--data", tmp, "--seed", str(args.seed), "--topk", str(args.topk)]
        cmd += ["--gallery", str(args.gallery), "--queries", str(args.queries), "--dim", str(args.dim)]
        proc = subprocess.run([*cmd, "--identities", str(args.identities)], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"making the data failed\n{proc.stderr}")
        print(
            f"gallery {args.gallery} x {args.dim}, {args.queries} queries, {args.identities} identities, "
            f"top-{args.topk}; data and float64 reference: {float(proc.stdout):.1f} s"
        )
        print(
            f"{len(os.sched_getaffinity(0))} CPU cores, numpy and faiss at their default thread counts; "
            "search = all queries in one call;"
        )
        print("1-query = median latency of one-query calls; load = 1-minute load average at the start;")
        print("peak RSS = data + build + search, fresh process")
        print(
            f"{'backend':<12}{'params':<22}{'build s':>9}{'ms/query':>10}{'queries/s':>11}"
            f"{'1-query ms':>12}{f'recall@{args.topk}':>11}{'load s':>8}{'file MB':>9}{'peak RSS GB':>13}{'load':>6}"
        )
        for backend in backends:
            if backend.startswith("faiss") and _faiss_missing():
                print(f"{backend:<12}skipped: faiss is not installed (pip install faiss-cpu)", flush=True)
                continue
            cmd = [sys.executable, __file__, "--worker", backend, "--data", str(data), "--topk", str(args.topk)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{backend}: worker failed\n{proc.stderr}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{r['backend']:<12}{r['params']:<22}{r['build_s']:>9.2f}{r['ms_per_query']:>10.3f}"
                f"{r['queries_per_s']:>11.0f}{r['one_query_ms']:>12.2f}{r['recall']:>11.4f}{r['load_s']:>8.2f}"
                f"{r['file_mb']:>9.1f}{r['peak_rss_gb']:>13.2f}{r['load']:>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
