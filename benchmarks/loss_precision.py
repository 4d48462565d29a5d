"""How far half-precision autocast moves the triplet loss's distances, and what svllreid's fp32 losses leave.

For P×K batches of unnormalised features at norm 20 (as ReID features are), with images spread
around their identities by several amounts, it measures against an fp64 reference:

- the largest error of the pairwise distances when their matmul runs under autocast (what the
  losses did before they turned autocast off locally);
- the error of the batch-hard triplet loss (margin 0.3) computed from those distances, and the share
  of anchors whose hardest positive or negative they change;
- the error of ``svllreid.losses.triplet_loss`` called under the same autocast.

    python benchmarks/loss_precision.py                   # CPU, bf16 autocast
    python benchmarks/loss_precision.py --dtype fp16      # fp16 autocast
    python benchmarks/loss_precision.py --device cuda     # on a GPU
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from svllreid.losses import triplet_loss


def distances(features: torch.Tensor) -> torch.Tensor:
    """The reference's expanded Euclidean distances; the matmul runs in whatever autocast is active."""
    sq = features.pow(2).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2 * (features @ features.T)).float().clamp(min=1e-12).sqrt()


def hard_triplet(dist: torch.Tensor, labels: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch-hard loss, and each anchor's (hardest positive, hardest negative) indices ``[B, 2]``."""
    same = labels[:, None] == labels[None, :]
    hardest_positive = torch.where(same, dist, 0.0).max(dim=1)
    hardest_negative = torch.where(same, torch.inf, dist).min(dim=1)
    loss = torch.relu(hardest_positive.values - hardest_negative.values + margin).mean()
    return loss, torch.stack([hardest_positive.indices, hardest_negative.indices], dim=1)


def measure(device: torch.device, dtype: torch.dtype, spread: float, dim: int, trials: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(16).repeat_interleave(4).to(device)  # P×K = 16×4
    worst = {"distance": 0.0, "loss_autocast_matmul": 0.0, "loss_svllreid": 0.0}
    flips, losses = [], []
    same_id = []
    for _ in range(trials):
        # Features share a common direction (ReID features are far from orthogonal); identities sit at
        # 0.3 around it and images at ``spread`` around their identity, so that hinges are active.
        common = torch.randn(1, dim, generator=gen)
        centers = common + 0.3 * torch.randn(16, dim, generator=gen)
        feats = centers.repeat_interleave(4, dim=0) + spread * torch.randn(64, dim, generator=gen)
        feats = (20 * feats / feats.norm(dim=1, keepdim=True)).to(device)  # norm 20
        exact = distances(feats.double())
        same_id.append(exact[labels[:, None] == labels[None, :]].max().item())
        with torch.autocast(device.type, dtype=dtype):
            rounded = distances(feats)
            ours = triplet_loss(feats, labels, margin=0.3)
        off_diagonal = ~torch.eye(64, dtype=torch.bool, device=device)
        worst["distance"] = max(worst["distance"], (rounded - exact)[off_diagonal].abs().max().item())
        reference, chosen = hard_triplet(exact, labels, 0.3)
        approximate, approximate_chosen = hard_triplet(rounded.double(), labels, 0.3)
        flips.append((approximate_chosen != chosen).any(dim=1).double().mean().item())
        losses.append(reference.item())
        worst["loss_autocast_matmul"] = max(worst["loss_autocast_matmul"], (approximate - reference).abs().item())
        worst["loss_svllreid"] = max(worst["loss_svllreid"], (ours.double() - reference).abs().item())
    return {
        "spread": spread,
        "largest_same_id_distance": max(same_id),
        "mean_loss": sum(losses) / len(losses),
        "mining_changed": sum(flips) / len(flips),
        **worst,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--dim", type=int, default=1280, help="feature width (1280: ViT-B/16's f12 + f_proj)")
    parser.add_argument("--trials", type=int, default=20, help="random batches per spread")
    parser.add_argument("--spreads", type=float, nargs="+", default=[0.1, 0.3, 0.6, 1.0], help="within identity")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    rows = [measure(device, dtype, s, args.dim, args.trials, args.seed) for s in args.spreads]
    header = {
        "device": str(device),
        "autocast": args.dtype,
        "batch": "16 x 4 (P x K)",
        "feature_dim": args.dim,
        "feature_norm": 20,
        "trials_per_spread": args.trials,
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps({**header, "rows": rows}))
        return 0
    print(", ".join(f"{k} {v}" for k, v in header.items()))
    print("largest error against fp64, over all trials (margin 0.3):")
    print(
        f"{'spread':>7} {'same-id dist':>13} {'mean loss':>9} {'dist error':>11} {'loss error':>11} "
        f"{'mining changed':>15} {'svllreid loss error':>20}"
    )
    for r in rows:
        print(
            f"{r['spread']:>7.2f} {r['largest_same_id_distance']:>13.2f} {r['mean_loss']:>9.4f} {r['distance']:>11.4f} "
            f"{r['loss_autocast_matmul']:>11.4f} {100 * r['mining_changed']:>14.1f}% {r['loss_svllreid']:>20.2e}"
        )
    print(
        "dist/loss error, mining changed (mean share of anchors): the distance matmul under autocast; "
        "svllreid: triplet_loss under the same autocast"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
