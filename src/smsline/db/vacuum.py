"""Vacuuming the tables the service churns, on a PostgreSQL server whose autovacuum is off.

Every SMS moves its outbox row through three to four statuses, and each status change leaves a
dead row version behind in the table and in the index the dispatcher claims from. Autovacuum
clears them; on a server where it is switched off (some CI and hand-tuned servers), nothing does,
and claiming the next queued rows walks past every dead entry left so far: a million-message
campaign slowed from ~3,500 to under 2,000 msg/s. On such a server `Vacuum` does the work itself:
every `CHECK_EVERY` seconds it reads the server's own counts of dead rows and vacuums a churned
table whose dead rows reach `DEAD_ROWS_MIN` and a tenth of its live ones. One process at a time
(an advisory lock), so several smsline processes on one database do not queue behind each
other's VACUUM. With autovacuum on it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("smsline.vacuum")

CHECK_EVERY = 30.0
DEAD_ROWS_MIN = 50_000
DEAD_SHARE = 0.1
CHURNED_TABLES = ("outbox", "outbox_segments", "receipts", "campaign_recipients", "requests")
VACUUM_LOCK = 0x736D73_02  # any constant: one vacuuming process per database

_STATS = text(
    "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relname = ANY(:tables)"
)


@dataclass(frozen=True, slots=True)
class TableRows:
    table: str
    live: int
    dead: int


def due_for_vacuum(tables: list[TableRows]) -> list[str]:
    """The tables whose dead rows are worth a VACUUM."""
    return [t.table for t in tables if t.dead >= max(DEAD_ROWS_MIN, DEAD_SHARE * t.live)]


async def autovacuum_is_on(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return str(await conn.scalar(text("SHOW autovacuum"))).lower() == "on"


async def vacuum_due_tables(engine: AsyncEngine) -> list[str]:
    """Vacuum the churned tables that need it now (unless another process is at it); the
    tables vacuumed."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM runs outside transactions
        if not await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": VACUUM_LOCK}):
            return []
        try:
            rows = await conn.execute(_STATS, {"tables": list(CHURNED_TABLES)})
            due = due_for_vacuum([TableRows(r.relname, int(r.n_live_tup), int(r.n_dead_tup)) for r in rows])
            for table in due:
                assert table in CHURNED_TABLES  # a name from our own list, never from outside
                await conn.execute(text(f'VACUUM (ANALYZE) "{table}"'))
            return due
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": VACUUM_LOCK})


class Vacuum:
    """The background task `smsline serve` runs on PostgreSQL."""

    def __init__(self, engine: AsyncEngine, *, check_every: float = CHECK_EVERY) -> None:
        self.engine = engine
        self.check_every = check_every
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            if await autovacuum_is_on(self.engine):
                return
        except Exception:
            log.exception("could not read the server's autovacuum setting; not vacuuming")
            return
        log.warning(
            "PostgreSQL autovacuum is off: smsline vacuums the tables it churns itself (%s)",
            ", ".join(CHURNED_TABLES),
        )
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.check_every)
            if self._stop.is_set():
                return
            try:
                done = await vacuum_due_tables(self.engine)
            except Exception:
                log.exception("vacuuming failed; will try again in %.0f s", self.check_every)
                continue
            if done:
                log.info("vacuumed %s", ", ".join(done))
