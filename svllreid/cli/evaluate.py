"""``svllreid eval``, ``svllreid eval-features`` and ``svllreid eval-text``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from svllreid.cli.common import add_inference_args, add_option_arg, parse_options
from svllreid.errors import ConfigError

if TYPE_CHECKING:
    from svllreid.evaluation.checkpoint_eval import CheckpointEvaluation


def cmd_eval_text(args: argparse.Namespace) -> int:
    from svllreid.data.datasets import load_caption_dataset
    from svllreid.evaluation.text_eval import evaluate_loaded_sides
    from svllreid.inference.text_encoding import load_sides
    from svllreid.metrics.text_retrieval import format_retrieval

    pretrained = None if args.pretrained in (None, "none") else args.pretrained
    if args.pretrained is not None and args.arch is None:
        raise ConfigError("--pretrained needs --arch (the CLIP architecture the weights are for)")
    loaded = load_sides(args.checkpoint, args.arch, pretrained, args.device)
    dataset = load_caption_dataset(args.dataset, args.root, **parse_options(args.option))
    evaluation = evaluate_loaded_sides(
        loaded,
        dataset.split(args.split),
        dataset=dataset.name,
        split=args.split,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.no_progress,
    )
    summary = evaluation.summary
    if args.out:
        from svllreid.fileio import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps({"model": loaded.description, **summary}, indent=2) + "\n")
    if args.json:
        print(json.dumps({"model": loaded.description, **summary}, indent=2))
        return 0
    print(f"model: {loaded.description}")
    print(
        f"dataset: {dataset.name} at {dataset.root}, {args.split} split: {summary['captions']} captions rank "
        f"{summary['images']} images (a match: an image of the caption's identity)"
    )
    print(format_retrieval({"text-to-image": summary}))
    return 0


def cmd_eval_features(args: argparse.Namespace) -> int:
    from svllreid.metrics import KReciprocal, evaluate
    from svllreid.metrics.feature_file import read_feature_pair
    from svllreid.metrics.summary import summarize
    from svllreid.metrics.verification import verify

    query, gallery = read_feature_pair(args.query, args.gallery)
    feats, pids = (query["feats"], gallery["feats"]), (query["pids"], gallery["pids"])
    arrays = (*feats, *pids, query.get("camids"), gallery.get("camids"))
    checked = None if args.no_verification else verify(*arrays, curves=False)
    result = evaluate(
        *arrays,
        max_rank=args.max_rank,
        rerank=KReciprocal(args.k1, args.k2, args.lambda_value) if args.rerank else None,
    )
    if args.json:
        print(json.dumps({**result.to_dict(), **({"verification": checked.to_dict()} if checked else {})}, indent=2))
        return 0
    rerank = f"; re-ranked (k1={args.k1}, k2={args.k2}, lambda={args.lambda_value})" if args.rerank else ""
    print(f"protocol: {result.protocol} ({result.protocol_rule}){rerank}")
    print(f"queries: {result.num_queries} ({result.num_skipped} skipped without a true match)")
    ranks = "  ".join(f"Rank-{k} {100 * result.rank(k):.2f}" for k in (1, 5, 10) if k <= args.max_rank)
    print(f"mAP {100 * result.mAP:.2f}  mINP {100 * result.mINP:.2f}  {ranks}")
    if checked is not None:
        print(verification_table(summarize("features", [("features", result)], [checked])))
    return 0


def _rate(value: float | None, width: int = 10) -> str:
    return f"{'–':>{width}}" if value is None else f"{100 * value:{width}.2f}"


def verification_table(summary: dict[str, Any]) -> str:
    """The verification metrics as a text table, one row per split (and the mean over several), then
    the thresholds: "same identity" when the cosine similarity is at least the threshold. "–": an FPR
    below one false accept of the split's pairs (not resolvable)."""
    rows = [(split["split"], split.get("verification")) for split in summary["splits"]]
    if any(checked is None for _, checked in rows):
        return "verification: not computed (a split has no same- or no different-identity pairs)"
    keys = list(rows[0][1]["tpr_at_fpr"])
    rates = "".join(f"{'TPR@' + k:>10}" for k in keys)
    header = f"{'split':<22}{'AUC':>8}{'EER':>8}{rates}   pairs (same / different)"
    lines = ["verification (cosine similarity; TPR at FPR)", header, "-" * len(header)]
    if len(rows) > 1:
        rows.append(("mean", summary["verification"]))
    for name, checked in rows:
        pairs = f"{checked['positive_pairs']:,} / {checked['negative_pairs']:,}"
        lines.append(
            f"{name[:21]:<22}{_rate(checked['auc'], 8)}{_rate(checked['eer'], 8)}"
            + "".join(_rate(checked["tpr_at_fpr"][k]) for k in keys)
            + f"   {pairs}"
        )
    mean = summary["verification"] if len(rows) > 1 else rows[0][1]
    thresholds = ", ".join(f"FPR {k}: {v:.4f}" for k, v in mean["threshold_at_fpr"].items() if v is not None)
    eer_at = "–" if mean["eer_threshold"] is None else f"{mean['eer_threshold']:.4f}"
    lines.append(f"thresholds (same identity when similarity >= it): {thresholds or '–'}; EER at {eer_at}")
    lines.append(
        "(these thresholds are this split's own; a threshold for deployment is chosen on held-out identities by "
        "'svllreid calibrate')"
    )
    if not mean["exact"]:
        lines.append(
            f"(different-identity scores binned: AUC within {mean['auc_bound']:.1e}, EER within "
            f"{mean['eer_bound']:.1e} of the exact values)"
        )
    return "\n".join(lines)


