"""The ``svllreid serve`` command: its messages before any server starts, and the address rule."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from svllreid.cli import main
from svllreid.cli.serve import _is_loopback


def test_a_missing_index_is_reported_before_anything_listens(tmp_path: Path, capsys) -> None:
    from tests.serve.conftest import free_port

    assert main(["serve", "--index", str(tmp_path / "none.npz"), "--port", str(free_port())]) == 2
    assert "none.npz" in capsys.readouterr().err


def test_without_the_serve_extra_the_message_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["serve", "--index", str(tmp_path / "i.npz")]) == 2
    assert "pip install 'svllreid[serve]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True), ("0.0.0.0", False),
     ("::", False), ("192.168.1.5", False), ("example.org", False)],
)  # fmt: skip
def test_only_loopback_addresses_count_as_this_machine(host: str, loopback: bool) -> None:
    assert _is_loopback(host) is loopback


def test_serve_is_in_the_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--host" in out and "127.0.0.1" in out and "POST /api/search" in out


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--max-upload-mb", "nan", "positive number of MiB"), ("--max-upload-mb", "0", "positive number of MiB"),
     ("--max-upload-mb", "ten", "number of MiB"), ("--port", "70000", "from 1 to 65535"),
     ("--port", "0", "from 1 to 65535"), ("--max-batch", "0", "positive integer")],
)  # fmt: skip
def test_bad_server_options_are_refused_before_anything_loads(option: str, value: str, message: str, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--index", "i.npz", option, value])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_a_port_in_use_is_reported_before_the_model_loads(tmp_path: Path, capsys) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--index", str(tmp_path / "i.npz"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "choose another port with --port" in err


def test_a_host_that_is_no_address_here_is_reported_before_the_model_loads(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SVLLREID_TOKEN", "a-token-for-another-address")  # another address than loopback needs one
    assert main(["serve", "--index", str(tmp_path / "i.npz"), "--host", "no-such-host.invalid"]) == 2
    assert "--host no-such-host.invalid is not an address of this machine" in capsys.readouterr().err
