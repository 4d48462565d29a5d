"""Access control of ``svllreid serve``'s API: bearer tokens of two roles, checked by a FastAPI dependency.

- open, no token: ``GET /``, ``GET /healthz``, ``GET /openapi.json`` (the page and the schema hold no data);
- read (the read or the write token): ``POST /api/search``, ``GET /api/image/{row}``,
  ``GET /api/thumbnail/{row}``, ``GET /api/model``, ``GET /metrics``;
- write (the write token only): ``POST /api/gallery``, ``DELETE /api/gallery/{row}``.

A route takes its role with ``dependencies=[require(Role.READ)]`` and declares the refusals in its schema
with ``responses=refusals(Role.READ)``. :func:`install` puts the server's :class:`Tokens` and a
:class:`FailureThrottle` on the app. Without a token the API is open, and ``/openapi.json`` says so: it
then lists no security requirement and no 401, 403 or 429.

Answers, each JSON ``{"error": message}`` (the message never holds what was sent):

- 401, ``WWW-Authenticate: Bearer``: no ``Authorization`` header, one that is not ``Bearer <token>``, or a
  token that is not the server's;
- 403: the read token on a write route;
- 429, ``Retry-After``: the client failed too often (:mod:`svllreid.serve.throttle`); the token is not
  even looked at.

Malformed headers and wrong tokens count as failures; a missing header does not (it guesses nothing,
and the page's first request has none). Every refusal is logged on ``svllreid.serve.access`` with the
client's address, the route and the reason, never with the token or any part of it. The client is the
address uvicorn gives, which behind a reverse proxy is the one its ``X-Forwarded-For`` names when the
proxy is trusted (``--forwarded-allow-ips``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from svllreid.errors import MissingExtraError
from svllreid.serve.throttle import FailureThrottle, client_key
from svllreid.serve.tokens import Role, Tokens

__all__ = ["OPEN_PATHS", "REFUSAL_STATUSES", "SCHEME", "Access", "Refused", "install", "refusals", "require"]

try:
    from fastapi import Depends, FastAPI, Request, Security
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
except ImportError as err:  # pragma: no cover - the message is tested through the command line
    raise MissingExtraError(f"svllreid serve needs FastAPI: pip install 'svllreid[serve]' ({err})") from err

log = logging.getLogger(__name__)

#: Routes that need no token.
OPEN_PATHS = ("/", "/healthz", "/openapi.json")
#: The name of the security scheme in ``/openapi.json``.
SCHEME = "token"
REALM = 'Bearer realm="svllreid"'

_bearer = HTTPBearer(
    auto_error=False,  # our own answers: JSON, a message that says what to do, and the throttle
    scheme_name=SCHEME,
    description="`Authorization: Bearer <token>`. A route's required role is the scope of its security "
    "requirement: `read` routes take the read or the write token, `write` routes the write token only. "
    "Absent from the schema when the server runs without tokens (then every route is open).",
)


class Refused(Exception):
    """A request the tokens do not let through: answered ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str]):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass
