"""The live gallery (:mod:`svllreid.search.live`): images added and removed through the change log are
searched as the same images built into an index would be, by every backend; other processes see the
changes; compaction folds them into a new index file; and a writer killed (SIGKILL) at any point leaves
the gallery before the change or after it, never a damaged one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from svllreid.errors import IndexFileError
from svllreid.search import GalleryIndex
from svllreid.search.changelog import FAILPOINT_ENV, ChangeLog
from svllreid.search.live import LiveIndex, RenumberedError, uploads_folder

D = 8
BACKENDS = ["exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "faiss-ivfpq"]


def features(n: int, seed: int) -> np.ndarray:
    f = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def build(folder: Path, backend: str = "exact", n: int = 60) -> Path:
    feats, paths = features(n, 0), [str(folder / f"base{i:03d}.jpg") for i in range(n)]
    meta = {"built_at": 1_000.0, "labels": {"identity": [str(i // 4) for i in range(n)]}, "text_dim": 4}
    path = folder / "gallery.npz"
    if backend == "faiss-ivfpq":
        GalleryIndex.build_streamed([(paths, feats)], path, meta=meta, nlist=1, pq_m=2)
    else:
        settings = {"nlist": 1} if backend == "faiss-ivf" else {}
        GalleryIndex.build(feats, paths, meta=meta, backend=backend, **settings).save(path)
    return path


def exact_top(feats: np.ndarray, alive: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ feats.T
    scores[:, ~alive] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(len(feats)), scores.shape), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("backend", BACKENDS)
def test_added_and_removed_images_are_searched_as_if_built_in(tmp_path: Path, backend: str) -> None:
    if backend != "exact":
        pytest.importorskip("faiss")
    path = build(tmp_path, backend)
    live = LiveIndex.open(path)
    added = features(7, 1)
    rows = live.add([tmp_path / f"new{i}.jpg" for i in range(7)], added * 3.0, {"identity": ["x", None] * 3 + ["y"]})
    assert rows == list(range(60, 67))
    assert live.remove([0, 5, 61, 61, 999]) == [0, 5, 61]  # a repeat and a row that does not exist are ignored
    assert live.remove([5]) == []  # already removed
    assert (live.size, len(live), live.added, live.removed) == (64, 67, 7, 3)
    every = np.concatenate([features(60, 0), added])
    alive = np.ones(67, bool)
    alive[[0, 5, 61]] = False
    queries = features(5, 2)
    want_scores, want_rows = exact_top(every, alive, queries, 10)
    found = live.search(queries, 10)
    tolerance = 2e-3 if backend == "faiss-ivfpq" else 1e-5  # float16 features
    np.testing.assert_allclose(found.scores, want_scores, atol=tolerance)
    if backend != "faiss-ivfpq":
        np.testing.assert_array_equal(found.indices, want_rows)
    assert not set(found.indices.ravel()) & {0, 5, 61}
    # A query equal to a removed image does not find it; one equal to an added image does, first.
    again = live.search(np.stack([every[61], every[62]]), 3)
    assert 61 not in again.indices[0] and again.indices[1, 0] == 62
    # Text search compares the last text_dim columns, added rows included.
    text = live.search_text(every[64, D - 4 :], 1)
    assert text.indices[0, 0] == 64
    # Labels: the index file's, the added ones where given; the paths of every row, removed ones too.
    assert live.row_labels(3) == {"identity": "0"} and live.row_labels(60) == {"identity": "x"}
    assert live.row_labels(61) == {} and live.label_kinds == ["identity"]
    assert live.paths[62] == str(tmp_path / "new2.jpg") and not live.is_live(61) and live.is_live(62)
    np.testing.assert_allclose(live.row_features([62, 1]), np.stack([every[62], every[1]]), atol=2e-3)


def test_topk_beyond_the_living_gallery_returns_each_living_image_once(tmp_path: Path) -> None:
    live = LiveIndex.open(build(tmp_path, n=6))
    live.add([tmp_path / "a.jpg"], features(1, 3))
    live.remove([1, 2, 6])
    found = live.search(features(2, 4), 50)
    assert found.indices.shape == (2, 4)
    assert sorted(found.indices[0].tolist()) == [0, 3, 4, 5]


def test_other_processes_see_the_changes_and_the_compaction(tmp_path: Path) -> None:
    path = build(tmp_path)
    writer, reader = LiveIndex.open(path), LiveIndex.open(path)
    writer.add([tmp_path / "new.jpg"], features(1, 5))
    writer.remove([2])
    assert (reader.size, reader.refresh(), reader.size, reader.refresh()) == (60, True, 60, False)
    assert reader.search(features(1, 5), 1).indices[0, 0] == 60
    report = writer.compact()
    assert (report.kept, report.dropped) == (60, 1)
    assert writer.size == len(writer) == 60 and writer.removed == writer.added == 0
    assert reader.refresh() and (reader.size, len(reader)) == (60, 60)
    # Rows are numbered afresh: the added image is now the last row, row 2's image is gone.
    assert reader.paths[59] == str(tmp_path / "new.jpg") and str(tmp_path / "base002.jpg") not in list(reader.paths)
    assert reader.row_labels(0) == {"identity": "0"} and reader.row_labels(59) == {}
    assert reader.search(features(1, 5), 1).indices[0, 0] == 59
    # The compacted file keeps when each image joined: the base's build time, then the add's.
    assert reader.added_at(0) == 1_000.0 and reader.added_at(59) > 1_000_000_000
    # A third process opening it now sees the same gallery.
    assert LiveIndex.open(path).size == 60


def test_remove_older_than_and_by_path(tmp_path: Path) -> None:
    path = build(tmp_path, n=10)
    live = LiveIndex.open(path)
    live.add([tmp_path / "late.jpg"], features(1, 6))
    assert live.rows_added_before(2_000.0) == list(range(10))
    assert live.rows_of([tmp_path / "late.jpg", tmp_path / "nothing.jpg"]) == {
        str(tmp_path / "late.jpg"): [10],
        str(tmp_path / "nothing.jpg"): [],
    }


def test_bad_changes_are_refused_with_the_reason_and_change_nothing(tmp_path: Path) -> None:
    live = LiveIndex.open(build(tmp_path, n=10))
    with pytest.raises(ValueError, match="have 5 dims but the gallery's have 8"):
        live.add([tmp_path / "a.jpg"], np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="2 paths for 1 added features"):
        live.add([tmp_path / "a.jpg", tmp_path / "b.jpg"], features(1, 0))
    with pytest.raises(ValueError, match="identity labels must be one name"):
        live.add([tmp_path / "a.jpg"], features(1, 0), {"identity": ["a", "b"]})
    with pytest.raises(ValueError, match="all zeros"):
        live.add([tmp_path / "a.jpg"], np.zeros((1, D), np.float32))
    assert live.size == 10 and not ChangeLog(live.path).path.exists()
    live.remove(range(10))
    with pytest.raises(ValueError, match=r"every image .* has been removed"):
        live.compact()


def test_a_log_of_another_build_is_not_applied(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = build(tmp_path, n=10)
    LiveIndex.open(path).add([tmp_path / "a.jpg"], features(1, 0))
    GalleryIndex.build(features(12, 9), [str(tmp_path / f"other{i}.jpg") for i in range(12)]).save(path)
    rebuilt = LiveIndex.open(path)
    assert rebuilt.size == 12 and "another build" in caplog.text
    rebuilt.add([tmp_path / "b.jpg"], features(1, 1))  # starts this build's own log
    assert LiveIndex.open(path).size == 13


def test_a_file_that_is_not_a_log_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = build(tmp_path, n=10)
    ChangeLog(path).path.write_bytes(b"something else\n")
    with pytest.raises(IndexFileError, match=r"is not an svllreid change log .* move it away"):
        LiveIndex.open(path)


def test_compaction_deletes_the_stored_files_of_removed_images(tmp_path: Path) -> None:
    path = build(tmp_path, n=10)
    folder = uploads_folder(path)
    folder.mkdir()
    kept, removed, stale = folder / "kept.jpg", folder / "removed.jpg", folder / "orphan.jpg"
    for file in (kept, removed, stale):
        file.write_bytes(b"x")
    os.utime(stale, (0, 0))  # left by a server stopped between storing it and adding it, long ago
    live = LiveIndex.open(path)
    rows = live.add([kept, removed], features(2, 1))
    live.remove([rows[1]])
    assert not removed.exists()  # deleted with its row
    removed.write_bytes(b"x")  # as if the delete had been interrupted
    report = live.compact()
    assert report.files_deleted == 2 and kept.exists() and not removed.exists() and not stale.exists()


def test_searches_during_changes_see_whole_changes(tmp_path: Path) -> None:
    """A reader thread searching while a writer adds 6 batches of 5 identical images sees 0, 5, 10... of them,
    never a part of a batch."""
    live = LiveIndex.open(build(tmp_path, n=20))
    probe = features(1, 7)
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            found = live.search(probe, 40)
            seen.add(int((found.indices[0] >= 20).sum()))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(6):
            live.add([tmp_path / f"b{i}-{j}.jpg" for j in range(5)], np.repeat(probe, 5, axis=0))
    finally:
        done.set()
        reader.join()
    assert seen <= set(range(0, 31, 5)), seen


# ----------------------------------------------------------------------------------------------------
# A writer killed with SIGKILL
# ----------------------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from svllreid.search.live import LiveIndex

    path, action = sys.argv[1], sys.argv[2]
    live = LiveIndex.open(path)
    if action == "compact":
        live.remove([1])
        live.compact()
    elif action == "loop":  # adds and removes until killed, saying how far it got
        i = 0
        while True:
            f = np.random.default_rng(i).normal(size=(3, 8)).astype(np.float32)
            live.add([f"loop{i}-{j}.jpg" for j in range(3)], f)
            live.remove([len(live) - 2])
            i += 1
            print(i, flush=True)
    else:
        f = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
        live.add([f"killed{j}.jpg" for j in range(4)], f)
    print("finished", flush=True)
    """
)


