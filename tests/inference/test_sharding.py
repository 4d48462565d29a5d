"""Extraction, indexing and evaluation split over the processes of a torchrun launch (gloo, CPU).

One launch of two processes runs every command below (tests/inference/torchrun_commands.py) and each
test reads its part; the single-process references run in this process. The checks of shards and of the
processes' agreement also have tests of their own that need no launch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

import svllreid.distributed as distributed
from svllreid.cli import main
from svllreid.data.images import list_images
from svllreid.distributed import DistInfo, require_same_everywhere, run_everywhere, share
from svllreid.errors import ConfigError, LaunchError, OutputError
from svllreid.inference.features import FileFeatures
from svllreid.inference.sharding import RunFingerprint, ShardPlan, shard_folder
from svllreid.inference.trained import load_trained_model
from svllreid.search import GalleryIndex
from tests.conftest import market_names
from tests.inference.test_query_encoder import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
WORLD = 2


def fingerprint(**changes: Any) -> RunFingerprint:
    base = RunFingerprint(
        images="a" * 64,
        num_images=3,
        network="b" * 64,
        network_name="model.safetensors",
        flip=False,
        preprocessing="64×32 bilinear, normalisation 0123456789ab",
        precision="float32",
    )
    return dataclasses.replace(base, **changes)


def features(paths: list[str], unreadable: tuple[str, ...] = ()) -> FileFeatures:
    readable = [p for p in paths if p not in unreadable]
    return FileFeatures(torch.randn(len(readable), 4), readable, list(unreadable), 0.0)


@pytest.mark.parametrize(("count", "world"), [(9, 2), (8, 4), (2, 3), (0, 2)])
def test_the_shares_are_contiguous_in_rank_order_and_even(count: int, world: int) -> None:
    shares = [share(count, DistInfo(rank=r, world_size=world)) for r in range(world)]
    assert [i for s in shares for i in range(count)[s]] == list(range(count))
    sizes = [s.stop - s.start for s in shares]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_a_shard_of_another_run_is_refused_with_what_differs(tmp_path: Path) -> None:
    paths = ("a.jpg", "b.jpg", "c.jpg")
    plan = ShardPlan(tmp_path / "f.npz", paths, fingerprint(), WORLD)
    plan.check_folder()  # no folder yet: nothing to refuse
    plan.write(0, features(list(paths[:2])))
    plan.check_folder()  # this run's own shard
    assert plan.read(0).paths == ["a.jpg", "b.jpg"]
    flipped = ShardPlan(tmp_path / "f.npz", paths, fingerprint(flip=True, num_images=4), WORLD)
    flipped.write(1, features(["c.jpg"]))
    with pytest.raises(OutputError) as caught:
        plan.check_folder()
    message = str(caught.value)
    assert flipped.file(1).name in message and plan.file(0).name not in message
    assert "flip (off here, on there)" in message and "the image list (3 images here, 4 there)" in message
    assert f"Delete {plan.folder}" in message and "another --out" in message
    flipped.file(1).unlink()
    four = ShardPlan(tmp_path / "f.npz", paths, fingerprint(), 4)
    four.write(3, features([]))
    with pytest.raises(OutputError, match=r"the number of processes \(2 here, 4 there\)"):
        plan.check_folder()


def test_a_damaged_or_misplaced_shard_is_not_used(tmp_path: Path) -> None:
    paths = ("a.jpg", "b.jpg", "c.jpg", "d.jpg")
    plan = ShardPlan(tmp_path / "f.npz", paths, fingerprint(), WORLD)
    plan.write(1, features(["a.jpg", "b.jpg"]))  # rank 0's images under rank 1's name
    with pytest.raises(OutputError, match=r"does not hold rank 1's 2 images in order.*Delete it"):
        plan.read(1)
    plan.write(1, features(["c.jpg", "d.jpg"], unreadable=("d.jpg",)))
    assert plan.read(1).unreadable == ["d.jpg"]
    plan.file(1).write_bytes(b"cut short")
    with pytest.raises(OutputError, match="is not a readable shard"):
        plan.read(1)
    (tmp_path / "f.npz.shards").rename(tmp_path / "elsewhere")
    (tmp_path / "f.npz.shards").write_text("")
    with pytest.raises(OutputError, match=r"is a file; the shards of f\.npz go there"):
        plan.check_folder()


def fake_all_gather(monkeypatch: pytest.MonkeyPatch, others: list[Any], rank: int) -> None:
    """``dist.all_gather_object`` as if the other processes had sent ``others`` (in rank order)."""

    def gather(out: list[Any], value: Any) -> None:
        out[:] = [*others[:rank], value, *others[rank:]]

    monkeypatch.setattr(distributed.dist, "all_gather_object", gather)


def test_processes_that_list_different_images_are_refused_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_all_gather(monkeypatch, ["8 images (list digest 0a)", "7 images (list digest 3f)"], rank=0)
    with pytest.raises(ConfigError) as caught:
        require_same_everywhere("8 images (list digest 0a)", DistInfo(0, 3), what="image lists", fix="Fix it.")
    assert str(caught.value) == (
        "the 3 processes of this launch see different image lists: ranks 0, 1: 8 images (list digest 0a); "
        "rank 2: 7 images (list digest 3f). Fix it."
    )
    fake_all_gather(monkeypatch, ["8 images (list digest 0a)"], rank=1)
    with pytest.raises(LaunchError) as quiet:  # the main process says it; the others stop quietly
        require_same_everywhere("7 images (list digest 3f)", DistInfo(1, 2), what="image lists", fix="Fix it.")
    assert quiet.value.shown_by_main and quiet.value.exit_code == 2
    fake_all_gather(monkeypatch, ["8 images"], rank=1)
    require_same_everywhere("8 images", DistInfo(1, 2), what="image lists", fix="")


def test_a_failure_on_one_process_stops_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        raise OutputError("disk gone")

    fake_all_gather(monkeypatch, [None, ("disk gone", 2)], rank=0)  # rank 2 failed, rank 0 did not
    with pytest.raises(LaunchError, match=r"^on rank 2 of 3: disk gone$") as caught:
        run_everywhere(lambda: 5, DistInfo(0, 3))
    assert caught.value.exit_code == 2 and not caught.value.shown_by_main
    fake_all_gather(monkeypatch, [None], rank=1)
    with pytest.raises(OutputError, match="disk gone"):  # the main process raises its own error
        run_everywhere(fail, DistInfo(0, 2))
    fake_all_gather(monkeypatch, [("disk gone", 2)], rank=1)
    with pytest.raises(LaunchError) as elsewhere:
        run_everywhere(fail, DistInfo(1, 2))
    assert elsewhere.value.shown_by_main
    fake_all_gather(monkeypatch, [None], rank=1)
    assert run_everywhere(lambda: 5, DistInfo(1, 2)) == 5


def test_a_gpu_index_under_a_launch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    refused = pytest.raises(ConfigError, match="--device cuda:1 under torchrun would put every process on one GPU")
    with refused, distributed.launch_group("cuda:1"):
        pass


# --- one launch of two processes ------------------------------------------------------------------------


def random_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    low = np.random.default_rng(seed).integers(0, 256, (8, 4, 3), dtype=np.uint8)
    Image.fromarray(low).resize((32, 64), Image.Resampling.BILINEAR).save(path)


def market_tree(root: Path) -> Path:
    """A Market-1501 tree of distinct images (no ties in the ranking, which float noise could reorder)."""
    folders = {
        "bounding_box_train": market_names(2, [1, 2], 2),
        "query": market_names(11, [1], 1) + market_names(12, [2], 1) + market_names(13, [3], 1),
        "bounding_box_test": market_names(11, [1, 3], 2)
        + market_names(12, [4], 3)
        + market_names(13, [5], 2)
        + market_names(0, [6], 1),  # a distractor: 11 test images, shares of 6 and 5 (gathered with padding)
    }
    seed = 100
    for folder, names in folders.items():
        for name in names:
            seed += 1
            random_image(root / folder / name, seed)
    return root


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    """Every number of a JSON tree by its path."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in numbers(value, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in numbers(value, f"{prefix}/{i}").items()}
    return {prefix: float(tree)} if isinstance(tree, int | float) and not isinstance(tree, bool) else {}


