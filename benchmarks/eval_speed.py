"""Speed and peak memory of :func:`svllreid.metrics.evaluate` on synthetic Market-1501- and MSMT17-sized problems.

Every size runs in a fresh subprocess, so that its peak RSS (``resource.getrusage``) is its own. The
problems are seeded random 64-d L2-normalised features with identity structure (a centre per identity,
a shift per camera, per-image noise), so that the metrics are neither 0 nor 1; ``--noise`` sets the
per-image noise (larger = harder; very large = no structure, the slow case of the algorithm).
The wall time is of the whole ``evaluate`` call; the table holds measured numbers only.

    python benchmarks/eval_speed.py --sizes market msmt --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

#: name: (query images, gallery images, identities, cameras, gallery distractor images)
SIZES = {
    "market": (3368, 15913, 751, 6, 2793),
    "msmt": (11659, 82161, 3060, 15, 0),
}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_problem(name: str, dim: int = 64, noise: float = 1.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Features, identities and cameras of a synthetic query/gallery split of the given size."""
    nq, ng, nids, ncams, ndistract = SIZES[name]
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((nids, dim)))
    cam_shift = 0.35 * _unit(rng.standard_normal((ncams, dim)))

    def images(pids: np.ndarray, cams: np.ndarray) -> np.ndarray:
        noisy = centres[pids] + cam_shift[cams] + noise * rng.standard_normal((len(pids), dim)) / np.sqrt(dim)
        return _unit(noisy)

    qp = rng.integers(0, nids, nq)
    qc = rng.integers(0, ncams, nq)
    n_id = ng - ndistract
    gp = np.concatenate([qp[rng.integers(0, nq, n_id)], np.full(ndistract, nids)])  # distractors: one id
    gc = rng.integers(0, ncams, ng)
    gf = images(np.minimum(gp, nids - 1), gc)
    gf[n_id:] = _unit(rng.standard_normal((ndistract, dim)))
    return {"qf": images(qp, qc), "gf": gf, "qp": qp, "gp": gp, "qc": qc, "gc": gc}


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _gemm_only(qf: Any, gf: Any, chunk: int) -> float:
    """Seconds of the bare distance GEMMs of the same chunks (context: the floor of the whole call)."""
    import torch

    if qf.device.type == "cpu":
        q, g = qf.numpy(), gf.numpy()
        out = np.empty((chunk, len(g)), q.dtype)
        start = time.perf_counter()
        for lo in range(0, len(q), chunk):
            np.matmul(q[lo : lo + chunk], g.T, out=out[: len(q[lo : lo + chunk])])
        return time.perf_counter() - start
    out_t = torch.empty((chunk, len(gf)), dtype=qf.dtype, device=qf.device)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for lo in range(0, len(qf), chunk):
        torch.mm(qf[lo : lo + chunk], gf.T, out=out_t[: len(qf[lo : lo + chunk])])
    torch.cuda.synchronize()
    return time.perf_counter() - start


def worker(
    name: str, device: str, dtype: str, chunk_size: int | None, noise: float, rerank: bool = False
) -> dict[str, Any]:
    """Run one size (in this fresh process) and return its measurements."""
    import torch

    from svllreid.metrics import KReciprocal, evaluate
    from svllreid.metrics.ranking import default_chunk_size

    load = os.getloadavg()[0]
    p = make_problem(name, noise=noise)
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    qf = torch.from_numpy(p["qf"]).to(device=device, dtype=torch_dtype)
    gf = torch.from_numpy(p["gf"]).to(device=device, dtype=torch_dtype)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    reranker = KReciprocal() if rerank else None
    result = evaluate(qf, gf, p["qp"], p["gp"], p["qc"], p["gc"], chunk_size=chunk_size, rerank=reranker)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    peak_rss = _peak_rss_gb()
    peak_gpu = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    chunk = chunk_size or default_chunk_size(result.num_evaluated, len(p["gp"]), qf.device, qf.dtype)
    return {
        "size": f"{name} {len(p['qp'])}x{len(p['gp'])}{' rerank' if rerank else ''}",
        "device": str(qf.device),
        "dtype": dtype,
        "chunk": chunk,
        "wall_s": wall,
        "gemm_s": float("nan") if rerank else _gemm_only(qf, gf, chunk),
        "peak_rss_gb": peak_rss,
        "peak_gpu_gb": peak_gpu,
        "mAP": result.mAP,
        "rank1": result.rank(1),
        "mINP": result.mINP,
        "load": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["market", "msmt"])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--chunk-size", type=int, default=None, help="queries per chunk (default: automatic)")
    parser.add_argument("--noise", type=float, default=1.0, help="per-image noise of the synthetic features")
    parser.add_argument("--repeat", type=int, default=1, help="fresh subprocesses per size")
    parser.add_argument("--rerank", action="store_true", help="evaluate(rerank=KReciprocal()): k-reciprocal re-ranking")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.device, args.dtype, args.chunk_size, args.noise, args.rerank)))
        return
    print(f"noise {args.noise}; wall = whole evaluate() call; GEMM = the bare distance GEMMs of the same chunks;")
    print("load = 1-minute load average when the run started; peak RSS of the fresh process (GPU: allocated)")
    print(
        f"{'size':<29}{'device':<8}{'dtype':<9}{'chunk':>6}{'wall s':>9}{'GEMM s':>8}{'peak GB':>9}"
        f"{'mAP':>8}{'Rank-1':>8}{'mINP':>8}{'load':>6}"
    )
    for name in args.sizes:
        for _ in range(args.repeat):
            cmd = [sys.executable, __file__, "--worker", name, "--device", args.device, "--dtype", args.dtype]
            cmd += ["--noise", str(args.noise)] + (["--rerank"] if args.rerank else [])
            if args.chunk_size:
                cmd += ["--chunk-size", str(args.chunk_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{name}: worker failed\n{proc.stderr}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            peak = r["peak_rss_gb"] if r["peak_gpu_gb"] is None else r["peak_gpu_gb"]
            print(
                f"{r['size']:<29}{r['device']:<8}{r['dtype']:<9}{r['chunk']:>6}{r['wall_s']:>9.3f}{r['gemm_s']:>8.3f}"
                f"{peak:>9.2f}{r['mAP']:>8.4f}{r['rank1']:>8.4f}{r['mINP']:>8.4f}{r['load']:>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