def run_writer(path: Path, action: str, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop(FAILPOINT_ENV, None)
    if failpoint:
        env[FAILPOINT_ENV] = failpoint
    return subprocess.run(
        [sys.executable, "-c", WRITER, str(path), action], env=env, capture_output=True, text=True, timeout=120
    )


def gallery_state(path: Path) -> tuple[int, int, list[str]]:
    live = LiveIndex.open(path)
    found = live.search(features(3, 11), live.size)
    assert (found.indices >= 0).all() and np.isfinite(found.scores).all()  # every living row searchable
    return live.size, len(live), [Path(p).name for p in live.paths]


@pytest.mark.parametrize(
    ("action", "point", "after"),
    [
        ("add", "log-torn", False),  # killed with half a record written
        ("add", "log-appended", True),  # killed once the record is on disk
        ("compact", "log-torn", False),  # killed while writing the removal before compacting
        ("compact", "compact-written", True),  # new index file in place, old log not yet replaced
        ("compact", "compact-log-reset", True),  # both in place, the stored files not yet swept
    ],
)
def test_a_writer_killed_at_any_point_leaves_the_old_or_the_new_gallery(
    tmp_path: Path, action: str, point: str, after: bool
) -> None:
    path = build(tmp_path, n=12)
    LiveIndex.open(path).add([tmp_path / "before.jpg"], features(1, 3))  # a log with a change already
    before = gallery_state(path)
    killed = run_writer(path, action, point)
    assert killed.returncode == -signal.SIGKILL and "finished" not in killed.stdout, killed.stderr
    state = gallery_state(path)
    if action == "add":
        assert state == ((17, 17, before[2] + [f"killed{j}.jpg" for j in range(4)]) if after else before)
    elif after:  # compacted: row 1 dropped, rows numbered afresh
        assert state == (12, 12, [n for i, n in enumerate(before[2]) if i != 1])
    else:
        assert state == before
    # The gallery takes changes again: a torn record is cut off, a half-done compaction is redone.
    assert run_writer(path, "add").returncode == 0
    assert gallery_state(path)[0] == state[0] + 4


def test_a_writer_killed_at_random_moments_never_damages_the_gallery(tmp_path: Path) -> None:
    """A process that adds 3 images and removes 1 in a loop is killed after random delays; each time the
    gallery it leaves opens, is searchable, and holds whole changes only: additions of 3 rows, and as many
    removals, or one fewer when it was killed between an addition and its removal."""
    path = build(tmp_path, n=12)
    rng = np.random.default_rng(0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop(FAILPOINT_ENV, None)
    for _ in range(3):
        start_size, start_rows, _ = gallery_state(path)
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), "loop"], env=env, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        process.stdout.readline()  # one step done: the process is in its loop
        time.sleep(float(rng.uniform(0.0, 0.3)))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        size, rows, _ = gallery_state(path)
        additions, part = divmod(rows - start_rows, 3)
        removals = (rows - size) - (start_rows - start_size)
        assert part == 0 and additions >= 1, (start_rows, rows)  # no part of an addition
        assert removals in (additions, additions - 1), (additions, removals)


