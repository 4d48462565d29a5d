"""``svllreid train`` and ``svllreid pretrain``."""

from __future__ import annotations

import argparse

from svllreid.cli.common import config_or_resume
from svllreid.errors import ConfigError


def cmd_train(args: argparse.Namespace) -> int:
    from svllreid.training.run import train

    cfg = config_or_resume(args)
    if args.stage == "2" and not (args.init_from or args.resume):
        raise ConfigError("--stage 2 needs --from CKPT (a stage-1 checkpoint), or --resume")
    stages = {"both": (1, 2), "1": (1,), "2": (2,)}[args.stage]
    result = train(cfg, stages=stages, init_from=args.init_from, resume=args.resume, progress=not args.no_progress)
    print(f"run directory: {result.run_dir}")
    for choice in result.choices:
        print(choice)
    if result.evaluation is not None:
        print(f"results ({result.evaluation['protocol']} protocol), in %:")
        print("\n".join(result.results_text(pretrained=bool(cfg.model.pretrained))))
        from svllreid.metrics.summary import format_verification

        verification = format_verification(result.evaluation)
        if verification:
            print(f"delivered model on the test set, {verification}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from svllreid.metrics.text_retrieval import format_retrieval
    from svllreid.pretraining.pretrain import pretrain

    cfg = config_or_resume(args)
    result = pretrain(cfg, resume=args.resume, progress=not args.no_progress)
    print(f"run directory: {result.run_dir}")
    rows = {k: v for k, v in (("before", result.before), ("after", result.after)) if v is not None}
    if rows:
        split = cfg.pretrain.eval_split
        print(f"text-to-image retrieval on the {split} split (in %):")
        print(format_retrieval(rows))
    print(f"weights: {result.weights}  ({result.steps} steps, {result.seconds:.0f} s)")
    if result.report is not None:
        print(f"report:  {result.report}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train (stage 1, stage 2) and evaluate",
        description="Train CLIP-ReID / SVLL-ReID: stage 1 (prompt learning), stage 2 (image encoder), then "
        "evaluate. Writes a run directory with the resolved config, metrics, TensorBoard events, "
        "checkpoints and eval.json. Multi-GPU: torchrun --nproc-per-node N -m svllreid train CONFIG.",
    )
    train.add_argument("config", nargs="?", help="YAML config (see configs/)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides such as stage2.lr=1e-5")
    train.add_argument("--stage", choices=["both", "1", "2"], default="both", help="which stage(s) to run")
    train.add_argument("--from", dest="init_from", metavar="CKPT", help="start stage 2 from this checkpoint")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    train.set_defaults(func=cmd_train)

    pretrain = subparsers.add_parser(
        "pretrain",
        help="language-image pretraining of a CLIP on a caption dataset (contrastive, open_clip's ClipLoss)",
        description="Train every weight of an open_clip CLIP (from random weights, or from model.pretrained) with "
        "CLIP's contrastive loss on a caption dataset (data.dataset: synthetic_captions, captions_csv, cuhk_pedes, "
        "icfg_pedes, rstpreid), evaluating text-to-image retrieval before and after. Writes a run directory with "
        "config.yaml, metrics.jsonl, TensorBoard events, checkpoints/last.safetensors (for --resume), "
        "clip.safetensors (the weights: open_clip.create_model(ARCH, pretrained=...) and svllreid's "
        "model.pretrained load it), eval.json and report.html. Example: configs/pretrain/svll_synth_vit.yaml.",
    )
    pretrain.add_argument("config", nargs="?", help="YAML config (see configs/pretrain/)")
    pretrain.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides such as pretrain.epochs=5")
    pretrain.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    pretrain.set_defaults(func=cmd_pretrain)
