"""Engines for SQLite (default, WAL) and PostgreSQL, from plain database URLs.

``sqlite:///var/smsline.db`` and ``postgresql://user@host/db`` are accepted as they are and get
their async driver (aiosqlite, asyncpg) here. On SQLite every transaction starts with
``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout instead of failing on a
read-to-write upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger("smsline.db")

SQLITE_BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_EVERY = 0.2  # seconds between the service's background WAL checkpoints on SQLite
# The database thread's own commits checkpoint only past this many WAL pages (64 MiB), which
# happens only if the background checkpoints never complete (a reader holding an old snapshot, a
# writer that never pauses): it bounds the WAL, to about twice this (the commits that come while
# a background checkpoint is copying pass the mark).
WRITER_CHECKPOINT_PAGES = 16_384
READ_ONLY = "smsline_read_only"  # execution option of the connections `Database.read` gives
# Every engine hides statement parameters from its errors and logs: they hold customers' phones
# and texts, and an error message ends up in logs and API problem details.
ENGINE_OPTIONS: dict[str, Any] = {"hide_parameters": True}


def async_url(url: str) -> URL:
    """The URL with the async driver smsline uses for its backend."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}: use sqlite or postgresql")


# asyncpg prepares every statement, and PostgreSQL switches a prepared statement to a generic
# plan after five runs. In the service the outbox, its segments and the receipts grow from empty
# within seconds, so a generic plan made while they were small (a sequential scan) would be kept
# while they grow to millions of rows: plan each execution for the table as it is.
POSTGRES_CONNECT_ARGS: dict[str, Any] = {"server_settings": {"plan_cache_mode": "force_custom_plan"}}


