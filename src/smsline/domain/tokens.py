"""API tokens: their form, their scopes, and the hash that is all the database keeps of them.

A token is ``sml_<public id>_<secret>``. Tokens are long random strings, so a plain SHA-256 is the
right hash (a slow password hash would only slow every request down); it is compared by lookup.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final

TOKEN_PREFIX: Final = "sml_"
_TOKEN: Final = re.compile(r"sml_([0-9a-f]{12})_([A-Za-z0-9_-]{32,64})")

SCOPES: Final[dict[str, str]] = {
    "notifications:send": "queue notifications from templates",
    "notifications:send_text": "queue notifications with a literal text instead of a template",
    "messages:read": "read messages and their status history",
    "templates:read": "read notification templates",
    "templates:write": "create, change and delete notification templates",
    "customers:read": "read customers and their consent history",
    "customers:write": "create and update customers, their SMS preference, bulk import",
    "portal:verify": "verify portal logins and set new portal passwords",
    "campaigns:read": "read campaigns and their progress",
    "campaigns:write": "create, start, pause, resume, cancel and test-send campaigns",
}
DEFAULT_SCOPES: Final = ("notifications:send", "messages:read")


def token_hash(token: str) -> str:
    """What the database stores of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def public_id_of(token: str) -> str | None:
    """The public id of a well-formed token, None for anything else."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def make_token(public_id: str, secret: str) -> str:
    token = f"{TOKEN_PREFIX}{public_id}_{secret}"
    if public_id_of(token) != public_id:
        raise ValueError("not a valid public id and secret for a token")
    return token


def unknown_scopes(scopes: Iterable[str]) -> list[str]:
    return [scope for scope in scopes if scope not in SCOPES]


def display_prefix(public_id: str) -> str:
    """How listings show a token: enough to recognise it, nothing to use it."""
    return f"{TOKEN_PREFIX}{public_id}_…"
