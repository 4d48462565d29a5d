"""Access control of ``svllreid serve``: bearer tokens of two roles (read, write), refusals that say what to
do and never repeat the token, failed attempts logged and throttled per client, the schema that declares
it all, and the command line that refuses to open the gallery to the network without a token."""

from __future__ import annotations

import hmac
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from svllreid.cli import main
from tests.serve.conftest import free_port, serving

READ = "R3ad-t0ken-abcdefghijklmnop"
WRITE = "Wr1te-t0ken-qrstuvwxyz0123"
ALICE, MALLORY = "198.51.100.7", "203.0.113.66"
NEW_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_write_route(app: Any) -> None:
    """A route of the write role, guarded as the gallery's routes are: with the module's helpers."""
    from svllreid.serve.access import refusals, require
    from svllreid.serve.tokens import Role

    @app.post("/api/test-change", dependencies=[require(Role.WRITE)], responses=refusals(Role.WRITE))
    async def change() -> dict[str, bool]:
        return {"changed": True}


@pytest.fixture
def make_app(service: Any) -> Iterator[Callable[..., Any]]:
    """Apps over the served gallery with the given tokens (and a write route), each with its own throttle;
    their query workers stopped at the end."""
    from svllreid.serve.app import create_app
    from svllreid.serve.tokens import Tokens

    made: list[Any] = []

    def make(read: str | None = READ, write: str | None = WRITE) -> Any:
        app = create_app(service, max_upload_bytes=256 * 1024, tokens=Tokens(read=read, write=write))
        add_write_route(app)
        made.append(app)
        return app

    yield make
    for app in made:
        app.state.batcher.close()


def client_of(app: Any, address: str = ALICE) -> Any:
    """A client of ``app`` that comes from ``address`` (no lifespan: the app's worker runs already)."""
    from fastapi.testclient import TestClient

    return TestClient(app, client=(address, 50000), raise_server_exceptions=False)


@pytest.fixture
def guarded(make_app: Callable[..., Any]) -> Any:
    """A client, from ALICE, of an app with both tokens."""
    return client_of(make_app())


READ_ROUTES = [
    ("GET", "/api/model", None),
    ("GET", "/api/image/3", None),
    ("GET", "/api/thumbnail/3", None),
    ("POST", "/api/search", {"text": "a man in a blue coat", "topk": 3}),
]


