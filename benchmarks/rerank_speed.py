"""Speed and peak memory of k-reciprocal re-ranking (:mod:`svllreid.metrics.rerank`) on synthetic
Market-1501- and MSMT17-sized problems.

Every size runs in a fresh subprocess, so that its peak RSS (``resource.getrusage``) is its own. The
features are seeded random 64-d L2-normalised float32 vectors with identity structure (a centre per
identity, a shift per camera, per-image noise). The wall time is of the whole call (k1=20, k2=6,
lambda=0.3): :func:`k_reciprocal_rerank` returning ``[Q, G]`` (``--mode full``), or
:func:`iter_rerank_chunks` with each chunk reduced to its nearest gallery image and dropped
(``--mode chunks``). CPU time (user + system, all threads) and the load average at the start are
printed too, since other processes on a shared machine lengthen the wall time. The table holds measured
numbers only.

    python benchmarks/rerank_speed.py --sizes market msmt
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

#: name: (query images, gallery images, identities, cameras)
SIZES = {
    "tiny": (200, 1000, 50, 4),
    "market": (3368, 15913, 751, 6),
    "msmt": (11659, 82161, 3060, 15),
}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_features(name: str, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Query and gallery features of the given size."""
    nq, ng, nids, ncams = SIZES[name]
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((nids, dim)))
    cam_shift = 0.35 * _unit(rng.standard_normal((ncams, dim)))

    def images(n: int) -> np.ndarray:
        pids, cams = rng.integers(0, nids, n), rng.integers(0, ncams, n)
        return _unit(centres[pids] + cam_shift[cams] + rng.standard_normal((n, dim)) / np.sqrt(dim))

    return images(nq), images(ng)


def _rusage() -> tuple[float, float]:
    """Peak RSS (GB; ru_maxrss is KiB on Linux) and CPU seconds of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_maxrss / 2**20, r.ru_utime + r.ru_stime


def worker(name: str, device: str, mode: str, chunk_size: int | None, threads: int | None) -> dict[str, object]:
    import torch

    from svllreid.metrics.rerank import default_chunk_size, iter_rerank_chunks, k_reciprocal_rerank

    if threads:
        torch.set_num_threads(threads)
    qf_np, gf_np = make_features(name)
    qf, gf = torch.from_numpy(qf_np).to(device), torch.from_numpy(gf_np).to(device)
    rss_before, cpu_before = _rusage()
    load = os.getloadavg()[0]
    start = time.perf_counter()
    if mode == "full":
        dist = k_reciprocal_rerank(qf, gf, chunk_size=chunk_size)
        nearest = dist.argmin(1)
    else:
        nearest = torch.empty(len(qf), dtype=torch.int64, device=qf.device)
        for lo, part in iter_rerank_chunks(qf, gf, chunk_size=chunk_size):
            nearest[lo : lo + len(part)] = part.argmin(1)
    if qf.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    rss, cpu = _rusage()
    return {
        "size": f"{name} {len(qf)}x{len(gf)}",
        "device": str(qf.device),
        "mode": mode,
        "chunk": chunk_size or default_chunk_size(len(qf) + len(gf)),
        "threads": torch.get_num_threads(),
        "wall_s": wall,
        "cpu_s": cpu - cpu_before,
        "load": load,
        "peak_rss_gb": rss,
        "peak_rss_before_gb": rss_before,
        "checksum": int(nearest.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["market", "msmt"])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--mode", choices=["full", "chunks"], default="full")
    parser.add_argument("--chunk-size", type=int, default=None, help="rows per chunk (default: automatic)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=1, help="fresh subprocesses per size")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.device, args.mode, args.chunk_size, args.threads)))
        return
    if not args.json:
        print(
            f"{'size':<22}{'device':<8}{'mode':<8}{'chunk':>6}{'threads':>8}{'wall s':>9}{'cpu s':>9}"
            f"{'load':>6}{'peak RSS GB':>13}"
        )
    for name in args.sizes:
        for _ in range(args.repeat):
            cmd = [sys.executable, __file__, "--worker", name, "--device", args.device, "--mode", args.mode]
            if args.chunk_size:
                cmd += ["--chunk-size", str(args.chunk_size)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{name}: worker failed\n{proc.stderr}")
            line = proc.stdout.strip().splitlines()[-1]
            if args.json:
                print(line, flush=True)
                continue
            r = json.loads(line)
            print(
                f"{r['size']:<22}{r['device']:<8}{r['mode']:<8}{r['chunk']:>6}{r['threads']:>8}{r['wall_s']:>9.2f}"
                f"{r['cpu_s']:>9.2f}{r['load']:>6.1f}{r['peak_rss_gb']:>13.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
