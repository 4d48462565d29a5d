"""The ``svllreid`` command line. With the factories, the only code that sees a whole config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from svllreid.config import config_to_yaml, load_config, parse_override
from svllreid.errors import ConfigError, SvllreidError
from svllreid.version import __version__

EXAMPLES = """\
examples:
  svllreid demo
  svllreid data synth --out data/synthetic --ids 100 --cameras 6
  svllreid data stats --dataset market1501 --root /data/Market-1501-v15.09.15 --json
  svllreid data check --dataset vehicleid --root /data/VehicleID_V1.0 -o test_size=1600
  svllreid config show configs/synthetic_tiny.yaml stage2.lr=1e-5
  svllreid model info --arch ViT-B-16 --image-size 256 128 --stride 12 --sie camera --num-cameras 6
  svllreid eval --checkpoint runs/market-svll --dataset dukemtmc --root /data/DukeMTMC-reID --rerank
  svllreid extract --checkpoint runs/market-svll --images my_photos/ --out feats.npz
  svllreid index build --checkpoint runs/market-svll --images gallery/ --out gallery.index
  svllreid search --index gallery.index --query person.jpg --topk 10 --out ranked.png
"""


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    options = {}
    for text in pairs:
        try:
            key, value = parse_override(text)
        except ConfigError as err:
            raise ConfigError(f"dataset option {text!r} must look like key=value") from err
        options[key] = value
    return options


def _add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="registered dataset name (see 'svllreid data list')")
    parser.add_argument(
        "--root",
        default="",
        help="dataset folder (a CSV manifest for 'folder'; may be empty for 'synthetic')",
    )
    _add_option_arg(parser)


def _add_option_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, repeatable (e.g. test_size=1600, camera_regex='c(\\d+)')",
    )


def _add_synth_size_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ids", type=int, default=100, help="identities (default 100)")
    parser.add_argument("--cameras", type=int, default=6, help="cameras, 2-9 (default 6)")
    parser.add_argument("--images-per-camera", type=int, default=4, help="images per identity and camera (default 4)")


def _add_inference_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="image-loading processes (default 0: in process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_config_show(args: argparse.Namespace) -> int:
    path = {"defaults": None, "demo": DEMO_RECIPE}.get(args.config, args.config)
    cfg = load_config(path, args.overrides)
    print(config_to_yaml(cfg), end="")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from svllreid.data.datasets import available_datasets, get_dataset_entry

    for name in available_datasets():
        entry = get_dataset_entry(name)
        options = ", ".join(f"{k}={v!r}" for k, v in entry.options.items()) or "no options"
        print(f"{name:<18} {entry.task:<8} {entry.kind:<8} {entry.description}\n{'':<36}options: {options}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from svllreid.data.synthetic import PRETRAIN_WORLD, generate_synthetic

    sizes = {
        "num_ids": args.ids,
        "num_cameras": args.cameras,
        "images_per_camera": args.images_per_camera,
        "seed": args.seed,
        "train_ids": args.train_ids,
    }
    if args.pretraining_world:
        world = PRETRAIN_WORLD
        sizes = {
            "num_ids": world["ids"],
            "num_cameras": world["cameras"],
            "images_per_camera": world["images_per_camera"],
            "seed": world["seed"],
            "train_ids": world["train_ids"],
        }
    summary = generate_synthetic(args.out, workers=args.workers, **sizes)
    counts = ", ".join(f"{split} {n}" for split, n in summary.images.items())
    print(
        f"wrote {sum(summary.images.values())} images of {summary.num_ids} identities × {summary.num_cameras} "
        f"cameras to {summary.root} in {summary.seconds:.1f} s ({counts}), with their captions in captions.jsonl"
    )
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from svllreid.data.stats import dataset_stats, format_stats

    stats = dataset_stats(args.dataset, args.root, **_parse_options(args.option))
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(f"dataset {args.dataset} at {args.root or '(default location)'}")
        print(format_stats(stats))
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from svllreid.data.check import Mode, check_dataset

    mode: Mode = "quick" if args.quick else "full"
    report = check_dataset(args.dataset, args.root, mode=mode, workers=args.workers, **_parse_options(args.option))
    print(report.format())
    return 0 if report.ok else 1


def cmd_train(args: argparse.Namespace) -> int:
    from svllreid.engine.run import train
    from svllreid.eval.summary import format_summary

    cfg = _config_or_resume(args)
    if args.stage == "2" and not (args.init_from or args.resume):
        raise ConfigError("--stage 2 needs --from CKPT (a stage-1 checkpoint), or --resume")
    stages = {"both": (1, 2), "1": (1,), "2": (2,)}[args.stage]
    result = train(cfg, stages=stages, init_from=args.init_from, resume=args.resume, progress=not args.no_progress)
    print(f"run directory: {result.run_dir}")
    if result.untrained is not None:
        print("before training  " + format_summary(result.untrained))
    if result.evaluation is not None:
        print("trained          " + format_summary(result.evaluation))
    return 0


def _config_or_resume(args: argparse.Namespace) -> Any:
    """The config of ``train`` / ``pretrain``: CONFIG plus overrides, or a run's own with --resume."""
    if args.resume:
        if args.config and not Path(args.config).is_file() and "=" in args.config:
            args.overrides.insert(0, args.config)
            args.config = None
        if args.config or args.overrides:
            raise ConfigError("--resume continues a run with its own config.yaml; leave out CONFIG and overrides")
        return load_config(Path(args.resume) / "config.yaml" if Path(args.resume).is_dir() else None)
    if not args.config:
        raise ConfigError("pass a CONFIG file (see configs/), or --resume RUN_DIR")
    return load_config(args.config, args.overrides)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from svllreid.engine.pretrain import pretrain
    from svllreid.eval.text_retrieval import format_retrieval

    cfg = _config_or_resume(args)
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