def call(client: Any, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    return client.request(method, path, json=body, headers=headers or {})


def assert_error(answer: Any, status: int, *parts: str) -> str:
    """``answer`` is ``status`` with the JSON error shape and a message holding ``parts``; the message."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and all(part in body["error"] for part in parts), body
    return str(body["error"])


# The tokens and how they are compared.


@pytest.mark.parametrize(
    ("read", "write", "message"),
    [
        ("short-token", None, "the read token is 11 characters long; a token needs at least 16"),
        (None, "", "the write token is 0 characters long"),
        ("a token with spaces in it", None, "holds a space"),
        ("t\u00f6ken-with-an-umlaut-0123", None, "non-ASCII"),
        (READ, READ, "the write token equals the read token"),
    ],
)
def test_short_unprintable_or_shared_tokens_are_refused_with_the_way_to_make_one(
    read: str | None, write: str | None, message: str
) -> None:
    from svllreid.serve.tokens import Tokens

    with pytest.raises(ValueError) as refused:
        Tokens(read=read, write=write)
    assert message in str(refused.value) and NEW_TOKEN in str(refused.value)
    for token in (read, write):
        assert not token or token not in str(refused.value)


def test_tokens_are_compared_in_constant_time_against_both_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check runs hmac.compare_digest on equal-length digests, against both tokens whichever matches;
    prefixes and extensions of a token grant nothing."""
    from svllreid.serve import tokens as module
    from svllreid.serve.tokens import Role, Tokens

    compared: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(module.hmac, "compare_digest", recording)
    both = Tokens(read=READ, write=WRITE)
    sent = [READ, WRITE, READ[:-1], READ + "x", "x" * len(READ), " " + WRITE]
    assert [both.role_of(token) for token in sent] == [Role.READ, Role.WRITE, None, None, None, None]
    assert len(compared) == 2 * len(sent)
    assert all(isinstance(a, bytes) and isinstance(b, bytes) and len(a) == len(b) == 32 for a, b in compared)
    assert Tokens(write=WRITE).role_of(WRITE) is Role.WRITE and Tokens(write=WRITE).role_of(READ) is None
    assert READ not in repr(both) and WRITE not in repr(both) and "set" in repr(both)


# Refusals.


def test_without_tokens_the_api_is_open_and_the_schema_claims_no_security(client: Any) -> None:
    for method, path, body in READ_ROUTES:
        assert call(client, method, path, body).status_code == 200, path
    schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    for operations in schema["paths"].values():
        for operation in operations.values():
            assert "security" not in operation and not {"401", "403", "429"} & set(operation["responses"])


@pytest.mark.parametrize(("method", "path", "body"), READ_ROUTES)
def test_a_request_without_a_token_is_refused_with_401_and_told_how_to_send_one(
    guarded: Any, method: str, path: str, body: Any
) -> None:
    answer = call(guarded, method, path, body)
    assert_error(answer, 401, "Authorization: Bearer <token>", "SVLLREID_TOKEN")
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="svllreid"'


def test_every_route_but_the_page_health_and_schema_needs_a_token(make_app: Callable[..., Any]) -> None:
    """Whatever routes the app has (the read ones, the write ones, any added later), a request without a
    token is refused; only the page, /healthz and /openapi.json answer."""
    from svllreid.serve.access import OPEN_PATHS

    app = make_app()
    client = client_of(app)
    checked = []
    for route in app.routes:
        path = route.path.replace("{row}", "3")
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method in ("HEAD", "OPTIONS"):
                continue
            answer = client.request(method, path)
            if route.path in OPEN_PATHS:
                assert answer.status_code == 200, (method, path)
            else:
                assert_error(answer, 401, "Authorization: Bearer <token>")
                checked.append(f"{method} {path}")
    assert {"POST /api/search", "GET /api/model", "POST /api/test-change"} <= set(checked)
    assert client.get("/").headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (f"Bearer {READ}x", "invalid_token"),
        (f"Bearer {WRITE[:-1]}", "invalid_token"),
        (READ, "invalid_request"),  # the token alone, without its scheme
        (f"Basic {READ}", "invalid_request"),
        ("Bearer", "invalid_request"),
        ("Bearer ", "invalid_request"),
        (f"Token {READ}", "invalid_request"),
    ],
)
def test_a_wrong_or_malformed_token_is_refused_without_repeating_it(guarded: Any, header: str, reason: str) -> None:
    answer = guarded.get("/api/model", headers={"Authorization": header})
    message = assert_error(answer, 401)
    assert answer.headers["WWW-Authenticate"] == f'Bearer realm="svllreid", error="{reason}"'
    expected = "not one of the server's" if reason == "invalid_token" else "not of the form 'Bearer <token>'"
    assert expected in message
    for secret in (READ[:8], WRITE[:8]):  # every header sent holds one of the tokens, or most of it
        assert secret not in answer.text and secret not in str(answer.headers)


def test_the_scheme_is_case_insensitive(guarded: Any) -> None:
    assert guarded.get("/api/model", headers={"Authorization": f"bearer {READ}"}).status_code == 200


def test_the_read_token_reads_and_the_write_token_reads_and_writes(guarded: Any, service: Any) -> None:
    for token in (READ, WRITE):
        for method, path, body in READ_ROUTES:
            assert call(guarded, method, path, body, bearer(token)).status_code == 200, (token, path)
    answer = guarded.post("/api/test-change", headers=bearer(READ))
    assert_error(answer, 403, "may search but not change the gallery", "--write-token", "SVLLREID_WRITE_TOKEN")
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    assert guarded.post("/api/test-change", headers=bearer(WRITE)).json() == {"changed": True}
    assert_error(guarded.post("/api/test-change"), 401)


