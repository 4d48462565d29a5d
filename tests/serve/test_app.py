"""The JSON API of ``svllreid serve``: the same rankings as ``svllreid search``, for photos, descriptions
and the gallery's own images; and every kind of bad request answered with a 4xx and a message."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from svllreid.cli import main


def cli_search(capsys: pytest.CaptureFixture[str], world: dict[str, Any], *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["search", "--index", str(world["index"]), "--json", "--device", "cpu", *args]) == 0
    return json.loads(capsys.readouterr().out)


def upload(client: Any, path: str | Path, **fields: Any) -> Any:
    data = Path(path).read_bytes()
    return client.post("/api/search", files={"image": (Path(path).name, data, "image/jpeg")}, data=fields)


def rows_of(service: Any, results: list[dict]) -> list[int]:
    row = {p: i for i, p in enumerate(service.index.paths)}
    return [row[r["path"]] for r in results]


def test_health_and_model_description(client: Any, service: Any) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["images"] == len(service.index) == 58
    facts = client.get("/api/model").json()
    assert facts["model"]["arch"] == "svll-tiny-vit" and facts["model"]["image_size"] == [64, 32]
    assert facts["index"]["images"] == 58 and facts["index"]["labels"] == ["camera", "identity"]
    assert facts["queries"]["text"] is True and facts["queries"]["text_unavailable"] is None


def test_the_page_is_served_and_names_its_api(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for used in ("/api/search", "/api/thumbnail/", "/api/model", 'type="file"', "<textarea"):
        assert used in page.text


def test_an_uploaded_photo_ranks_the_gallery_as_the_cli_does(client: Any, service: Any, world: dict, capsys) -> None:
    query = world["images"][7]
    answer = upload(client, query, topk="6").json()
    expected = cli_search(capsys, world, "--query", query, "--topk", "6")[0]["results"]
    assert answer["query"] == {"kind": "image", "filename": Path(query).name}
    assert [r["row"] for r in answer["results"]] == rows_of(service, expected)
    np.testing.assert_allclose([r["score"] for r in answer["results"]], [r["score"] for r in expected], atol=1e-5)
    first = answer["results"][0]
    assert first["rank"] == 1 and first["path"] == Path(query).name  # the photo is itself in the gallery
    assert (first["identity"], first["camera"]) == (expected[0]["identity"], expected[0]["camera"])
    assert answer["gallery_size"] == 58 and answer["took_ms"] > 0


def test_a_description_ranks_the_gallery_as_the_cli_does(client: Any, service: Any, world: dict, capsys) -> None:
    caption = world["captions"][3].caption
    answer = client.post("/api/search", data={"text": caption, "topk": "5"}).json()
    expected = cli_search(capsys, world, "--text", caption, "--topk", "5")[0]["results"]
    assert answer["query"] == {"kind": "text", "text": caption, "truncated": False}
    assert [r["row"] for r in answer["results"]] == rows_of(service, expected)
    np.testing.assert_allclose([r["score"] for r in answer["results"]], [r["score"] for r in expected], atol=1e-5)
    # The same as JSON, and as a multipart form (what the page sends).
    for again in (
        client.post("/api/search", json={"text": caption, "topk": 5}).json(),
        client.post("/api/search", files={"text": (None, caption), "topk": (None, "5")}).json(),
    ):
        assert [r["row"] for r in again["results"]] == [r["row"] for r in answer["results"]]


def test_a_long_description_is_cut_and_says_so(client: Any) -> None:
    answer = client.post("/api/search", json={"text": "a person in a red coat " * 30, "topk": 2}).json()
    assert answer["query"]["truncated"] is True and len(answer["results"]) == 2


def test_a_gallery_image_as_the_query_leaves_itself_out_and_marks_matches(client: Any, service: Any, world) -> None:
    row = 11
    answer = client.post("/api/search", data={"gallery": str(row), "topk": "8"}).json()
    photo = upload(client, service.index.paths[row], topk="9").json()
    assert photo["results"][0]["row"] == row
    assert [r["row"] for r in answer["results"]] == [r["row"] for r in photo["results"][1:]]
    assert [r["rank"] for r in answer["results"]] == list(range(1, 9))
    labels = service.index.base.labels
    assert answer["query"]["identity"] == labels["identity"][row] and answer["query"]["row"] == row
    assert [r["match"] for r in answer["results"]] == [
        labels["identity"][r["row"]] == labels["identity"][row] for r in answer["results"]
    ]


def test_json_numbers_without_a_fraction_are_whole_numbers(client: Any) -> None:
    """As the schema's "integer" says (JSON Schema counts 5.0 as one): they were refused with a 400."""
    text = client.post("/api/search", json={"text": "a man", "topk": 3.0})
    gallery = client.post(
        "/api/search", content=b'{"gallery": 4.0, "topk": 2e0}', headers={"content-type": "application/json"}
    )
    assert text.status_code == gallery.status_code == 200, (text.text, gallery.text)
    assert len(text.json()["results"]) == 3 and len(gallery.json()["results"]) == 2
    assert gallery.json()["query"]["row"] == 4
    for fraction in (b'{"text": "a man", "topk": 2.5}', b'{"gallery": 4.5}', b'{"gallery": 1e12}'):
        answer = client.post("/api/search", content=fraction, headers={"content-type": "application/json"})
        assert answer.status_code in (400, 404) and "must be a whole number" in answer.json()["error"]


