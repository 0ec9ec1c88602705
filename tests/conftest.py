"""Shared fixtures: a fresh, migrated database per test on every configured backend.

SQLite always runs. PostgreSQL runs too when ``SMSLINE_TEST_POSTGRES_URL`` names a server
database the tests may use to create and drop databases, e.g.
``postgresql://postgres@127.0.0.1:5432/test``.

Each backend is migrated once per session into a template (a SQLite file, a PostgreSQL
database); every test then gets a copy (``CREATE DATABASE … TEMPLATE …`` on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from smsline.db.engine import async_url, create_engine
from smsline.db.migrate import upgrade_database_async

POSTGRES_URL_ENV = "SMSLINE_TEST_POSTGRES_URL"

T = TypeVar("T")


def postgres_server_url() -> str | None:
    """The PostgreSQL database given for tests, or None when PostgreSQL tests are off."""
    return os.environ.get(POSTGRES_URL_ENV) or None


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    *(
        [pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]
        if postgres_server_url()
        else []
    ),
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if postgres_server_url():
        return
    skip = pytest.mark.skip(reason=f"{POSTGRES_URL_ENV} is not set")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def run_outside_loop(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private event loop in a worker thread.

    Sync fixtures use this so they never touch the event loop pytest-asyncio gives the test.
    """

    async def main() -> T:
        return await make()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


# --- PostgreSQL administration ---------------------------------------------------------------

_counter = itertools.count(1)


def _unique_name(kind: str) -> str:
    return f"smsline_test_{kind}_{os.getpid()}_{next(_counter)}_{secrets.token_hex(3)}"


def _database_url(server_url: str, database: str) -> str:
    url = make_url(server_url).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def _admin(server_url: str, *statements: tuple[str, dict[str, object]]) -> None:
    admin = create_async_engine(async_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as connection:
            for sql, args in statements:
                await connection.execute(text(sql), args)
    finally:
        await admin.dispose()


def _create_database(server_url: str, name: str, template: str | None = None) -> None:
    sql = f"CREATE DATABASE {_quote(name)}"
    if template is not None:
        sql += f" TEMPLATE {_quote(template)}"
    asyncio.run(_admin(server_url, (sql, {})))


def _drop_database(server_url: str, name: str) -> None:
    asyncio.run(
        _admin(
            server_url,
            (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()",
                {"name": name},
            ),
            (f"DROP DATABASE IF EXISTS {_quote(name)}", {}),
        )
    )


class PostgresDatabases:
    """Fresh PostgreSQL databases for tests, copied from a template migrated once.

    The next copy is made in the background while a test runs, and used copies are dropped in
    the background, so a test mostly waits for neither.
    """

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.template = _unique_name("tpl")
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-postgres")
        self._next: Future[str] | None = None
        self._drops: list[Future[None]] = []

    def url(self, name: str) -> str:
        return _database_url(self.server_url, name)

    def open(self) -> None:
        self._workers.submit(_create_database, self.server_url, self.template).result()
        self._workers.submit(asyncio.run, upgrade_database_async(self.url(self.template))).result()

    def _copy(self) -> str:
        name = _unique_name("db")
        _create_database(self.server_url, name, self.template)
        return name

    def take(self, *, migrated: bool = True) -> str:
        """The name of a database nobody else uses: a copy of the template, or empty."""
        if not migrated:
            name = _unique_name("db")
            self._workers.submit(_create_database, self.server_url, name).result()
            return name
        ready = self._next if self._next is not None else self._workers.submit(self._copy)
        self._next = self._workers.submit(self._copy)
        return ready.result()

    def give_back(self, name: str) -> None:
        """Drop a database a test has finished with (its leftover connections are ended)."""
        self._drops.append(self._workers.submit(_drop_database, self.server_url, name))

    def close(self) -> None:
        try:
            if self._next is not None:
                self.give_back(self._next.result())
        finally:
            try:
                for dropped in self._drops:
                    dropped.result()
            finally:
                self._workers.submit(_drop_database, self.server_url, self.template).result()
                self._workers.shutdown()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """The session's PostgreSQL databases (skips the test when PostgreSQL is not configured)."""
    server_url = postgres_server_url()
    if server_url is None:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    databases = PostgresDatabases(server_url)
    try:
        databases.open()
        yield databases
    finally:
        databases.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, created once per session."""
    path = tmp_path_factory.mktemp("sqlite-template") / "smsline.db"
    run_outside_loop(lambda: upgrade_database_async(f"sqlite:///{path}"))
    return path


def _fresh_database(request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool) -> Iterator[str]:
    backend: str = request.param
    if backend == "sqlite":
        path = tmp_path / "smsline.db"
        if migrated:
            template: Path = request.getfixturevalue("_sqlite_template")
            shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    name = databases.take(migrated=migrated)
    try:
        yield databases.url(name)
    finally:
        databases.give_back(name)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty database for this test (``sqlite:///…`` or ``postgresql://…``)."""
    yield from _fresh_database(request, tmp_path, migrated=True)


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no tables at all (not migrated), for migration tests."""
    yield from _fresh_database(request, tmp_path, migrated=False)


@pytest.fixture
def backend(database_url: str) -> str:
    """The backend of ``database_url``: "sqlite" or "postgresql"."""
    return make_url(database_url).get_backend_name()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on ``database_url`` (smsline's own engine settings), disposed after the test."""
    created = create_engine(database_url)
    try:
        yield created
    finally:
        await created.dispose()


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    """Tests run on uvloop, the event loop `smsline serve` uses in production."""
    import uvloop

    return uvloop.EventLoopPolicy()