def test_with_a_write_token_only_reading_needs_it_too(make_app: Callable[..., Any]) -> None:
    client = client_of(make_app(read=None, write=WRITE))
    assert_error(client.get("/api/model"), 401)
    assert_error(client.get("/api/model", headers=bearer(READ)), 401, "not one of the server's")
    assert client.get("/api/model", headers=bearer(WRITE)).status_code == 200
    assert client.post("/api/test-change", headers=bearer(WRITE)).status_code == 200


def test_with_a_read_token_only_nothing_can_write(make_app: Callable[..., Any]) -> None:
    client = client_of(make_app(read=READ, write=None))
    assert client.get("/api/model", headers=bearer(READ)).status_code == 200
    assert_error(client.post("/api/test-change", headers=bearer(READ)), 403, "has no write token", "--write-token")


def test_gallery_images_are_kept_out_of_shared_caches(guarded: Any) -> None:
    for path in ("/api/image/3", "/api/thumbnail/3"):
        assert guarded.get(path, headers=bearer(READ)).headers["Cache-Control"] == "private, no-cache"


# Failed attempts: logged, and throttled per client.


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_failures_lock_the_client_out_with_429_and_retry_after(make_app: Callable[..., Any]) -> None:
    """5 failures within 60 s: the client's next requests get 429 whatever they send, even the right token,
    for 30 s, then 60 s after the next 5 (backing off); other clients are not affected."""
    app = make_app()
    clock = app.state.access.throttle.clock = Clock()
    mallory, alice = client_of(app, MALLORY), client_of(app, ALICE)
    for _ in range(5):
        assert_error(mallory.get("/api/model", headers=bearer("wrong-but-long-enough-0")), 401)
    locked = mallory.get("/api/model", headers=bearer(READ))
    assert_error(locked, 429, "too many failed attempts", "try again in 30 s")
    assert locked.headers["Retry-After"] == "30"
    assert_error(mallory.get("/api/model"), 429)  # no token at all: refused the same
    assert alice.get("/api/model", headers=bearer(READ)).status_code == 200
    assert_error(alice.get("/api/model", headers=bearer("wrong-but-long-enough-0")), 401)
    assert client_of(app, ALICE).get("/healthz").status_code == 200
    assert mallory.get("/healthz").status_code == 200 and mallory.get("/").status_code == 200  # open routes

    clock.now += 20
    assert mallory.get("/api/model", headers=bearer(READ)).headers["Retry-After"] == "10"
    clock.now += 10.5
    assert mallory.get("/api/model", headers=bearer(READ)).status_code == 200
    for _ in range(5):
        assert_error(mallory.get("/api/model", headers=bearer("wrong-but-long-enough-0")), 401)
    assert mallory.get("/api/model", headers=bearer(READ)).headers["Retry-After"] == "60"


def test_a_success_neither_lifts_a_lockout_nor_forgives_failures(make_app: Callable[..., Any]) -> None:
    app = make_app()
    app.state.access.throttle.clock = Clock()
    mallory = client_of(app, MALLORY)
    for _ in range(4):  # 4 wrong write tokens, between good reads
        assert mallory.get("/api/model", headers=bearer(READ)).status_code == 200
        assert_error(mallory.post("/api/test-change", headers=bearer("guess-of-the-write-token")), 401)
    assert mallory.get("/api/model", headers=bearer(READ)).status_code == 200
    assert_error(mallory.post("/api/test-change", headers=bearer("guess-of-the-write-token")), 401)  # the 5th
    assert_error(mallory.get("/api/model", headers=bearer(READ)), 429)
    assert_error(mallory.post("/api/test-change", headers=bearer(WRITE)), 429)


