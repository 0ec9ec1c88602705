"""Migrations create exactly the schema of smsline.db.schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from smsline.cli import app
from smsline.db.engine import create_oneshot_engine
from smsline.db.migrate import (
    current_revision,
    head_revision,
    upgrade_database,
    upgrade_database_async,
)
from smsline.db.schema import customers, metadata


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


async def _inspect(url: str) -> tuple[list[Any], set[str], str | None]:
    """(differences from schema.metadata, table names, revision) of the database at ``url``."""
    engine = create_oneshot_engine(url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
            tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
            revision = await connection.run_sync(current_revision)
    finally:
        await engine.dispose()
    return differences, tables, revision


async def test_upgrade_creates_exactly_the_schema(empty_database_url: str) -> None:
    await upgrade_database_async(empty_database_url)

    differences, tables, revision = await _inspect(empty_database_url)
    assert differences == []
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert revision == head_revision()


async def test_upgrading_again_changes_nothing_and_keeps_data(database_url: str, engine: AsyncEngine) -> None:
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as connection:
        await connection.execute(
            insert(customers).values(
                customer_id="c-1",
                phone="+79161234567",
                personal_code="1234",
                login="ivanov",
                created_at=now,
                updated_at=now,
            )
        )

    await upgrade_database_async(database_url)
    await upgrade_database_async(database_url)

    differences, _tables, revision = await _inspect(database_url)
    assert differences == []
    assert revision == head_revision()
    async with engine.connect() as connection:
        row = (await connection.execute(select(customers))).one()
    assert (row.customer_id, row.language, row.timezone, row.sms_enabled) == (
        "c-1",
        "en",
        "Europe/Moscow",
        True,
    )
    assert row.password_must_change is False


async def test_processes_upgrading_at_the_same_time_both_succeed(empty_database_url: str) -> None:
    await asyncio.gather(*(upgrade_database_async(empty_database_url) for _ in range(3)))

    differences, _tables, revision = await _inspect(empty_database_url)
    assert differences == []
    assert revision == head_revision()


async def test_sync_upgrade_creates_the_sqlite_folder(tmp_path: Path) -> None:
    path = tmp_path / "var" / "data" / "smsline.db"

    await asyncio.to_thread(upgrade_database, f"sqlite:///{path}")

    assert path.is_file()
    differences, _tables, revision = await _inspect(f"sqlite:///{path}")
    assert differences == []
    assert revision == head_revision()


async def test_cli_db_upgrade(empty_database_url: str) -> None:
    def invoke() -> Result:
        return CliRunner().invoke(
            app,
            ["db", "upgrade"],
            env={"SMSLINE_DATABASE_URL": empty_database_url, "SMSLINE_CONFIG": None},
        )

    result = await asyncio.to_thread(invoke)

    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    differences, _tables, revision = await _inspect(empty_database_url)
    assert differences == []
    assert revision == head_revision()


async def test_several_databases_upgrade_at_once_in_one_process(
    empty_database_url: str, tmp_path: Path
) -> None:
    urls = [empty_database_url, *(f"sqlite:///{tmp_path / f'other-{n}.db'}" for n in range(2))]

    async with asyncio.timeout(60):
        await asyncio.gather(*(upgrade_database_async(url) for url in urls))

    for url in urls:
        differences, _tables, revision = await _inspect(url)
        assert differences == []
        assert revision == head_revision()