def test_topk_beyond_the_gallery_returns_the_whole_gallery(client: Any) -> None:
    answer = client.post("/api/search", json={"text": "a person", "topk": 200}).json()
    assert len(answer["results"]) == 58
    gallery = client.post("/api/search", json={"gallery": 0, "topk": 200}).json()
    assert len(gallery["results"]) == 57 and 0 not in [r["row"] for r in gallery["results"]]


def test_gallery_images_and_thumbnails_are_served_by_row(client: Any, service: Any) -> None:
    image = client.get("/api/image/5")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == Path(service.index.paths[5]).read_bytes()
    thumb = client.get("/api/thumbnail/5")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as picture, Image.open(service.index.paths[5]) as original:
        assert picture.size == original.size == (64, 128)  # small images are not enlarged


@pytest.mark.parametrize(
    "url",
    [
        "/api/image/58",
        "/api/image/-1",
        "/api/image/1.0",
        "/api/image/%2Fetc%2Fpasswd",
        "/api/image/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/image/../../../etc/passwd",
        "/api/image//etc/passwd",
        "/api/image/%2e%2e/%2e%2e/etc/passwd",
        "/api/thumbnail/..%2Fgallery.npz",
        "/api/thumbnail/99999999999999999999",
        "/api/image/\u0661",  # an Arabic-Indic digit one: str.isdigit() says yes, it is no row
    ],
)
def test_nothing_outside_the_index_is_served(client: Any, url: str) -> None:
    answer = client.get(url)
    assert answer.status_code == 404
    assert set(answer.json()) == {"error"} and "root:" not in answer.text


def test_a_gallery_image_gone_from_disk_is_a_404(client: Any, service: Any, world: dict) -> None:
    path = Path(service.index.paths[20])
    kept = path.read_bytes()
    assert client.get("/api/thumbnail/20").status_code == 200
    path.unlink()
    try:
        answer = client.get("/api/image/20")
        assert answer.status_code == 404 and "no longer on disk" in answer.json()["error"]
        assert client.get("/api/thumbnail/20").status_code == 404  # though its thumbnail was made before
    finally:
        path.write_bytes(kept)


