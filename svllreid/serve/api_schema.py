"""The contract of ``svllreid serve``'s HTTP API, as ``GET /openapi.json`` publishes it: what each
route takes and every answer it gives, errors included, so that clients can be generated from it and
the API fuzzed against it (``tests/serve/test_openapi_fuzz.py``).

The app keeps its own checks and messages (``POST /api/search`` parses its body by hand); these
declarations describe them and are tested against the running app. A route declares its answers as
``responses={200: returns(Model, "..."), **errors(404, 500)}`` (an answer that is not JSON with
:func:`returns_content`), and a body it reads by hand with ``openapi_extra=request_body(...)``, each
media type's schema given by :func:`media` (a form's file parts with their types: :data:`IMAGE_FILE`).

Response shapes are TypedDicts: a key marked ``NotRequired`` is left out of the JSON when it does
not apply (never sent as null), and ``extra_items=str`` allows the index's other label kinds (an
index may label its images with kinds other than identity and camera).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from fastapi import Path
from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

from svllreid.serve.search_service import MAX_LABEL_CHARS, MAX_TEXT_CHARS, MAX_TOPK

__all__ = [
    "DEFAULT_TOPK",
    "ERRORS",
    "GALLERY_REQUEST",
    "IMAGE_FILE",
    "IMAGE_TYPES",
    "ROW_PATTERN",
    "SEARCH_REQUEST",
    "Decision",
    "ErrorBody",
    "GalleryAdded",
    "GalleryRemoved",
    "Health",
    "Hit",
    "ModelFacts",
    "QueryFacts",
    "Row",
    "SearchAnswer",
    "errors",
    "media",
    "request_body",
    "returns",
    "returns_content",
    "without_validation_errors",
]

DEFAULT_TOPK = 12
#: A gallery row in a URL: decimal digits (anything else is answered 404, as a row that does not exist).
ROW_PATTERN = r"^[0-9]{1,12}$"

#: A route's ``{row}``: declared as digits, checked by the route itself (a 404 JSON error, not a 400).
Row = Annotated[
    str,
    Path(
        description="A gallery image's row, 0 to the gallery's size - 1 (GET /api/model: index.images).",
        json_schema_extra={"pattern": ROW_PATTERN},
    ),
]

_FORBID = ConfigDict(extra="forbid")
#: Other keys are allowed, as strings: the index's other label kinds (the TypedDict says so, as
#: ``extra_items=str``; a containing shape's "forbid" would otherwise be inherited).
_LABELS = ConfigDict(extra="allow")


@with_config(_FORBID)
class ErrorBody(TypedDict):
    """Every error: a message that says what is wrong and how to fix it."""

    error: str


#: What each error status means, on whichever route gives it; :func:`errors` picks them.
ERRORS: dict[int, str] = {
    400: "A bad request: an unknown or missing field, two kinds of query at once, a bad topk, a damaged image, "
    "or a body that is not valid JSON or a valid form.",
    404: "No such gallery image: a row out of range or not a number, an image removed from the gallery, or one whose "
    "file has left the disk.",
    409: "A conflict the message explains: this index or model cannot answer descriptions (an index built before text "
    "search, or an exported model file), or the gallery was compacted and its rows renumbered since the row was "
    "given.",
    413: "The request body is over the server's limit (--max-upload-mb), or the image has too many pixels.",
    415: "Neither a form nor JSON, an image sent in JSON, or an upload that is not an image.",
    500: "The server failed to answer; its log has the details.",
    503: "The server cannot answer queries now (its query worker has stopped): restart it.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers ``statuses`` of a route, each an :class:`ErrorBody`, for ``responses=``."""
    return {status: {"model": ErrorBody, "description": ERRORS[status]} for status in statuses}


def returns(model: Any, description: str) -> dict[str, Any]:
    """A JSON answer of the shape ``model``, for one status of ``responses=``."""
    return {"model": model, "description": description}


def returns_content(*media_types: str, description: str) -> dict[str, Any]:
    """An answer that is not JSON, in one of ``media_types`` (``image/*`` for any image; text for
    ``text/*``, else bytes), for one status of ``responses=``. The route needs
    ``response_class=Response`` (or ``FileResponse``): a class with a media type of its own would be
    listed beside these, and would become the type of the route's JSON errors too."""
    return {
        "description": description,
        "content": {
            media: {
                "schema": {"type": "string"} if media.startswith("text/") else {"type": "string", "format": "binary"}
            }
            for media in media_types
        },
    }


def media(schema: dict[str, Any], *, file_types: dict[str, str] | None = None, example: Any = None) -> dict[str, Any]:
    """One media type of a request body: its ``schema``, the types each file part of a form may declare
    (``{"image": IMAGE_TYPES}``), and an ``example`` body for client authors (the tests send it)."""
    declared: dict[str, Any] = {"schema": schema}
    if example is not None:
        declared["example"] = example
    if file_types:
        declared["encoding"] = {field: {"contentType": types} for field, types in file_types.items()}
    return declared


