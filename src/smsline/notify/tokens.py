"""API tokens: issue (shown once), list, revoke, and look up by the token a request presents."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from smsline.db.schema import api_tokens
from smsline.domain.signatures import signing_secret
from smsline.domain.tokens import (
    DEFAULT_SCOPES,
    make_token,
    token_hash,
    unknown_scopes,
)

TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TokenError(ValueError):
    """A token cannot be created or changed as asked."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    public_id: str
    scopes: frozenset[str]
    rate_limit: int | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: RowMapping) -> TokenInfo:
        return cls(
            id=row["id"],
            name=row["name"],
            public_id=row["public_id"],
            scopes=frozenset(row["scopes"].split()),
            rate_limit=row["rate_limit"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: the token and its signing secret exist only here, to be shown once."""

    info: TokenInfo
    token: str
    signing_secret: str

    def __repr__(self) -> str:
        return f"IssuedToken(info={self.info!r}, token='…', signing_secret='…')"


def create_token(
    conn: Connection,
    name: str,
    scopes: Sequence[str],
    *,
    service_key: bytes,
    rate_limit: int | None = None,
) -> IssuedToken:
    if not TOKEN_NAME.fullmatch(name):
        raise TokenError(
            f"token name {name!r}: 1 to 64 letters, digits, '_', '-', '.', starting with a letter or digit"
        )
    chosen = list(dict.fromkeys(scopes or DEFAULT_SCOPES))
    unknown = unknown_scopes(chosen)
    if unknown:
        raise TokenError(f"unknown scope(s): {', '.join(unknown)}")
    if rate_limit is not None and rate_limit < 1:
        raise TokenError("the rate limit is at least 1 request per second")
    if conn.execute(select(api_tokens.c.id).where(api_tokens.c.name == name)).first() is not None:
        raise TokenError(f"there is a token named {name!r} already (revoke it or choose another name)")
    public_id = secrets.token_hex(6)
    token = make_token(public_id, secrets.token_urlsafe(32))
    now = dt.datetime.now(dt.UTC)
    try:
        row = (
            conn.execute(
                insert(api_tokens)
                .values(
                    name=name,
                    public_id=public_id,
                    token_hash=token_hash(token),
                    scopes=" ".join(chosen),
                    rate_limit=rate_limit,
                    created_at=now,
                )
                .returning(*api_tokens.c)
            )
            .mappings()
            .one()
        )
    except IntegrityError as exc:
        raise TokenError(f"there is a token named {name!r} already") from exc
    return IssuedToken(TokenInfo.from_row(row), token, signing_secret(service_key, public_id))


def list_tokens(conn: Connection) -> list[TokenInfo]:
    rows = conn.execute(select(api_tokens).order_by(api_tokens.c.name)).mappings()
    return [TokenInfo.from_row(row) for row in rows]


def revoke_token(conn: Connection, name: str) -> bool:
    """Revoke the token named ``name``; False when there is no such active token."""
    result = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=dt.datetime.now(dt.UTC))
    )
    return bool(result.rowcount)


def find_token(conn: Connection, token: str) -> TokenInfo | None:
    """The active token a request presented, or None."""
    row = (
        conn.execute(select(api_tokens).where(api_tokens.c.token_hash == token_hash(token)))
        .mappings()
        .first()
    )
    if row is None or row["revoked_at"] is not None:
        return None
    return TokenInfo.from_row(row)


def tokens_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, TokenInfo]:
    rows = conn.execute(select(api_tokens).where(api_tokens.c.id.in_(set(ids)))).mappings()
    return {row["id"]: TokenInfo.from_row(row) for row in rows}
