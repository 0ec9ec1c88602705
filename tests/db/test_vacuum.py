"""Vacuuming the churned tables when the PostgreSQL server's autovacuum is off."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smsline.db.engine import create_engine
from smsline.db.vacuum import DEAD_ROWS_MIN, TableRows, autovacuum_is_on, due_for_vacuum, vacuum_due_tables
from tests.line.conftest import eventually


def test_a_table_is_due_when_its_dead_rows_are_many_and_a_tenth_of_the_live_ones() -> None:
    tables = [
        TableRows("outbox", live=200_000, dead=60_000),  # due
        TableRows("receipts", live=200_000, dead=DEAD_ROWS_MIN - 1),  # too few dead rows
        TableRows("outbox_segments", live=10_000_000, dead=500_000),  # a small share of a big table
        TableRows("requests", live=0, dead=DEAD_ROWS_MIN),  # everything is dead
    ]
    assert due_for_vacuum(tables) == ["outbox", "requests"]


async def _dead_rows(conn: AsyncConnection, table: str) -> int:
    value = await conn.scalar(
        text("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
    )
    return int(value or 0)


ON_POSTGRESQL = [pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("database_url", ON_POSTGRESQL, indirect=True)
async def test_dead_outbox_rows_are_vacuumed_away(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        if await autovacuum_is_on(engine):
            pytest.skip("this server's autovacuum is on: smsline leaves vacuuming to it")
        rows = DEAD_ROWS_MIN // 2 + 1_000
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO outbox (kind, priority, status, sender, destination, text, encoding, "
                    "segments, queued_at) SELECT 'notification', 2, 'queued', 'SCSERV', '+7916' || n, "
                    "'hello', 'gsm7', 1, now() FROM generate_series(1, :rows) AS n"
                ),
                {"rows": rows},
            )
        for status in ("sending", "submitted"):  # two status changes: two dead versions a row
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE outbox SET status = :s"), {"s": status})
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")

            async def all_counted() -> bool:  # the server's counts lag by up to 1 s
                return await _dead_rows(conn, "outbox") >= 2 * rows

            await eventually(all_counted, timeout=15)
        assert "outbox" in await vacuum_due_tables(engine)
        async with engine.connect() as conn:
            assert await _dead_rows(conn, "outbox") < rows // 10
            still = await conn.scalar(text("SELECT count(*) FROM outbox WHERE status = 'submitted'"))
        assert still == rows  # vacuuming removed dead versions, nothing live
        assert await vacuum_due_tables(engine) == []  # nothing left to do
    finally:
        await engine.dispose()
