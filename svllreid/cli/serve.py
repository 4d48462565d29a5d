"""``svllreid serve``: the search page and its JSON API over an index, on localhost by default."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket
import sys

from svllreid.cli.common import positive_int
from svllreid.errors import MissingExtraError
from svllreid.serve.tokens import NEW_TOKEN, Tokens, check_token

SERVE_EXTRA = "pip install 'svllreid[serve]'"
#: Where the tokens come from when no option gives them (the environment keeps them out of `ps`).
TOKEN_ENV = "SVLLREID_TOKEN"
WRITE_TOKEN_ENV = "SVLLREID_WRITE_TOKEN"


def _megabytes(text: str) -> float:
    """An argparse type: a positive, finite number of MiB."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of MiB, e.g. 10; got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of MiB; got {text}")
    return value


def _seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, e.g. 2; got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds; got {text}")
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


def _token(option: str | None, flag: str, env: str) -> str | None:
    """A token from its option, else from the environment (an empty variable is a token too short, not
    none: a variable set from a file that was missing must not open the server)."""
    name, value = (flag, option) if option is not None else (env, os.environ.get(env))
    if value is not None:
        check_token(value, name)
    return value


def _access(args: argparse.Namespace) -> Tokens:
    """The server's tokens, and whether it may listen where it is told to: checked before the model loads.

    Raises:
        ValueError: a bad token; a token with ``--insecure-no-auth``; or an address other than loopback
            with no token and no ``--insecure-no-auth``.
    """
    tokens = Tokens(
        read=_token(args.token, "--token", TOKEN_ENV),
        write=_token(args.write_token, "--write-token", WRITE_TOKEN_ENV),
    )
    if args.insecure_no_auth and tokens.required:
        raise ValueError(
            f"--insecure-no-auth turns access control off, yet a token is set (--token, --write-token, {TOKEN_ENV} "
            f"or {WRITE_TOKEN_ENV}); drop one or the other"
        )
    if _is_loopback(args.host) or tokens.required:
        return tokens
    if not args.insecure_no_auth:
        raise ValueError(
            f"refusing to listen on {args.host} without a token: anyone who can reach it could search the gallery "
            f"and download every image. Set a token in the environment: export {TOKEN_ENV}=$({NEW_TOKEN}) "
            f"(and {WRITE_TOKEN_ENV} to allow changes to the gallery); or keep the default --host 127.0.0.1; "
            "or, on a network where everyone may see the gallery, add --insecure-no-auth"
        )
    print(
        f"WARNING: --insecure-no-auth: listening on {args.host} WITHOUT ACCESS CONTROL.\n"
        "WARNING: anyone who can reach this address can search the gallery, download every image in it, and "
        "change it.\n"
        f"WARNING: set a token instead: export {TOKEN_ENV}=$({NEW_TOKEN})",
        file=sys.stderr,
        flush=True,
    )
    return tokens


