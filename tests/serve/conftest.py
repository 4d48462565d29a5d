"""A served gallery: the captioned gallery of :mod:`tests.captioned_gallery` (58 images of synthetic
people) indexed with identity and camera labels, and the app over it (in process, and as a real server);
and a copy of its index that carries a same-identity threshold (``calibrated``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.captioned_gallery import build_captioned_gallery

pytest.importorskip("fastapi", reason="svllreid serve needs the serve extra: pip install 'svllreid[serve]'")


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("served")
    patch = pytest.MonkeyPatch()
    patch.setenv("SVLLREID_CACHE", str(folder / "cache"))
    yield build_captioned_gallery(folder, "--pid-regex", r"^(\d+)_", "--camera-regex", r"_c(\d+)")
    patch.undo()


@pytest.fixture(scope="session")
def service(world: dict[str, Any]) -> Any:
    from svllreid.serve.search_service import SearchService

    return SearchService.open(world["index"], device="cpu")


@pytest.fixture(scope="session")
def client(service: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from svllreid.serve.app import create_app

    with TestClient(create_app(service, max_upload_bytes=256 * 1024), raise_server_exceptions=False) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(port: int, timeout: float = 180.0, process: Any = None) -> None:
    """Until something answers on ``port`` (or ``process`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def serving(service: Any, **options: Any) -> Iterator[dict[str, Any]]:
    """The app over ``service`` (``options`` for :func:`create_app`, e.g. ``tokens``) under uvicorn on a
    free localhost port, in a thread of this process."""
    import uvicorn

    from svllreid.serve.app import create_app

    app = create_app(service, **{"max_upload_bytes": 256 * 1024, **options})
    port = free_port()
    # log_config=None: uvicorn's records reach the root logger, where the tests' caplog sees them.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until_up(port)
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "app": app}
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def live_server(service: Any) -> Iterator[dict[str, Any]]:
    """The app under uvicorn on a free localhost port, in a thread of this process."""
    with serving(service) as served:
        yield served


#: The gallery row whose hits the calibrated threshold splits: half of its top 12 above, half below.
CALIBRATED_ROW = 11


def calibration_for(index: Any, threshold: float, weights_sha256: str | None = None) -> Any:
    """A calibration of ``index``'s network (or of the weights ``weights_sha256``) at ``threshold``."""
    from svllreid.inference.calibration import Calibration

    return Calibration(
        threshold=threshold,
        target="fpr",
        target_value=1e-3,
        weights_sha256=weights_sha256 or index.meta["weights_sha256"],
        validation={"dataset": "synthetic", "identities": 4, "tpr": 0.5, "fpr": 0.001},
        checkpoint="model.safetensors",
    )


def with_calibration(world: dict[str, Any], folder: Any, calibration_of: Any) -> Any:
    """A copy of the world's index (the world is shared: it is never changed) in ``folder``, carrying
    ``calibration_of(index)``'s calibration in its metadata. Read from the original and saved anew (an
    index file keeps its images' paths relative to itself: a byte copy elsewhere would lose them)."""
    from svllreid.search import GalleryIndex

    index = GalleryIndex.load(world["index"])
    index.meta["calibration"] = calibration_of(index).to_dict()
    return index.save(folder / "gallery.npz")


@pytest.fixture(scope="session")
def calibrated(
    world: dict[str, Any], service: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A calibrated copy of the index: ``index`` (its file), ``calibration``, ``service`` and ``client``;
    its threshold lies between the 6th and 7th scores of :data:`CALIBRATED_ROW`'s gallery query, so that
    its answer has hits on both sides."""
    from fastapi.testclient import TestClient

    from svllreid.serve.app import create_app
    from svllreid.serve.search_service import SearchService

    hits = service.answer([service.gallery_query(CALIBRATED_ROW, 12)])[0].results
    scores = sorted((hit["score"] for hit in hits), reverse=True)
    assert scores[5] > scores[6], scores  # a threshold can fall between them
    threshold = (scores[5] + scores[6]) / 2
    made: dict[str, Any] = {}

    def calibration_of(index: Any) -> Any:
        made["calibration"] = calibration_for(index, threshold)
        return made["calibration"]

    copy = with_calibration(world, tmp_path_factory.mktemp("calibrated"), calibration_of)
    opened = SearchService.open(copy, device="cpu")
    with TestClient(create_app(opened, max_upload_bytes=256 * 1024), raise_server_exceptions=False) as test_client:
        yield {"index": copy, "calibration": made["calibration"], "service": opened, "client": test_client}
