"""``svllreid index add / remove / compact``: change a gallery index after it was built, without a rebuild
(the live gallery of :mod:`svllreid.search.live`). A running ``svllreid serve`` sees the changes within
its refresh interval."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from svllreid.cli.common import add_inference_args
from svllreid.cli.image_options import add_label_args, add_model_args, file_label_options

if TYPE_CHECKING:
    from svllreid.inference.model_protocol import IndexingModel
    from svllreid.search.live import LiveIndex

#: Units of ``--older-than``.
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Added or removed images beyond which the summary suggests compacting, as a share of the gallery.
COMPACT_SHARE = 0.2


def older_than(text: str) -> float:
    """An argparse type: ``--older-than`` as the moment (seconds since the epoch) before which images joined:
    an age (``30d``, ``12h``, ``90m``, ``45s``, ``2w``) or an ISO date or time (``2026-12-01``,
    ``2026-12-01T08:00``, UTC unless it names its zone)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if found:
        return time.time() - float(found[1]) * _UNITS[found[2]]
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an age such as 30d, 12h, 90m, 45s or 2w, or a date such as 2026-12-01; got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _images(count: int) -> str:
    return f"{count} image" + ("" if count == 1 else "s")


def _summary(live: LiveIndex) -> str:
    note = f"{live.path}: {_images(live.size)}"
    if live.added or live.removed:
        note += f" ({live.added} added and {live.removed} removed since the index file was written)"
        if live.added + live.removed > COMPACT_SHARE * max(live.size, 1):
            note += f"; fold them into the file with: svllreid index compact --index {live.path}"
    return note


def cmd_index_add(args: argparse.Namespace) -> int:
    from svllreid.data.images import list_images
    from svllreid.inference.gallery_search import GallerySearch
    from svllreid.search.index_file import absolute

    paths = list_images(args.images)
    search = GallerySearch.open(
        args.index, checkpoint=args.checkpoint, model_file=args.model, device=args.device, compiled=False
    )
    live = search.index
    if not args.allow_duplicates:  # a folder added again (new crops arrive beside old ones): only the new ones
        present = {path for path, rows in live.rows_of(paths).items() if rows}
        if present:
            print(
                f"{len(present)} of {len(paths)} images are already in the gallery and are left out "
                "(--allow-duplicates adds them again)"
            )
            paths = [p for p in paths if absolute(p) not in present]
        if not paths:
            print(_summary(live))
            return 0
    pids, camids = file_label_options(args, paths)
    labels = {}
    for kind, given in (("identity", pids), ("camera", camids)):
        if given is not None:
            names = given.names or {}
            labels[kind] = [names.get(int(i), str(int(i))) for i in given.ids]
    print(f"model: {cast('IndexingModel', search.model).describe()}")
    rows, features = search.add_files(
        paths,
        labels=labels,
        skip_unreadable=args.skip_unreadable,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.no_progress,
    )
    skipped = features.check_readable(skip_unreadable=True)
    if skipped:
        print(f"warning: {skipped}", file=sys.stderr)
    print(f"added {_images(len(rows))} as rows {rows[0]} to {rows[-1]}")
    print(_summary(live))
    return 0


def _rows_to_remove(args: argparse.Namespace, live: LiveIndex) -> list[int]:
    """The living rows that ``--paths``, ``--older-than`` or ``--rows`` name; what names nothing is said."""
    from svllreid.search.index_file import absolute

    if args.rows is not None:
        gone = [r for r in args.rows if not live.is_live(r)]
        if gone:
            print(f"not in the gallery (removed before, or never numbered): rows {', '.join(map(str, gone))}")
        return [r for r in args.rows if live.is_live(r)]
    if args.older_than is not None:
        return live.rows_added_before(args.older_than)
    folders = [absolute(p) for p in args.paths]
    exact = live.rows_of(folders)
    rows = {r for listed in exact.values() for r in listed}
    named = {f for f in folders if exact[f]}
    prefixes = [f for f in folders if not exact[f]]  # a folder names every image under it
    if prefixes:
        paths = live.paths
        for row in range(len(live)):
            if live.is_live(row):
                for folder in prefixes:
                    if paths[row].startswith(folder + os.sep):
                        rows.add(row)
                        named.add(folder)
    for path in folders:
        if path not in named:
            print(f"no image of the gallery is {path} or lies under it")
    return sorted(rows)


