"""Schema migrations (Alembic), run through smsline's async engines without an alembic.ini.

``upgrade_database`` is the synchronous entry used by ``smsline db upgrade``;
``upgrade_database_async`` does the same from inside a running event loop. Both run the whole
upgrade in one transaction: on SQLite it starts with ``BEGIN IMMEDIATE`` and on PostgreSQL it
takes an advisory lock first, so processes that start together upgrade one after the other.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from smsline.db.engine import create_oneshot_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# pg_advisory_xact_lock key held while upgrading ("smsline" in ASCII).
_UPGRADE_LOCK_KEY = 0x736D736C696E65

# Alembic keeps the running migration's context in module globals, so within one process only
# one upgrade may be inside Alembic at a time (whatever its thread or event loop).
_alembic_lock = threading.Lock()


def alembic_config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    """An Alembic configuration for smsline's migrations.

    With ``connection`` the migrations run on it (inside its transaction); otherwise ``env.py``
    connects to ``url`` itself.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the migrations know."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None when it was never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade_on(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def _acquire(lock: threading.Lock) -> None:
    """Take ``lock`` without blocking the event loop; a cancelled wait leaves it free."""
    if lock.acquire(blocking=False):
        return
    waiting = asyncio.ensure_future(asyncio.to_thread(lock.acquire))
    try:
        await asyncio.shield(waiting)
    except asyncio.CancelledError:
        waiting.add_done_callback(
            lambda done: lock.release() if not done.cancelled() and done.result() else None
        )
        raise


async def upgrade_database_async(url: str) -> None:
    """Create or migrate the database at ``url`` to the newest schema."""
    engine = create_oneshot_engine(url)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY}
                )
            await _acquire(_alembic_lock)
            try:
                await connection.run_sync(_upgrade_on)
            finally:
                _alembic_lock.release()
    finally:
        await engine.dispose()


def upgrade_database(url: str) -> None:
    """Create or migrate the database at ``url`` (a ``sqlite:///`` or ``postgresql://`` URL)."""
    asyncio.run(upgrade_database_async(url))


class DatabaseNotMigrated(RuntimeError):
    pass


async def check_migrated(url: str) -> None:
    """Refuse to run on a database the migrations have not brought to this version."""
    engine = create_oneshot_engine(url)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(current_revision)
    finally:
        await engine.dispose()
    head = head_revision()
    if current != head:
        found = f"at revision {current}" if current else "empty (never migrated)"
        raise DatabaseNotMigrated(
            f"the database is {found}; this smsline needs revision {head}: run `smsline db upgrade`"
        )