@dataclasses.dataclass
class Launch:
    tmp: Path
    paths: list[str]
    ranks: list[dict[str, dict[str, Any]]]  # per rank: each command's result by its name
    seconds: float

    def result(self, name: str, rank: int = 0) -> dict[str, Any]:
        return self.ranks[rank][name]


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Launch:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch has no gloo backend for torch.distributed")
    tmp = tmp_path_factory.mktemp("sharded")
    checkpoint = write_tiny_checkpoint(tmp / "rn.safetensors", "svll-tiny-rn")
    photos = tmp / "photos"
    for i, name in enumerate(market_names(3, [1, 2], 2) + market_names(5, [1, 2, 3], 1) + market_names(8, [4], 1)):
        random_image(photos / name, i)
    (photos / "0004_c1s1_000000_00.jpg").write_bytes(b"not a jpeg")  # unreadable, in rank 0's share
    market = market_tree(tmp / "market")
    model = ["--checkpoint", str(checkpoint), "--no-progress"]
    extract = ["extract", *model, "--images", str(photos), "--pid-regex", r"^(\d+)_", "--skip-unreadable"]
    evaluate = ["eval", *model, "--dataset", "market1501", "--root", str(market), "--json", "--no-report"]
    index = ["index", "build", *model, "--images", str(photos), "--skip-unreadable"]

    # The single-process references.
    assert main([*extract, "--out", str(tmp / "single.npz"), "--device", "cpu"]) == 0
    assert main([*evaluate, "--out", str(tmp / "eval-single"), "--device", "cpu"]) == 0
    os.environ["SVLLREID_ENCODER_CACHE"] = "0"  # no compiled query encoder: not what is tested here
    try:
        assert main([*index, "--out", str(tmp / "single.index"), "--device", "cpu"]) == 0
    finally:
        del os.environ["SVLLREID_ENCODER_CACHE"]

    # What earlier launches left: rank 1's shard of this run (its rows negated, to tell them from
    # rows computed again), and rank 0's shard of a run with flip.
    paths = list_images(photos)
    run = RunFingerprint.of(load_trained_model(checkpoint, "cpu"), paths, flip=False)
    single = load_npz(tmp / "single.npz")
    row = {p: i for i, p in enumerate(single["paths"].tolist())}
    resumed = ShardPlan(tmp / "resumed.npz", tuple(paths), run, WORLD)
    mine = paths[resumed.share(1)]
    readable = [p for p in mine if p in row]
    negated = torch.from_numpy(-single["feats"][[row[p] for p in readable]])
    resumed.write(1, FileFeatures(negated, readable, [p for p in mine if p not in row], 0.0))
    flipped = ShardPlan(tmp / "foreign.npz", tuple(paths), dataclasses.replace(run, flip=True), WORLD)
    flipped.write(0, FileFeatures(torch.zeros(0, 4), [], list(paths[flipped.share(0)]), 0.0))
    (tmp / "list0.txt").write_text("\n".join(paths[:3]))
    (tmp / "list1.txt").write_text("\n".join(paths[:2]))

    plan = {
        "extract": [*extract, "--out", str(tmp / "sharded.npz")],
        "resumed": [*extract, "--out", str(tmp / "resumed.npz")],
        "foreign": [*extract, "--out", str(tmp / "foreign.npz")],
        "lists": ["extract", *model, "--images", str(tmp / "list{rank}.txt"), "--out", str(tmp / "lists.npz")],
        "unreadable": ["extract", *model, "--images", str(photos), "--out", str(tmp / "stopped.npz")],
        "rerun": ["extract", *model, "--images", str(photos), "--out", str(tmp / "stopped.npz"), "--skip-unreadable"],
        "index": [*index, "--out", str(tmp / "sharded.index")],
        "eval": [*evaluate, "--out", str(tmp / "eval-sharded")],
    }
    (tmp / "plan.json").write_text(json.dumps(list(plan.values())))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SVLLREID_ENCODER_CACHE": "0"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}"]
    command += [str(Path(__file__).with_name("torchrun_commands.py")), str(tmp / "plan.json"), str(tmp)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = []
    for rank in range(WORLD):
        results = json.loads((tmp / f"rank{rank}.json").read_text())
        ranks.append(dict(zip(plan, results, strict=True)))
    return Launch(tmp, paths, ranks, seconds)


@pytest.mark.slow
def test_two_processes_extract_what_one_process_extracts(launch: Launch) -> None:
    for rank in range(WORLD):
        assert launch.result("extract", rank)["code"] == 0, launch.result("extract", rank)["err"]
    single, sharded = load_npz(launch.tmp / "single.npz"), load_npz(launch.tmp / "sharded.npz")
    assert sorted(sharded) == sorted(single) == ["feats", "model", "paths", "pids"]
    assert sharded["paths"].tolist() == single["paths"].tolist() and len(single["paths"]) == 8  # broken one left out
    np.testing.assert_array_equal(sharded["pids"], single["pids"])
    assert sharded["model"] == single["model"]
    np.testing.assert_allclose(sharded["feats"], single["feats"], rtol=0, atol=1e-6)
    assert not shard_folder(launch.tmp / "sharded.npz").exists()  # merged, then removed
    printed = launch.result("extract")
    assert "skipped 1 unreadable image(s)" in printed["err"] and "2 processes" in printed["out"]
    assert launch.result("extract", 1)["out"] == launch.result("extract", 1)["err"] == ""  # rank 0 alone prints


@pytest.mark.slow
def test_a_launch_resumes_from_the_shards_written_before(launch: Launch) -> None:
    assert launch.result("resumed")["code"] == launch.result("resumed", 1)["code"] == 0
    assert "the shard of rank 1 reused from" in launch.result("resumed")["out"]
    single, resumed = load_npz(launch.tmp / "single.npz"), load_npz(launch.tmp / "resumed.npz")
    assert resumed["paths"].tolist() == single["paths"].tolist()
    second = launch.paths[share(len(launch.paths), DistInfo(1, WORLD))]
    rows = np.array([p in second for p in single["paths"].tolist()])
    assert 0 < rows.sum() < len(rows)
    np.testing.assert_array_equal(resumed["feats"][rows], -single["feats"][rows])  # rank 1's rows: the shard's
    np.testing.assert_allclose(resumed["feats"][~rows], single["feats"][~rows], rtol=0, atol=1e-6)  # computed


@pytest.mark.slow
def test_a_shard_of_another_run_stops_the_launch(launch: Launch) -> None:
    main_process, other = launch.result("foreign"), launch.result("foreign", 1)
    assert main_process["code"] == other["code"] == 2
    assert "holds 1 shard(s) of another run" in main_process["err"]
    assert "flip (off here, on there)" in main_process["err"]
    assert other["err"] == ""  # said once, by the main process
    assert not (launch.tmp / "foreign.npz").exists()


@pytest.mark.slow
def test_processes_that_see_different_image_lists_are_refused(launch: Launch) -> None:
    main_process, other = launch.result("lists"), launch.result("lists", 1)
    assert main_process["code"] == other["code"] == 2 and other["err"] == ""
    assert "see different image lists: rank 0: 3 images" in main_process["err"]
    assert "rank 1: 2 images" in main_process["err"]
    assert not shard_folder(launch.tmp / "lists.npz").exists()  # refused before any work


@pytest.mark.slow
def test_unreadable_images_stop_a_launch_as_one_process_and_its_shards_serve_the_next(launch: Launch) -> None:
    stopped = launch.result("unreadable")
    assert stopped["code"] == launch.result("unreadable", 1)["code"] == 2
    assert "1 of 9 image(s) could not be read" in stopped["err"] and "--skip-unreadable" in stopped["err"]
    rerun = launch.result("rerun")
    assert rerun["code"] == 0 and "the shards of ranks 0, 1 reused from" in rerun["out"]
    single, resumed = load_npz(launch.tmp / "single.npz"), load_npz(launch.tmp / "stopped.npz")
    assert resumed["paths"].tolist() == single["paths"].tolist()
    np.testing.assert_allclose(resumed["feats"], single["feats"], rtol=0, atol=1e-6)
    assert not shard_folder(launch.tmp / "stopped.npz").exists()


@pytest.mark.slow
def test_index_build_under_torchrun(launch: Launch) -> None:
    assert launch.result("index")["code"] == 0, launch.result("index")["err"]
    single, sharded = GalleryIndex.load(launch.tmp / "single.index"), GalleryIndex.load(launch.tmp / "sharded.index")
    assert sharded.paths == single.paths
    np.testing.assert_allclose(sharded.feats, single.feats, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_eval_under_torchrun_gives_the_single_process_numbers(launch: Launch) -> None:
    assert launch.result("eval")["code"] == 0, launch.result("eval")["err"]
    assert launch.result("eval", 1)["out"] == ""
    single = json.loads((launch.tmp / "eval-single" / "eval.json").read_text())["result"]
    sharded = json.loads((launch.tmp / "eval-sharded" / "eval.json").read_text())["result"]
    assert json.loads(launch.result("eval")["out"]) == sharded
    expected, got = numbers(single), numbers(sharded)
    assert got.keys() == expected.keys() and "/mAP" in got
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