def test_requests_without_a_token_and_403s_are_not_counted_as_failures(make_app: Callable[..., Any]) -> None:
    """A missing header guesses nothing (the page's first request has none), and a read token on a write
    route is a valid token: neither locks a client out."""
    client = client_of(make_app())
    for _ in range(8):
        assert_error(client.get("/api/model"), 401)
        assert_error(client.post("/api/test-change", headers=bearer(READ)), 403)
    assert client.get("/api/model", headers=bearer(READ)).status_code == 200


def test_failed_attempts_are_logged_with_client_route_and_reason_but_never_the_token(
    make_app: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = client_of(make_app(), MALLORY)
    sent = ["wrong-but-long-enough-0", READ[:-1] + "?", f"Basic {READ}"]
    with caplog.at_level(logging.INFO, logger="svllreid.serve.access"):
        client.get("/api/model", headers=bearer(sent[0]))
        client.get("/api/thumbnail/3", headers=bearer(sent[1]))
        client.get("/api/image/3", headers={"Authorization": sent[2]})
        client.post("/api/test-change", headers=bearer(READ))
        client.get("/api/model")
        client.get("/api/model", headers=bearer(sent[0]))
        client.get("/api/model", headers=bearer(sent[0]))  # the 5th failure: locked out
        client.get("/api/model", headers=bearer(READ))  # refused with 429, at debug level only
    lines = [r.getMessage() for r in caplog.records if r.name == "svllreid.serve.access"]
    assert lines[:5] == [
        f"refused GET /api/model from {MALLORY}: a wrong token",
        f"refused GET /api/thumbnail/3 from {MALLORY}: a wrong token",
        f"refused GET /api/image/3 from {MALLORY}: the Authorization header is not 'Bearer <token>'",
        f"refused POST /api/test-change from {MALLORY}: the read token on a write route",
        f"refused GET /api/model from {MALLORY}: no token",
    ]
    assert lines[-1] == f"locked out {MALLORY} for 30 s: 5 failed attempts within 60 s" and len(lines) == 8
    assert [r.levelname for r in caplog.records if "no token" in r.getMessage()] == ["INFO"]
    for secret in (READ, WRITE, *sent):
        for prefix in (secret, secret[:6], secret.split(" ")[-1][:6]):
            assert prefix not in caplog.text


# The throttle itself.


def test_the_lockout_doubles_up_to_its_bound_and_a_quiet_client_is_forgotten() -> None:
    from svllreid.serve.throttle import FailureThrottle

    clock = Clock()
    throttle = FailureThrottle(limit=3, window=60, lockout=30, max_lockout=100, clock=clock)
    lengths = []
    for _ in range(4):
        assert [throttle.failed("a") for _ in range(2)] == [None, None]
        lengths.append(throttle.failed("a"))
        assert throttle.retry_after("a") == lengths[-1]
        clock.now += lengths[-1] - 0.5
        assert throttle.retry_after("a") == 1  # rounded up: never "0 s"
        clock.now += 0.5
        assert throttle.retry_after("a") is None
    assert lengths == [30, 60, 100, 100]
    clock.now += 101  # no failure for max_lockout: a first offence again
    assert [throttle.failed("a") for _ in range(3)] == [None, None, 30]


def test_failures_count_within_the_window_only() -> None:
    from svllreid.serve.throttle import FailureThrottle

    clock = Clock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock)
    throttle.failed("a")
    throttle.failed("a")
    clock.now += 61
    assert throttle.failed("a") is None and throttle.failed("a") is None  # the first two are out of the window
    assert throttle.failed("a") == 30