def _prepare_sqlite_file(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, a busy timeout and immediate transactions."""
    target = async_url(url)
    kwargs: dict[str, Any] = {"echo": echo, **ENGINE_OPTIONS}
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
    kwargs["connect_args"] = POSTGRES_CONNECT_ARGS
    return create_async_engine(target, **kwargs)


def create_oneshot_engine(url: str) -> AsyncEngine:
    """An engine without pooling, for CLI commands that connect once."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        _prepare_sqlite_file(target)
        engine = create_async_engine(target, poolclass=NullPool, **ENGINE_OPTIONS)
        _configure_sqlite(engine.sync_engine)
        return engine
    # No POSTGRES_CONNECT_ARGS here: a command's own temporary tables (the import's) are never
    # analysed, and planned for each array of keys without statistics they would be scanned whole.
    return create_async_engine(target, poolclass=NullPool, **ENGINE_OPTIONS)


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
        try:  # lists of values are passed as JSON arrays (db/bulk.py's any_of), read by json_each
            cursor.execute("SELECT count(*) FROM json_each('[1]')")
        except Exception as exc:  # sqlite3's or the async driver's OperationalError
            raise RuntimeError(
                f"SQLite {sqlite3.sqlite_version}: its JSON functions do not work ({exc}); smsline "
                "needs SQLite 3.38 or later, or a build with JSON1"
            ) from exc
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")  # a snapshot; never waits for the writer
        else:
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
Item = TypeVar("Item")
R = TypeVar("R")

BatchWork = Callable[[Connection, list[Item]], list[R]]
"""A transaction over many items of one kind: returns one result per item, in order."""

POSTGRES_RUNNERS_PER_WORK = 2


class DatabaseClosed(RuntimeError):
    pass


@dataclass(slots=True)
class _Piece:
    """One unit of a group commit: plain work with one future, or batched work with its items
    (one future each)."""

    work: Callable[..., Any]
    futures: list[asyncio.Future[Any]]
    items: list[Any] | None = None  # None: plain work

    @property
    def batched(self) -> bool:
        return self.items is not None

    @property
    def splittable(self) -> bool:
        return self.batched and len(self.futures) > 1

    def run(self, conn: Connection) -> Any:
        return self.work(conn) if self.items is None else self.work(conn, self.items)

    def one_by_one(self) -> list[_Piece]:
        """A batched piece split into pieces of one item each, so that an item that makes its
        transaction fail fails alone."""
        assert self.items is not None
        pairs = zip(self.items, self.futures, strict=True)
        return [_Piece(self.work, [future], [item]) for item, future in pairs]


class Database:
    """Where the service runs its transactions. A transaction is a plain function of a
    SQLAlchemy ``Connection`` (it must be safe to run again: it only reads and writes the
    database and returns a value). `submit` adds one item to a *batched* transaction: items of
    the same batch work that are waiting when it starts run in one call, so a hundred
    deliveries cost one set of statements instead of a hundred.

    On SQLite the work runs on the database's own thread, whole — one hand-off per transaction
    instead of one per statement — and the thread takes everything that queued up while its last
    transaction ran and commits it together in the next one (group commit: one BEGIN and one
    fsync for all of it), without waiting for the event loop in between. WAL checkpoints run on a
    thread of their own (`_Checkpoints`), never in one of these commits. If such a shared
    transaction fails, each piece runs again alone, so one failing piece never takes the others
    down. On PostgreSQL each piece runs in its own transaction through asyncpg on the event loop
    (``run_sync``), batches of one work at most two at a time. ``engine`` is the async engine for
    everything else (reads, tests, the CLI)."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        self._sync: Engine | None = None
        self._thread: threading.Thread | None = None
        self._queue_lock = threading.Lock()
        self._work_ready = threading.Condition(self._queue_lock)
        self._plain: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self._batched: dict[Callable[..., Any], list[tuple[Any, asyncio.Future[Any]]]] = {}
        self._closed = False
        self._runners: dict[Callable[..., Any], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._checkpoints: _Checkpoints | None = None
        if self.dialect == "sqlite":
            target = make_url(url).set(drivername="sqlite+pysqlite")
            _prepare_sqlite_file(target)
            self._sync = sqlalchemy.create_engine(
                target,
                pool_size=1,
                max_overflow=0,
                connect_args={"check_same_thread": False},
                **ENGINE_OPTIONS,
            )
            _configure_sqlite(self._sync)
            if target.database and target.database != ":memory:":
                event.listen(self._sync, "connect", _checkpoints_left_to_the_background)
                self._checkpoints = _Checkpoints(target.database)

    @property
    def checkpoints_completed(self) -> int:
        """SQLite: how many background checkpoints have copied the whole WAL so far."""
        return self._checkpoints.completed if self._checkpoints is not None else 0

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading only. On SQLite its transaction is a plain snapshot: it does
        not queue for the write lock behind the service's writes (with BEGIN IMMEDIATE a read
        waited in SQLite's busy handler, seconds at a time under steady load)."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            yield conn

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a transaction and return its result once that has committed."""
        if self._sync is None:
            self._check_open()
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._work_ready:
            self._check_open()
            self._plain.append((work, future))
            self._work_ready.notify()
        self._start_thread()
        return await future

    def submit(
        self, work: BatchWork[Item, R], item: Item, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> asyncio.Future[R]:
        """Queue ``item`` for ``work``; the future has its result once the transaction that
        stored it has committed. Call from the event loop; a caller that submits for every
        message passes it as ``loop`` (looking it up makes a system call)."""
        future: asyncio.Future[R] = (loop or asyncio.get_running_loop()).create_future()
        if self._sync is None:
            self._check_open()
            self._batched.setdefault(work, []).append((item, future))
            if self._runners.get(work, 0) < POSTGRES_RUNNERS_PER_WORK:
                self._runners[work] = self._runners.get(work, 0) + 1
                task = future.get_loop().create_task(self._run_batches(work))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return future
        with self._work_ready:
            self._check_open()
            self._batched.setdefault(work, []).append((item, future))
            self._work_ready.notify()
        self._start_thread()
        return future

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosed("the database has been closed")

    # -- PostgreSQL -------------------------------------------------------------------------------

    async def _run_batches(self, work: BatchWork[Any, Any]) -> None:
        try:
            while pending := self._batched.pop(work, None):
                batch = _Piece(work, [future for _, future in pending], [item for item, _ in pending])
                try:
                    _settle([batch], [(True, await self.run(batch.run))])
                except Exception as exc:
                    if not batch.splittable:
                        _settle([batch], [(False, exc)])
                        continue
                    for alone in batch.one_by_one():  # so that an item that fails fails alone
                        try:
                            _settle([alone], [(True, await self.run(alone.run))])
                        except Exception as exc:
                            _settle([alone], [(False, exc)])
        finally:
            self._runners[work] -= 1

    # -- SQLite: the database thread ----------------------------------------------------------

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="sqlite", daemon=True)
            self._thread.start()
            if self._checkpoints is not None:
                self._checkpoints.start()

    def _take(self) -> list[_Piece] | None:
        with self._work_ready:
            while not self._plain and not self._batched:
                if self._closed:
                    return None
                self._work_ready.wait()
            plain, self._plain = self._plain, []
            batched, self._batched = self._batched, {}
        pieces = [_Piece(work, [future]) for work, future in plain]
        for work, entries in batched.items():
            pieces.append(_Piece(work, [f for _, f in entries], [item for item, _ in entries]))
        return pieces

    def _serve(self) -> None:
        while (pieces := self._take()) is not None:
            try:
                pieces, outcomes = self._commit_together(pieces)
            except BaseException as exc:  # not the work's fault: the engine itself is broken
                outcomes = [(False, exc)] * len(pieces)
            if self._checkpoints is not None:
                self._checkpoints.due = True
            by_loop: dict[asyncio.AbstractEventLoop, list[int]] = {}
            for index, piece in enumerate(pieces):
                by_loop.setdefault(piece.futures[0].get_loop(), []).append(index)
            for loop, indexes in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that loop has been closed meanwhile
                    loop.call_soon_threadsafe(
                        _settle, [pieces[i] for i in indexes], [outcomes[i] for i in indexes]
                    )

    def _commit_together(self, pieces: list[_Piece]) -> tuple[list[_Piece], list[tuple[bool, Any]]]:
        """The pieces' outcomes, in one transaction if they all succeed; else each piece alone,
        and a batch that still fails one item at a time. Returns the pieces as they were finally
        run, with their outcomes."""
        assert self._sync is not None
        try:
            with self._sync.begin() as conn:
                results = [(True, piece.run(conn)) for piece in pieces]
            return pieces, results
        except Exception as exc:
            if len(pieces) == 1 and not pieces[0].splittable:
                return pieces, [(False, exc)]
        ran: list[_Piece] = []
        outcomes: list[tuple[bool, Any]] = []
        for piece in pieces:
            outcome = self._commit_alone(piece)
            if outcome[0] or not piece.splittable:
                ran.append(piece)
                outcomes.append(outcome)
                continue
            for alone in piece.one_by_one():
                ran.append(alone)
                outcomes.append(self._commit_alone(alone))
        return ran, outcomes

    def _commit_alone(self, piece: _Piece) -> tuple[bool, Any]:
        assert self._sync is not None
        try:
            with self._sync.begin() as conn:
                return True, piece.run(conn)
        except Exception as exc:
            return False, exc

    async def dispose(self) -> None:
        with self._work_ready:
            self._closed = True
            self._work_ready.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._checkpoints is not None:
            await asyncio.to_thread(self._checkpoints.stop)
        if self._sync is not None:
            self._sync.dispose()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self.engine.dispose()


def _checkpoints_left_to_the_background(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")


class _Checkpoints:
    """WAL checkpoints of the service's SQLite database, on a thread of their own.

    By default SQLite checkpoints in the commit that takes the WAL past 1,000 pages: that commit
    copies the pages into the database file and syncs it while every transaction queued behind
    it waits. Here the database thread's commits leave that to this thread, which runs a PASSIVE
    checkpoint (it waits for no reader and no writer) every `CHECKPOINT_EVERY` seconds after a write,
    outside Python's GIL. When one completes (the writer paused long enough), the next
    transaction starts the WAL over; should none complete, the writer's own checkpoint at
    `WRITER_CHECKPOINT_PAGES` bounds the WAL. Durability is SQLite's as before: each commit is
    synced to the WAL (``synchronous=FULL``), and the WAL is synced before it is copied."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.due = False  # set by the database thread after a commit
        self.completed = 0  # checkpoints that copied the whole WAL (the next write starts it over)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopping.wait(CHECKPOINT_EVERY):
                if not self.due:
                    continue
                self.due = False
                try:
                    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if not busy and frames == copied:
                        self.completed += 1
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint failed (%s); trying again after the next write", exc)
        finally:
            conn.close()


def _settle(pieces: list[_Piece], outcomes: list[tuple[bool, Any]]) -> None:
    """Hand results to the waiting futures (on their event loop)."""
    for piece, (ok, value) in zip(pieces, outcomes, strict=True):
        if ok and piece.batched and len(value) != len(piece.futures):
            ok, value = (
                False,
                RuntimeError(f"batched work returned {len(value)} results for {len(piece.futures)} items"),
            )
        for index, future in enumerate(piece.futures):
            if future.done():
                continue
            if not ok:
                future.set_exception(value)
            elif piece.batched:
                future.set_result(value[index])
            else:
                future.set_result(value)
