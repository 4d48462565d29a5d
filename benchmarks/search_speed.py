"""Build time, search speed, recall and peak memory of the gallery index backends (:mod:`svllreid.search`).

Two modes. Without ``--sizes``: every backend on one gallery held in memory (below). With ``--sizes``:
galleries past RAM, ``faiss-ivfpq`` at each size (see "Galleries past RAM" further down).

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

Galleries past RAM (``--sizes 1000000,10000000``)
    The gallery is generated chunk by chunk (100,000 images a chunk) from seeds, so that no size ever exists
    in memory whole (10 M x 512 float32 would be 20 GB): chunk ``c`` is a function of ``(seed, c)`` alone.
    Generator: identities hold ``--images-per-identity`` (10) images on average and belong to one chunk each
    (a gallery stored by identity, as folders are: what a sample of its first rows would get wrong); an
    identity's centre is the unit vector of ``z @ F + e``, with ``F`` 32 shared factors of ``dim`` numbers,
    ``z`` the identity's 32 standard normal weights, normalised, and ``e`` its own part, normal with
    standard deviation ``0.5 / sqrt(dim)``; an image is the unit vector of its centre plus normal noise of
    standard deviation ``0.7 / sqrt(dim)`` per component; everything float32, L2-normalised. Queries
    (``--queries``, 10,000 by default) are further images of gallery identities drawn at random.

    Exact reference: for each chunk, the float32 top 100 of every query by inner product (faiss
    ``IndexFlatIP``), re-scored in float64 and merged with the chunks before; the reference top-10 is the
    float64 top 10 of the merged candidates (ties by gallery row). Cached in ``--work`` when given.

    Each size runs in two fresh processes: the build (``GalleryIndex.build_streamed`` from the chunks) and
    the serving (``GalleryIndex.load``, then one query at a time, every query), so that the serving's peak
    RSS is not the build's. Peak RSS is the process's high-water mark (``VmHWM`` of ``/proc/self/status``,
    which counts mapped file pages once touched; ``ru_maxrss`` where there is no ``/proc``). Printed per
    size: build time, build peak RSS, file size, load time, p50 and p99 latency of one-query searches,
    recall@10 against the reference, serving peak RSS and, after serving, its anonymous and file-backed
    resident memory, and the load averages (1, 5, 15 minutes) at the start of the build and of the
    serving: other processes on a shared machine lengthen the times. With two sizes or more, a last row
    extrapolates every number but recall to 100 M from the growth between the two largest sizes (a power
    law through them): extrapolated, not measured. Disk: the index file and, while building, its float16
    features twice (about 2.2 KB per 512-d image at the peak).

    python benchmarks/search_speed.py --sizes 1000000 --work /tmp/search_speed
"""

from __future__ import annotations

import argparse
import json
import math
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

#: Images per generated chunk of a gallery past RAM (the unit of generation, and of the reference's scan).
CHUNK = 100_000
#: The reference keeps this many float32 candidates per query and chunk for its float64 re-scoring.
REFERENCE_POOL = 100


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


# ----------------------------------------------------------------------------------------------------
# Galleries past RAM (--sizes)
# ----------------------------------------------------------------------------------------------------


