"""``svllreid extract``, ``svllreid index build`` and ``svllreid search``: features and gallery search
on one's own images."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from svllreid.cli.common import add_inference_args, positive_int
from svllreid.cli.gallery import register as register_gallery
from svllreid.cli.image_options import add_label_args, add_model_args, file_label_options
from svllreid.fileio import check_writable

if TYPE_CHECKING:  # imported by the commands themselves, so that light commands start fast
    import torch

    from svllreid.data.images import FileLabels
    from svllreid.distributed import DistInfo
    from svllreid.inference.features import FileFeatures
    from svllreid.inference.gallery_search import Answer, GallerySearch
    from svllreid.inference.model_protocol import FeatureModel, IndexingModel

#: What :func:`_inputs` reads on every process: the image list, its identity and camera labels, the model.
Inputs = tuple[list[str], "FileLabels | None", "FileLabels | None", "IndexingModel"]


def _load_model(args: argparse.Namespace, device: str) -> IndexingModel:
    """The network of ``--checkpoint`` (torch, on ``device``: this process's) or ``--model FILE.onnx|FILE.xml``
    (onnxruntime or OpenVINO, CPU)."""
    if args.model:
        from svllreid.inference.exported import load_exported_model

        return load_exported_model(args.model, device=args.device)
    from svllreid.inference.trained import load_trained_model

    return load_trained_model(args.checkpoint, device)


@contextmanager
def _launch(args: argparse.Namespace) -> Iterator[tuple[DistInfo, torch.device]]:
    """This process's place in a torchrun launch (one process without torchrun) and its device; an exported
    file runs on the CPU, so its processes talk over gloo."""
    from svllreid.distributed import INFERENCE_TIMEOUT, launch_group

    with launch_group("cpu" if args.model else args.device, timeout=INFERENCE_TIMEOUT) as joined:
        yield joined


def _inputs(args: argparse.Namespace, device: torch.device) -> Inputs:
    """The image list, its labels and the model: what every process of a launch reads alike. ``--out``
    is checked first, before any feature is computed."""
    from svllreid.data.images import list_images

    check_writable(args.out)
    paths = list_images(args.images)
    pids, camids = file_label_options(args, paths)
    return paths, pids, camids, _load_model(args, str(device))


def _extract(args: argparse.Namespace, trained: FeatureModel, paths: list[str]) -> FileFeatures:
    """Features of image files with the progress bar (a single process)."""
    from svllreid.inference.features import extract_model_features

    return extract_model_features(
        trained,
        paths,
        batch_size=args.batch_size,
        num_workers=args.workers,
        flip=args.flip,
        progress=not args.no_progress,
    )


def _extract_then(
    args: argparse.Namespace,
    trained: FeatureModel,
    paths: list[str],
    info: DistInfo,
    write: Callable[[FileFeatures, str], None],
) -> None:
    """Extract the features of ``paths``, then ``write(features, where)`` them on the main process:
    ``where`` says what computed them. One process extracts all as before; under torchrun each process
    extracts a share into ``--out``'s shard folder, and the main process merges them
    (:func:`svllreid.inference.sharding.extract_sharded`)."""
    from svllreid.inference.sharding import extract_sharded, shard_folder

    if not info.enabled:
        if shard_folder(args.out).is_dir():
            print(
                f"note: {shard_folder(args.out)} holds the shards of a torchrun launch that did not finish; only "
                "a launch of as many processes resumes from them (this process extracts every image)",
                file=sys.stderr,
            )
        write(_extract(args, trained, paths), str(trained.device))
        return
    extract_sharded(
        trained,
        paths,
        out=args.out,
        info=info,
        then=lambda sharded: write(sharded.features, f"{trained.device.type}, {sharded.describe()}"),
        batch_size=args.batch_size,
        num_workers=args.workers,
        flip=args.flip,
        progress=not args.no_progress,
    )


def _label_names(feats: FileFeatures, paths: list[str], labels: FileLabels | None) -> list[str] | None:
    """Each readable file's label as its user knows it (a folder name, a camera name or the number)."""
    if labels is None:
        return None
    ids = feats.readable_labels(paths, labels.ids)
    assert ids is not None  # labels were given
    names = labels.names or {}
    return [names.get(int(i), str(int(i))) for i in ids]


def cmd_extract(args: argparse.Namespace) -> int:
    from svllreid.distributed import run_everywhere
    from svllreid.metrics.feature_file import write_feature_file

    with _launch(args) as (info, device):
        paths, pids, camids, trained = run_everywhere(lambda: _inputs(args, device), info)
        if info.is_main:
            print(f"model: {trained.describe()}")

        def write(feats: FileFeatures, where: str) -> None:
            _report_features(args, feats, where)
            names = {w: labels.names for w, labels in (("pid", pids), ("camera", camids)) if labels and labels.names}
            shapes = write_feature_file(
                args.out,
                feats=feats.feats.numpy(),
                paths=feats.paths,
                model=trained.identity(),
                pids=feats.readable_labels(paths, pids.ids if pids else None),
                camids=feats.readable_labels(paths, camids.ids if camids else None),
                label_names=names,
            )
            print(f"wrote {Path(args.out)} ({', '.join(f'{k} {v}' for k, v in shapes.items())})")

        _extract_then(args, trained, paths, info, write)
    return 0


#: The ``index build`` options of each backend's settings (the others refuse them).
BACKEND_OPTIONS = {
    "nlist": ("faiss-ivf", "faiss-ivfpq"),
    "nprobe": ("faiss-ivf", "faiss-ivfpq"),
    "pq_m": ("faiss-ivfpq",),
    "pq_nbits": ("faiss-ivfpq",),
    "refine": ("faiss-ivfpq",),
    "train_size": ("faiss-ivfpq",),
}


def _backend_settings(args: argparse.Namespace) -> dict[str, int]:
    """The backend settings given on the command line; one the backend does not use is refused (it would
    otherwise be ignored without a word)."""
    given = {key: getattr(args, key) for key in BACKEND_OPTIONS if getattr(args, key) is not None}
    for key in given:
        if args.backend not in BACKEND_OPTIONS[key]:
            option = "--" + key.replace("_", "-")
            raise ValueError(
                f"{option} is a setting of --backend {' or '.join(BACKEND_OPTIONS[key])}, not {args.backend}"
            )
    return given


def cmd_index_build(args: argparse.Namespace) -> int:
    from svllreid.distributed import run_everywhere
    from svllreid.inference.trained import TrainedModel
    from svllreid.search import GalleryIndex

    with _launch(args) as (info, device):
        settings = run_everywhere(lambda: _backend_settings(args), info)  # before any feature is computed
        paths, pids, camids, trained = run_everywhere(lambda: _inputs(args, device), info)
        if args.backend == "faiss-ivfpq":  # settings that do not fit the gallery, refused before extraction
            run_everywhere(lambda: _check_ivfpq(settings, len(paths), trained.feature_dim), info)
        if info.is_main:
            print(f"model: {trained.describe()}")

        def write(feats: FileFeatures, where: str) -> None:
            _report_features(args, feats, where)
            meta = trained.index_meta(flip=args.flip, images=args.images)
            meta["built_at"] = time.time()  # when its images joined the gallery (index remove --older-than)
            given = (("identity", pids), ("camera", camids))
            labels = {what: _label_names(feats, paths, labels) for what, labels in given}
            if any(labels.values()):
                meta["labels"] = {what: names for what, names in labels.items() if names}  # per image, in index order
            if args.backend == "faiss-ivfpq":
                # Streamed into the file in chunks, as for a gallery extracted in shards: the index never holds
                # a second copy of the features in memory, and it is opened as search and serve open it.
                matrix = feats.feats.numpy()
                step = 2**16
                chunks = ((feats.paths[lo : lo + step], matrix[lo : lo + step]) for lo in range(0, len(matrix), step))
                index = GalleryIndex.build_streamed(chunks, args.out, meta=meta, **settings)
                out = Path(args.out)
            else:
                index = GalleryIndex.build(
                    feats.feats.numpy(), feats.paths, meta=meta, backend=args.backend, **settings
                )
                out = index.save(args.out)
            shown = ", ".join(f"{key} {value}" for key, value in index.params.items())
            settings_note = f" ({shown})" if shown else ""
            print(f"wrote {out}: {len(index)} images, {index.dim}-d features, {args.backend} search{settings_note}")
            # Searches then skip open_clip: the network's image branch compiled into the cache (not for
            # exported files).
            compiled = trained.cache_query_encoder() if isinstance(trained, TrainedModel) else None
            if compiled is not None:
                print(f"query encoder for fast searches: {compiled}")

        _extract_then(args, trained, paths, info, write)
    return 0


def _check_ivfpq(settings: dict[str, int], images: int, dim: int) -> None:
    """faiss-ivfpq's settings checked against the gallery's size and feature width (unreadable images
    skipped later can still make it too small: the build checks again)."""
    from svllreid.search.ivfpq import DEFAULT_REFINE, ivfpq_params

    given = {key: settings.get(key) for key in ("nlist", "nprobe", "pq_m", "pq_nbits", "train_size")}
    ivfpq_params(images, dim, **given, refine=settings.get("refine", DEFAULT_REFINE))


def _caption(item: dict[str, Any], *, score: bool = True) -> str:
    """Under a thumbnail: the score (of a result, with "same" or "other" by the calibrated threshold) and
    the identity and camera where the index knows them, else the file name."""
    shown = [f"{item['score']:.3f}"] if score else []
    if score and "same_identity" in item:
        shown[0] += " same" if item["same_identity"] else " other"
    if "identity" in item:
        shown += [f"id {item['identity']}"] + ([f"cam {item['camera']}"] if "camera" in item else [])
    else:
        shown.append(Path(item.get("path", item.get("query", ""))).name)
    return " · ".join(shown)


def cmd_search(args: argparse.Namespace) -> int:
    from svllreid.data.images import expand_image_arguments
    from svllreid.inference.gallery_search import GallerySearch

    if args.out:
        check_writable(args.out)  # before the queries are encoded
    search = GallerySearch.open(
        args.index,
        checkpoint=args.checkpoint,
        model_file=args.model,
        device=args.device,
        compiled=not args.no_compiled,
        text=bool(args.text),
    )
    if args.text:
        answers, truncated = search.search_texts(list(args.text), args.topk)
        for text in truncated:
            print(
                f"note: the description {text[:60]!r}... reaches the 77-token limit; the rest is not used",
                file=sys.stderr,
            )
    else:
        found = search.search_files(
            expand_image_arguments(args.query),
            args.topk,
            batch_size=args.batch_size,
            num_workers=args.workers,
            progress=not args.no_progress,
        )
        _report_features(args, found.features, search.model.device)
        answers = found.answers
    _print_answers(args, search, answers, text=bool(args.text))
    return 0


def _report_features(args: argparse.Namespace, feats: FileFeatures, where: str | torch.device) -> None:
    """Unreadable files stop the command unless ``--skip-unreadable``; then the throughput line (``where``:
    the device, or the processes of a launch)."""
    skipped = feats.check_readable(skip_unreadable=getattr(args, "skip_unreadable", False))
    if skipped:
        print(skipped, file=sys.stderr)
    print(
        f"{len(feats.paths)} image(s) → {feats.feats.shape[1]}-d features in {feats.seconds:.1f} s "
        f"({feats.images_per_s:.1f} images/s on {where})",
        file=sys.stderr if getattr(args, "json", False) else sys.stdout,  # keep --json output pure
    )


def _print_answers(args: argparse.Namespace, search: GallerySearch, answers: list[Answer], *, text: bool) -> None:
    """Print (or ``--json``) the ranked lists and draw them with ``--out``."""
    listing = [{**answer.query, "results": answer.results, "decision": answer.decision} for answer in answers]
    labels = search.label_kinds
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        if not text:  # the threshold the "same" / "other" column follows, or that there is none
            calibration = search.calibration
            print(calibration.describe() if calibration is not None else search.decision["message"])
        for item in listing:
            shown = repr(item["query"]) if text else item["query"]
            measure = "cosine similarity of f_proj to the text" if text else "cosine similarity"
            print(f"query {shown}: top {len(item['results'])} of {search.index.size} ({measure})")
            for hit in item["results"]:
                named = "".join(f"  {what} {hit.get(what, '-')}" for what in labels)
                same = ("  same " if hit["same_identity"] else "  other") if "same_identity" in hit else ""
                print(f"  {hit['rank']:>3}  {hit['score']:.4f}{same}  {hit['path']}{named}")
    if args.out:
        from svllreid.report import RankedList, draw_ranked_lists

        calibration = None if text else search.calibration
        rule = f" · same: ≥ {calibration.threshold:.4f} (at {calibration.target_label})" if calibration else ""
        lists = [
            RankedList(
                title="text query" if text else f"query {Path(item['query']).name}{rule}",
                query_path="" if text else item["query"],
                query_caption="description" if text else _caption(item, score=False),
                query_text=item["query"] if text else None,
                gallery_paths=[h["path"] for h in item["results"]],
                gallery_captions=[_caption(h) for h in item["results"]],
                # Green / red borders where the query's identity is known (it is one of the gallery's images).
                matches=[h.get("match") for h in item["results"]],
            )
            for item in listing
        ]
        print(f"wrote {draw_ranked_lists(lists, args.out)}", file=sys.stderr if args.json else sys.stdout)


def register(subparsers: argparse._SubParsersAction) -> None:
    extract = subparsers.add_parser(
        "extract",
        help="features of your own images with a trained model (.npz)",
        description="Extract L2-normalised features of the images in a folder (recursively) or a list file "
        "(one path a line) and save them as .npz: 'feats' [N, D], 'paths' [N] and, with --pid-regex / "
        "--camera-regex, 'pids' / 'camids' for 'svllreid eval-features'.",
    )
    add_model_args(extract)
    extract.add_argument("--images", required=True, help="folder of images or text file of image paths")
    extract.add_argument("--out", required=True, help="output .npz file")
    extract.add_argument("--flip", action="store_true", help="add the features of horizontally flipped images")
    add_label_args(extract)
    extract.add_argument("--skip-unreadable", action="store_true", help="leave out unreadable images (listed)")
    add_inference_args(extract)
    extract.set_defaults(func=cmd_extract)

    index = subparsers.add_parser(
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
    add_model_args(build)
    build.add_argument("--images", required=True, help="folder of gallery images or text file of paths")
    build.add_argument("--out", required=True, help="index file to write")
    build.add_argument(
        "--backend",
        choices=["exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "faiss-ivfpq"],
        default="exact",
        help="search structure (default exact; faiss-ivf / faiss-hnsw are approximate; faiss-ivfpq is approximate "
        "and searched from disk, for galleries past RAM: see docs/search.md)",
    )
    tuning = build.add_argument_group("backend settings (default: chosen from the gallery's size)")
    tuning.add_argument("--nlist", type=positive_int, help="faiss-ivf / faiss-ivfpq: clusters (inverted lists)")
    tuning.add_argument("--nprobe", type=positive_int, help="faiss-ivf / faiss-ivfpq: clusters searched per query")
    tuning.add_argument(
        "--pq-m", type=positive_int, help="faiss-ivfpq: bytes per code (sub-vectors; divides the width)"
    )
    tuning.add_argument("--pq-nbits", type=positive_int, help="faiss-ivfpq: bits per sub-vector code (default 8)")
    tuning.add_argument(
        "--refine", type=positive_int, help="faiss-ivfpq: candidates re-ranked exactly, per result (default 10)"
    )
    tuning.add_argument("--train-size", type=positive_int, help="faiss-ivfpq: features sampled to train on")
    build.add_argument("--flip", action="store_true", help="add the features of horizontally flipped images")
    add_label_args(build)
    build.add_argument("--skip-unreadable", action="store_true", help="leave out unreadable images (listed)")
    add_inference_args(build)
    build.set_defaults(func=cmd_index_build)

    register_gallery(index_cmds)  # index add / remove / compact

    search = subparsers.add_parser(
        "search",
        help="find the gallery images most similar to a query image or a description",
        description="Rank the images of an index (from 'svllreid index build') by cosine similarity to each "
        "query image, encoded by the index's model (or --checkpoint of the same network), or to each "
        "description (--text), encoded by the same checkpoint's text encoder.",
    )
    search.add_argument("--index", required=True, help="index file")
    asked = search.add_mutually_exclusive_group(required=True)
    asked.add_argument(
        "--query",
        nargs="+",
        help="query images: one or more image files, folders of images, or text files of image paths",
    )
    asked.add_argument(
        "--text",
        nargs="+",
        metavar="DESCRIPTION",
        help="search by description instead, e.g. --text 'a person with a red top and a backpack': encoded by the "
        "checkpoint's text encoder and ranked against the gallery's f_proj (quote each description; up to 77 tokens)",
    )
    search.add_argument("--topk", type=positive_int, default=10, help="results per query (default 10)")
    search.add_argument("--out", default=None, help="write the ranked lists as a PNG picture")
    add_model_args(search, required=False)
    search.add_argument("--json", action="store_true", help="print JSON")
    search.add_argument(
        "--no-compiled",
        action="store_true",
        help="rebuild the network instead of loading its cached compiled image branch (same features; slower "
        "start-up; SVLLREID_ENCODER_CACHE=0 turns the cache off everywhere)",
    )
    add_inference_args(search)
    search.set_defaults(func=cmd_search)