def jpeg(size: tuple[int, int] = (32, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="JPEG")
    return out.getvalue()


def png_of(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("L", size).save(out, format="PNG")
    return out.getvalue()


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


@pytest.mark.parametrize(
    ("files", "data", "status", "message"),
    [
        ({"image": ("notes.txt", b"hello", "text/plain")}, {}, 415, "text/plain, not an image"),
        ({"image": ("fake.jpg", b"this is no jpeg", "image/jpeg")}, {}, 415, "not an image in a format"),
        ({"image": ("page.eps", EPS, "image/jpeg")}, {}, 415, "not an image in a format"),
        ({"image": ("cut.jpg", jpeg()[:300], "image/jpeg")}, {}, 400, "damaged"),
        ({"image": ("empty.jpg", b"", "image/jpeg")}, {}, 400, "empty"),
        ({"image": ("bomb.png", png_of((8000, 8000)), "image/png")}, {}, 413, "at most 50 megapixels"),
        ({"image": ("a.jpg", jpeg(), "image/jpeg")}, {"text": "a man"}, 400, "got image and text"),
        ({}, {}, 400, "got none"),
        ({}, {"text": "   "}, 400, "description is empty"),
        ({}, {"text": "a man", "topk": "0"}, 400, "topk must be a whole number from 1 to 200"),
        ({}, {"text": "a man", "topk": "201"}, 400, "from 1 to 200"),
        ({}, {"text": "a man", "topk": "ten"}, 400, "'topk' must be a whole number"),
        ({}, {"text": "a man", "colour": "red"}, 400, "unknown field 'colour'"),
        ({}, {"gallery": "58"}, 404, "the index holds images 0 to 57"),
        ({}, {"gallery": "../etc/passwd"}, 404, "must be a whole number"),
        ({}, {"image": "not a file"}, 400, "must be a file upload"),
        ({}, {"text": "x" * 2001}, 400, "at most 2000"),
        ({}, {"text": "a man", "topk": "\u00b2"}, 400, "'topk' must be a whole number"),  # isdigit() says yes
        ({}, {"text": "a man", "topk": "9" * 5000}, 400, "'topk' must be a whole number"),
    ],
)
def test_bad_queries_get_a_4xx_and_a_message(client: Any, files: dict, data: dict, status: int, message: str) -> None:
    answer = client.post("/api/search", files=files or None, data=data or None)
    if not files and not data:
        answer = client.post("/api/search", files={"topk": (None, "3")})  # a multipart form with nothing asked
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"} and message in answer.json()["error"]
    assert "Traceback" not in answer.text


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"a man", "text/plain", 415, "takes a form (multipart/form-data"),
        (b"a man", None, 415, "no content type"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (b'["a man"]', "application/json", 400, "must be an object"),
        (b'{"text": 5}', "application/json", 400, "'text' must be a string"),
        (rb'{"text": "a man \ud800"}', "application/json", 400, "'text' is not valid Unicode"),  # was a 500
        (b'{"gallery": true}', "application/json", 404, "must be a whole number"),
        (b'{"image": "aGVsbG8="}', "application/json", 415, "multipart/form-data upload"),
        (b'{"text": "a man", "topk": ' + b"9" * 5000 + b"}", "application/json", 400, "not valid JSON"),
        (b"[" * 100_000, "application/json", 400, "not valid JSON"),
        (rb'{"gallery": "\u00b2"}', "application/json", 404, "must be a whole number"),
        (b'{"gallery": 1e300}', "application/json", 404, "must be a whole number"),
        (b"--x\r\nnot a part", "multipart/form-data; boundary=x", 400, ""),
        (b"--x", "multipart/form-data", 400, ""),
    ],
)
def test_malformed_requests_get_a_4xx_and_a_message(
    client: Any, body: bytes, content_type: str | None, status: int, message: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = client.post("/api/search", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"} and message in answer.json()["error"]


def test_bodies_over_the_limit_are_refused_before_they_are_read(client: Any) -> None:
    big = b"\xff" * (300 * 1024)  # the test app takes 256 KiB
    answer = client.post("/api/search", files={"image": ("big.jpg", big, "image/jpeg")})
    assert answer.status_code == 413 and "limit of 0.25 MiB" in answer.json()["error"]

    def chunks() -> Any:  # no Content-Length: the limit is met while reading
        for _ in range(40):
            yield b"x" * 8192

    streamed = client.post("/api/search", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413 and "limit" in streamed.json()["error"]
    lying = client.post(
        "/api/search", content=b"{}", headers={"content-type": "application/json", "content-length": "x"}
    )
    assert lying.status_code == 400 and "Content-Length header is not a number" in lying.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_unknown_pages_and_methods_answer_in_json(client: Any) -> None:
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and "no such page or API: /api/nothing" in missing.json()["error"]
    wrong = client.get("/api/search")
    assert wrong.status_code == 405 and set(wrong.json()) == {"error"}
    assert client.get("/docs").status_code == 404  # its scripts would come from a CDN


@pytest.mark.parametrize(
    ("method", "url", "allowed"), [("DELETE", "/api/search", "POST"), ("TRACE", "/api/image/3", "GET")]
)
def test_a_method_a_route_does_not_take_is_a_405_that_names_the_ones_it_does(
    client: Any, method: str, url: str, allowed: str
) -> None:
    """RFC 9110 requires the Allow header of a 405 (it was dropped with the JSON error)."""
    answer = client.request(method, url)
    assert answer.status_code == 405 and answer.headers["allow"] == allowed and set(answer.json()) == {"error"}


def test_a_failure_inside_the_server_is_a_500_without_a_trace(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    batcher = client.app.state.batcher

    def broken(queries: Any) -> Any:
        raise RuntimeError("secret internal detail at /home/someone/model.py line 3")

    monkeypatch.setattr(batcher, "_answer", broken)
    answer = client.post("/api/search", json={"text": "a man"})
    assert answer.status_code == 500
    assert answer.json() == {"error": "the server could not answer this request; its log has the details"}
    monkeypatch.undo()
    assert client.post("/api/search", json={"text": "a man"}).status_code == 200  # the worker lives on


def test_an_index_without_text_columns_still_takes_photos_and_says_why_not_text(world: dict) -> None:
    from fastapi.testclient import TestClient

    from svllreid.search import GalleryIndex
    from svllreid.serve.app import create_app
    from svllreid.serve.search_service import SearchService

    index = GalleryIndex.load(world["index"])
    meta = {k: v for k, v in index.meta.items() if k != "text_dim"}  # as an older svllreid wrote it
    old = Path(world["folder"]) / "old.npz"
    GalleryIndex.build(index.feats, index.paths, meta=meta).save(old)
    with TestClient(create_app(SearchService.open(old, device="cpu"))) as old_client:
        assert old_client.get("/api/model").json()["queries"]["text"] is False
        answer = old_client.post("/api/search", json={"text": "a man"})
        assert answer.status_code == 409 and "rebuild it with `svllreid index build" in answer.json()["error"]
        assert upload(old_client, world["images"][0]).status_code == 200


@pytest.mark.parametrize(
    "text", ["../gallery.npz", "/etc/passwd", "1/../2", "0x10", " 3", "3 ", "+3", "-0", "", "\u0663", "9" * 13]
)
def test_a_row_in_a_url_is_decimal_digits_and_nothing_else(text: str) -> None:
    from svllreid.errors import UploadError
    from svllreid.serve.app import _row

    with pytest.raises(UploadError, match="no gallery image") as caught:
        _row(text)
    assert caught.value.status == 404


def test_an_upload_that_declares_no_type_is_decoded_and_answered(client: Any, world: dict) -> None:
    photo = Path(world["images"][2]).read_bytes()
    body = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="q"\r\n\r\n'
        + photo
        + b'\r\n--b\r\nContent-Disposition: form-data; name="topk"\r\n\r\n3\r\n--b--\r\n'
    )
    answer = client.post("/api/search", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 200 and len(answer.json()["results"]) == 3
    assert answer.json()["results"][0]["path"] == Path(world["images"][2]).name


def test_search_json_and_the_web_api_share_one_hit_schema(client: Any, service: Any, world: dict, capsys) -> None:
    """A gallery photo asked by the CLI and by a click on it in the page: the same hits, the same keys
    (rank, score, row, path, identity, camera, match); the API's paths are relative to the indexed folder
    and it keeps svllreid 0.1's keys for one release."""
    from svllreid.inference.gallery_search import HIT_KEYS

    query = world["images"][7]
    row = service.index.paths.index(query)
    by_cli = cli_search(capsys, world, "--query", query, "--topk", "5")[0]
    by_api = client.post("/api/search", data={"gallery": str(row), "topk": "4"}).json()
    legacy = {"index", "name"}
    decided = {"same_identity"}  # only where the model is calibrated (tests/serve/test_calibration.py); not here
    assert by_cli["identity"] == by_api["query"]["identity"]  # the query is known as one of the gallery's images
    for hit in by_cli["results"]:
        assert list(hit) == [k for k in HIT_KEYS if k in hit] and set(hit) == set(HIT_KEYS) - decided
        assert Path(hit["path"]).is_absolute() and hit["match"] == (hit["identity"] == by_cli["identity"])
    for hit in by_api["results"]:
        assert set(hit) - legacy == set(HIT_KEYS) - decided and not Path(hit["path"]).is_absolute()
        assert (hit["index"], hit["name"]) == (hit["row"], hit["path"])
    # The CLI's first hit is the photo itself; the click leaves it out: the rest are the same images.
    assert by_cli["results"][0]["row"] == row
    assert [h["row"] for h in by_cli["results"][1:]] == [h["row"] for h in by_api["results"]]
    assert [h["match"] for h in by_cli["results"][1:]] == [h["match"] for h in by_api["results"]]


def test_a_gallery_past_ram_is_served_from_its_file(world: dict, service: Any) -> None:
    """A faiss-ivfpq index of the same gallery: opened in place (features mapped, paths read one at a
    time), and every kind of query answered, with the labels, as from the exact index."""
    pytest.importorskip("faiss")
    from fastapi.testclient import TestClient

    from svllreid.search import GalleryIndex
    from svllreid.search.stored import StoredPaths
    from svllreid.serve.app import create_app
    from svllreid.serve.search_service import SearchService

    exact = GalleryIndex.load(world["index"])
    file = Path(world["folder"]) / "gallery-ivfpq.index"
    GalleryIndex.build(exact.feats, exact.paths, meta=exact.meta, backend="faiss-ivfpq").save(file)
    past_ram = SearchService.open(file, device="cpu")
    assert isinstance(past_ram.index.base.feats, np.memmap) and isinstance(past_ram.index.base.paths, StoredPaths)
    with TestClient(create_app(past_ram)) as ivfpq_client, TestClient(create_app(service)) as exact_client:
        assert ivfpq_client.get("/api/model").json()["index"]["backend"] == "faiss-ivfpq"
        photo = world["images"][4]
        ours, theirs = (upload(c, photo, topk="6").json() for c in (ivfpq_client, exact_client))
        assert ours["results"][0]["path"] == theirs["results"][0]["path"] == Path(photo).name
        assert ours["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
        # 58 images, one list: every image is a candidate, re-ranked exactly (float16 features: ~1e-3).
        np.testing.assert_allclose(
            [h["score"] for h in ours["results"]], [h["score"] for h in theirs["results"]], atol=2e-3
        )
        row = 11
        answer = ivfpq_client.post("/api/search", data={"gallery": str(row), "topk": "8"}).json()
        assert row not in [h["row"] for h in answer["results"]] and len(answer["results"]) == 8
        assert answer["query"]["identity"] == exact.labels["identity"][row]
        assert all(h["match"] == (h["identity"] == answer["query"]["identity"]) for h in answer["results"])
        text = ivfpq_client.post("/api/search", json={"text": "a man in a blue coat", "topk": 5}).json()
        reference = exact_client.post("/api/search", json={"text": "a man in a blue coat", "topk": 5}).json()
        assert [h["row"] for h in text["results"]] == [h["row"] for h in reference["results"]]
