"""``/openapi.json`` tells the truth. It declares each route's body, answers and errors (and none of
FastAPI's 422s, which the app never gives), its example bodies work, and answers that fuzzing cannot
reach (a calibrated model's) match it. Then Schemathesis runs as ``schemathesis run`` does, on the app
in process: the schema's examples, its edge cases (each boundary, missing or wrong-typed field and
content type, and the methods a route does not take), then generated requests, valid and invalid, for
every route. Every answer is checked: never a 5xx; a status, a content type and a body that the schema
declares; a 405 with its Allow header.

Bounded and reproducible: a fixed seed, deterministic generation and no example database, and
:data:`EXAMPLES` generated requests per route, so that the run takes seconds and CI finds what any
machine finds. ``SVLLREID_FUZZ_EXAMPLES=2000`` fuzzes longer by hand."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the schema fuzz test needs schemathesis (the dev extra)")

from schemathesis.engine import Status, events  # noqa: E402

#: What every answer is checked for: no 5xx; a status, a content type and a body the schema declares for
#: it; and a 405 with an Allow header for a method that a route does not take.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "unsupported_method",
)
#: Generated requests per route in the fuzzing phase (valid and invalid), after the schema's edge cases.
EXAMPLES = int(os.environ.get("SVLLREID_FUZZ_EXAMPLES", "50"))
SEED = 29
#: Every route, as the schema lists it: a route that the app gains must be declared, and is fuzzed.
ROUTES = {
    "GET /",
    "GET /healthz",
    "GET /metrics",
    "GET /api/model",
    "GET /api/image/{row}",
    "GET /api/thumbnail/{row}",
    "POST /api/search",
    "POST /api/gallery",
    "DELETE /api/gallery/{row}",
}
#: The fuzzed app's tokens: the run sends the write token, which every route takes (refusals are
#: tests/serve/test_access.py's).
READ_TOKEN, WRITE_TOKEN = "fuzz-read-token-0123456789", "fuzz-write-token-0123456789"


def openapi_of(client: Any) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    return answer.json()


def test_the_schema_declares_each_routes_bodies_answers_and_errors(client: Any) -> None:
    openapi = openapi_of(client)
    paths = openapi["paths"]
    assert {f"{method.upper()} {path}" for path, item in paths.items() for method in item} == ROUTES
    assert "422" not in str(openapi) and "HTTPValidationError" not in str(openapi)  # the app answers 400 instead
    error = {"$ref": "#/components/schemas/ErrorBody"}
    assert openapi["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    for path, item in paths.items():
        for method, operation in item.items():
            assert operation["operationId"].isidentifier(), (method, path)
            assert "500" in operation["responses"], (method, path)
            for status, answer in operation["responses"].items():
                if status.startswith(("2", "304")) or (path, status) == ("/healthz", "503"):  # answers, not errors
                    continue
                assert answer["content"] == {"application/json": {"schema": error}}, (method, path, status)

    def content(path: str, method: str = "get", status: str = "200") -> set[str]:
        return set(paths[path][method]["responses"][status]["content"])

    assert content("/") == {"text/html"}
    assert content("/metrics") == {"text/plain; version=0.0.4; charset=utf-8"}
    assert content("/api/image/{row}") == {"image/*", "application/octet-stream"} and content(
        "/api/thumbnail/{row}"
    ) == {"image/jpeg"}
    assert content("/healthz", status="503") == {"application/json"}
    for path, method in (
        ("/api/image/{row}", "get"),
        ("/api/thumbnail/{row}", "get"),
        ("/api/gallery/{row}", "delete"),
    ):
        row = paths[path][method]["parameters"][0]
        assert row["in"] == "path" and row["schema"]["pattern"] == "^[0-9]{1,12}$"
    generation = paths["/api/gallery/{row}"]["delete"]["parameters"][1]
    assert generation["in"] == "query" and generation["name"] == "generation" and not generation["required"]
    assert set(paths["/api/image/{row}"]["get"]["responses"]) == {"200", "404", "500"}
    assert set(paths["/api/thumbnail/{row}"]["get"]["responses"]) == {"200", "304", "404", "500"}
    assert set(paths["/api/gallery/{row}"]["delete"]["responses"]) == {"200", "400", "404", "409", "500"}
    adding = paths["/api/gallery"]["post"]
    assert set(adding["responses"]) == {"201", "400", "413", "415", "500", "503"}
    gallery_form = adding["requestBody"]["content"]["multipart/form-data"]
    assert gallery_form["schema"]["properties"]["image"]["items"]["format"] == "binary"
    assert gallery_form["schema"]["required"] == ["image"] and set(adding["requestBody"]["content"]) == {
        "multipart/form-data"
    }
    search = paths["/api/search"]["post"]
    assert set(search["responses"]) == {"200", "400", "404", "409", "413", "415", "500", "503"}
    body = search["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"multipart/form-data", "application/x-www-form-urlencoded", "application/json"}
    form = body["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["image"]["format"] == "binary"  # a file part, with a file name
    assert form["schema"]["oneOf"] == [{"required": ["image"]}, {"required": ["text"]}, {"required": ["gallery"]}]
    assert form["encoding"]["image"]["contentType"].startswith("image/jpeg")
    for kind in ("application/json", "application/x-www-form-urlencoded"):
        schema = body["content"][kind]["schema"]
        assert set(schema["properties"]) == {"text", "gallery", "topk"} and schema["additionalProperties"] is False
        example = body["content"][kind]["example"]  # for client authors: it must work
        sent = client.post("/api/search", **{"json" if kind == "application/json" else "data": example})
        assert sent.status_code == 200 and len(sent.json()["results"]) == example["topk"]
    assert client.get("/docs").status_code == client.get("/redoc").status_code == 404  # scripts from a CDN


def test_a_calibrated_models_answers_match_the_schema(calibrated: dict, world: dict) -> None:
    """Its decisions and each hit's same_identity: the fuzzed app's model is uncalibrated."""
    client = calibrated["client"]
    schema = schemathesis.openapi.from_dict(openapi_of(client))
    model = client.get("/api/model")
    assert model.json()["decision"]["calibrated"] is True
    schema["/api/model"]["GET"].validate_response(model)
    photo = Path(world["images"][5])
    answers = [
        client.post("/api/search", json={"gallery": 11, "topk": 5}),
        client.post("/api/search", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}),
        client.post("/api/search", data={"text": "a person in a red coat " * 30}),  # cut: truncated
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "same_identity" in answers[0].json()["results"][0] and answers[2].json()["query"]["truncated"] is True
    for answer in answers:
        schema["/api/search"]["POST"].validate_response(answer)


@pytest.fixture(scope="module")
def api_headers() -> dict[str, str]:
    """Headers sent with every request, the schema's too: the write token, which every route takes."""
    return {"Authorization": f"Bearer {WRITE_TOKEN}"}