def test_rows_numbered_before_a_compaction_remove_nothing_after_it(tmp_path: Path) -> None:
    path = build(tmp_path, n=10)
    server, operator = LiveIndex.open(path), LiveIndex.open(path)
    seen = server.generation
    operator.remove([0])
    operator.compact()  # row 3 is now the image that was row 4
    with pytest.raises(RenumberedError, match="compacted since those rows were numbered"):
        server.remove([3], generation=seen)
    assert server.size == 9 and server.paths[3] == str(tmp_path / "base004.jpg")
    assert server.remove([3], generation=server.generation) == [3]


def test_a_removal_racing_a_compaction_in_another_thread_removes_nothing_it_did_not_mean(tmp_path: Path) -> None:
    """Rows are read in the numbering of the moment the removal starts; a compaction that renumbers them
    before the removal takes the lock makes it refuse, never remove the image that took a row."""
    path = build(tmp_path, n=10)
    live = LiveIndex.open(path)
    rows = live.add([tmp_path / "a.jpg", tmp_path / "b.jpg"], features(2, 1))
    live.remove([0])
    seen = live.generation
    live.compact()  # as the server's watcher thread does, between a client's answer and its removal
    with pytest.raises(RenumberedError):
        live.remove(rows, generation=seen)
    assert live.size == 11 and [Path(p).name for p in live.paths][-2:] == ["a.jpg", "b.jpg"]
