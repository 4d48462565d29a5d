"""Time and peak memory of the verification metrics (:mod:`svllreid.metrics.verification`) next to the
ranking metrics (:func:`svllreid.metrics.evaluate`) on the same synthetic Market-1501- and MSMT17-sized
problems (those of ``benchmarks/eval_speed.py``).

Each (size, metric) runs in a fresh subprocess, so that its peak RSS is its own; "call" is the peak of
the metric call's own allocations (tracemalloc, which numpy reports its arrays to), without the
problem's features and the interpreter. ``verify`` keeps every
different-identity score exactly while they fit 512 MiB (Market's 53 M pairs) and bins them beyond
(MSMT17's 958 M); ``--binned`` forces the binned path, to compare it with the exact one on a size where
both run: the differences and the bounds the binned path states are printed.

    python benchmarks/verification_speed.py --sizes market msmt
    python benchmarks/verification_speed.py --sizes market --binned
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_speed import SIZES, make_problem  # the sibling benchmark's problems

#: A small size for the tests (query images, gallery images, identities, cameras, distractors).
SIZES = {**SIZES, "small": (300, 2000, 100, 4, 0)}


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def worker(
    name: str, metric: str, dim: int, noise: float, binned: bool = False, sklearn: bool = False
) -> dict[str, Any]:
    """One size and metric (``ranking``, ``verification``, or ``both`` to compare binned with exact);
    ``sklearn``: also scikit-learn's ROC curve of the exact path's scores, compared with its metrics."""
    import eval_speed
    import numpy as np

    from svllreid.metrics import evaluate
    from svllreid.metrics.verification import EXACT_BYTES, FPR_TARGETS, pair_scores

    eval_speed.SIZES.update(SIZES)
    load = os.getloadavg()[0]
    p = make_problem(name, dim=dim, noise=noise)
    args = (p["qf"], p["gf"], p["qp"], p["gp"], p["qc"], p["gc"])
    row: dict[str, Any] = {"size": f"{name} {len(p['qp'])}x{len(p['gp'])}", "dim": dim, "metric": metric, "load": load}
    # The call's own allocations (numpy reports its buffers to tracemalloc), apart from the problem's.
    tracemalloc.start()
    start = time.perf_counter()
    if metric == "ranking":
        result = evaluate(*args)
        row.update(wall_s=time.perf_counter() - start, mAP=result.mAP, rank1=result.rank(1))
    else:
        scores = pair_scores(*args, exact_bytes=0 if binned else EXACT_BYTES)
        summary = scores.result()
        row.update(
            wall_s=time.perf_counter() - start,
            path="exact" if scores.exact else "binned",
            pairs=scores.num_positive + scores.num_negative,
            auc=summary.auc,
            auc_bound=summary.auc_bound,
            eer=summary.eer,
            eer_bound=summary.eer_bound,
            tpr=[pt.tpr if pt.resolvable else None for pt in summary.points],
            tpr_bound=[pt.tpr_bound for pt in summary.points],
        )
        if sklearn and scores.exact:  # scikit-learn's ROC of the same scores: the peer of the exact path
            from sklearn.metrics import roc_auc_score, roc_curve

            same = np.concatenate([np.ones(scores.num_positive, bool), np.zeros(scores.num_negative, bool)])
            values = np.concatenate([scores.positives, scores.negatives])
            fpr, tpr, thresholds = roc_curve(same, values, drop_intermediate=False)
            last = [int(np.flatnonzero(fpr <= target)[-1]) for target in FPR_TARGETS]
            row.update(
                sklearn_auc_diff=abs(float(roc_auc_score(same, values)) - summary.auc),
                sklearn_tpr_equal=all(
                    tpr[i] == pt.tpr and thresholds[i] == pt.threshold
                    for i, pt in zip(last, summary.points, strict=True)
                ),
            )
        if metric == "both":  # the exact path on the same pairs, to measure the binned one's error
            exact = pair_scores(*args).result(curves=False)
            row.update(
                exact_auc=exact.auc,
                exact_eer=exact.eer,
                exact_tpr=[pt.tpr for pt in exact.points],
                targets=list(FPR_TARGETS),
            )
    row["call_peak_gb"] = tracemalloc.get_traced_memory()[1] / 2**30
    tracemalloc.stop()
    row["peak_rss_gb"] = _peak_rss_gb()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["market", "msmt"])
    parser.add_argument("--dim", type=int, default=64, help="feature width (64; 1280 is a ViT-B/16's test feature)")
    parser.add_argument("--noise", type=float, default=1.0, help="per-image noise of the synthetic features")
    parser.add_argument("--binned", action="store_true", help="force the binned path and compare it with the exact one")
    parser.add_argument(
        "--sklearn", action="store_true", help="compare the exact path with scikit-learn's roc_curve (slow, memory)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, metric = args.worker
        print(json.dumps(worker(name, metric, args.dim, args.noise, binned=args.binned, sklearn=args.sklearn)))
        return
    rows = []
    for name in args.sizes:
        for metric in ("ranking", "both" if args.binned else "verification"):
            cmd = [sys.executable, __file__, "--worker", name, metric, "--dim", str(args.dim)]
            cmd += ["--noise", str(args.noise)] + (["--binned"] if args.binned else [])
            cmd += ["--sklearn"] if args.sklearn else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{name} {metric}: worker failed\n{proc.stderr}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            if args.json:
                continue
            if metric == "ranking":
                print(
                    f"{row['size']:<22} {args.dim:>4}-d  ranking       {row['wall_s']:8.2f} s "
                    f"{row['peak_rss_gb']:6.2f} GB (call {row['call_peak_gb']:.2f})   mAP {row['mAP']:.4f}  "
                    f"load {row['load']:.2f}",
                    flush=True,
                )
                continue
            tprs = "  ".join(
                f"TPR@{t:g} {v:.4f}" if v is not None else f"TPR@{t:g} –"
                for t, v in zip((1e-4, 1e-3, 1e-2, 1e-1), row["tpr"], strict=True)
            )
            print(
                f"{row['size']:<22} {args.dim:>4}-d  verification  {row['wall_s']:8.2f} s "
                f"{row['peak_rss_gb']:6.2f} GB (call {row['call_peak_gb']:.2f})   {row['path']}, "
                f"{row['pairs']:,} pairs: "
                f"AUC {row['auc']:.6f} (± {row['auc_bound']:.1e}), "
                f"EER {row['eer']:.5f} (± {row['eer_bound']:.1e}), {tprs}, TPR bounds "
                + ", ".join(f"{b:.1e}" for b in row["tpr_bound"])
                + f"  load {row['load']:.2f}",
                flush=True,
            )
            if "sklearn_auc_diff" in row:
                same = "equal" if row["sklearn_tpr_equal"] else "NOT equal"
                print(
                    f"{'':<22} scikit-learn on the same scores: AUC differs by {row['sklearn_auc_diff']:.1e}; TPR and "
                    f"threshold at the four targets {same}",
                    flush=True,
                )
            if metric == "both":
                errors = [abs(a - b) for a, b in zip(row["tpr"], row["exact_tpr"], strict=True) if a is not None]
                print(
                    f"{'':<22} binned - exact: AUC {abs(row['auc'] - row['exact_auc']):.1e}, EER "
                    f"{abs(row['eer'] - row['exact_eer']):.1e}, TPR at the targets at most {max(errors):.1e}",
                    flush=True,
                )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
