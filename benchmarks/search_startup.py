"""Start-up of ``svllreid search``: one single-image search as a whole new process, side by side with
``python -c "import torch"``.

A search encodes one image in milliseconds; what a user waits for is the process starting. Before, each
search rebuilt the network from its checkpoint, which imports open_clip (and with it torchvision and
timm). Now ``index build`` compiles the network's image branch into the cache
(``svllreid.inference.query_encoder``), and a search loads that with torch alone. ``--no-compiled`` still
takes the full rebuild: the "before" rows run exactly what every search ran before.

This script writes a checkpoint of a tiny network (random weights: start-up does not depend on training),
draws a gallery of ``--gallery`` JPEGs, builds its index with the CLI, then runs each command
``--repeats`` times, interleaved so that a change in the machine's load touches every row alike. It
prints the median wall time of each and its ratio to ``import torch``: measured numbers only.
    python benchmarks/search_startup.py --gallery 406 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_checkpoint(path: Path, arch: str, image_size: tuple[int, int]) -> Path:
    import torch

    from svllreid.config import config_to_dict, load_config
    from svllreid.inference.checkpoint import write_checkpoint as write
    from svllreid.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, image_size=image_size)
    config = load_config(None, [f"data.image_size=[{image_size[0]},{image_size[1]}]", f"model.arch={arch}"])
    meta = {"spec": model.spec.to_dict(), "quick_gelu": False, "config": config_to_dict(config), "stage": 2}
    return write(path, model, meta)


def make_gallery(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels).resize((64, 128), Image.Resampling.BILINEAR).save(path, quality=90)
        paths.append(path)
    return paths


def wall_time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=406, help="gallery images (default 406)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5; median shown)")
    parser.add_argument("--arch", default="svll-tiny-vit", help="network (default svll-tiny-vit)")
    parser.add_argument("--image-size", type=int, nargs=2, default=[64, 32], metavar=("H", "W"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="svllreid-startup-"))
    env = {**os.environ, "SVLLREID_CACHE": str(work / "cache")}  # the compiled encoder goes there
    os.environ.update(env)
    checkpoint = write_checkpoint(work / "model.safetensors", args.arch, (args.image_size[0], args.image_size[1]))
    gallery = make_gallery(work / "gallery", args.gallery)
    svllreid = [sys.executable, "-m", "svllreid"]
    index = work / "gallery.index"
    # The index is built in this process (it is not timed): a new process would import torch and open_clip
    # again only to write the same files.
    from svllreid.cli import main as cli

    build = ["index", "build", "--checkpoint", str(checkpoint), "--images", str(work / "gallery")]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli([*build, "--out", str(index), "--no-progress"])
    if code != 0:
        sys.exit(f"index build failed with exit code {code}")
    search = [*svllreid, "search", "--index", str(index), "--query", str(gallery[0]), "--topk", "10", "--no-progress"]
    commands = {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "svllreid --version": [*svllreid, "--version"],
        "search, before (full rebuild)": [*search, "--no-compiled"],
        "search, after (compiled)": search,
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            times[name].append(wall_time(command, env))
    torch_s = statistics.median(times['python -c "import torch"'])
    rows = {
        name: {"median_s": statistics.median(t), "runs_s": t, "vs_import_torch": statistics.median(t) / torch_s}
        for name, t in times.items()
    }
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "network": f"{args.arch} {args.image_size[0]}×{args.image_size[1]}",
        "gallery": args.gallery,
        "repeats": args.repeats,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"one single-image search on a {args.gallery}-image index, {report['network']}, {report['machine']}; "
        f"median of {args.repeats} new processes each"
    )
    print(f"{'':<32}{'seconds':>9}{'× import torch':>16}")
    for name, row in rows.items():
        print(f"{name:<32}{row['median_s']:9.2f}{row['vs_import_torch']:15.2f}×")


if __name__ == "__main__":
    main()
