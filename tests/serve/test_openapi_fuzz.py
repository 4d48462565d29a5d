"""``/openapi.json`` tells the truth. It declares each route's body, answers and errors (and none of
FastAPI's 422s, which the app never gives), and a calibrated model's answers match it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the schema fuzz test needs schemathesis (the dev extra)")

#: Every route, as the schema lists it: a route that the app gains must be declared.
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
