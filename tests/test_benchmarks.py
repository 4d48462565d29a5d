"""The GPU check script runs anywhere with --small (a test of the script itself, not a timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import pku_subset, run_script

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


@pytest.mark.slow
def test_gpu_check_small_runs_on_cpu(capsys):
    args = ["--small", "--iters", "1", "--warmup", "0", "--json"]
    report = json.loads(run_script(BENCHMARKS / "gpu_check.py", *args, capsys=capsys))
    rows = report["rows"]
    assert {(r["stride"], r["what"]) for r in rows} == {
        (s, w) for s in (16, 12) for w in ("stage 1 step", "stage 2 step", "extraction")
    }
    for row in rows:
        assert row["seconds"] > 0 and row["images_per_s"] > 0 and row["tflops_per_s"] > 0
        assert row["mfu"] is None  # no known peak on a CPU


def test_loss_precision_benchmark_measures_the_autocast_errors(capsys):
    args = ["--trials", "2", "--spreads", "0.1", "1.0", "--json"]
    report = json.loads(run_script(BENCHMARKS / "loss_precision.py", *args, capsys=capsys))
    assert report["device"] == "cpu" and report["autocast"] == "bf16" and len(report["rows"]) == 2
    for row in report["rows"]:
        assert row["distance"] > 1e-2  # a bf16 distance matmul is visibly off at norm 20 ...
        assert row["loss_svllreid"] < 1e-5  # ... svllreid's loss under the same autocast is not


@pytest.mark.slow
def test_search_startup_benchmark_times_each_command_as_a_new_process(capsys):
    # The script in this process; each command it times is a new process of its own.
    args = ["--gallery", "6", "--repeats", "1", "--json"]
    rows = json.loads(run_script(BENCHMARKS / "search_startup.py", *args, capsys=capsys))["rows"]
    assert list(rows) == [
        'python -c "import torch"',
        "svllreid --version",
        "search, before (full rebuild)",
        "search, after (compiled)",
    ]
    for row in rows.values():
        assert len(row["runs_s"]) == 1 and row["median_s"] > 0
    assert rows['python -c "import torch"']["vs_import_torch"] == 1.0


@pytest.mark.slow
def test_export_speed_benchmark_times_torch_and_each_runtimes_int8_file(capsys):
    # torch, and the INT8 file of each runtime (whose export writes and checks the fp32 file first).
    runtimes = ["torch", "onnxruntime-int8", "openvino-int8"]
    args = ["--networks", "tiny-rn", "--batches", "1", "3", "--repeats", "1", "--runtimes", *runtimes, "--json"]
    report = json.loads(run_script(BENCHMARKS / "export_speed.py", *args, capsys=capsys))
    assert report["threads"] >= 1 and len(report["load_average_before"]) == 3
    assert [(r["runtime"], r["batch"]) for r in report["rows"]] == [(r, b) for r in runtimes for b in (1, 3)]
    for row in report["rows"]:
        assert row["ms"] > 0 and row["images_per_s"] == pytest.approx(row["batch"] * 1000 / row["ms"])
        if row["runtime"] != "torch":  # timed, with its measured closeness to the fp32 network
            assert row["int8"]["min_cosine"] >= 0.98 and row["int8"]["images"] == 32


@pytest.mark.slow
def test_boxmot_preprocessing_benchmark_reproduces_the_evaluation_in_its_first_row(tmp_path: Path, capsys):
    # 10 of the subset's 37 training and 37 test identities: what is checked is the script's own
    # pipeline, not a figure of the whole subset.
    root = pku_subset(tmp_path / "pku", identities=10)
    args = ["--json", "--root", str(root), "--stage1-epochs", "1", "--stage2-epochs", "1"]
    report = json.loads(run_script(BENCHMARKS / "boxmot_preprocessing.py", *args, capsys=capsys))
    rows = report["rows"]
    assert len(rows) == 7 and rows[0]["difference"] == 0.0
    # The first row is svllreid's own pipeline: the training run's evaluation, recomputed.
    assert rows[0]["mAP"] == pytest.approx(report["training_run_mAP"], abs=0.01)
    assert all(0.0 < r["mAP"] <= 100.0 for r in rows)


@pytest.mark.slow
def test_text_retention_benchmark_evaluates_the_three_points(tmp_path: Path, capsys):
    from svllreid.data.synthesis import generate_synthetic

    world = tmp_path / "world"
    generate_synthetic(world, num_ids=10, num_cameras=2, images_per_camera=2, seed=51, workers=1, train_ids=4)
    args = ["--json", "--root", str(world), "--out", str(tmp_path / "runs")]
    args += ["stage1.epochs=1", "stage2.epochs=1", "stage2.milestones=[1]", "stage2.warmup_epochs=0"]
    args += ["data.options.ids=20", "data.options.images_per_camera=2"]
    report = json.loads(run_script(BENCHMARKS / "text_retention.py", *args, capsys=capsys))
    rows = report["rows"]
    assert list(rows) == ["after pretraining (svll-synth)", "after CLIP-ReID", "after SVLL-ReID"]
    assert report["captions"] == 6 * 2 * 2
    for name, row in rows.items():
        assert 0.0 < row["R@1"] <= row["R@5"] <= row["R@10"] <= 1.0 and 0.0 < row["mAP"] <= 1.0
        assert (row["reid_mAP"] is None) == name.startswith("after pretraining")
    # Two different trainings: the self-supervision branches change what the network learns.
    assert rows["after CLIP-ReID"]["mAP"] != rows["after SVLL-ReID"]["mAP"]


@pytest.mark.slow
def test_serve_load_benchmark_measures_the_server_and_the_cli():
    pytest.importorskip("fastapi")
    cmd = [sys.executable, str(REPO / "benchmarks" / "serve_load.py"), "--json", "--gallery", "200"]
    cmd += ["--clients", "1", "3", "--requests", "4", "--single", "3", "--cli-queries", "1"]
    cmd += ["--readers", "2", "--writers", "1"]
    report = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout)
    assert report["gallery"] == 200
    assert [r["clients"] for r in report["levels"]] == [1, 3]
    assert [r["requests"] for r in report["levels"]] == [4, 12]
    assert all(r["failed"] == 0 and r["qps"] > 0 for r in report["levels"])
    assert all(0 < r["all"]["p50"] <= r["all"]["p95"] <= r["all"]["p99"] for r in report["levels"])
    assert report["levels"][0]["abuse"] is None and report["levels"][1]["abuse"]["disconnects"] > 0
    assert report["single"]["image"]["failed"] == report["single"]["text"]["failed"] == 0
    assert report["cli"]["queries"] == 2 and report["cli"]["image_s"] > 0
    # The read/write level: the same 2 readers read-only, then while a writer adds and removes images.
    rw = report["read_write"]
    assert (rw["readers"], rw["writers"]) == (2, 1)
    for readers in (rw["read_only"], rw["read"]):
        assert readers["requests"] == 8 and readers["failed"] == 0 and readers["qps"] > 0
        assert 0 < readers["all"]["p50"] <= readers["all"]["p90"] <= readers["all"]["p99"]
    assert rw["p99_ratio"] == pytest.approx(rw["read"]["all"]["p99"] / rw["read_only"]["all"]["p99"])
    assert rw["p99_target_holds"] == (rw["p99_ratio"] < 3)
    write = rw["write"]
    assert write["adds"] >= 1 and write["failed"] == 0 and write["failures"] == {}
    assert write["removes"] == write["images_added"] >= write["adds"]  # every image it added, one by one
    assert 0 < write["add_ms"]["p50"] <= write["add_ms"]["p99"] and write["remove_ms"]["p50"] > 0
    # At most its previous addition and its new one (1 and 2 images, in turn) are in the gallery at once.
    assert rw["gallery_before"] == rw["gallery_after"] == 200 < rw["gallery_largest"] <= 203
    server = report["server"]
    # warm-up, one at a time, the levels, the read/write level's readers without and with the writer
    assert server["alive_after"] and server["queries"] == 10 + 6 + 16 + 8 + 8
    assert 0 < server["encoder_calls"] <= server["queries"] and report["server_log_errors"] == []


@pytest.mark.slow
def test_own_data_benchmark_measures_start_best_and_last(tmp_path, capsys):
    from tests.tiny_runs import small

    overrides = [
        v
        for v in small(tmp_path, "x", **{"data.validation_ids": 3, "stage2.ids_per_batch": 4})
        if not v.startswith(("run.name=", "run.output_dir="))
    ]
    args = ["run", "--config", str(REPO / "configs" / "synthetic_tiny.yaml")]
    args += ["--seeds", "1", "--out", str(tmp_path / "own"), *overrides]
    printed = run_script(BENCHMARKS / "own_data.py", *args, capsys=capsys)
    assert "| start |" in printed and "| last |" in printed and "epoch:validation mAP" in printed
    run = json.loads((tmp_path / "own" / "own_data.json").read_text())["runs"][0]
    assert [p["epoch"] for p in run["curve"]] == [0, 1, 2]
    for row in ("start", "best", "last"):
        assert 0 <= run["rows"][row]["validation"]["mAP"] <= 1 and "spread" in run["rows"][row]["test"]


REFERENCE = os.environ.get("SVLLREID_REFERENCE", "")


@pytest.mark.slow
@pytest.mark.skipif(
    not (REFERENCE and (Path(REFERENCE) / "model" / "make_model_svllreid.py").is_file()),
    reason="SVLLREID_REFERENCE does not name a checkout of BinWangGzhu/SVLL-ReID",
)
def test_reference_parity_benchmark_finds_svllreid_equal_to_the_authors_code(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "reference_parity.py"), "--reference", REFERENCE]
    cmd += ["--geometry", "synth", "--steps", "1", "--json", str(tmp_path / "parity.json")]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((tmp_path / "parity.json").read_text())["synth"]
    for term in ("i2t", "t2i", "lang_ssl"):
        reference, ours = figures[f"stage1 {term} (reference, svllreid)"]
        assert ours == pytest.approx(reference, rel=1e-5)
    for term in ("id", "triplet", "i2t", "vis_ssl"):
        reference, ours = figures[f"stage2 {term} (reference, svllreid)"]
        assert ours == pytest.approx(reference, rel=1e-5)
    assert figures["stage2 gradient, SIE table"] < 1e-5 and figures["stage1 gradient prompt words"] < 1e-4


@pytest.mark.slow
def test_occluded_ablation_benchmark_tests_each_variant_on_holistic_and_occluded_queries(tmp_path, monkeypatch, capsys):
    from tests.tiny_runs import small

    overrides = [
        v
        for v in small(tmp_path, "x", **{"data.root": "", "stage1.epochs": 1, "stage2.epochs": 1})
        if not v.startswith(("run.name=", "run.output_dir=", "data.options="))
    ]
    overrides += ["data.options.ids=16", "data.options.cameras=3", "data.options.images_per_camera=3"]
    args = ["--dataset", "synthetic", "--seeds", "1", "--variants", "CLIP-ReID", "+ vision SSL"]
    args += ["--out", str(tmp_path / "occ"), *overrides]
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))
    printed = run_script(BENCHMARKS / "occluded_ablation.py", *args, capsys=capsys)
    assert "| + vision SSL |" in printed and "| SVLL-ReID |" not in printed
    report = json.loads((tmp_path / "occ" / "occluded_ablation.json").read_text())
    for runs in report["results"].values():
        (run,) = runs
        assert 0 <= run["holistic"]["mAP"] <= 1 and 0 <= run["occluded"]["mAP"] <= 1
        assert run["holistic"]["mAP"] != run["occluded"]["mAP"]


def test_vision_ssl_factors_match_the_papers_erased_token_share(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import vision_ssl_factors

    from svllreid.config import load_config
    from svllreid.data.transforms import erased_token_share

    paper = erased_token_share((256, 128), 16, 12, 0.33)
    assert 0.43 < paper < 0.47
    cfg = load_config(REPO / "configs" / "synthetic_tiny.yaml")
    factors, lines = vision_ssl_factors.settings(cfg, paper)
    assert "76." in lines[1]  # the recipe's 64x32 at stride 8 erases three in four tokens
    matched = next(name for name in factors if name.startswith("erasing matched"))
    area = float(factors[matched][0][0].split("=")[1])
    assert abs(erased_token_share((64, 32), 16, 8, area) - paper) < 0.02
    assert factors[matched][1] is False and factors["SIE on cameras"] == (["model.sie=camera"], True)
    combined = factors["combined"][0]
    assert "data.image_size=[128,64]" in combined and "stage2.id_weight=0.25" in combined


def test_verification_speed_benchmark_measures_the_binned_path_against_the_exact_one(monkeypatch):
    """The worker of benchmarks/verification_speed.py, in process on its small size: the binned path's
    numbers lie within the bounds it states of the exact path's."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import verification_speed

    row = verification_speed.worker("small", "both", 16, 1.0, binned=True)
    assert row["path"] == "binned" and 0 < row["pairs"] <= 300 * 2000  # less the same-camera pairs of one identity
    assert abs(row["auc"] - row["exact_auc"]) <= row["auc_bound"]
    assert abs(row["eer"] - row["exact_eer"]) <= row["eer_bound"]
    for binned, exact, bound in zip(row["tpr"], row["exact_tpr"], row["tpr_bound"], strict=True):
        assert binned is None or 0 <= exact - binned <= bound + 1e-12
    assert row["wall_s"] > 0 and row["call_peak_gb"] > 0
    ranking = verification_speed.worker("small", "ranking", 16, 1.0)
    assert 0 < ranking["mAP"] < 1


