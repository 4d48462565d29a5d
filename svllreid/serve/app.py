"""The web app of ``svllreid serve``: one page and a JSON API over a :class:`SearchService`.

    GET  /                     the search page (static HTML and JavaScript, no build step)
    POST /api/search           a query: form fields ``image`` (a file) | ``text`` | ``gallery`` (a row), ``topk``;
                               or JSON ``{"text": ..., "topk": ...}`` / ``{"gallery": row}``; the answer's
                               ``decision`` names the threshold its hits' ``same_identity`` follows
    GET  /api/image/{row}      gallery image ``row`` as stored (only images the index lists)
    GET  /api/thumbnail/{row}  the same as a JPEG of at most 256 pixels a side
    GET  /api/model            what the model and the index are, which queries they take, and its ``decision``:
                               the same-identity threshold of :mod:`svllreid.inference.calibration`, or none
    POST /api/gallery          add images to the gallery: form fields ``image`` (one or more files), optional
                               ``identity`` and ``camera``; answered 201 with their rows once they are searched
    DELETE /api/gallery/{row}  remove gallery image ``row``: never returned or served again
    GET  /healthz              liveness, with the counts of queries and batches
    GET  /metrics              Prometheus metrics (:mod:`svllreid.serve.telemetry`)
    GET  /openapi.json         the API's contract: every route's request and answers (:mod:`svllreid.serve.api_schema`)

With tokens (:mod:`svllreid.serve.access`), every route but the page, ``/healthz`` and the schema needs
``Authorization: Bearer <token>``: the read role for all the routes above; without, all are open.

Every error is JSON ``{"error": message}`` with a 4xx status for bad requests; a failure of the server
itself is a 500 with a short message, the details going to the server's log only. Request bodies are
limited in size before they are read. Every request is counted, timed and logged in one JSON line
(:class:`svllreid.serve.telemetry.RequestTelemetry`).

The gallery is live (:mod:`svllreid.search.live`): images added or removed here, or by ``svllreid index
add / remove / compact`` in another process (seen within ``refresh_seconds``), are searched from then on
without a restart. Images and thumbnails are served with ``Cache-Control: private, no-cache`` and an ETag,
because a row may show another image once the gallery is compacted.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, cast

from svllreid.errors import MissingExtraError, UploadError
from svllreid.serve.batching import QueryBatcher
from svllreid.serve.live_gallery import REFRESH_SECONDS, GalleryWatcher, ThumbnailCache
from svllreid.serve.search_service import Answer, Query, SearchService
from svllreid.serve.tokens import Role, Tokens
from svllreid.version import __version__

__all__ = [
    "DECODING_AT_ONCE",
    "DEFAULT_TOPK",
    "GALLERY_FIELDS",
    "IMAGE_CACHE",
    "MAX_GALLERY_FILES",
    "MAX_UPLOAD_BYTES",
    "SEARCH_FIELDS",
    "UPLOAD_TYPES",
    "ASGIApp",
    "BodyLimit",
    "create_app",
    "search_page",
]

try:
    from anyio import CapacityLimiter
    from fastapi import FastAPI, Request
    from fastapi import Query as QueryParameter
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    from svllreid.serve.access import install, refusals, require
    from svllreid.serve.api_schema import (
        DEFAULT_TOPK,
        GALLERY_REQUEST,
        SEARCH_REQUEST,
        GalleryAdded,
        GalleryRemoved,
        Health,
        ModelFacts,
        Row,
        SearchAnswer,
        errors,
        returns,
        returns_content,
        without_validation_errors,
    )
    from svllreid.serve.telemetry import METRICS_CONTENT_TYPE, RequestTelemetry, Telemetry
except ImportError as err:  # pragma: no cover - the message is tested through the command line
    raise MissingExtraError(
        "svllreid serve needs FastAPI, uvicorn, python-multipart and prometheus-client: "
        f"pip install 'svllreid[serve]' ({err})"
    ) from err

log = logging.getLogger(__name__)

#: Largest request body by default (an upload and its form fields).
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: What ``POST /api/search`` reads; anything else is refused by name.
SEARCH_FIELDS = ("image", "text", "gallery", "topk")
#: What ``POST /api/gallery`` reads.
GALLERY_FIELDS = ("image", "identity", "camera")
#: Most images one ``POST /api/gallery`` adds.
MAX_GALLERY_FILES = 32
#: Image types a file upload may declare, if it declares one (browsers send ``application/octet-stream``
#: for unknown files, some clients nothing; the bytes are checked by decoding either way).
UPLOAD_TYPES = ("image/", "application/octet-stream")
#: Gallery images may stay in the browser's cache, in no shared one (a proxy's): they show people, and with
#: tokens they are only for those who hold one; checked again each time by their ETag, since a compaction
#: gives a row another image.
IMAGE_CACHE = "private, no-cache"
#: Uploads decoded at the same time (each may take a few hundred MB for a 50-megapixel image).
DECODING_AT_ONCE = 2

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Any]


class _BodyTooLarge(Exception):
    """Raised into the app when a request body grows past the limit while it is read."""


class BodyLimit:
    """ASGI middleware: refuse a body over ``max_bytes``: at once when Content-Length says so, else as
    soon as the bytes read pass it (a chunked upload declares no length)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            bad = not declared.isdigit()
            message = "the Content-Length header is not a number" if bad else _too_large(self.max_bytes)
            await _error(message, 400 if bad else 413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        await self.app(scope, limited, send)


class _ServeApp(FastAPI):
    """FastAPI with :class:`RequestTelemetry` around all of it (outside the layer that answers an
    exception with a 500 too, so that a 500 is measured and logged as it was sent), and a schema
    without the 422 answers this app never gives."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestTelemetry(super().build_middleware_stack(), self.state.telemetry)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = without_validation_errors(super().openapi())
        return self.openapi_schema


def _too_large(limit: int) -> str:
    return f"the request is larger than the server's limit of {limit / 2**20:g} MiB; send a smaller image"


def _error(message: str, status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


@functools.cache
def search_page() -> str:
    """The page, from the package's data."""
    return resources.files("svllreid.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(
    service: SearchService,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_batch: int = 32,
    refresh_seconds: float = REFRESH_SECONDS,
    tokens: Tokens | None = None,
    auto_compact: bool = True,
) -> FastAPI:
    """The app over ``service``; its queries run on one :class:`QueryBatcher` worker, and a
    :class:`GalleryWatcher` picks up the changes other processes make to the gallery every
    ``refresh_seconds`` and, with ``auto_compact``, compacts it when removed images pile up
    (:mod:`svllreid.serve.live_gallery`); both start with the app and stop when it shuts down. With
    ``tokens`` that hold a token, the API needs one (:mod:`svllreid.serve.access`); without, it is open.
    ``app.state.telemetry`` holds its metrics."""
    batcher: QueryBatcher[Query, Answer]
    # The gallery's size is read at each scrape, through the service: the gallery may change.
    telemetry = Telemetry(gallery_size=lambda: service.index.size, queue_depth=lambda: batcher.waiting)
    batcher = QueryBatcher(telemetry.timed(service.answer), max_batch=max_batch)
    thumbnails = ThumbnailCache(service.thumbnail, service.index)
    watcher = GalleryWatcher(service.index, thumbnails.forget_removed, refresh_seconds, compact=auto_compact)

    decoding = CapacityLimiter(DECODING_AT_ONCE)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        watcher.start()
        yield
        watcher.stop()
        await run_in_threadpool(batcher.close)

    # No /docs: FastAPI's page loads its scripts from a CDN, which an offline server cannot reach.
    # /openapi.json stays: the contract that clients are generated from (svllreid.serve.api_schema).
    app = _ServeApp(
        title="svllreid",
        summary="Search a gallery of people by photo, description or one of its images.",
        version=__version__,
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,  # operationId: the function's name
        docs_url=None,
        redoc_url=None,
    )
    app.state.batcher = batcher
    app.state.watcher = watcher
    app.state.telemetry = telemetry
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    install(app, tokens or Tokens())

    @app.exception_handler(UploadError)
    async def bad_upload(request: Request, err: UploadError) -> JSONResponse:
        return _error(str(err), err.status)

    @app.exception_handler(_BodyTooLarge)
    async def too_large(request: Request, err: _BodyTooLarge) -> JSONResponse:
        return _error(_too_large(max_upload_bytes), 413)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        message = err.detail if isinstance(err.detail, str) else "bad request"
        if err.status_code == 404:
            message = f"no such page or API: {request.url.path}; the API is under /api (see GET /api/model)"
        return _error(message, err.status_code, err.headers)  # a 405's Allow: the methods the path takes

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(f"invalid request: {where}: {first.get('msg', 'not valid')}", 400)

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        log.error("request %s %s failed", request.method, request.url.path, exc_info=err)
        return _error("the server could not answer this request; its log has the details", 500)

    @app.get(
        "/",
        response_class=Response,
        responses={200: returns_content("text/html", description="The search page."), **errors(500)},
    )
    async def page() -> HTMLResponse:
        return HTMLResponse(search_page())

    @app.get(
        "/healthz",
        response_model=None,
        responses={
            200: returns(Health, "The server answers queries."),
            503: returns(Health, "The query worker has stopped: the server must be restarted."),
            **errors(500),
        },
    )
    async def healthz() -> JSONResponse:
        stats = batcher.stats
        alive = batcher.alive
        return JSONResponse(
            {
                "status": "ok" if alive else "the query worker has stopped",
                "images": service.index.size,
                "queries": stats.queries,
                "encoder_calls": stats.calls,
                "largest_batch": stats.largest,
            },
            status_code=200 if alive else 503,
        )

    @app.get(
        "/metrics",
        response_class=Response,
        dependencies=[require(Role.READ)],
        responses={
            200: returns_content(METRICS_CONTENT_TYPE, description="Prometheus's text format."),
            **errors(500),
            **refusals(Role.READ),
        },
    )
    async def metrics() -> Response:
        return Response(telemetry.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get(
        "/api/model",
        response_model=None,
        dependencies=[require(Role.READ)],
        responses={
            200: returns(ModelFacts, "The model, the index and the queries they take."),
            **errors(500),
            **refusals(Role.READ),
        },
    )
    async def model() -> dict[str, Any]:
        # The same-identity threshold the answers to photos follow, or why there is none.
        return {**service.describe(), "decision": service.search.decision}

    @app.get(
        "/api/image/{row}",
        response_class=FileResponse,
        dependencies=[require(Role.READ)],
        responses={
            200: returns_content(
                "image/*",
                "application/octet-stream",  # a file whose name has no image extension
                description="The image's file as stored.",
            ),
            **errors(404, 500),
            **refusals(Role.READ),
        },
    )
    def image(row: Row) -> FileResponse:  # a plain def: FastAPI runs it off the event loop (it stats a file)
        path = service.image_file(_row(row))
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": IMAGE_CACHE})

    @app.get(
        "/api/thumbnail/{row}",
        response_class=Response,
        dependencies=[require(Role.READ)],
        responses={
            200: returns_content("image/jpeg", description="The image as a JPEG of at most 256 pixels a side."),
            304: {"description": "Not modified: the thumbnail the client holds (If-None-Match) is this row's."},
            **errors(404, 500),
            **refusals(Role.READ),
        },
    )
    def thumbnail(row: Row, request: Request) -> Response:  # off the event loop, as image()
        number = _row(row)
        service.image_file(number)  # a removed image, or a file that left the disk, is a 404, cached or not
        tag = f'"{service.index.generation}-{number}"'
        headers = {"Cache-Control": IMAGE_CACHE, "ETag": tag}
        if tag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(thumbnails.get(number), media_type="image/jpeg", headers=headers)

    @app.post(
        "/api/gallery",
        status_code=201,
        response_model=None,
        dependencies=[require(Role.WRITE)],
        responses={
            201: returns(GalleryAdded, "The images were added; they are searched from now on."),
            **errors(400, 413, 415, 500, 503),
            **refusals(Role.WRITE),
        },
        openapi_extra=GALLERY_REQUEST,  # the form is read by hand (_read_gallery_form)
    )
    async def add_to_gallery(request: Request) -> Any:
        start = time.perf_counter()
        try:
            files, identity, camera = await _read_gallery_form(request, service)
        except ClientDisconnect:
            log.info("a client disconnected before its images were read")
            return Response(status_code=400)
        stored: list[Any] = []
        try:
            for upload in files:
                data = await upload.read()
                async with decoding:
                    stored.append(await run_in_threadpool(service.store_upload, data))
            generation = service.index.generation  # read before: see GallerySearch.answer
            try:  # encoded by the worker that owns the network, between two batches of queries
                adding = batcher.run(lambda: service.add_stored(stored, identity, camera))
            except RuntimeError as err:
                return _error(f"the server cannot change the gallery now ({err}); restart it", 503)
            rows = await asyncio.wrap_future(adding)
        except BaseException:
            for path in stored:  # nothing was added: nothing is kept
                path.unlink(missing_ok=True)
            raise
        return JSONResponse(
            {
                "rows": rows,
                "generation": generation,
                "gallery_size": service.index.size,
                "took_ms": round(1000 * (time.perf_counter() - start), 2),
            },
            status_code=201,
        )

    @app.delete(
        "/api/gallery/{row}",
        response_model=None,
        dependencies=[require(Role.WRITE)],
        responses={
            200: returns(GalleryRemoved, "The image was removed: it is never returned or served again."),
            **errors(400, 404, 409, 500),
            **refusals(Role.WRITE),
        },
    )
    def remove_from_gallery(  # off the event loop: it writes the log
        row: Row,
        generation: Annotated[
            str | None,
            QueryParameter(
                max_length=64,
                description="The generation the row came with (a search's or an addition's answer): after a "
                "compaction renumbered the rows, the removal is refused (409) rather than removing another image.",
            ),
        ] = None,
    ) -> dict[str, Any]:
        number = _row(row)
        service.remove(number, generation)
        thumbnails.forget_removed()
        return {"removed": number, "gallery_size": service.index.size}

    @app.post(
        "/api/search",
        response_model=None,
        dependencies=[require(Role.READ)],
        responses={
            200: returns(SearchAnswer, "The ranked gallery."),
            **errors(400, 404, 409, 413, 415, 500, 503),
            **refusals(Role.READ),
        },
        openapi_extra=SEARCH_REQUEST,  # the body is read by hand (_read_query): JSON, multipart or urlencoded
    )
    async def search(request: Request) -> Any:
        start = time.perf_counter()
        try:
            query = await _read_query(request, service, decoding)
        except ClientDisconnect:  # the client went away mid-upload: nobody to answer
            log.info("a client disconnected before its query was read")
            return Response(status_code=400)
        try:
            waiting = batcher.submit(query)
        except RuntimeError as err:  # shutting down, or the worker died (its log says why)
            return _error(f"the server cannot answer queries now ({err}); restart it", 503)
        answer = await asyncio.wrap_future(waiting)
        return {
            "query": answer.query,
            "results": answer.results,
            "gallery_size": service.index.size,
            "took_ms": round(1000 * (time.perf_counter() - start), 2),
            "decision": answer.decision,
            "generation": answer.generation,
        }

    return app


def _row(text: str) -> int:
    """A gallery row from the URL: decimal digits only (a path or anything else is no row)."""
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise UploadError(f"no gallery image {text!r}: images are numbered 0, 1, 2, ... as the index lists them", 404)
    return int(text)


async def _read_query(request: Request, service: SearchService, decoding: CapacityLimiter) -> Query:
    """The one query of a ``POST /api/search``, checked (the image decoded off the event loop).

    Raises:
        UploadError: another content type, an unknown or missing field, two kinds of query at once,
            a file that is not an image, or a bad ``topk``.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, Any]
    if kind == "application/json":
        try:
            fields = json.loads(await request.body())
        except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, a number too long, nesting too deep
            raise UploadError(f"the body is not valid JSON ({type(err).__name__}: {str(err)[:200]})") from None
        if not isinstance(fields, dict):
            raise UploadError('the JSON body must be an object, e.g. {"text": "a man in a blue coat", "topk": 10}')
        if "image" in fields:
            raise UploadError("send an image as a multipart/form-data upload (field 'image'), not in JSON", 415)
    elif kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=1, max_fields=len(SEARCH_FIELDS), max_part_size=64 * 1024)
        fields = {key: form.getlist(key)[-1] for key in form}
    else:
        raise UploadError(
            f"POST /api/search takes a form (multipart/form-data with an 'image' file, or a 'text' field) or "
            f'JSON {{"text": ...}}; got {kind or "no content type"}',
            415,
        )
    unknown = sorted(set(fields) - set(SEARCH_FIELDS))
    if unknown:
        raise UploadError(f"unknown field {unknown[0]!r}; the fields are {', '.join(SEARCH_FIELDS)}")
    asked = [key for key in ("image", "text", "gallery") if fields.get(key) not in (None, "")]
    if len(asked) != 1:
        raise UploadError(
            "give exactly one of 'image' (a file), 'text' (a description) or 'gallery' (an image's row); "
            + (f"got {' and '.join(asked)}" if asked else "got none")
        )
    topk = _integer(fields.get("topk", DEFAULT_TOPK), "topk")
    if asked[0] == "text":
        if not isinstance(fields["text"], str):
            raise UploadError("'text' must be a string: the description")
        # JSON can spell a lone surrogate (\ud800): the answer, which repeats the text, could not be sent.
        if not _encodable(fields["text"]):
            raise UploadError(
                "'text' is not valid Unicode: it holds a lone surrogate (a \\ud800-\\udfff escape without its pair); "
                "send the description as UTF-8 text"
            )
        return service.text_query(fields["text"], topk)
    if asked[0] == "gallery":
        return service.gallery_query(_integer(fields["gallery"], "gallery", status=404), topk)
    upload = fields["image"]
    if not isinstance(upload, UploadFile):
        raise UploadError("'image' must be a file upload (multipart/form-data), not a text field")
    declared = (upload.content_type or "").lower()
    if declared and not declared.startswith(UPLOAD_TYPES):
        raise UploadError(f"the upload is {declared}, not an image; choose a photo", 415)
    data = await upload.read()
    async with decoding:  # a few at a time: a small file can decode to tens of megapixels
        return await run_in_threadpool(service.image_query, data, topk, filename=upload.filename or "")


async def _read_gallery_form(
    request: Request, service: SearchService
) -> tuple[list[UploadFile], str | None, str | None]:
    """The images and labels of a ``POST /api/gallery``, checked (the images are decoded later).

    Raises:
        UploadError: another content type, an unknown field, no image, too many, or a bad label.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise UploadError(
            "POST /api/gallery takes a multipart/form-data form: one or more 'image' files, and optional 'identity' "
            f"and 'camera' names; got {kind or 'no content type'}",
            415,
        )
    form = await request.form(max_files=MAX_GALLERY_FILES, max_fields=2 * len(GALLERY_FIELDS), max_part_size=64 * 1024)
    unknown = sorted(set(form) - set(GALLERY_FIELDS))
    if unknown:
        raise UploadError(f"unknown field {unknown[0]!r}; the fields are {', '.join(GALLERY_FIELDS)}")
    files = form.getlist("image")
    if not files:
        raise UploadError("give one or more images to add, as 'image' file fields")
    if not all(isinstance(f, UploadFile) for f in files):
        raise UploadError("'image' must be a file upload (multipart/form-data), not a text field")
    for upload in files:
        declared = (upload.content_type or "").lower()  # type: ignore[union-attr]
        if declared and not declared.startswith(UPLOAD_TYPES):
            raise UploadError(f"an upload is {declared}, not an image; choose photos", 415)
    labels = []
    for name in ("identity", "camera"):
        values = form.getlist(name)
        if len(values) > 1 or (values and not isinstance(values[0], str)):
            raise UploadError(f"give {name!r} once, as text: it applies to every image of the request")
        labels.append(service.check_label(values[0] if values else None, name))  # type: ignore[arg-type]
    return cast("list[UploadFile]", files), labels[0], labels[1]


def _encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (a lone surrogate, which JSON can spell, cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _integer(value: Any, name: str, *, status: int = 400) -> int:
    """A whole number from JSON or a form field: ASCII digits only, at most 12 of them; in JSON also a
    number with no fraction (``5.0``: JSON Schema's integers, as the API's schema declares, include it)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 10**12:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**12:
        return value
    text = value.strip() if isinstance(value, str) else None
    if text is not None and text.isascii() and text.isdigit() and len(text) <= 12:
        return int(text)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    raise UploadError(f"{name!r} must be a whole number; got {shown}", status)