class Access:
    """What an app's routes check requests against: its tokens and the failures of its clients."""

    tokens: Tokens
    throttle: FailureThrottle = field(default_factory=FailureThrottle)

    def admit(self, request: Request, credentials: HTTPAuthorizationCredentials | None, role: Role) -> Role | None:
        """The role the request's token grants (``None`` when the server has no token).

        Raises:
            Refused: 429 while the client is locked out, 401 for a missing, malformed or wrong token,
                403 for the read token on a write route.
        """
        if not self.tokens.required:
            return None
        address = request.client.host if request.client else None
        client = client_key(address)
        where = f"{request.method} {request.url.path}"
        wait = self.throttle.retry_after(client)
        if wait is not None:
            log.debug("refused %s from %s: locked out for %d s more", where, address, wait)
            raise Refused(
                429,
                f"too many failed attempts from {address}: try again in {wait} s, with the right token",
                {"Retry-After": str(wait)},
            )
        if credentials is None:
            if "authorization" not in request.headers:
                log.info("refused %s from %s: no token", where, address)
                raise Refused(401, _MISSING, {"WWW-Authenticate": REALM})
            self._failed(client, address, where, "the Authorization header is not 'Bearer <token>'")
            raise Refused(401, _MALFORMED, {"WWW-Authenticate": f'{REALM}, error="invalid_request"'})
        granted = self.tokens.role_of(credentials.credentials)
        if granted is None:
            self._failed(client, address, where, "a wrong token")
            raise Refused(401, _WRONG, {"WWW-Authenticate": f'{REALM}, error="invalid_token"'})
        if role is Role.WRITE and granted is not Role.WRITE:
            log.warning("refused %s from %s: the read token on a write route", where, address)
            why = _READ_ONLY if self.tokens.write is not None else _NO_WRITE_TOKEN
            raise Refused(403, why, {"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="write"'})
        return granted

    def _failed(self, client: str, address: str | None, where: str, reason: str) -> None:
        log.warning("refused %s from %s: %s", where, address, reason)
        locked = self.throttle.failed(client)
        if locked is not None:
            log.warning(
                "locked out %s for %g s: %d failed attempts within %g s",
                client,
                locked,
                self.throttle.limit,
                self.throttle.window,
            )


_MISSING = (
    "this server needs a token: send the header 'Authorization: Bearer <token>' with the token its operator "
    "gave you (the server's --token or SVLLREID_TOKEN)"
)
_MALFORMED = (
    "the Authorization header is not of the form 'Bearer <token>'; send 'Authorization: Bearer <token>' "
    "with the server's token"
)
_WRONG = (
    "this token is not one of the server's: check it and send it again (repeated failures lock this address "
    "out for a while)"
)
_READ_ONLY = (
    "this token may search but not change the gallery: send the write token (the server's --write-token or "
    "SVLLREID_WRITE_TOKEN)"
)
_NO_WRITE_TOKEN = (
    "this server does not take changes to its gallery: it has no write token; start it with --write-token "
    "or SVLLREID_WRITE_TOKEN to allow them"
)


#: The bearer scheme as each role's dependencies take it: the role is the scope the schema shows.
_SECURITY = {role: Security(_bearer, scopes=[role.value]) for role in Role}


def require(role: Role) -> Any:
    """The dependency that lets through requests whose token has ``role`` (``dependencies=[require(role)]``);
    in the schema, the bearer scheme with the role as the requirement's scope."""

    async def token_of_role(
        request: Request, credentials: HTTPAuthorizationCredentials | None = _SECURITY[role]
    ) -> Role | None:
        access = getattr(request.app.state, "access", None)
        if not isinstance(access, Access):  # a route guarded on an app without install(): fail closed
            raise RuntimeError("svllreid.serve.access.install(app, tokens) was not called on this app")
        return access.admit(request, credentials, role)

    return Depends(token_of_role)


_ERROR = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"error": {"type": "string", "description": "what is wrong and how to fix it"}},
            "required": ["error"],
            "additionalProperties": False,
        }
    }
}
_CHALLENGE = {
    "WWW-Authenticate": {"description": "`Bearer`, with an RFC 6750 error code", "schema": {"type": "string"}}
}
#: Status codes the refusals are declared under, to be left out of the schema of a server without tokens.
REFUSAL_STATUSES = ("401", "403", "429")


def refusals(role: Role) -> dict[int | str, dict[str, Any]]:
    """The answers of a route that requires ``role`` when the token does not let it through, for the
    route's ``responses=``."""
    answers: dict[int | str, dict[str, Any]] = {
        401: {
            "description": "no token, a malformed Authorization header or a wrong token",
            "content": _ERROR,
            "headers": _CHALLENGE,
        },
        429: {
            "description": "too many failed attempts from this client: wait Retry-After seconds",
            "content": _ERROR,
            "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
        },
    }
    if role is Role.WRITE:
        answers[403] = {
            "description": "the read token on a route that needs the write token, or no write token on the server",
            "content": _ERROR,
            "headers": _CHALLENGE,
        }
    return answers


def install(app: FastAPI, tokens: Tokens, throttle: FailureThrottle | None = None) -> Access:
    """Put ``tokens`` (and a throttle of failures) on ``app`` for :func:`require`, answer refusals as
    JSON, and, without tokens, keep the schema from claiming that the routes need one."""
    access = Access(tokens, throttle or FailureThrottle())
    app.state.access = access

    @app.exception_handler(Refused)
    async def refused(request: Request, err: Refused) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    if not tokens.required:
        make_schema = app.openapi

        def open_schema() -> dict[str, Any]:
            schema = make_schema()  # FastAPI's, made once and kept: stripping it again changes nothing
            components = schema.get("components", {})
            components.pop("securitySchemes", None)
            if not components:
                schema.pop("components", None)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if operation.pop("security", None) is not None:
                        for status in REFUSAL_STATUSES:
                            operation.get("responses", {}).pop(status, None)
            return schema

        app.openapi = open_schema  # type: ignore[method-assign]
    return access
