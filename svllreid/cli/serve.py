"""``svllreid serve``: the search page and its JSON API over an index, on localhost by default."""

from __future__ import annotations

import argparse
import ipaddress
import math
import socket
import sys

from svllreid.cli.common import positive_int
from svllreid.errors import MissingExtraError

SERVE_EXTRA = "pip install 'svllreid[serve]'"


def _megabytes(text: str) -> float:
    """An argparse type: a positive, finite number of MiB."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of MiB, e.g. 10; got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of MiB; got {text}")
    return value


def _port(text: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535; got {text!r}")
    return int(text)


def _check_free(host: str, port: int) -> None:
    """Refuse, with the fix, an address that something already listens on (before the model loads)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ValueError(f"--host {host} is not an address of this machine ({err})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            raise OSError(
                f"cannot listen on {host}:{port} ({err.strerror}); another server may be using it: "
                "choose another port with --port"
            ) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from svllreid.serve.app import create_app
        from svllreid.serve.telemetry import log_access_to_stderr
    except ImportError as err:
        raise MissingExtraError(
            f"svllreid serve needs FastAPI, uvicorn, python-multipart and prometheus-client: {SERVE_EXTRA}"
        ) from err
    from svllreid.serve.search_service import SearchService

    _check_free(args.host, args.port)
    service = SearchService.open(args.index, args.checkpoint, args.device, model_file=args.model)
    app = create_app(service, max_upload_bytes=int(args.max_upload_mb * 2**20), max_batch=args.max_batch)
    facts = service.describe()
    print(f"model: {facts['model']['description']}")
    texts = "image and text queries" if facts["queries"]["text"] else "image queries (this index takes no text)"
    print(f"index: {args.index}: {len(service.index)} images, {texts}")
    calibration = service.search.calibration  # what the "same" / "other" marks of photo queries follow
    print(calibration.describe() if calibration is not None else service.search.decision["message"])
    if not _is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: anyone who can reach this machine can search the gallery and see "
            "its images (there is no login); use the default --host 127.0.0.1 to keep it to this machine",
            file=sys.stderr,
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving on http://{shown}:{args.port}/  (Ctrl+C stops)", flush=True)
    # One JSON line per request on stderr, whatever --verbose; uvicorn's own access line would be a second.
    log_access_to_stderr()
    uvicorn.run(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning", access_log=False)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="a web page and JSON API to search an index by photo or description",
        description="Load an index and its model once and serve a search page: drop or choose a photo, or "
        "type a description, and browse the ranked gallery; click a result to search with it. The JSON API: "
        "POST /api/search, GET /api/image/ROW, GET /api/thumbnail/ROW, GET /api/model, GET /healthz; GET /metrics "
        "(Prometheus) and GET /openapi.json (the API's contract); one JSON access-log line per request on stderr. "
        f"Needs the serve extra: {SERVE_EXTRA}.",
    )
    serve.add_argument("--index", required=True, help="index file from 'svllreid index build'")
    which = serve.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint, run directory, model folder or hf-hub:ORG/NAME (default: the index's own)",
    )
    which.add_argument(
        "--model",
        metavar="FILE.onnx|FILE.xml",
        default=None,
        help="serve photo queries with a file from 'svllreid export' on the CPU: .onnx (onnxruntime) or .xml "
        "(OpenVINO); descriptions need --checkpoint",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    serve.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    serve.add_argument(
        "--max-upload-mb", type=_megabytes, default=10.0, help="largest request body in MiB (default 10)"
    )
    serve.add_argument(
        "--max-batch", type=positive_int, default=32, help="most queries encoded in one call (default 32)"
    )
    serve.set_defaults(func=cmd_serve)
