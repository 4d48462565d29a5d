"""``/openapi.json`` tells the truth. It declares each route's body, answers and errors (and none of
FastAPI's 422s, which the app never gives), and answers that fuzzing cannot reach (a calibrated
model's) match it. Then Schemathesis generates requests for every route and method from the schema,
valid ones and invalid ones (wrong types, missing or unknown fields, out-of-range values), sends them
to the app in process, and checks every answer: never a 5xx, a status the schema declares for the
route, a content type it declares for that status, a body that matches its schema.

Bounded and reproducible: :data:`EXAMPLES` requests per route and kind of data, derandomized and
without Hypothesis's example database, so that the run takes seconds and CI finds what any machine
finds. ``SVLLREID_FUZZ_EXAMPLES=2000`` fuzzes longer by hand."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the schema fuzz test needs schemathesis (the dev extra)")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: What every answer is checked for.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Generated requests per route and kind of data (valid, invalid).
EXAMPLES = int(os.environ.get("SVLLREID_FUZZ_EXAMPLES", "50"))
#: Every route, as the schema lists it: a route that the app gains must be declared, and is fuzzed.
ROUTES = {
    "GET /",
    "GET /healthz",
    "GET /metrics",
    "GET /api/model",
    "GET /api/image/{row}",
    "GET /api/thumbnail/{row}",
    "POST /api/search",
}


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
                if status not in ("200", "503"):  # every error: JSON {"error": message}
                    assert answer["content"] == {"application/json": {"schema": error}}, (method, path, status)

    def content(path: str, method: str = "get", status: str = "200") -> set[str]:
        return set(paths[path][method]["responses"][status]["content"])

    assert content("/") == {"text/html"}
    assert content("/metrics") == {"text/plain; version=0.0.4; charset=utf-8"}
    assert content("/api/image/{row}") == {"image/*", "application/octet-stream"} and content(
        "/api/thumbnail/{row}"
    ) == {"image/jpeg"}
    assert content("/healthz", status="503") == {"application/json"}
    for path in ("/api/image/{row}", "/api/thumbnail/{row}"):
        (row,) = paths[path]["get"]["parameters"]
        assert row["in"] == "path" and row["schema"]["pattern"] == "^[0-9]{1,12}$"
        assert set(paths[path]["get"]["responses"]) == {"200", "404", "500"}
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
    """Headers sent with every request, the schema's too: where credentials go once the API needs them."""
    return {}


@pytest.fixture(scope="module")
def api_schema(service: Any, api_headers: dict[str, str]) -> Iterator[Any]:
    """The schema that an app of its own publishes (over the session's gallery, with the 256 KiB body
    limit of the other tests), bound to that app."""
    from svllreid.serve.app import create_app

    app = create_app(service, max_upload_bytes=256 * 1024)
    yield schemathesis.openapi.from_asgi("/openapi.json", app, headers=dict(api_headers))  # it adds its own
    app.state.batcher.close()


def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> int:
    """Send :data:`EXAMPLES` requests of ``mode`` to ``operation`` and check each answer; the number sent.

    Raises:
        FailureGroup: the failed checks of the smallest request that Hypothesis found to fail them, with a
            curl command that sends it.
    """
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same requests on every run and machine
        database=None,  # and no replay of another run's failures
        suppress_health_check=list(HealthCheck),  # image bodies are large and slow to generate, on purpose
    )
    def send(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(headers=dict(headers), checks=CHECKS)

    send()
    return sent


def test_every_route_answers_as_its_schema_says(api_schema: Any, api_headers: dict[str, str]) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {operation.label for operation in operations} == ROUTES
    failures: list[str] = []
    for operation in operations:
        # A route that takes nothing has no invalid request to make (Hypothesis would call it unsatisfiable).
        parts = (operation.path_parameters, operation.query, operation.headers, operation.body)
        modes = list(GenerationMode) if any(len(part) for part in parts) else [GenerationMode.POSITIVE]
        for mode in modes:
            start = time.perf_counter()
            try:
                sent = fuzz(operation, mode, api_headers)
            except (Exception, BaseExceptionGroup) as err:  # every route is fuzzed; the failures are listed together
                failures.append(f"{operation.label} ({mode.value} data): {err}")
                continue
            print(f"{operation.label}: {sent} {mode.value} requests in {time.perf_counter() - start:.2f} s")
    assert not failures, "\n\n".join(failures)