def _chunks(n: int, chunk: int) -> range:
    return range(0, -(-n // chunk))


def _identity_centres(seed: int, c: int, count: int, dim: int, latent: int = 32) -> np.ndarray:
    """The ``count`` identity centres of chunk ``c`` (see the module docstring)."""
    factors = np.random.default_rng([seed, 0]).standard_normal((latent, dim), dtype=np.float32)
    rng = np.random.default_rng([seed, 1, c])
    shared = _unit(rng.standard_normal((count, latent), dtype=np.float32) @ factors)
    own = rng.standard_normal((count, dim), dtype=np.float32) * np.float32(0.5 / np.sqrt(dim))
    return _unit(shared + own)


def _identities_in(n: int, c: int, chunk: int, per_identity: int) -> int:
    return -(-min(chunk, n - c * chunk) // per_identity)


def gallery_chunk(seed: int, c: int, *, n: int, dim: int, chunk: int, per_identity: int) -> np.ndarray:
    """Images ``c * chunk ..`` of an ``n``-image generated gallery, unit float32 (a function of (seed, c))."""
    size = min(chunk, n - c * chunk)
    centres = _identity_centres(seed, c, _identities_in(n, c, chunk, per_identity), dim)
    rng = np.random.default_rng([seed, 2, c])
    ids = rng.integers(0, len(centres), size)
    out = np.empty((size, dim), np.float32)
    for lo in range(0, size, 8192):  # float32 pieces: no [chunk, D] float64 temporaries
        hi = min(size, lo + 8192)
        noise = rng.standard_normal((hi - lo, dim), dtype=np.float32) * np.float32(0.7 / np.sqrt(dim))
        out[lo:hi] = _unit(centres[ids[lo:hi]] + noise)
    return out


def query_sample(seed: int, *, n: int, queries: int, dim: int, chunk: int, per_identity: int) -> np.ndarray:
    """``queries`` further images of random identities of the ``n``-image generated gallery."""
    rng = np.random.default_rng([seed, 3])
    which = rng.integers(0, len(_chunks(n, chunk)), queries)
    out = np.empty((queries, dim), np.float32)
    for c in np.unique(which):
        rows = np.flatnonzero(which == c)
        centres = _identity_centres(seed, int(c), _identities_in(n, int(c), chunk, per_identity), dim)
        noise = rng.standard_normal((len(rows), dim), dtype=np.float32) * np.float32(0.7 / np.sqrt(dim))
        out[rows] = _unit(centres[rng.integers(0, len(centres), len(rows))] + noise)
    return out


def _gallery_batches(args: argparse.Namespace, n: int) -> Any:
    """``(paths, features)`` of each generated chunk, generated as the build asks for it."""
    for c in _chunks(n, args.chunk):
        feats = gallery_chunk(args.seed, c, n=n, dim=args.dim, chunk=args.chunk, per_identity=args.images_per_identity)
        lo = c * args.chunk
        yield [f"gallery/{i:09d}.jpg" for i in range(lo, lo + len(feats))], feats


def _status_gb() -> dict[str, float]:
    """This process's peak and current resident memory (GB) from /proc/self/status: VmHWM (the high-water
    mark of this process image, not its parent's), RssAnon and RssFile; ru_maxrss where there is no /proc."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {"peak": _peak_rss_gb()}
    fields = {line.split(":")[0]: line.split()[1:] for line in lines}
    kib = {key: int(fields[key][0]) for key in ("VmHWM", "RssAnon", "RssFile") if key in fields}
    return {"peak": kib["VmHWM"] / 2**20, "anon": kib.get("RssAnon", 0) / 2**20, "file": kib.get("RssFile", 0) / 2**20}


def large_reference(args: argparse.Namespace, n: int, queries: np.ndarray) -> np.ndarray:
    """The float64 exact top-k rows of each query (see the module docstring), streamed over the chunks."""
    import faiss

    k, pool = min(args.topk, n), min(REFERENCE_POOL, n)
    q64 = queries.astype(np.float64)
    best_scores = np.full((len(queries), 0), -np.inf)
    best_rows = np.full((len(queries), 0), -1, np.int64)
    for c in _chunks(n, args.chunk):
        feats = gallery_chunk(args.seed, c, n=n, dim=args.dim, chunk=args.chunk, per_identity=args.images_per_identity)
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(feats)
        _, found = flat.search(queries, min(pool, len(feats)))
        scores = np.empty(found.shape)
        for lo in range(0, len(queries), 256):  # float64 re-scoring of the candidates, 256 queries at a time
            vectors = feats[found[lo : lo + 256]].astype(np.float64)
            scores[lo : lo + 256] = np.einsum("qcd,qd->qc", vectors, q64[lo : lo + 256])
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_rows = np.concatenate([best_rows, found + c * args.chunk], axis=1)
        order = np.lexsort((merged_rows, -merged_scores), axis=1)[:, :pool]
        best_scores = np.take_along_axis(merged_scores, order, 1)
        best_rows = np.take_along_axis(merged_rows, order, 1)
    return best_rows[:, :k]


def large_build_worker(args: argparse.Namespace, n: int, file: Path) -> dict[str, Any]:
    """Build the ``n``-image index file from the generated chunks (in this fresh process)."""
    from svllreid.search import GalleryIndex

    load = os.getloadavg()
    settings = {key: getattr(args, key) for key in ("nlist", "nprobe", "pq_m", "refine") if getattr(args, key)}
    start = time.perf_counter()
    index = GalleryIndex.build_streamed(_gallery_batches(args, n), file, meta={"benchmark": True}, **settings)
    build_s = time.perf_counter() - start
    return {"build_s": build_s, "build_rss_gb": _status_gb()["peak"], "file_gb": file.stat().st_size / 1e9,
            "params": index.params, "load_build": load}  # fmt: skip


def large_serve_worker(args: argparse.Namespace, n: int, file: Path, reference_file: Path) -> dict[str, Any]:
    """Open the index file and search every query alone (in this fresh process)."""
    from svllreid.search import GalleryIndex

    queries = query_sample(
        args.seed, n=n, queries=args.queries, dim=args.dim, chunk=args.chunk, per_identity=args.images_per_identity
    )
    reference = np.load(reference_file)
    load = os.getloadavg()
    start = time.perf_counter()
    index = GalleryIndex.load(file)
    load_s = time.perf_counter() - start
    latencies = np.empty(len(queries))
    found = np.empty((len(queries), reference.shape[1]), np.int64)
    for i, query in enumerate(queries):
        start = time.perf_counter()
        result = index.search(query, args.topk)
        latencies[i] = time.perf_counter() - start
        found[i] = result.indices[0, : reference.shape[1]]
    hits = sum(len(np.intersect1d(f, r)) for f, r in zip(found, reference, strict=True))
    memory = _status_gb()
    return {
        "load_s": load_s,
        "p50_ms": 1e3 * float(np.percentile(latencies, 50)),
        "p99_ms": 1e3 * float(np.percentile(latencies, 99)),
        "recall": hits / reference.size,
        "serve_rss_gb": memory["peak"],
        "serve_anon_gb": memory.get("anon", float("nan")),
        "serve_file_gb": memory.get("file", float("nan")),
        "load_serve": load,
    }


def _run_worker(args: argparse.Namespace, what: str, n: int, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--large-worker", what, "--data", str(work), "--sizes", str(n)]
    for key in ("queries", "dim", "topk", "seed", "chunk", "images_per_identity", "nlist", "nprobe", "pq_m", "refine"):
        if getattr(args, key) is not None:
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{what} at {n}: worker failed\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _large_files(args: argparse.Namespace, work: Path, n: int) -> tuple[Path, Path]:
    tag = f"n{n}-d{args.dim}-s{args.seed}-c{args.chunk}-i{args.images_per_identity}"
    return work / f"ivfpq-{n}.index", work / f"reference-{tag}-q{args.queries}-k{args.topk}.npy"


def large_worker(args: argparse.Namespace) -> dict[str, Any]:
    n = int(args.sizes)
    file, reference_file = _large_files(args, args.data, n)
    if args.large_worker == "reference":
        start = time.perf_counter()
        queries = query_sample(
            args.seed, n=n, queries=args.queries, dim=args.dim, chunk=args.chunk, per_identity=args.images_per_identity
        )
        np.save(reference_file, large_reference(args, n, queries))
        return {"reference_s": time.perf_counter() - start}
    if args.large_worker == "build":
        return large_build_worker(args, n, file)
    return large_serve_worker(args, n, file, reference_file)


COLUMNS = [
    ("gallery", "{:>13,}", "n"),
    ("build s", "{:>10.1f}", "build_s"),
    ("build RSS GB", "{:>13.2f}", "build_rss_gb"),
    ("file GB", "{:>8.2f}", "file_gb"),
    ("load s", "{:>7.2f}", "load_s"),
    ("p50 ms", "{:>7.2f}", "p50_ms"),
    ("p99 ms", "{:>7.2f}", "p99_ms"),
    ("recall@10", "{:>10.4f}", "recall"),
    ("serve RSS GB", "{:>13.2f}", "serve_rss_gb"),
    ("anon GB", "{:>8.2f}", "serve_anon_gb"),
    ("file-backed GB", "{:>15.2f}", "serve_file_gb"),
]
#: The numbers extrapolated to 100 M (recall is not: it follows the settings, not a power law).
EXTRAPOLATED = ("build_s", "build_rss_gb", "file_gb", "load_s", "p50_ms", "p99_ms", "serve_rss_gb")


def _row(r: dict[str, Any]) -> str:
    cells = []
    for header, form, key in COLUMNS:
        value = r.get(key)
        cells.append(form.format(value) if isinstance(value, int | float) else f"{'-':>{len(header) + 1}}")
    return "".join(cells)


def extrapolate(rows: list[dict[str, Any]], target: int = 100_000_000) -> dict[str, Any]:
    """Each number of :data:`EXTRAPOLATED` at ``target`` images, on the power law through the two largest sizes."""
    a, b = sorted(rows, key=lambda r: r["n"])[-2:]
    out: dict[str, Any] = {"n": target}
    for key in EXTRAPOLATED:
        if a[key] > 0 and b[key] > 0:
            slope = math.log(b[key] / a[key]) / math.log(b["n"] / a["n"])
            out[key] = b[key] * (target / b["n"]) ** slope
    return out


def large_main(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    if args.queries is None:
        args.queries = 10_000
    with tempfile.TemporaryDirectory(prefix="search_speed.") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for n in sizes:
            file, reference_file = _large_files(args, work, n)
            row: dict[str, Any] = {"n": n}
            if not reference_file.exists():
                row.update(_run_worker(args, "reference", n, work))
            row.update(_run_worker(args, "build", n, work))
            row.update(_run_worker(args, "serve", n, work))
            if not args.work:
                file.unlink()  # before the next size's build needs the disk
            rows.append(row)
            if not args.json:
                _print_large(args, rows)
        report: dict[str, Any] = {"rows": rows}
        if len(rows) >= 2:
            report["extrapolated"] = extrapolate(rows)
        if args.json:
            print(json.dumps(report))
        elif "extrapolated" in report:
            print(_row(report["extrapolated"]) + "   <- 100 M: extrapolated from the two largest sizes, not measured")


def _print_large(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """The header once, then the newest row with its load averages and settings."""
    import faiss

    r = rows[-1]
    if len(rows) == 1:
        print(
            f"faiss-ivfpq, {args.dim}-d generated features ({args.images_per_identity} images per identity, "
            f"{args.chunk:,}-image chunks), {args.queries:,} one-query searches, top-{args.topk}; "
            f"{len(os.sched_getaffinity(0))} CPU cores, faiss {faiss.__version__} at its default threads"
        )
        print("RSS: peak (VmHWM); anon / file-backed: resident after serving; load: 1/5/15-min load averages")
        print("".join(f"{header:>{len(form.format(0))}}" for header, form, _ in COLUMNS))
    print(_row(r))
    settings = " ".join(f"{key}={value}" for key, value in r["params"].items())
    reference = f"reference {r['reference_s']:.0f} s; " if "reference_s" in r else ""
    load_build, load_serve = ("/".join(f"{v:.2f}" for v in r[key]) for key in ("load_build", "load_serve"))
    print(f"{'':>13}  {settings}; {reference}load at build {load_build}, at serving {load_serve}", flush=True)


def _faiss_missing() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000, help="gallery images")
    parser.add_argument("--queries", type=int, help="query images (default 1000; 10,000 with --sizes)")
    parser.add_argument("--dim", type=int, default=512, help="feature width")
    parser.add_argument("--identities", type=int, default=10_000, help="identities the images show")
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--small", action="store_true", help="a quick run: 2000 x 64 gallery, 100 queries")
    large = parser.add_argument_group("galleries past RAM: faiss-ivfpq at each size (see the module docstring)")
    large.add_argument("--sizes", help="comma-separated gallery sizes, e.g. 1000000,10000000")
    large.add_argument("--images-per-identity", type=int, default=10)
    large.add_argument("--work", help="folder for the index files and the cached references (default: temporary)")
    large.add_argument("--json", action="store_true", help="print the measurements as JSON")
    for name in ("nlist", "nprobe", "pq-m", "refine"):
        large.add_argument(f"--{name}", type=int, help="faiss-ivfpq setting (default: the library's)")
    parser.add_argument("--chunk", type=int, default=CHUNK, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--large-worker", choices=["reference", "build", "serve"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.large_worker:
        print(json.dumps(large_worker(args)))
        return
    if args.sizes:
        large_main(args)
        return
    if args.queries is None:
        args.queries = 1000
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
