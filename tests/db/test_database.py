"""The service's transactions: group commit on SQLite, one failing piece never sinks the rest."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from smsline.db.engine import WRITER_CHECKPOINT_PAGES, Database, DatabaseClosed
from smsline.db.schema import customers
from tests.line.conftest import eventually


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
        # The statement's parameters (customers' phones and texts) stay out of error messages.
        assert "[parameters:" not in str(failed[0])
        assert "'c', '+79160000001'" not in str(failed[0]).replace('"', "'")
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


def add_many(conn: Connection, phones: list[str]) -> list[int]:
    """Batched work: one customer per phone, in one call."""
    return [add(f"c{phone}", phone)(conn) for phone in phones]


async def test_items_submitted_together_are_stored_by_one_call_each_with_its_own_result(
    database_url: str,
) -> None:
    db = Database(database_url)
    calls: list[list[str]] = []

    def recorded(conn: Connection, phones: list[str]) -> list[int]:
        calls.append(list(phones))
        return add_many(conn, phones)

    try:
        phones = [f"+7916000000{n}" for n in range(5)]
        futures = [db.submit(recorded, phone) for phone in phones]
        ids = await asyncio.gather(*futures)
        assert len(set(ids)) == 5
        async with db.engine.connect() as conn:
            stored = dict((await conn.execute(select(customers.c.id, customers.c.phone))).tuples().all())
        assert [stored[i] for i in ids] == phones  # each item got the id of its own row
        # Everything queued before the database took it went in one call (PostgreSQL runs the first
        # item at once and the rest together, while that one runs).
        assert sum(len(c) for c in calls) == 5
        assert len(calls) <= 2
    finally:
        await db.dispose()


async def test_a_failing_batch_fails_its_items_and_nothing_else(database_url: str) -> None:
    db = Database(database_url)

    def broken(conn: Connection, phones: list[str]) -> list[int]:
        add_many(conn, phones)
        raise RuntimeError("boom")

    try:
        doomed = [db.submit(broken, "+79160000001"), db.submit(broken, "+79160000002")]
        fine = db.run(add("ok", "+79160000003"))
        results = await asyncio.gather(*doomed, fine, return_exceptions=True)
        assert [str(r) for r in results[:2]] == ["boom", "boom"]
        assert isinstance(results[2], int)
        assert await db.run(count) == 1  # the broken batch left nothing behind
    finally:
        await db.dispose()


async def test_an_item_that_sinks_its_batch_fails_alone(database_url: str) -> None:
    db = Database(database_url)
    try:
        phones = ["+79160000001", "+79160000001", "+79160000002"]  # the second takes a used phone
        results = await asyncio.gather(*(db.submit(add_many, p) for p in phones), return_exceptions=True)
        assert isinstance(results[0], int)
        assert isinstance(results[1], Exception)
        assert "unique" in str(results[1]).lower()
        assert isinstance(results[2], int)
        assert await db.run(count) == 2
    finally:
        await db.dispose()


async def test_a_batch_must_answer_every_item(database_url: str) -> None:
    db = Database(database_url)
    try:
        futures = [db.submit(lambda conn, items: [], n) for n in range(2)]
        for outcome in await asyncio.gather(*futures, return_exceptions=True):
            assert isinstance(outcome, RuntimeError)
            assert "results for" in str(outcome)
    finally:
        await db.dispose()


async def test_work_after_dispose_is_refused(database_url: str) -> None:
    db = Database(database_url)
    await db.run(count)
    await db.dispose()
    with pytest.raises(DatabaseClosed):
        await db.run(count)


async def test_a_read_does_not_wait_for_a_write_in_progress(database_url: str) -> None:
    """Reads (the API's GETs, token look-ups) see the last commit at once, even while a writer
    holds its transaction (and on SQLite the write lock) open."""
    db = Database(database_url)
    try:
        await db.run(add("early", "+79160000001"))
        async with db.engine.begin() as writer:
            await writer.run_sync(add("late", "+79160000009"))
            async with db.read() as conn:
                seen = await asyncio.wait_for(conn.scalar(select(func.count()).select_from(customers)), 2.0)
            assert seen == 1  # the committed row, not the one still being written
        assert await db.run(count) == 2
    finally:
        await db.dispose()


def _fill(rows: int) -> Callable[[Connection], None]:
    """About ``rows`` pages of new data."""

    def work(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (data BLOB)")
        conn.exec_driver_sql(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
            "INSERT INTO filler SELECT randomblob(3000) FROM n"
        )

    return work


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _larger_than(path: Path, size: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return _size(path) > size

    return check


async def test_sqlite_commits_are_checkpointed_in_the_background(tmp_path: Path) -> None:
    """The service's writes reach the database file while it runs, copied by a thread of their
    own rather than by a commit (SQLite's own checkpoint waits for 1,000 pages of WAL), and the
    WAL is started over instead of growing with every write."""
    path = tmp_path / "background.db"
    db = Database(f"sqlite:///{path}")
    try:
        for round_ in range(1, 11):
            done = db.checkpoints_completed
            await db.run(_fill(300))  # ~1.2 MB: below the 1,000 pages at which a commit would checkpoint
            await eventually(_larger_than(path, round_ * 1_200_000))  # in the database file

            async def copied_whole(before: int = done) -> bool:
                return db.checkpoints_completed > before

            await eventually(copied_whole)
        assert _size(Path(f"{path}-wal")) < 4_000_000  # 12 MB were written through it
        assert "sqlite-checkpoints" in {t.name for t in threading.enumerate()}
    finally:
        await db.dispose()
    assert "sqlite-checkpoints" not in {t.name for t in threading.enumerate()}


async def test_sqlite_wal_stays_bounded_when_the_writer_never_pauses(tmp_path: Path) -> None:
    """Background checkpoints complete only when no commit comes in meanwhile; a writer that
    never pauses makes its own checkpoint once the WAL holds WRITER_CHECKPOINT_PAGES."""
    path = tmp_path / "busy.db"
    db = Database(f"sqlite:///{path}")
    try:
        rounds = 120  # ~1,000 pages each: 360 MB through the WAL
        for _ in range(rounds):
            await db.run(_fill(1000))
        # The writer's own checkpoint is PASSIVE: while the background thread is copying, it is
        # skipped, and the commits that come meanwhile pass the mark, up to about as many pages
        # again as that copy takes (seen: up to 33,433 pages in all). Unbounded, the WAL would
        # hold everything written.
        limit = (2 * WRITER_CHECKPOINT_PAGES + 8 * 1000) * 4096
        assert _size(Path(f"{path}-wal")) < limit < rounds * 1000 * 3000 // 2
    finally:
        await db.dispose()
