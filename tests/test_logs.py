"""The log filter: what PostgreSQL quotes of a row in its errors (a duplicate phone, a failing
row, a missing key) is masked on the way out, the rest of the error stays readable."""

from __future__ import annotations

import io
import logging

import pytest
from sqlalchemy import text

from smsline.db.engine import create_engine
from smsline.logs import MASK, RedactSecrets

PHONE = "+79161234567"


async def _errors_of(database_url: str) -> list[BaseException]:
    engine = create_engine(database_url)
    caught: list[BaseException] = []
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE owners (id int PRIMARY KEY, phone text UNIQUE NOT NULL)"))
            await conn.execute(text("CREATE TABLE cards (owner int REFERENCES owners (id), last4 text)"))
            await conn.execute(text("INSERT INTO owners VALUES (1, :phone)"), {"phone": PHONE})
        # As smsline's statements do, with their values as parameters (which the engine keeps
        # out of its errors): only PostgreSQL's DETAIL line quotes them back.
        for statement, values in (
            ("INSERT INTO owners VALUES (2, :phone)", {"phone": PHONE}),  # Key (phone)=(…) already exists
            ("INSERT INTO owners VALUES (3, :phone)", {"phone": None}),  # Failing row contains (…)
            ("INSERT INTO cards VALUES (:owner, '4242')", {"owner": 987654}),  # Key (owner)=(…) not present
        ):
            try:
                async with engine.begin() as conn:
                    await conn.execute(text(statement), values)
            except Exception as exc:
                caught.append(exc)
    finally:
        await engine.dispose()
    return caught


async def test_postgresql_row_values_are_masked_in_logged_errors(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's errors name the columns, never the values")
    errors = await _errors_of(database_url)
    assert len(errors) == 3
    assert PHONE in str(errors[0])  # what the driver says, before the filter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactSecrets())
    log = logging.getLogger("smsline.test_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        for error in errors:
            try:
                raise error
            except Exception:
                log.exception("storing failed: %s", error)
    finally:
        log.removeHandler(handler)
        log.propagate = True

    written = out.getvalue()
    assert PHONE not in written
    assert "987654" not in written
    assert f"Key (phone)=({MASK}) already exists" in written
    assert f"Failing row contains ({MASK})." in written
    assert f"Key (owner)=({MASK}) is not present in table" in written
    assert 'violates unique constraint "owners_phone_key"' in written  # still says what went wrong
