"""A served gallery: the captioned gallery of :mod:`tests.captioned_gallery` (58 images of synthetic
people) indexed with identity and camera labels, and the app over it (in process, and as a real server)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def live_server(service: Any) -> Iterator[dict[str, Any]]:
    """The app under uvicorn on a free localhost port, in a thread of this process."""
    import uvicorn

    from svllreid.serve.app import create_app

    app = create_app(service, max_upload_bytes=256 * 1024)
    port = free_port()
    # log_config=None: uvicorn's records reach the root logger, where the tests' caplog sees them.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until_up(port)
    yield {"url": f"http://127.0.0.1:{port}", "port": port, "app": app}
    server.should_exit = True
    thread.join(10)