def cmd_eval_text(args: argparse.Namespace) -> int:
    from svllreid.data.datasets import load_caption_dataset
    from svllreid.engine.text_eval import load_sides
    from svllreid.eval.text_retrieval import format_retrieval

    pretrained = None if args.pretrained in (None, "none") else args.pretrained
    if args.pretrained is not None and args.arch is None:
        raise ConfigError("--pretrained needs --arch (the CLIP architecture the weights are for)")
    loaded = load_sides(args.checkpoint, args.arch, pretrained, args.device)
    dataset = load_caption_dataset(args.dataset, args.root, **_parse_options(args.option))
    evaluation = loaded.evaluate(
        dataset.split(args.split), dataset.name, args.split, args.batch_size, args.workers, not args.no_progress
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


def _read_feature_file(path: str, side: str) -> dict[str, Any]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {side} features from {path}: {err}") from err
    missing = [key for key in ("feats", "pids") if key not in arrays]
    if missing:
        raise ValueError(
            f"{path} lacks the array(s) {', '.join(missing)}; a feature file is an .npz with 'feats' [N, D], "
            f"'pids' [N] and optionally 'camids' [N] (found: {', '.join(arrays) or 'nothing'})"
        )
    return arrays


def cmd_eval_features(args: argparse.Namespace) -> int:
    from svllreid.eval import KReciprocal, evaluate

    query = _read_feature_file(args.query, "query")
    gallery = _read_feature_file(args.gallery, "gallery")
    if ("camids" in query) != ("camids" in gallery):
        raise ValueError("'camids' must be in both feature files or in neither")
    result = evaluate(
        query["feats"],
        gallery["feats"],
        query["pids"],
        gallery["pids"],
        query.get("camids"),
        gallery.get("camids"),
        max_rank=args.max_rank,
        rerank=KReciprocal(args.k1, args.k2, args.lambda_value) if args.rerank else None,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    rule = {
        "camera": "same-identity-same-camera gallery images are junk",
        "no-camera": "no camera labels: nothing is excluded",
    }[result.protocol]
    rerank = f"; re-ranked (k1={args.k1}, k2={args.k2}, lambda={args.lambda_value})" if args.rerank else ""
    print(f"protocol: {result.protocol} ({rule}){rerank}")
    print(f"queries: {result.num_queries} ({result.num_skipped} skipped without a true match)")
    ranks = "  ".join(f"Rank-{k} {100 * result.rank(k):.2f}" for k in (1, 5, 10) if k <= args.max_rank)
    print(f"mAP {100 * result.mAP:.2f}  mINP {100 * result.mINP:.2f}  {ranks}")
    return 0


def _summary_table(summary: dict[str, Any]) -> str:
    """The metrics as a small text table, one row per split (and the mean over several)."""
    from svllreid.eval.summary import METRICS

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
    from svllreid.engine.evaluation import evaluate_checkpoint
    from svllreid.eval.summary import format_summary

    if args.root is not None and args.dataset is None:
        raise ConfigError("--root needs --dataset (the dataset's name, see 'svllreid data list')")
    result = evaluate_checkpoint(
        args.checkpoint,
        dataset=args.dataset,
        root=args.root,
        options=_parse_options(args.option),
        rerank=args.rerank,
        flip=args.flip,
        out_dir=args.out,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.no_progress,
    )
    if not args.no_report:
        from svllreid.engine.reporting import write_evaluation_report

        result.files.update(write_evaluation_report(result))
    summary = result.summary
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"model: {result.trained.describe()}")
    print(f"dataset: {result.dataset.name} at {result.dataset.root}")
    rule = {
        "camera": "same-identity-same-camera gallery images are junk",
        "no-camera": "no camera labels: only the query image itself is excluded",
    }[summary["protocol"]]
    print(f"protocol: {summary['protocol']} ({rule}){'; re-ranked (k-reciprocal)' if summary['reranked'] else ''}")
    for note in result.notes:
        print(f"note: {note}")
    print(_summary_table(summary))
    print(format_summary(summary))
    for name, path in result.files.items():
        print(f"{name:<14} {path}")
    return 0


def _extract(args: argparse.Namespace, trained: Any, paths: list[str]) -> Any:
    """Features of image files with the progress bar; unreadable files stop the command unless
    ``--skip-unreadable``."""
    from svllreid.engine.features import extract_file_features
    from svllreid.precision import resolve_precision

    feats = extract_file_features(
        trained.model,
        paths,
        transform=trained.transform,
        image_size=trained.image_size,
        device=trained.device,
        batch_size=args.batch_size,
        num_workers=args.workers,
        amp_dtype=resolve_precision("auto", trained.device),
        flip=args.flip,
        progress=not args.no_progress,
        interpolation=trained.interpolation,
    )
    if feats.unreadable:
        listed = "\n  ".join(feats.unreadable[:10]) + (
            f"\n  ... and {len(feats.unreadable) - 10} more" if len(feats.unreadable) > 10 else ""
        )
        if not getattr(args, "skip_unreadable", False) or not feats.paths:
            raise ValueError(
                f"{len(feats.unreadable)} of {len(paths)} image(s) could not be read:\n  {listed}\n"
                + ("remove or fix them, or pass --skip-unreadable" if feats.paths else "no image could be read")
            )
        print(f"skipped {len(feats.unreadable)} unreadable image(s):\n  {listed}", file=sys.stderr)
    print(
        f"{len(feats.paths)} image(s) → {feats.feats.shape[1]}-d features in {feats.seconds:.1f} s "
        f"({feats.images_per_s:.1f} images/s on {trained.device})",
        file=sys.stderr if getattr(args, "json", False) else sys.stdout,  # keep --json output pure
    )
    return feats


def _labels_from_names(paths: list[str], pattern: str | None, what: str) -> Any:
    """Integer ids from the file names by a regular expression (its group named ``id``, else the first)."""
    import re

    import numpy as np

    if not pattern:
        return None
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"--{what}-regex {pattern!r} is not a valid regular expression: {err}") from err
    values = []
    for path in paths:
        match = regex.search(Path(path).name)
        group = None
        if match:
            which = "id" if "id" in regex.groupindex else (1 if regex.groups else 0)
            group = match.group(which)
        if group is None or not group.lstrip("-").isdigit():
            raise ValueError(f"--{what}-regex {pattern!r} finds no integer in the file name {Path(path).name!r}")
        values.append(int(group))
    return np.array(values, dtype=np.int64)