def summary_table(summary: dict[str, Any]) -> str:
    """The metrics as a small text table, one row per split (and the mean over several)."""
    from svllreid.metrics.summary import METRICS

    header = f"{'split':<22}{'mAP':>8}{'mINP':>8}{'R-1':>8}{'R-5':>8}{'R-10':>8}"
    lines = [header, "-" * len(header)]

    def pct(value: float | None) -> str:
        return f"{'–':>8}" if value is None else f"{100 * value:8.2f}"

    for split in summary["splits"]:
        lines.append(f"{split['split'][:21]:<22}" + "".join(pct(split[k]) for k in METRICS))
    if len(summary["splits"]) > 1:
        lines.append(f"{'mean':<22}" + "".join(pct(summary[k]) for k in METRICS))
        lines.append(f"{'std':<22}" + "".join(pct(summary.get(f"{k}_std")) for k in METRICS))
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    from svllreid.distributed import INFERENCE_TIMEOUT, launch_group, run_everywhere, run_on_main
    from svllreid.evaluation.checkpoint_eval import evaluate_checkpoint

    # Under torchrun the processes share the feature extraction; the main one reports.
    # An exported file runs on the CPU, so its processes talk over gloo whatever --device says.
    with launch_group("cpu" if args.model else args.device, timeout=INFERENCE_TIMEOUT) as (info, device):
        run_everywhere(lambda: _check_eval_args(args), info)  # refused once, by the main process
        result = evaluate_checkpoint(
            args.checkpoint,
            dataset=args.dataset,
            root=args.root,
            options=parse_options(args.option) or None,  # none given: the training options (same dataset)
            rerank=args.rerank,
            flip=args.flip,
            out_dir=args.out,
            device=str(device),
            batch_size=args.batch_size,
            num_workers=args.workers,
            progress=not args.no_progress,
            dist=info,
            model_file=args.model,
        )
        run_on_main(lambda: _show_evaluation(args, result), info)
    return 0


def _check_eval_args(args: argparse.Namespace) -> None:
    if args.root is not None and args.dataset is None:
        raise ConfigError("--root needs --dataset (the dataset's name, see 'svllreid data list')")


def _show_evaluation(args: argparse.Namespace, result: CheckpointEvaluation | None) -> None:
    """``eval``'s report files, then its table (or JSON)."""
    from svllreid.metrics.summary import format_summary

    assert result is not None  # the main process's evaluation
    if not args.no_report:
        from svllreid.evaluation.reporting import write_evaluation_report

        result.files.update(write_evaluation_report(result))
    summary = result.summary
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"model: {result.trained.describe()}")
    if result.model_file is not None:
        print(f"features: {result.model_file}")
    print(f"dataset: {result.dataset.name} at {result.dataset.root}")
    rerank = "; re-ranked (k-reciprocal)" if summary["reranked"] else ""
    print(f"protocol: {summary['protocol']} ({summary['protocol_rule']}){rerank}")
    for note in result.notes:
        print(f"note: {note}")
    print(summary_table(summary))
    print(format_summary(summary))
    if "verification" in summary:
        print(verification_table(summary))
    for name, path in result.files.items():
        print(f"{name:<14} {path}")