def cmd_index_remove(args: argparse.Namespace) -> int:
    from svllreid.search.live import LiveIndex

    live = LiveIndex.open(args.index)
    rows = _rows_to_remove(args, live)
    if not rows:
        print(f"nothing to remove; {_summary(live)}")
        return 0
    shown = ", ".join(Path(live.paths[r]).name for r in rows[:5]) + (
        f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    )
    if args.dry_run:
        print(f"would remove {_images(len(rows))}: {shown} (--dry-run: nothing changed)")
        return 0
    if len(rows) == live.size:
        raise ValueError(
            f"that would remove every image of {args.index}; an index needs at least one (build a new one instead)"
        )
    removed = live.remove(rows)
    print(f"removed {_images(len(removed))}: {shown}")
    print(_summary(live))
    return 0


def cmd_index_compact(args: argparse.Namespace) -> int:
    from svllreid.search.live import LiveIndex

    live = LiveIndex.open(args.index)
    if not live.added and not live.removed:
        print(f"nothing to compact; {_summary(live)}")
        return 0
    report = live.compact()
    print(
        f"wrote {args.index}: {_images(report.kept)} ({report.dropped} removed ones dropped), rows numbered afresh; "
        f"{report.files_deleted} stored files deleted"
    )
    if report.note:
        print(f"note: {report.note}")
    return 0


def register(index_cmds: argparse._SubParsersAction) -> None:
    """The ``index add``, ``index remove`` and ``index compact`` subcommands."""
    add = index_cmds.add_parser(
        "add",
        help="add images to an index (no rebuild)",
        description="Encode images with the index's network (as 'index build' did) and add them to the index's "
        "gallery through its change log (INDEX.log beside it). Images already in the gallery are left out. A "
        "running 'svllreid serve' sees them within seconds.",
    )
    add.add_argument("--index", required=True, help="index file from 'svllreid index build'")
    add.add_argument("--images", required=True, help="folder of images or text file of image paths")
    add_model_args(add, required=False)
    add_label_args(add)
    add.add_argument("--allow-duplicates", action="store_true", help="add images the gallery already has again")
    add.add_argument("--skip-unreadable", action="store_true", help="leave out unreadable images (listed)")
    add_inference_args(add)
    add.set_defaults(func=cmd_index_add)

    remove = index_cmds.add_parser(
        "remove",
        help="remove images from an index (no rebuild)",
        description="Remove images from the index's gallery through its change log: they are never returned "
        "again. Images that 'svllreid serve' stored when they were added are deleted.",
    )
    remove.add_argument("--index", required=True, help="index file")
    which = remove.add_mutually_exclusive_group(required=True)
    which.add_argument("--paths", nargs="+", metavar="PATH", help="image files, or folders: every image under them")
    which.add_argument(
        "--older-than",
        type=older_than,
        metavar="AGE|DATE",
        help="images that joined the gallery before: an age (30d, 12h, 90m, 2w) or a date (2026-12-01, UTC)",
    )
    which.add_argument(
        "--rows", nargs="+", type=int, metavar="ROW", help="gallery rows, as search and serve number them"
    )
    remove.add_argument("--dry-run", action="store_true", help="say what would be removed, change nothing")
    remove.set_defaults(func=cmd_index_remove)

    compact = index_cmds.add_parser(
        "compact",
        help="fold an index's added and removed images into a new index file",
        description="Write the gallery as a new index file in place of the old one (removed images dropped, "
        "rows numbered afresh, the same backend and settings where they still fit) and start an empty change "
        "log. Searches are as fast as a fresh build's again. Safe to run while 'svllreid serve' runs: it "
        "reloads the new file.",
    )
    compact.add_argument("--index", required=True, help="index file")
    compact.set_defaults(func=cmd_index_compact)