def request_body(description: str, content: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A required request body, for ``openapi_extra=`` of a route that reads its body itself:
    ``request_body("...", {"application/json": media({...}), "multipart/form-data": media({...}, ...)})``."""
    return {"requestBody": {"required": True, "description": description, "content": content}}


def without_validation_errors(openapi: dict[str, Any]) -> dict[str, Any]:
    """``openapi`` without FastAPI's 422 answers: the app answers a request that fails FastAPI's own
    validation with a 400 :class:`ErrorBody` (declared by the routes that can get one), never with the
    422 and ``HTTPValidationError`` that FastAPI lists for every route with a parameter."""
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.get("responses", {})
            schema = answers.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref", "").endswith("/HTTPValidationError"):
                del answers["422"]
    schemas = openapi.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return openapi


# --------------------------------------------------------------------------------------------------------
# POST /api/search
# --------------------------------------------------------------------------------------------------------

_TOPK = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_TOPK,
    "default": DEFAULT_TOPK,
    "description": "How many results to give (fewer where the gallery has fewer images).",
}
_TEXT = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_TEXT_CHARS,
    "pattern": r"\S",
    "description": "A description of the person, e.g. 'a man in a blue coat' (cut at the text encoder's 77 tokens).",
}
_GALLERY = {
    "type": "integer",
    "minimum": 0,
    "description": "A gallery image's row (0 to the gallery's size - 1): its stored feature is the query, and it is "
    "left out of its own results.",
}
#: An uploaded image: a file part of a multipart form (``format: binary``: sent with a file name, which
#: is how the server tells a file from a text field).
IMAGE_FILE = {
    "type": "string",
    "format": "binary",
    "description": "A photo: JPEG, PNG, WebP, BMP, GIF or TIFF of at most 50 megapixels, its part's type an image/* "
    "type or application/octet-stream (or none).",
}
#: The types an image's part may declare (application/octet-stream, or none, is taken too).
IMAGE_TYPES = "image/jpeg, image/png, image/webp, image/bmp, image/gif, image/tiff"


def _one_query(title: str, **fields: dict[str, Any]) -> dict[str, Any]:
    """A body of ``fields`` and ``topk``, of which exactly one of ``fields`` is given. One object with every
    property (rather than one object per kind of query) lets a client, or a fuzzer, see which part is a file."""
    return {
        "title": title,
        "type": "object",
        "properties": {**fields, "topk": _TOPK},
        "oneOf": [{"required": [name]} for name in fields],
        "additionalProperties": False,
    }


#: The body of ``POST /api/search``: exactly one of a photo, a description or a gallery row.
SEARCH_REQUEST = request_body(
    "One query: a photo (multipart only, as a file part), a description, or a gallery image's row; and how many "
    "results.",
    {
        "multipart/form-data": media(
            _one_query("SearchForm", image=IMAGE_FILE, text=_TEXT, gallery=_GALLERY), file_types={"image": IMAGE_TYPES}
        ),
        "application/x-www-form-urlencoded": media(
            _one_query("SearchFields", text=_TEXT, gallery=_GALLERY), example={"gallery": 0, "topk": 5}
        ),
        "application/json": media(
            _one_query("SearchJSON", text=_TEXT, gallery=_GALLERY), example={"text": "a man in a blue coat", "topk": 5}
        ),
    },
)


@with_config(_FORBID)
class Decision(TypedDict):
    """Which same-identity threshold the hits' same_identity follows, or why there is none (an
    uncalibrated model, or a description, whose scores are on another scale)."""

    calibrated: bool
    message: NotRequired[Annotated[str, Field(description="Why there is no decision (when not calibrated).")]]
    threshold: NotRequired[Annotated[float, Field(description="The cosine similarity from which a hit is the same.")]]
    operating_point: NotRequired[str]
    rule: NotRequired[str]


@with_config(_LABELS)
class Hit(TypedDict, extra_items=str):  # type: ignore[call-arg]
    """One result: a gallery image, its rank and cosine similarity, its labels where the index has them."""

    rank: Annotated[int, Field(ge=1)]
    score: Annotated[float, Field(description="Cosine similarity to the query.")]
    row: Annotated[int, Field(ge=0, description="The image's row: GET /api/image/{row} and /api/thumbnail/{row}.")]
    path: Annotated[str, Field(description="The image's path, relative to the folder the index was built from.")]
    identity: NotRequired[str]
    camera: NotRequired[str]
    match: NotRequired[Annotated[bool, Field(description="Same identity as the query (a gallery image) by label.")]]
    same_identity: NotRequired[Annotated[bool, Field(description="score >= the calibrated threshold.")]]
    index: Annotated[int, Field(description="= row (svllreid 0.1's key, removed in 0.3).", deprecated=True)]
    name: Annotated[str, Field(description="= path (svllreid 0.1's key, removed in 0.3).", deprecated=True)]


@with_config(_LABELS)
class QueryFacts(TypedDict, extra_items=str):  # type: ignore[call-arg]
    """What was asked: the kind, with the upload's file name, the description (and whether it was cut),
    or the gallery image with its labels."""

    kind: Literal["image", "text", "gallery"]
    filename: NotRequired[str]
    text: NotRequired[str]
    truncated: NotRequired[Annotated[bool, Field(description="The description was cut at 77 tokens.")]]
    row: NotRequired[int]
    path: NotRequired[str]
    identity: NotRequired[str]
    camera: NotRequired[str]
    index: NotRequired[Annotated[int, Field(deprecated=True)]]
    name: NotRequired[Annotated[str, Field(deprecated=True)]]


@with_config(_FORBID)
class SearchAnswer(TypedDict):
    """The ranked gallery of one query."""

    query: QueryFacts
    results: list[Hit]
    gallery_size: int
    took_ms: Annotated[float, Field(description="Time from reading the request to the answer, in milliseconds.")]
    decision: Decision
    generation: Annotated[
        str, Field(description="The numbering the rows are in: give it to DELETE /api/gallery/{row}.")
    ]


@with_config(_FORBID)
class Health(TypedDict):
    """Liveness, and what the query worker has done."""

    status: Annotated[str, Field(description="'ok', or why the server cannot answer queries.")]
    images: int
    queries: int
    encoder_calls: int
    largest_batch: int


@with_config(_FORBID)
class ModelSummary(TypedDict):
    """The network that answers queries: a checkpoint in torch, or an exported file."""

    arch: str | None
    image_size: list[int]
    trained_on: str | None
    stage: int | str | None
    epoch: int | None
    checkpoint: str | None
    model_file: NotRequired[Annotated[str, Field(description="The exported file served (ONNX or OpenVINO).")]]
    device: str
    runtime: Annotated[str, Field(description="torch, onnxruntime or openvino.")]
    description: str


@with_config(_FORBID)
class IndexSummary(TypedDict):
    """The gallery: its index file, and the images added and removed since it was written."""

    file: str
    images: Annotated[int, Field(description="Images in the gallery now.")]
    rows: Annotated[int, Field(description="Rows numbered so far (removed images keep theirs until compaction).")]
    added: int
    removed: int
    generation: Annotated[str, Field(description="Changes when the gallery is compacted and its rows renumbered.")]
    dim: int
    backend: str
    flip: bool
    labels: list[str]


@with_config(_FORBID)
class QueriesTaken(TypedDict):
    """Which kinds of query the server takes."""

    image: bool
    text: bool
    text_unavailable: Annotated[str | None, Field(description="Why descriptions are not taken, or null.")]
    max_topk: int


@with_config(_FORBID)
class ModelFacts(TypedDict):
    """The model and the index, which queries they take, and the same-identity decision."""

    model: ModelSummary
    index: IndexSummary
    queries: QueriesTaken
    decision: Decision


# --------------------------------------------------------------------------------------------------------
# POST /api/gallery, DELETE /api/gallery/{row}
# --------------------------------------------------------------------------------------------------------

_LABEL = {
    "type": "string",
    "maxLength": MAX_LABEL_CHARS,
    "pattern": r"^[^\x00-\x1f\x7f]*$",
}
#: The body of ``POST /api/gallery``: images, and labels that apply to all of them.
GALLERY_REQUEST = request_body(
    "Images to add to the gallery (up to 32, as file parts named image), and optional labels for all of them.",
    {
        "multipart/form-data": media(
            {
                "title": "GalleryForm",
                "type": "object",
                "properties": {
                    "image": {"type": "array", "items": IMAGE_FILE, "minItems": 1, "maxItems": 32},
                    "identity": {**_LABEL, "description": "The identity of every image of the request."},
                    "camera": {**_LABEL, "description": "The camera of every image of the request."},
                },
                "required": ["image"],
                "additionalProperties": False,
            },
            file_types={"image": IMAGE_TYPES},
        )
    },
)


@with_config(_FORBID)
class GalleryAdded(TypedDict):
    """The rows of the images added, in the order they were sent."""

    rows: list[int]
    generation: Annotated[
        str, Field(description="The numbering the rows are in: give it to DELETE /api/gallery/{row}.")
    ]
    gallery_size: int
    took_ms: float


@with_config(_FORBID)
class GalleryRemoved(TypedDict):
    """The row removed."""

    removed: int
    gallery_size: int