@pytest.mark.slow
def test_search_speed_past_ram_builds_and_serves_each_size_in_its_own_processes(tmp_path, capsys):
    """benchmarks/search_speed.py --sizes at two tiny sizes: every column measured, recall against the float64
    reference, the reference cached in --work, and the 100 M row extrapolated from the two sizes."""
    pytest.importorskip("faiss")
    # The script in this process; it builds and serves each size in processes of their own.
    args = ["--sizes", "3000,6000", "--queries", "60", "--dim", "64", "--chunk", "1000", "--work", str(tmp_path)]
    report = json.loads(run_script(BENCHMARKS / "search_speed.py", *args, "--json", capsys=capsys))
    rows = report["rows"]
    assert [r["n"] for r in rows] == [3000, 6000]
    for row in rows:
        assert row["recall"] >= 0.9 and row["reference_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["build_s"] > 0 and row["load_s"] > 0
        assert 0 < row["build_rss_gb"] < 2 and 0 < row["serve_rss_gb"] < 2 and row["file_gb"] > 0
        assert len(row["load_build"]) == len(row["load_serve"]) == 3
        assert row["params"]["refine"] == 10 and row["params"]["train_size"] == row["n"]
    assert len(list(tmp_path.glob("reference-*.npy"))) == 2 and len(list(tmp_path.glob("ivfpq-*.index"))) == 2
    extrapolated = report["extrapolated"]
    assert extrapolated["n"] == 100_000_000 and "recall" not in extrapolated
    assert extrapolated["file_gb"] > rows[-1]["file_gb"]


def _soak_sample(t_s: float, rss_mb: float, generation: str | None, requests: int, images: int = 100) -> dict:
    return {"t_s": t_s, "rss_mb": rss_mb, "generation": generation, "images": images, "reads": requests, "writes": 0}


def test_the_soaks_memory_verdict_reads_the_level_after_compactions(monkeypatch):
    """benchmarks/serve_load.py's memory target: the saw-tooth of a live gallery (up between compactions, down at
    each) holds, even with one low reading among the levels after compactions; a level that climbs by 1.5 MiB a
    compaction does not; a failed sample does not hide a compaction; without two compactions or the final
    compacted sample nothing can be told."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import serve_load

    def run(levels: list[float], peak: float = 6.0, gaps: frozenset[int] = frozenset()) -> list[dict]:
        samples = [_soak_sample(0, 800.0, "g0", 0)]
        for k, level in enumerate(levels, start=1):  # a compaction, then a sample at the top of the cycle
            generation = None if k in gaps else f"g{k}"
            samples.append(_soak_sample(100 * k, level, generation, 2000 * k))
            samples.append(_soak_sample(100 * k + 50, level + peak, generation, 2000 * k + 1000))
        return samples

    flat = [900.0, 900.5, 887.0, 901.0, 900.2, 900.8, 900.4, 900.9]  # 887: one reading off by 13 MiB
    verdict = serve_load.memory_verdict(
        run(flat), _soak_sample(900, 901.5, "end", 20000), warmup_seconds=60, dim=8, slack_mb=8.0
    )
    assert verdict["compactions_after_warmup"] == 8 and verdict["reference"] == "troughs"
    assert verdict["reference_t_s"] == [100, 200, 300, 400] and verdict["later_t_s"] == [500, 600, 700, 800]
    assert verdict["reference_rss_mb"] == pytest.approx(900.25)
    assert verdict["checks"]["trend"]["growth_mb"] == pytest.approx(900.6 - 900.25)
    assert verdict["checks"]["end"]["growth_mb"] == pytest.approx(901.5 - 900.25)
    assert verdict["rss_holds"] is True

    leaking = [900.0 + 1.5 * k for k in range(12)]
    verdict = serve_load.memory_verdict(
        run(leaking), _soak_sample(1300, 918.0, "end", 30000), warmup_seconds=60, dim=8, slack_mb=8.0
    )
    assert verdict["checks"]["trend"]["growth_mb"] == pytest.approx(9.0) and not verdict["checks"]["trend"]["holds"]
    assert verdict["rss_holds"] is False
    assert verdict["trough_slope_mb_per_1000_requests"] == pytest.approx(1.5 / 2)

    # The sample after compaction 3 could not read the generation: compaction 4 is still seen as one, and the
    # warm-up leaves out compaction 1.
    verdict = serve_load.memory_verdict(run(flat, gaps=frozenset({3})), None, warmup_seconds=150, dim=8, slack_mb=8.0)
    assert [t for t, _ in verdict["trough_rss_mb"]] == [200, 400, 500, 600, 700, 800]
    assert set(verdict["checks"]) == {"trend"}  # no compacted sample at the end

    one = serve_load.memory_verdict(run([900.0]), None, warmup_seconds=60, dim=8, slack_mb=8.0)
    assert one["reference"] == "first after warm-up" and one["checks"] == {} and one["rss_holds"] is None
    assert one["trough_slope_mb_per_1000_requests"] is None
    # The gallery's own growth is allowed: 8 images more of 2**17 float32 each is 4 MiB.
    grown = serve_load.memory_verdict(
        run([900.0]), _soak_sample(300, 911.0, "end", 5000, images=108), warmup_seconds=60, dim=2**17, slack_mb=8.0
    )
    assert grown["checks"]["end"]["gallery_own_mb"] == pytest.approx(4.0) and grown["rss_holds"] is True