def _describe_access(tokens: Tokens, host: str) -> str:
    if tokens.read and tokens.write:
        return "access: a token is needed; the read token searches, the write token also changes the gallery"
    if tokens.read:
        return "access: a token is needed (read only: no write token, so the gallery cannot be changed)"
    if tokens.write:
        return "access: a token is needed (only a write token is set: it searches and changes the gallery)"
    if _is_loopback(host):
        return f"access: open, no token (this machine only; {TOKEN_ENV} sets one)"
    return "access: OPEN to the network, no token (--insecure-no-auth)"


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from svllreid.serve.app import create_app
        from svllreid.serve.live_gallery import keep_large_arrays_returnable
        from svllreid.serve.telemetry import log_access_to_stderr
    except ImportError as err:
        raise MissingExtraError(
            f"svllreid serve needs FastAPI, uvicorn, python-multipart and prometheus-client: {SERVE_EXTRA}"
        ) from err
    from svllreid.serve.search_service import SearchService

    tokens = _access(args)
    for given, option, env in (
        (args.token, "--token", TOKEN_ENV),
        (args.write_token, "--write-token", WRITE_TOKEN_ENV),
    ):
        if given is not None:
            print(f"note: {option} is visible to other users of this machine (ps); prefer {env}", file=sys.stderr)
    _check_free(args.host, args.port)
    service = SearchService.open(args.index, args.checkpoint, args.device, model_file=args.model)
    app = create_app(
        service,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_batch=args.max_batch,
        refresh_seconds=args.refresh_seconds,
        tokens=tokens,
        auto_compact=not args.no_auto_compact,
    )
    facts = service.describe()
    print(f"model: {facts['model']['description']}")
    texts = "image and text queries" if facts["queries"]["text"] else "image queries (this index takes no text)"
    print(f"index: {args.index}: {service.index.size} images, {texts}")
    calibration = service.search.calibration  # what the "same" / "other" marks of photo queries follow
    print(calibration.describe() if calibration is not None else service.search.decision["message"])
    print(_describe_access(tokens, args.host))
    if tokens.required and not _is_loopback(args.host):
        print(
            "note: plain HTTP carries the token and the images in clear; put a TLS reverse proxy in front "
            "(see Deployment in the documentation)",
            file=sys.stderr,
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving on http://{shown}:{args.port}/  (Ctrl+C stops)", flush=True)
    # One JSON line per request on stderr, whatever --verbose; uvicorn's own access line would be a second.
    log_access_to_stderr()
    keep_large_arrays_returnable()  # a compacted gallery's freed arrays go back to the system
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info" if args.verbose else "warning",
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,  # None: $FORWARDED_ALLOW_IPS, else 127.0.0.1 and ::1
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="a web page and JSON API to search an index by photo or description",
        description="Load an index and its model once and serve a search page: drop or choose a photo, or "
        "type a description, and browse the ranked gallery; click a result to search with it. The JSON API: "
        "POST /api/search, GET /api/image/ROW, GET /api/thumbnail/ROW, GET /api/model, POST /api/gallery, "
        "DELETE /api/gallery/ROW, GET /healthz; GET /metrics (Prometheus) and GET /openapi.json (the API's "
        "contract); one JSON access-log line per request on stderr. "
        f"With a token ({TOKEN_ENV}), the API needs 'Authorization: Bearer TOKEN' (the page asks for it); "
        f"without, the server only listens on this machine. Needs the serve extra: {SERVE_EXTRA}.",
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
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine); any other needs a token",
    )
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    serve.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    serve.add_argument(
        "--max-upload-mb", type=_megabytes, default=10.0, help="largest request body in MiB (default 10)"
    )
    serve.add_argument(
        "--max-batch", type=positive_int, default=32, help="most queries encoded in one call (default 32)"
    )
    serve.add_argument(
        "--refresh-seconds",
        type=_seconds,
        default=2.0,
        help="how often to pick up images added or removed by 'svllreid index add / remove / compact' (default 2)",
    )
    serve.add_argument(
        "--no-auto-compact",
        action="store_true",
        help="never compact the gallery itself (by default it does once a quarter of its rows, and at least 1000, are "
        "removed images, which renumbers the rows); run 'svllreid index compact' off-peak instead",
    )
    access = serve.add_argument_group("access control")
    access.add_argument(
        "--token",
        default=None,
        help=f"the read token: search, images, the model's description (default: ${TOKEN_ENV}, which keeps it out "
        f"of ps); at least 16 characters, e.g. from {NEW_TOKEN}",
    )
    access.add_argument(
        "--write-token",
        default=None,
        help=f"the write token: reads too, and changes the gallery (default: ${WRITE_TOKEN_ENV}); must differ "
        "from the read token",
    )
    access.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="listen on an address other than loopback without any token: anyone who reaches it sees the gallery",
    )
    access.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        default=None,
        help="reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are trusted, comma-separated addresses "
        "or networks (default: $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1); the client they name is the one whose "
        "failed tokens are counted",
    )
    serve.set_defaults(func=cmd_serve)
