"""The ``svllreid`` command line: parsing, calling the library, printing.

One module per command group, each with a ``register(subparsers)``; the checks, file formats and rules
live in the library (``svllreid.serve``, ``svllreid.training`` and below), where the Python API gets
them too. Heavy modules (torch, open_clip) are imported by the commands that need them, so that light
commands start fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from svllreid.cli import (
    calibrate,
    configs,
    convert,
    data,
    demo,
    evaluate,
    export,
    model,
    search,
    serve,
    share,
    train,
    tune,
)
from svllreid.errors import LaunchError, SvllreidError
from svllreid.version import __version__

__all__ = ["build_parser", "main"]

EXAMPLES = """\
examples:
  svllreid demo
  svllreid data synth --out data/synthetic --ids 100 --cameras 6
  svllreid data stats --dataset market1501 --root /data/Market-1501-v15.09.15 --json
  svllreid data check --dataset vehicleid --root /data/VehicleID_V1.0 -o test_size=1600
  svllreid config show configs/synthetic_tiny.yaml stage2.lr=1e-5
  svllreid tune --dataset folder --root my_animals/ -o camera_regex='_(left|right)' --budget 30
  svllreid model info --arch ViT-B-16 --image-size 256 128 --stride 12 --sie camera --num-cameras 6
  svllreid eval --checkpoint runs/market-svll --dataset dukemtmc --root /data/DukeMTMC-reID --rerank
  svllreid extract --checkpoint runs/market-svll --images my_photos/ --out feats.npz
  svllreid index build --checkpoint runs/market-svll --images gallery/ --out gallery.index
  svllreid search --index gallery.index --query person.jpg --topk 10 --out ranked.png
  svllreid search --index gallery.index --text "a woman in a red coat with a black backpack"
  svllreid serve --index gallery.index --port 8000
  svllreid export --checkpoint runs/market-svll --format onnx --out market-svll.onnx
  svllreid convert --from clip-reid ViT-B-16_60.pth --config clip-reid/vit-sie-olp/msmt17 --out models/msmt17
"""

#: The command groups in the order ``--help`` lists them.
COMMAND_GROUPS = (demo, configs, train, tune, evaluate, calibrate, search, serve, export, convert, model, share, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svllreid",
        description="SVLL-ReID / CLIP-ReID image re-identification: data, configs, training and evaluation.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"svllreid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(subparsers)
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
    # PIL warns of every image over 89 megapixels (a camera's full-size photo) as a possible decompression
    # bomb. svllreid decodes such JPEGs at a reduced scale and `data check` lists them, so the raw warning is
    # only noise here; images over twice that stay refused, with a message (ImageReadError).
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit", module="PIL")
    try:
        return int(args.func(args))
    except SvllreidError as err:
        if not isinstance(err, LaunchError) or not err.shown_by_main:  # torchrun: the main process tells once
            print(f"svllreid: error: {err}", file=sys.stderr)
        return err.exit_code
    except (ValueError, OSError) as err:  # bad input met by a library check (torch, PIL, numpy, ours)
        print(f"svllreid: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("svllreid: interrupted", file=sys.stderr)
        return 130