def register(subparsers: argparse._SubParsersAction) -> None:
    eval_text = subparsers.add_parser(
        "eval-text",
        help="text-to-image retrieval (R@1/5/10, mAP, mINP) of a CLIP or a trained model on a caption dataset",
        description="Each caption of the split ranks all of the split's images by cosine similarity; a match is an "
        "image of the caption's identity (the caption's own image where identities are unknown). The network is "
        "a trained ReID run or a pretraining run (--checkpoint), or a CLIP (--arch with --pretrained: a weights "
        "file, an open_clip tag, svllreid's shipped 'svll-synth', or 'none' for random weights).",
    )
    eval_text.add_argument("--checkpoint", default=None, help="a trained ReID checkpoint / run, or a pretraining run")
    eval_text.add_argument("--arch", default=None, help="CLIP architecture (instead of --checkpoint)")
    eval_text.add_argument("--pretrained", default=None, help="its weights: file, tag, 'svll-synth' or 'none'")
    eval_text.add_argument("--dataset", required=True, help="caption dataset (see 'svllreid data list')")
    eval_text.add_argument("--root", default="", help="its folder (may be empty for synthetic_captions)")
    add_option_arg(eval_text)
    eval_text.add_argument("--split", default="test", choices=["train", "val", "test"], help="split (default test)")
    eval_text.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    eval_text.add_argument("--batch-size", type=int, default=256, help="images / captions per batch")
    eval_text.add_argument("--workers", type=int, default=0, help="image loading processes")
    eval_text.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    eval_text.add_argument("--json", action="store_true", help="print JSON")
    eval_text.add_argument("--no-progress", action="store_true", help="no progress bars")
    eval_text.set_defaults(func=cmd_eval_text)

    eval_features = subparsers.add_parser(
        "eval-features",
        help="mAP / CMC / mINP of features extracted elsewhere",
        description="Evaluate query and gallery features saved as .npz files with arrays 'feats' [N, D], "
        "'pids' [N] and optionally 'camids' [N] (with cameras, same-identity-same-camera gallery images are "
        "junk; without, nothing is excluded). Ranking is by Euclidean distance of the given features; the verification "
        "metrics (ROC AUC, EER, TPR at FPR 1e-4 to 1e-1 with thresholds) by their cosine similarity.",
    )
    eval_features.add_argument("--query", required=True, help="query .npz")
    eval_features.add_argument("--gallery", required=True, help="gallery .npz")
    eval_features.add_argument("--max-rank", type=int, default=50, help="length of the CMC curve (default 50)")
    eval_features.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (Zhong et al. 2017)")
    eval_features.add_argument("--k1", type=int, default=20, help="re-ranking k1 (default 20)")
    eval_features.add_argument("--k2", type=int, default=6, help="re-ranking k2 (default 6)")
    eval_features.add_argument(
        "--lambda", dest="lambda_value", type=float, default=0.3, help="re-ranking lambda (default 0.3)"
    )
    eval_features.add_argument("--json", action="store_true", help="print JSON (with the whole CMC curve)")
    eval_features.add_argument(
        "--no-verification", action="store_true", help="skip the verification metrics (ROC AUC, EER, TPR at FPR)"
    )
    eval_features.set_defaults(func=cmd_eval_features)

    evaluate = subparsers.add_parser(
        "eval",
        help="evaluate a trained checkpoint on any supported dataset (table, JSON, CMC, ranked lists, report)",
        description="Evaluate a checkpoint (a .safetensors file or a run directory) on its own test set or, with "
        "--dataset/--root, on another one (cross-domain). Prints the metrics and writes eval.json, metrics.png, "
        "cmc.png, ranked_{best,median,worst}.png, embedding.png and report.html to --out (default: "
        "<run>/eval/<dataset> for a run's checkpoint).",
    )
    evaluate.add_argument(
        "--checkpoint", required=True, help="checkpoint file, run directory, model folder or hf-hub:ORG/NAME"
    )
    evaluate.add_argument(
        "--model",
        metavar="FILE.onnx|FILE.xml",
        default=None,
        help="evaluate this export of the checkpoint's network (ONNX, OpenVINO, INT8 included) on the CPU instead "
        "of the network itself: what INT8 costs, measured",
    )
    evaluate.add_argument("--dataset", default=None, help="dataset name (default: the one the model was trained on)")
    evaluate.add_argument("--root", default=None, help="dataset folder (with --dataset)")
    add_option_arg(evaluate)
    evaluate.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1/k2/lambda of the config)")
    evaluate.add_argument("--flip", action="store_true", help="add the features of horizontally flipped images")
    evaluate.add_argument("--out", default=None, help="output folder")
    evaluate.add_argument("--json", action="store_true", help="print the JSON summary instead of the table")
    evaluate.add_argument("--no-report", action="store_true", help="only eval.json (no figures, no report.html)")
    add_inference_args(evaluate)
    evaluate.set_defaults(func=cmd_eval)
