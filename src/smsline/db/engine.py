"""Engines for SQLite (default, WAL) and PostgreSQL, from plain database URLs.

``sqlite:///var/smsline.db`` and ``postgresql://user@host/db`` are accepted as they are and get
their async driver (aiosqlite, asyncpg) here. On SQLite every transaction starts with
``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout instead of failing on a
read-to-write upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000


def async_url(url: str) -> URL:
    """The URL with the async driver smsline uses for its backend."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}: use sqlite or postgresql")


def sync_url(url: str) -> URL:
    """The URL for synchronous tools (Alembic runs through the async engine; this is for display)."""
    return make_url(url)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _prepare_sqlite_file(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, a busy timeout and immediate transactions."""
    target = async_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if target.get_backend_name() == "sqlite":
        _prepare_sqlite_file(target)
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = 0
        engine = create_async_engine(target, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs["pool_size"] = pool_size
    kwargs["max_overflow"] = pool_size
    kwargs["pool_pre_ping"] = True
    return create_async_engine(target, **kwargs)


def create_oneshot_engine(url: str) -> AsyncEngine:
    """An engine without pooling, for CLI commands that connect once."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        _prepare_sqlite_file(target)
        engine = create_async_engine(target, poolclass=NullPool)
        _configure_sqlite(engine)
        return engine
    return create_async_engine(target, poolclass=NullPool)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, open transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


_write_locks: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction. SQLite has one writer at a time: in-process writers queue on an
    asyncio lock (woken the moment it is free) instead of in SQLite's busy handler, which
    sleeps in steps and blocks a driver thread while it waits."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    lock = _write_locks.get(engine.sync_engine)
    if lock is None:
        lock = _write_locks[engine.sync_engine] = asyncio.Lock()
    async with lock, engine.begin() as conn:
        yield conn
