"""The tokens of ``svllreid serve``: two roles, read and write, each with its own bearer token.

A write token also reads. With no token at all, the server is open (the command line allows that on
this machine's loopback address only). With only a write token, reading needs a token too: the write
one. This module imports nothing of the web stack, so the command line checks tokens before anything
loads.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass

__all__ = ["MIN_TOKEN_LENGTH", "NEW_TOKEN", "Role", "Tokens", "check_token"]

#: The shortest token taken: 16 characters of a random token are about 96 bits, out of reach of guessing
#: at the rate the failure throttle allows.
MIN_TOKEN_LENGTH = 16
#: How to make a good token.
NEW_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class Role(enum.StrEnum):
    """What a token lets its holder do: ``read`` (search, images, the model, metrics) or ``write``
    (also add and remove gallery images)."""

    READ = "read"
    WRITE = "write"


def check_token(token: str, name: str) -> None:
    """Refuse a token that is too short to be safe or that an HTTP header cannot carry as it is.

    ``name`` says where it came from (``--token`` or ``SVLLREID_TOKEN``, say); the message never
    contains the token itself.

    Raises:
        ValueError: fewer than :data:`MIN_TOKEN_LENGTH` characters, or a character other than printable
            ASCII (a space, a control character or a non-ASCII letter would not survive a header).
    """
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{name} is {len(token)} characters long; a token needs at least {MIN_TOKEN_LENGTH}. "
            f"Make one with: {NEW_TOKEN}"
        )
    if not all("!" <= c <= "~" for c in token):
        raise ValueError(
            f"{name} holds a space, a control character or a non-ASCII character, which an Authorization "
            f"header cannot carry as typed; use letters, digits and punctuation only, e.g. {NEW_TOKEN}"
        )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class Tokens:
    """The server's tokens (``None``: that role has no token). Checked when made (:func:`check_token`,
    and the two must differ, or the write role would be no secret from readers)."""

    read: str | None = None
    write: str | None = None

    def __post_init__(self) -> None:
        if self.read is not None:
            check_token(self.read, "the read token")
        if self.write is not None:
            check_token(self.write, "the write token")
        if self.read is not None and self.read == self.write:
            raise ValueError(
                "the write token equals the read token, so every reader could also change the gallery; "
                f"give the write role a token of its own ({NEW_TOKEN})"
            )

    @property
    def required(self) -> bool:
        """Whether the API needs a token (any token is set)."""
        return self.read is not None or self.write is not None

    def role_of(self, presented: str) -> Role | None:
        """The role ``presented`` grants, or ``None`` when it is no token of this server.

        Compared in constant time: SHA-256 digests (the same length whatever was sent, so not even
        the token's length shows) through :func:`hmac.compare_digest`, against both tokens every time.
        """
        sent = _digest(presented)
        is_write = self.write is not None and hmac.compare_digest(sent, _digest(self.write))
        is_read = self.read is not None and hmac.compare_digest(sent, _digest(self.read))
        if is_write:
            return Role.WRITE
        return Role.READ if is_read else None

    def __repr__(self) -> str:  # never the tokens: a repr ends up in logs and tracebacks
        return f"Tokens(read={'set' if self.read else None}, write={'set' if self.write else None})"