def test_the_throttle_tracks_a_bounded_number_of_clients() -> None:
    from svllreid.serve.throttle import FailureThrottle

    clock = Clock()
    throttle = FailureThrottle(limit=2, max_clients=3, clock=clock)
    for n in range(50):
        clock.now += 1
        throttle.failed(f"client-{n}")
        assert len(throttle) <= 3
    throttle.failed("client-49")
    assert throttle.retry_after("client-49") == 30  # the most recent are kept
    assert throttle.retry_after("client-0") is None


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2::17", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same /64: one client
        ("2001:db8:1:3::17", "2001:db8:1:3::/64"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_a_client_is_its_address_and_an_ipv6_client_its_64_network(host: str | None, key: str) -> None:
    from svllreid.serve.throttle import client_key

    assert client_key(host) == key


# The schema.


def test_the_schema_declares_the_bearer_scheme_and_each_routes_role(guarded: Any) -> None:
    schema = guarded.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["token"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and "read" in scheme["description"]
    paths = schema["paths"]
    for method, path, _ in READ_ROUTES:
        template = path.replace("/3", "/{row}")
        operation = paths[template][method.lower()]
        assert operation["security"] == [{"token": ["read"]}], template
        assert {"401", "429"} <= set(operation["responses"]) and "403" not in operation["responses"]
    change = paths["/api/test-change"]["post"]
    assert change["security"] == [{"token": ["write"]}] and {"401", "403", "429"} <= set(change["responses"])
    error = change["responses"]["403"]["content"]["application/json"]["schema"]
    assert error["properties"] == {"error": {"type": "string", "description": "what is wrong and how to fix it"}}
    assert error["required"] == ["error"]
    assert "Retry-After" in change["responses"]["429"]["headers"]
    assert "WWW-Authenticate" in change["responses"]["401"]["headers"]
    for open_path in ("/", "/healthz"):
        assert "security" not in paths[open_path]["get"]


# A real server: the body of a refused request is not read, and a trusted proxy's client is the one counted.


@pytest.fixture(scope="module")
def live_guarded(service: Any) -> Iterator[dict[str, Any]]:
    from svllreid.serve.tokens import Tokens

    with serving(service, tokens=Tokens(read=READ, write=WRITE)) as server:
        yield server


def test_a_request_without_a_token_is_refused_before_its_body_is_read(live_guarded: dict[str, Any]) -> None:
    """The answer comes while most of the declared body is still unsent: nothing of it was waited for."""
    head = (
        b"POST /api/search HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 200000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live_guarded["port"]), timeout=10) as conn:
        conn.sendall(head + b"x" * 1000)
        answer = conn.recv(65536)
        while not answer.endswith(b"}"):  # the JSON body may come in a packet of its own
            more = conn.recv(65536)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"Authorization: Bearer <token>" in answer


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled(
    live_guarded: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 (its default, --forwarded-allow-ips): each forwarded
    address is its own client, in the throttle and in the log."""
    import httpx

    url = live_guarded["url"] + "/api/model"
    with caplog.at_level(logging.INFO, logger="svllreid.serve.access"):
        for _ in range(5):
            answer = httpx.get(url, headers={**bearer("wrong-but-long-enough-0"), "X-Forwarded-For": MALLORY})
            assert answer.status_code == 401
    assert f"refused GET /api/model from {MALLORY}: a wrong token" in caplog.text
    assert httpx.get(url, headers={**bearer(READ), "X-Forwarded-For": MALLORY}).status_code == 429
    assert httpx.get(url, headers={**bearer(READ), "X-Forwarded-For": ALICE}).status_code == 200
    assert httpx.get(url, headers=bearer(READ)).status_code == 200  # the proxy itself, 127.0.0.1


# The command line.


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the model fails the test: the checks must come before it. No token in the environment."""
    from svllreid.serve.search_service import SearchService

    def loaded(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(SearchService, "open", loaded)
    monkeypatch.delenv("SVLLREID_TOKEN", raising=False)
    monkeypatch.delenv("SVLLREID_WRITE_TOKEN", raising=False)


def serve(tmp_path: Path, *options: str) -> int:
    return main(["serve", "--index", str(tmp_path / "none.npz"), "--port", str(free_port()), *options])


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.org"])
def test_the_cli_refuses_another_address_than_loopback_without_a_token(
    no_model: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    assert serve(tmp_path, "--host", host) == 2
    err = capsys.readouterr().err
    assert f"refusing to listen on {host} without a token" in err and "export SVLLREID_TOKEN=$(" in err
    assert "secrets.token_urlsafe(32)" in err and "--insecure-no-auth" in err


def test_the_cli_warns_loudly_with_insecure_no_auth(
    no_model: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AssertionError, match="the model was loaded"):  # it goes on to load the model
        serve(tmp_path, "--host", "0.0.0.0", "--insecure-no-auth")
    err = capsys.readouterr().err
    assert "WARNING: --insecure-no-auth: listening on 0.0.0.0 WITHOUT ACCESS CONTROL" in err
    assert "download every image" in err


@pytest.mark.parametrize(
    ("options", "environment", "message"),
    [
        (["--token", "short"], {}, "--token is 5 characters long; a token needs at least 16"),
        ([], {"SVLLREID_TOKEN": ""}, "SVLLREID_TOKEN is 0 characters long"),
        ([], {"SVLLREID_WRITE_TOKEN": "still-too-short"}, "SVLLREID_WRITE_TOKEN is 15 characters long"),
        (["--write-token", READ], {"SVLLREID_TOKEN": READ}, "the write token equals the read token"),
        (["--insecure-no-auth"], {"SVLLREID_TOKEN": READ}, "--insecure-no-auth turns access control off"),
    ],
)
def test_the_cli_refuses_bad_tokens_before_the_model_loads(
    no_model: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    environment: dict[str, str],
    message: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert serve(tmp_path, *options) == 2
    err = capsys.readouterr().err
    assert message in err and READ not in err


def test_the_cli_serves_with_the_environments_tokens_behind_the_given_proxies(
    service: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tokens from the environment reach the app (which then needs them), the proxies reach uvicorn,
    and nothing suggests the command line is where tokens go."""
    import uvicorn

    from svllreid.serve.search_service import SearchService

    ran: dict[str, Any] = {}
    monkeypatch.setattr(SearchService, "open", lambda *args, **kwargs: service)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(app=app, **options))
    monkeypatch.setenv("SVLLREID_TOKEN", READ)
    monkeypatch.setenv("SVLLREID_WRITE_TOKEN", WRITE)
    assert serve(tmp_path, "--host", "0.0.0.0", "--forwarded-allow-ips", "10.0.0.2") == 0
    out, err = capsys.readouterr()
    assert ran["proxy_headers"] is True and ran["forwarded_allow_ips"] == "10.0.0.2" and ran["host"] == "0.0.0.0"
    assert "access: a token is needed" in out and "TLS reverse proxy" in err and "visible to other users" not in err
    app = ran["app"]
    try:
        client = client_of(app)
        assert_error(client.get("/api/model"), 401)
        assert client.get("/api/model", headers=bearer(READ)).status_code == 200
    finally:
        app.state.batcher.close()
    assert READ not in out + err


def test_a_token_on_the_command_line_gets_a_note_about_ps(
    service: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from svllreid.serve.search_service import SearchService

    ran: dict[str, Any] = {}
    monkeypatch.setattr(SearchService, "open", lambda *args, **kwargs: service)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(app=app, **options))
    monkeypatch.delenv("SVLLREID_TOKEN", raising=False)
    monkeypatch.delenv("SVLLREID_WRITE_TOKEN", raising=False)
    try:
        assert serve(tmp_path, "--token", READ) == 0
    finally:
        ran["app"].state.batcher.close()
    err = capsys.readouterr().err
    assert "note: --token is visible to other users of this machine (ps); prefer SVLLREID_TOKEN" in err
    assert ran["forwarded_allow_ips"] is None  # uvicorn's own default: $FORWARDED_ALLOW_IPS, else loopback
