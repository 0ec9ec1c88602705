"""The service's transactions: group commit on SQLite, one failing piece never sinks the rest."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from smsline.db.engine import Database
from smsline.db.schema import customers


def add(customer_id: str, phone: str) -> Callable[[Connection], int]:
    def work(conn: Connection) -> int:
        now = dt.datetime.now(dt.UTC)
        result = conn.execute(
            insert(customers)
            .values(
                customer_id=customer_id,
                phone=phone,
                personal_code="1",
                login=customer_id,
                created_at=now,
                updated_at=now,
            )
            .returning(customers.c.id)
        )
        return int(result.scalar_one())

    return work


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(customers)).scalar_one())


async def test_work_queued_together_commits_and_a_failing_piece_fails_alone(database_url: str) -> None:
    db = Database(database_url)
    try:
        results = await asyncio.gather(
            db.run(add("a", "+79160000001")),
            db.run(add("b", "+79160000001")),  # same phone: violates the unique constraint
            db.run(add("c", "+79160000003")),
            return_exceptions=True,
        )
        # "a" and "b" want the same phone: exactly one of them gets it (on SQLite the first, as
        # work is committed in order; on PostgreSQL whichever commits first), and "c" is
        # committed whatever happened to the others.
        failed = [r for r in results[:2] if isinstance(r, Exception)]
        assert len(failed) == 1
        assert "unique" in str(failed[0]).lower()
        assert isinstance(results[2], int)
        assert await db.run(count) == 2
    finally:
        await db.dispose()


async def test_a_result_is_returned_only_after_it_is_committed(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.run(add("a", "+79160000001"))
        # Another connection (as another process would) sees it at once.
        async with db.engine.connect() as conn:
            seen = (await conn.execute(select(customers.c.customer_id))).scalars().all()
        assert seen == ["a"]
    finally:
        await db.dispose()


async def test_an_exception_in_work_rolls_it_back(database_url: str) -> None:
    db = Database(database_url)

    def half_then_fail(conn: Connection) -> None:
        add("a", "+79160000001")(conn)
        raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError, match="boom"):
            await db.run(half_then_fail)
        assert await db.run(count) == 0
    finally:
        await db.dispose()
