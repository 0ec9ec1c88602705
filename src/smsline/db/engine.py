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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
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
        _configure_sqlite(engine.sync_engine)
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
        _configure_sqlite(engine.sync_engine)
        return engine
    return create_async_engine(target, poolclass=NullPool)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, open transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
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


T = TypeVar("T")


class Database:
    """Where the service runs its transactions. A transaction is a plain function of a
    SQLAlchemy ``Connection`` (it must be safe to run again: it only reads and writes the
    database and returns a value).

    On SQLite the work runs on the database's own thread, whole — one hand-off per transaction
    instead of one per statement — and work that queued up while a transaction ran is committed
    together in the next one (group commit: one BEGIN and one fsync for all of it). If such a
    shared transaction fails, each piece runs again alone, so one failing piece never takes the
    others down. On PostgreSQL each piece runs in its own transaction through asyncpg on the
    event loop (``run_sync``). ``engine`` is the async engine for everything else (reads, tests,
    the CLI)."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._queued: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None
        if self.dialect == "sqlite":
            target = make_url(url).set(drivername="sqlite+pysqlite")
            _prepare_sqlite_file(target)
            self._sync = sqlalchemy.create_engine(
                target, pool_size=1, max_overflow=0, connect_args={"check_same_thread": False}
            )
            _configure_sqlite(self._sync)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a transaction and return its result once that has committed."""
        if self._sync is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queued.append((work, future))
        if not self._draining:
            self._draining = True
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._thread is not None
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    outcomes = await loop.run_in_executor(self._thread, self._commit_together, batch)
                except BaseException as exc:  # the thread is gone (shutting down)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    raise
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._draining = False

    def _commit_together(
        self, batch: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]]
    ) -> list[tuple[bool, Any]]:
        assert self._sync is not None
        try:
            with self._sync.begin() as conn:
                results = [(True, work(conn)) for work, _ in batch]
            return results
        except Exception as exc:
            if len(batch) == 1:
                return [(False, exc)]
        outcomes: list[tuple[bool, Any]] = []
        for work, _ in batch:
            try:
                with self._sync.begin() as conn:
                    outcomes.append((True, work(conn)))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes

    async def dispose(self) -> None:
        if self._thread is not None and self._sync is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sync.dispose)
            self._thread.shutdown(wait=True)
        await self.engine.dispose()
