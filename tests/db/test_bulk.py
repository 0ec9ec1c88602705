"""Bulk statements: many rows through the driver's executemany, converted as SQLAlchemy would."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.db.bulk import Bulk
from smsline.db.schema import outbox
from smsline.line.outbox import Kind, Priority, outbox_row

_MARK = Bulk(
    update(outbox)
    .where(outbox.c.id == bindparam("b_id"))
    .values(
        status="submitted",
        smsc=bindparam("b_smsc"),
        submitted_at=bindparam("b_at"),
        error=None,
        attempts=outbox.c.attempts + 1,
    )
)
_ADD = Bulk(insert(outbox))


async def test_rows_are_written_with_their_own_values_and_the_statements(engine: AsyncEngine) -> None:
    now = dt.datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)
    rows = [
        outbox_row(
            kind=Kind.DIRECT,
            priority=Priority.NOTIFICATION,
            sender="SCSERV",
            destination=f"+7916000000{n}",
            text=f"text {n} ё",
            language="ru",
            now=now,
        )
        for n in range(3)
    ]
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: _ADD.execute(sync, rows))
        ids = (await conn.execute(select(outbox.c.id).order_by(outbox.c.id))).scalars().all()
        moscow = dt.timezone(dt.timedelta(hours=3))
        later = dt.datetime(2026, 12, 1, 12, 31, tzinfo=moscow)  # 09:31 UTC
        await conn.run_sync(
            lambda sync: _MARK.execute(
                sync, [{"b_id": i, "b_smsc": f"smsc-{i}", "b_at": later} for i in ids[:2]]
            )
        )
    async with engine.connect() as conn:
        stored = (await conn.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    assert [r["text"] for r in stored] == ["text 0 ё", "text 1 ё", "text 2 ё"]
    assert [r["queued_at"] for r in stored] == [now] * 3  # read back as aware UTC
    assert [(r["status"], r["smsc"], r["attempts"]) for r in stored] == [
        ("submitted", f"smsc-{ids[0]}", 1),
        ("submitted", f"smsc-{ids[1]}", 1),
        ("queued", None, 0),
    ]
    assert stored[0]["submitted_at"] == dt.datetime(2026, 12, 1, 9, 31, tzinfo=dt.UTC)


async def test_a_missing_value_is_an_error_not_a_null(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        with pytest.raises(KeyError, match="b_at"):
            await conn.run_sync(lambda sync: _MARK.execute(sync, [{"b_id": 1, "b_smsc": "x"}]))


def test_returning_is_refused() -> None:
    from sqlalchemy.dialects import sqlite

    with pytest.raises(ValueError, match="RETURNING"):
        Bulk(insert(outbox).returning(outbox.c.id))._plan(sqlite.dialect(), ("text",))