def cmd_extract(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from svllreid.data.images import list_images
    from svllreid.engine.inference import load_trained_model
    from svllreid.report import atomic_write_bytes

    paths = list_images(args.images)
    pids = _labels_from_names(paths, args.pid_regex, "pid")
    camids = _labels_from_names(paths, args.camera_regex, "camera")
    trained = load_trained_model(args.checkpoint, args.device)
    print(f"model: {trained.describe()}")
    feats = _extract(args, trained, paths)
    readable = set(feats.paths)
    keep = [i for i, p in enumerate(paths) if p in readable]
    arrays: dict[str, Any] = {
        "feats": feats.feats.numpy().astype(np.float32),
        "paths": np.array(feats.paths, dtype=str),
        "model": np.array(json.dumps(trained.identity())),
    }
    if pids is not None:
        arrays["pids"] = pids[keep]
    if camids is not None:
        arrays["camids"] = camids[keep]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    out = atomic_write_bytes(args.out, buffer.getvalue())
    print(f"wrote {out} ({', '.join(f'{k} {tuple(v.shape)}' for k, v in arrays.items() if k != 'model')})")
    return 0


def cmd_index_build(args: argparse.Namespace) -> int:
    from svllreid.data.images import list_images
    from svllreid.engine.inference import load_trained_model
    from svllreid.search import GalleryIndex

    paths = list_images(args.images)
    trained = load_trained_model(args.checkpoint, args.device)
    print(f"model: {trained.describe()}")
    feats = _extract(args, trained, paths)
    meta = {**trained.identity(), "flip": args.flip, "images": str(Path(args.images).resolve())}
    index = GalleryIndex.build(feats.feats.numpy(), feats.paths, meta=meta, backend=args.backend)
    out = index.save(args.out)
    print(f"wrote {out}: {len(index)} images, {index.dim}-d features, {args.backend} search")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from svllreid.engine.inference import load_trained_model
    from svllreid.errors import CheckpointError
    from svllreid.search import GalleryIndex

    index = GalleryIndex.load(args.index)
    saved = index.meta
    checkpoint = args.checkpoint or saved.get("checkpoint")
    if not checkpoint:
        raise ValueError(f"{args.index} does not name the checkpoint it was built with; pass --checkpoint CKPT")
    if not args.checkpoint and not Path(checkpoint).exists():
        raise CheckpointError(
            f"{args.index} was built with {checkpoint}, which is not there any more; pass the same model's "
            "checkpoint with --checkpoint CKPT"
        )
    trained = load_trained_model(checkpoint, args.device)
    if saved.get("spec") and saved["spec"] != trained.spec.to_dict():
        differ = sorted(k for k in saved["spec"] if saved["spec"].get(k) != trained.spec.to_dict().get(k))
        raise CheckpointError(
            f"{checkpoint} is another network than the one that built {args.index} (differs in {', '.join(differ)}); "
            "its features are not comparable: search with the index's own checkpoint or rebuild the index"
        )
    if saved.get("weights_sha256") and saved["weights_sha256"] != trained.weights_digest():
        raise CheckpointError(
            f"{checkpoint} has other weights than the model that built {args.index} (same architecture, "
            "different training); its features are not comparable: search with the index's own checkpoint "
            "or rebuild the index"
        )
    args.flip = bool(saved.get("flip", False))  # queries are encoded as the gallery was
    queries = _extract(args, trained, [str(Path(q).expanduser()) for q in args.query])
    result = index.search(queries.feats.numpy(), args.topk)
    listing = []
    for qi, query in enumerate(queries.paths):
        hits = [
            {"rank": r + 1, "score": float(result.scores[qi, r]), "path": index.paths[int(g)]}
            for r, g in enumerate(result.indices[qi])
            if g >= 0
        ]
        listing.append({"query": query, "results": hits})
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        for item in listing:
            print(f"query {item['query']}: top {len(item['results'])} of {len(index)} (cosine similarity)")
            for hit in item["results"]:
                print(f"  {hit['rank']:>3}  {hit['score']:.4f}  {hit['path']}")
    if args.out:
        from svllreid.report import RankedList, draw_ranked_lists

        lists = [
            RankedList(
                title=f"query {Path(item['query']).name}",
                query_path=item["query"],
                query_caption=Path(item["query"]).name,
                gallery_paths=[h["path"] for h in item["results"]],
                gallery_captions=[f"{h['score']:.3f} · {Path(h['path']).name}" for h in item["results"]],
                matches=[None] * len(item["results"]),
            )
            for item in listing
        ]
        print(f"wrote {draw_ranked_lists(lists, args.out)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from svllreid.models.factory import create_model
    from svllreid.models.info import format_info, model_info

    model = create_model(
        args.arch,
        num_classes=args.num_classes,
        num_cameras=args.num_cameras,
        num_views=args.num_views,
        image_size=tuple(args.image_size),
        stride=args.stride,
        sie=args.sie,
        pretrained=args.pretrained,
        kind="vehicle" if args.vehicle else "person",
        last_stride=args.last_stride,
        lang_ssl_head=args.ssl_heads,
        vis_ssl_head=args.ssl_heads,
    )
    info = model_info(model)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


#: The built-in recipe of ``svllreid demo`` (shipped with the package).
DEMO_RECIPE = Path(__file__).resolve().parent / "resources" / "demo.yaml"


def _demo_config(args: argparse.Namespace) -> Any:
    """The demo's config: the built-in recipe (or --config) with KEY=VALUE overrides, then the options."""
    import dataclasses

    if (args.root or args.option) and not args.dataset:
        raise ConfigError("--root and -o describe a real dataset: pass --dataset NAME with them")
    if args.pretrained and not args.config:
        raise ConfigError(
            "--pretrained needs the paper's settings for real weights: add --config, e.g. "
            "configs/market1501/svll_vit.yaml (the demo recipe trains a tiny network at 64×32)"
        )
    name = args.name or f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides = [f"run.output_dir={args.out}", f"run.name={name}", *args.overrides]
    if args.pretrained:
        overrides.append(f"model.pretrained={args.pretrained}")
    cfg = load_config(args.config or DEMO_RECIPE, overrides)
    if args.dataset:  # replaces the data source as a whole (the synthetic options do not apply to it)
        options = _parse_options(args.option)
        cfg.data = dataclasses.replace(cfg.data, dataset=args.dataset, root=args.root or "", options=options)
    return cfg


def cmd_demo(args: argparse.Namespace) -> int:
    from svllreid.data.factory import build_dataset
    from svllreid.engine.run import build_model, evaluate_random_init, method_name, train
    from svllreid.eval.summary import METRICS
    from svllreid.models.info import model_info

    started = time.perf_counter()
    cfg = _demo_config(args)
    # The steps below narrate; the library's own messages are indented under them, without logger names.
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("      %(message)s"))
    if hasattr(sys.stdout, "reconfigure"):  # keep the steps in order with the log when both go to a file
        sys.stdout.reconfigure(line_buffering=True)
    print(f"svllreid {__version__} demo: SVLL-ReID end to end ({'your config' if args.config else 'built-in recipe'})")
    what = "synthetic pedestrians (made once, then cached)" if cfg.data.dataset == "synthetic" else cfg.data.root
    print(f"[1/4] data: {cfg.data.dataset} — {what}")
    dataset = build_dataset(cfg.data)
    counts = {"train": len(dataset.train), "query": len(dataset.query), "gallery": len(dataset.gallery)}
    print(
        f"      {dataset.num_train_ids} training identities, {dataset.num_cameras or 'no'} cameras; "
        + ", ".join(f"{k} {v} images" for k, v in counts.items())
        + f" ({time.perf_counter() - started:.1f} s)"
    )
    model = build_model(cfg, dataset)
    info = model_info(model)
    if not cfg.model.pretrained:
        weights = (
            "RANDOMLY INITIALISED (model.pretrained=none): the network learns from scratch; the numbers are not "
            "the paper's (pass --pretrained and --config for a real run)"
        )
    elif cfg.model.pretrained == "svll-synth":
        weights = (
            "starting from svllreid's 'svll-synth' CLIP: language-image pretraining on 2,000 captioned synthetic "
            "identities, none of them in this test set (docs/WEIGHTS.md). No real CLIP weights are available "
            "offline; pass --pretrained and --config for a real run"
        )
    else:
        weights = f"starting from {model.load_report.source}"
    print(
        f"[2/4] network: {cfg.model.arch} at {cfg.data.image_size[0]}×{cfg.data.image_size[1]}, "
        f"{info['parameters']['total'] / 1e6:.2f} M parameters — {weights}"
    )
    rows = []
    if cfg.model.pretrained:
        rows.append(("untrained (random)", evaluate_random_init(cfg, dataset)))
    method = method_name(cfg)
    print(
        f"[3/4] training {method}: the starting network is evaluated first, then stage 1 ({cfg.stage1.epochs} "
        f"epochs: identity prompts{' + language self-supervision' if cfg.stage1.lang_ssl else ''}) and stage 2 "
        f"({cfg.stage2.epochs} epochs: image encoder{' + vision self-supervision' if cfg.stage2.vis_ssl else ''})"
    )
    result = train(cfg, progress=not args.no_progress)
    assert result.evaluation is not None  # set by a training run of both stages on the main process
    print(f"[4/4] results on the test set ({result.evaluation['protocol']} protocol), in %:")
    if result.untrained is not None:
        rows.append(("pretrained only" if cfg.model.pretrained else "untrained (random)", result.untrained))
    rows.append(("trained", result.evaluation))
    keys = ("mAP", "rank1", "rank5", "rank10", "mINP")
    width = max(len(name) for name, _ in rows) + 2
    print(f"      {'':<{width}}" + "".join(f"{METRICS[k]:>9}" for k in keys))
    for name, summary in rows:
        cells = [f"{'–':>9}" if summary[k] is None else f"{100 * summary[k]:9.2f}" for k in keys]
        print(f"      {name:<{width}}" + "".join(cells))
    print(f"      report:  {result.report or '(not written; see the log above)'}")
    print(f"      run:     {result.run_dir}")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svllreid",
        description="SVLL-ReID / CLIP-ReID image re-identification: data, configs, training and evaluation.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"svllreid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="the built-in default job: SVLL-ReID end to end on synthetic data in a few minutes",
        description="Generate (or reuse) the synthetic dataset, build a tiny randomly initialised CLIP ViT, "
        "evaluate it untrained, train stage 1 and stage 2 of SVLL-ReID, evaluate again and write the run's "
        "report.html. --dataset/--root run the same recipe on real images; --config and --pretrained turn it "
        "into a real run; KEY=VALUE overrides any setting.",
    )
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. stage2.epochs=5")
    demo.add_argument("--dataset", default=None, help="a real dataset instead of the synthetic one")
    demo.add_argument("--root", default=None, help="its folder (with --dataset)")
    _add_option_arg(demo)
    demo.add_argument("--config", default=None, help="a recipe of your own instead of the built-in one")
    demo.add_argument("--pretrained", default=None, help="CLIP weights (with --config of the paper's settings)")
    demo.add_argument("--out", default="runs", help="folder of run directories (default runs)")
    demo.add_argument("--name", default=None, help="run name (default demo-<time>)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)

    config = commands.add_parser("config", help="inspect configurations", description="Inspect configurations.")
    config_cmds = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = config_cmds.add_parser(
        "show",
        help="print the resolved config of a YAML file plus overrides",
        description="Print the fully resolved configuration (bases merged, overrides applied, defaults filled).",
    )
    show.add_argument(
        "config", help="YAML config file, 'defaults' for the built-in defaults or 'demo' for the demo's recipe"
    )
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides such as stage2.lr=1e-5")
    show.set_defaults(func=cmd_config_show)

    train = commands.add_parser(
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

    pretrain = commands.add_parser(
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

    eval_text = commands.add_parser(
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
    _add_option_arg(eval_text)
    eval_text.add_argument("--split", default="test", choices=["train", "val", "test"], help="split (default test)")
    eval_text.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    eval_text.add_argument("--batch-size", type=int, default=256, help="images / captions per batch")
    eval_text.add_argument("--workers", type=int, default=0, help="image loading processes")
    eval_text.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    eval_text.add_argument("--json", action="store_true", help="print JSON")
    eval_text.add_argument("--no-progress", action="store_true", help="no progress bars")
    eval_text.set_defaults(func=cmd_eval_text)

    eval_features = commands.add_parser(
        "eval-features",
        help="mAP / CMC / mINP of features extracted elsewhere",
        description="Evaluate query and gallery features saved as .npz files with arrays 'feats' [N, D], "
        "'pids' [N] and optionally 'camids' [N] (with cameras, same-identity-same-camera gallery images are "
        "junk; without, nothing is excluded). Ranking is by Euclidean distance of the given features.",
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
    eval_features.set_defaults(func=cmd_eval_features)

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a trained checkpoint on any supported dataset (table, JSON, CMC, ranked lists, report)",
        description="Evaluate a checkpoint (a .safetensors file or a run directory) on its own test set or, with "
        "--dataset/--root, on another one (cross-domain). Prints the metrics and writes eval.json, metrics.png, "
        "cmc.png, ranked_{best,median,worst}.png, embedding.png and report.html to --out (default: "
        "<run>/eval/<dataset> for a run's checkpoint).",
    )
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    evaluate.add_argument("--dataset", default=None, help="dataset name (default: the one the model was trained on)")
    evaluate.add_argument("--root", default=None, help="dataset folder (with --dataset)")
    _add_option_arg(evaluate)
    evaluate.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1/k2/lambda of the config)")
    evaluate.add_argument("--flip", action="store_true", help="add the features of horizontally flipped images")
    evaluate.add_argument("--out", default=None, help="output folder")
    evaluate.add_argument("--json", action="store_true", help="print the JSON summary instead of the table")
    evaluate.add_argument("--no-report", action="store_true", help="only eval.json (no figures, no report.html)")
    _add_inference_args(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    extract = commands.add_parser(
        "extract",
        help="features of your own images with a trained model (.npz)",
        description="Extract L2-normalised features of the images in a folder (recursively) or a list file "
        "(one path a line) and save them as .npz: 'feats' [N, D], 'paths' [N] and, with --pid-regex / "
        "--camera-regex, 'pids' / 'camids' for 'svllreid eval-features'.",
    )
    extract.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    extract.add_argument("--images", required=True, help="folder of images or text file of image paths")
    extract.add_argument("--out", required=True, help="output .npz file")
    extract.add_argument("--flip", action="store_true", help="add the features of horizontally flipped images")
    extract.add_argument("--pid-regex", default=None, help="identity from the file name, e.g. '^(\\d+)_'")
    extract.add_argument("--camera-regex", default=None, help="camera from the file name, e.g. '_c(\\d+)'")
    extract.add_argument("--skip-unreadable", action="store_true", help="leave out unreadable images (listed)")
    _add_inference_args(extract)
    extract.set_defaults(func=cmd_extract)

    index = commands.add_parser(
        "index", help="gallery indexes of your own images", description="Gallery indexes for 'svllreid search'."
    )
    index_cmds = index.add_subparsers(dest="index_command", metavar="SUBCOMMAND", required=True)
    build = index_cmds.add_parser(
        "build",
        help="extract the features of a folder of images into a searchable index file",
        description="Extract the features of every image of a folder (or list file) with a trained model and "
        "save them, with the paths and the model's description, as one index file. Exact search by default; "
        "faiss backends (pip install faiss-cpu) for large galleries.",
    )
    build.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    build.add_argument("--images", required=True, help="folder of gallery images or text file of paths")
    build.add_argument("--out", required=True, help="index file to write")
    build.add_argument(
        "--backend",
        choices=["exact", "faiss-flat", "faiss-ivf", "faiss-hnsw"],
        default="exact",
        help="search structure (default exact; faiss-ivf / faiss-hnsw are approximate)",
    )
    build.add_argument("--flip", action="store_true", help="add the features of horizontally flipped images")
    build.add_argument("--skip-unreadable", action="store_true", help="leave out unreadable images (listed)")
    _add_inference_args(build)
    build.set_defaults(func=cmd_index_build)

    search = commands.add_parser(
        "search",
        help="find the gallery images most similar to a query image",
        description="Rank the images of an index (from 'svllreid index build') by cosine similarity to each "
        "query image, encoded by the index's model (or --checkpoint of the same network).",
    )
    search.add_argument("--index", required=True, help="index file")
    search.add_argument("--query", required=True, nargs="+", help="query image(s)")
    search.add_argument("--topk", type=int, default=10, help="results per query (default 10)")
    search.add_argument("--out", default=None, help="write the ranked lists as a PNG picture")
    search.add_argument("--checkpoint", default=None, help="model checkpoint (default: the one the index names)")
    search.add_argument("--json", action="store_true", help="print JSON")
    _add_inference_args(search)
    search.set_defaults(func=cmd_search)

    model = commands.add_parser("model", help="inspect networks", description="Inspect networks.")
    model_cmds = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    info = model_cmds.add_parser(
        "info",
        help="parameters, features, token grid and FLOPs of a network",
        description="Build a network (randomly initialised unless --pretrained is given) and print its "
        "parameters (total and trainable per stage), feature sizes, token grid and FLOPs per image.",
    )
    info.add_argument("--arch", default="ViT-B-16", help="open_clip architecture (default ViT-B-16)")
    info.add_argument("--num-classes", type=int, default=751, help="training identities (default 751, Market-1501)")
    info.add_argument(
        "--image-size", type=int, nargs=2, default=[256, 128], metavar=("H", "W"), help="input size (default 256 128)"
    )
    info.add_argument("--stride", type=int, default=None, help="ViT patch stride (default: the patch size)")
    info.add_argument("--last-stride", type=int, default=1, help="ResNet last-stage stride (default 1)")
    info.add_argument("--sie", choices=["none", "camera", "view", "camera_view"], default="none", help="SIE mode")
    info.add_argument("--num-cameras", type=int, default=0, help="cameras for SIE")
    info.add_argument("--num-views", type=int, default=0, help="viewpoints for SIE")
    info.add_argument("--vehicle", action="store_true", help="vehicle prompt template")
    info.add_argument("--ssl-heads", action="store_true", help="include SVLL's two projection heads")
    info.add_argument("--pretrained", default=None, help="weights file or open_clip tag")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_model_info)

    data = commands.add_parser("data", help="datasets: list, generate, count, validate", description="Datasets.")
    data_cmds = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    listing = data_cmds.add_parser("list", help="list the supported datasets and their options")
    listing.set_defaults(func=cmd_data_list)

    synth = data_cmds.add_parser(
        "synth",
        help="generate the synthetic dataset (Market-1501 layout)",
        description="Draw a synthetic pedestrian dataset in the Market-1501 layout; deterministic for a seed.",
    )
    synth.add_argument("--out", required=True, help="output folder")
    _add_synth_size_args(synth)
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--train-ids", type=int, default=None, help="training identities (default: half); the rest are the test split"
    )
    synth.add_argument(
        "--pretraining-world",
        action="store_true",
        help="the pretraining world of the shipped svll-synth weights (2,400 identities, 400 held out, its own seed); "
        "sizes and seed come from it",
    )
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    synth.set_defaults(func=cmd_data_synth)

    stats = data_cmds.add_parser(
        "stats",
        help="identities, images and cameras per split",
        description="Print identities, images and cameras of train / query / gallery "
        "(VehicleID: train and every test size).",
    )
    _add_dataset_args(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=cmd_data_stats)

    check = data_cmds.add_parser(
        "check",
        help="validate a dataset before training on it",
        description="Validate layout, list files, file names, camera ids, images and splits. "
        "Exit status 1 when errors are found.",
    )
    _add_dataset_args(check)
    check.add_argument("--quick", action="store_true", help="do not decode every image (what training runs)")
    check.add_argument("--workers", type=int, default=None, help="threads that open images")
    check.set_defaults(func=cmd_data_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also follow options (svllreid train CFG --stage 1 stage1.epochs=3).
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # Our own messages at INFO; other libraries (open_clip logs progress on the root logger) only
    # at WARNING unless --verbose.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("svllreid").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except SvllreidError as err:
        print(f"svllreid: error: {err}", file=sys.stderr)
        return err.exit_code
    except (ValueError, OSError) as err:  # bad input met by a library check (torch, PIL, numpy, ours)
        print(f"svllreid: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("svllreid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
