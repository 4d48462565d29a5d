"""Record what a fixed set of ``svllreid`` commands print and return, to compare two versions of the code.

A restructuring must not change behaviour. This script runs every command's ``--help`` and a user's
workflow on a trained checkpoint (data, config, model info, extract, index build, search by photo and by
description, eval, eval-features, export) plus a few mistakes that must fail cleanly, and writes each
command's exit code and its output, with the temporary folder, timings and progress bars normalised away.

    python benchmarks/cli_behaviour.py record --checkpoint runs/demo-X/checkpoints/model.safetensors --out before.json
    python benchmarks/cli_behaviour.py record --checkpoint ... --out after.json
    python benchmarks/cli_behaviour.py compare before.json after.json

``compare`` prints one row per command (same / differs) and the first differing lines, and exits 1 when
any command's exit code or output differs. ``--ignore-json-keys`` compares ``--json`` outputs with those
keys dropped, for a documented schema change.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKU = REPO / "data" / "pku-reid-subset"

# Figures that differ between two runs of the same code: durations, throughput, dates.
VOLATILE = [
    (re.compile(r"\d+(\.\d+)?\s*(s|ms|min)\b"), "<T>"),
    (re.compile(r"\d+(\.\d+)?\s*(images|img|it|queries)/s"), "<RATE>"),
    (re.compile(r"\d{8}-\d{6}"), "<STAMP>"),
]


def _commands(ckpt: str, tmp: Path) -> list[tuple[str, list[str]]]:
    syn = tmp / "syn"
    gallery = syn / "bounding_box_test"
    query_dir = syn / "query"
    commands: list[tuple[str, list[str]]] = [("version", ["--version"]), ("help", ["--help"])]
    for sub in [
        "demo", "config", "config show", "train", "pretrain", "tune", "eval-text", "eval-features", "eval",
        "extract", "index", "index build", "search", "serve", "export", "model", "model info", "data",
        "data list", "data synth", "data stats", "data check",
    ]:  # fmt: skip
        commands.append((f"help {sub}", [*sub.split(), "--help"]))
    commands += [
        ("data list", ["data", "list"]),
        ("data synth", ["data", "synth", "--out", str(syn), "--ids", "12", "--cameras", "2", "--seed", "3"]),
        ("data stats synthetic", ["data", "stats", "--dataset", "market1501", "--root", str(syn), "--json"]),
        ("data stats pku", ["data", "stats", "--dataset", "pku", "--root", str(PKU)]),
        ("data check pku", ["data", "check", "--dataset", "pku", "--root", str(PKU)]),
        ("config show", ["config", "show", str(REPO / "configs" / "synthetic_tiny.yaml"), "stage2.epochs=3"]),
        ("model info", ["model", "info", "--arch", "svll-tiny-vit", "--image-size", "64", "32", "--json"]),
        ("extract", ["extract", "--checkpoint", ckpt, "--images", str(query_dir), "--out", str(tmp / "q.npz"),
                     "--pid-regex", r"^(\d+)_", "--camera-regex", r"_c(\d+)", "--no-progress"]),
        ("extract gallery", ["extract", "--checkpoint", ckpt, "--images", str(gallery), "--out", str(tmp / "g.npz"),
                             "--pid-regex", r"^(\d+)_", "--camera-regex", r"_c(\d+)", "--no-progress"]),
        ("eval-features", ["eval-features", "--query", str(tmp / "q.npz"), "--gallery", str(tmp / "g.npz")]),
        ("eval-features json", ["eval-features", "--query", str(tmp / "q.npz"), "--gallery", str(tmp / "g.npz"),
                                "--json"]),
        ("index build", ["index", "build", "--checkpoint", ckpt, "--images", str(gallery), "--out",
                         str(tmp / "index.npz"), "--no-progress"]),
        ("search photo", ["search", "--index", str(tmp / "index.npz"), "--query", str(query_dir), "--topk", "3",
                          "--no-progress"]),
        ("search photo json", ["search", "--index", str(tmp / "index.npz"), "--query", str(query_dir), "--topk",
                               "3", "--json", "--no-progress"]),
        ("search text json", ["search", "--index", str(tmp / "index.npz"), "--text", "a person in a red shirt",
                              "--topk", "3", "--json", "--no-progress"]),
        ("search no-compiled", ["search", "--index", str(tmp / "index.npz"), "--query", str(query_dir), "--topk",
                                "2", "--no-compiled", "--json", "--no-progress"]),
        ("eval", ["eval", "--checkpoint", ckpt, "--dataset", "market1501", "--root", str(syn), "--no-report",
                  "--json", "--out", str(tmp / "eval"), "--no-progress"]),
        ("export onnx", ["export", "--checkpoint", ckpt, "--format", "onnx", "--out", str(tmp / "m.onnx"),
                         "--json"]),
        ("extract onnx", ["extract", "--model", str(tmp / "m.onnx"), "--images", str(query_dir), "--out",
                          str(tmp / "q_onnx.npz"), "--no-progress"]),
        ("search onnx", ["search", "--index", str(tmp / "index.npz"), "--model", str(tmp / "m.onnx"), "--query",
                         str(query_dir), "--topk", "2", "--json", "--no-progress"]),
        # Mistakes: a clear message and the documented exit code.
        ("error unknown dataset", ["data", "stats", "--dataset", "nosuchset", "--root", str(tmp)]),
        ("error missing index", ["search", "--index", str(tmp / "missing.npz"), "--query", str(query_dir)]),
        ("error missing checkpoint", ["eval", "--checkpoint", str(tmp / "missing.safetensors")]),
        ("error text on onnx", ["search", "--index", str(tmp / "index.npz"), "--model", str(tmp / "m.onnx"),
                                "--text", "a person"]),
        ("error bad override", ["config", "show", str(REPO / "configs" / "synthetic_tiny.yaml"), "nosuch.key=1"]),
    ]  # fmt: skip
    return commands


def _normalise(text: str, tmp: Path, run: str) -> str:
    text = text.replace(str(tmp), "<TMP>").replace(run, "<RUN>").replace(str(REPO), "<REPO>")
    lines = []
    for line in text.splitlines():
        if "%|" in line or "it/s]" in line:  # a progress bar
            continue
        for pattern, repl in VOLATILE:
            line = pattern.sub(repl, line)
        lines.append(line.rstrip())
    return "\n".join(lines)


def record(ckpt: str, out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="svll-behaviour-"))
    results = {}
    run = str(Path(ckpt).resolve().parent.parent)  # the checkpoint's run directory, wherever each version runs
    try:
        for name, args in _commands(str(Path(ckpt).resolve()), tmp):
            proc = subprocess.run(
                [sys.executable, "-m", "svllreid", *args], capture_output=True, text=True, cwd=REPO, check=False
            )
            results[name] = {
                "args": [a.replace(str(tmp), "<TMP>") for a in args],
                "rc": proc.returncode,
                "stdout": _normalise(proc.stdout, tmp, run),
                "stderr": _normalise(proc.stderr, tmp, run),
            }
            print(f"{proc.returncode:>3}  {name}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(results)} commands)")


def _drop_keys(value: object, keys: set[str]) -> object:
    if isinstance(value, dict):
        return {k: _drop_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_drop_keys(v, keys) for v in value]
    return value


def _comparable(text: str, keys: set[str]) -> str:
    if not keys:
        return text
    try:
        return json.dumps(_drop_keys(json.loads(text), keys), indent=1, sort_keys=True)
    except json.JSONDecodeError:
        return text


def compare(before_path: Path, after_path: Path, ignore_keys: set[str]) -> int:
    before = json.loads(before_path.read_text(encoding="utf-8"))
    after = json.loads(after_path.read_text(encoding="utf-8"))
    differing = 0
    print("| command | exit code before | after | output |\n|---|---|---|---|")
    for name in before:
        b, a = before[name], after.get(name)
        if a is None:
            print(f"| {name} | {b['rc']} | missing | - |")
            differing += 1
            continue
        same_out = all(
            _comparable(b[stream], ignore_keys) == _comparable(a[stream], ignore_keys)
            for stream in ("stdout", "stderr")
        )
        differing += int(not same_out or b["rc"] != a["rc"])
        print(f"| {name} | {b['rc']} | {a['rc']} | {'same' if same_out else 'DIFFERS'} |")
    for name in before:
        a = after.get(name)
        if a is None:
            continue
        for stream in ("stdout", "stderr"):
            old, new = (_comparable(x[stream], ignore_keys) for x in (before[name], a))
            if old != new:
                diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1))
                print(f"\n--- {name} ({stream}):\n" + "\n".join(diff[:30]))
    print(f"\n{len(before) - differing} of {len(before)} commands give the same exit code and output")
    return int(differing > 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--checkpoint", required=True, help="a trained checkpoint (e.g. a demo run's model)")
    rec.add_argument("--out", type=Path, required=True)
    cmp = sub.add_parser("compare")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    cmp.add_argument("--ignore-json-keys", default="", help="comma-separated keys dropped from JSON outputs")
    args = parser.parse_args()
    if args.command == "record":
        record(args.checkpoint, args.out)
        return 0
    return compare(args.before, args.after, {k for k in args.ignore_json_keys.split(",") if k})


if __name__ == "__main__":
    sys.exit(main())