@pytest.fixture(scope="module")
def fuzzed_app(world: dict[str, Any], service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An app of its own, with tokens, over a copy of the session's gallery (the fuzzer removes images and
    may add some: the world's index is never changed), with the 256 KiB body limit of the other tests."""
    from svllreid.search import GalleryIndex
    from svllreid.serve.app import create_app
    from svllreid.serve.search_service import SearchService
    from svllreid.serve.tokens import Tokens

    copy = GalleryIndex.load(world["index"]).save(tmp_path_factory.mktemp("fuzzed") / "gallery.npz")
    fuzzed = SearchService(GalleryIndex.load(copy), service.trained, index_path=copy)
    app = create_app(fuzzed, max_upload_bytes=256 * 1024, tokens=Tokens(read=READ_TOKEN, write=WRITE_TOKEN))
    yield app
    app.state.batcher.close()


def test_every_route_answers_as_its_schema_says(fuzzed_app: Any, api_headers: dict[str, str]) -> None:
    """Schemathesis's run, as ``schemathesis run`` makes it: the schema's edge cases first (each
    boundary and missing or wrong-typed field, the methods a route does not take), then fuzzing."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": api_headers,
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},  # no links between the routes to follow
            "checks": {"enabled": False, **{check: {"enabled": True} for check in CHECKS}},
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app, headers=dict(api_headers), config=config)
    assert {result.ok().label for result in schema.get_all_operations()} == ROUTES
    sent: Counter[str] = Counter()
    failures: list[str] = []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            sent[f"{event.label} ({event.phase.value})"] += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures.append(
                            f"{event.label}: {check.name}: {failure.title}\n{failure.message}\n"
                            f"{check.failure_info.code_sample}"
                        )
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            failures.append(f"{getattr(event, 'label', 'the run')}: {event.info.format()}")
    print(f"{sum(sent.values())} requests:", ", ".join(f"{name}: {count}" for name, count in sent.items() if count))
    assert not failures, "\n\n".join(dict.fromkeys(failures))  # each distinct failure once
    assert all(sent[f"{route} (fuzzing)"] for route in ROUTES), sent
    assert sent["POST /api/search (examples)"] == 2  # the schema's example bodies
