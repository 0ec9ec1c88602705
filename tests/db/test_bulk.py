"""Bulk and prepared statements: many rows in one statement through the driver, converted as
SQLAlchemy would."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.db.bulk import Bulk, Prepared, any_of
from smsline.db.migrate import upgrade_database_async
from smsline.db.schema import outbox, outbox_segments
from smsline.line.outbox import Kind, Priority, outbox_row

_MARK = Bulk(
    update(outbox)
    .where(outbox.c.id == bindparam("b_id"))
    .values(
        status="submitted",
        smsc=bindparam("b_smsc"),
        submitted_at=bindparam("b_at"),
        error=None,
        attempts=outbox.c.attempts + 1,
    )
)
_ADD = Bulk(insert(outbox))


async def test_rows_are_written_with_their_own_values_and_the_statements(engine: AsyncEngine) -> None:
    now = dt.datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)
    rows = [
        outbox_row(
            kind=Kind.DIRECT,
            priority=Priority.NOTIFICATION,
            sender="SCSERV",
            destination=f"+7916000000{n}",
            text=f"text {n} ё",
            language="ru",
            now=now,
        )
        for n in range(3)
    ]
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: _ADD.execute(sync, rows))
        ids = (await conn.execute(select(outbox.c.id).order_by(outbox.c.id))).scalars().all()
        moscow = dt.timezone(dt.timedelta(hours=3))
        later = dt.datetime(2026, 12, 1, 12, 31, tzinfo=moscow)  # 09:31 UTC
        await conn.run_sync(
            lambda sync: _MARK.execute(
                sync, [{"b_id": i, "b_smsc": f"smsc-{i}", "b_at": later} for i in ids[:2]]
            )
        )
    async with engine.connect() as conn:
        stored = (await conn.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    assert [r["text"] for r in stored] == ["text 0 ё", "text 1 ё", "text 2 ё"]
    assert [r["queued_at"] for r in stored] == [now] * 3  # read back as aware UTC
    assert [(r["status"], r["smsc"], r["attempts"]) for r in stored] == [
        ("submitted", f"smsc-{ids[0]}", 1),
        ("submitted", f"smsc-{ids[1]}", 1),
        ("queued", None, 0),
    ]
    assert stored[0]["submitted_at"] == dt.datetime(2026, 12, 1, 9, 31, tzinfo=dt.UTC)


async def test_a_missing_value_is_an_error_not_a_null(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        with pytest.raises(KeyError, match="b_at"):
            await conn.run_sync(lambda sync: _MARK.execute(sync, [{"b_id": 1, "b_smsc": "x"}]))


async def test_returning_is_refused(engine: AsyncEngine) -> None:
    returning = Bulk(insert(outbox).returning(outbox.c.id))
    row = outbox_row(kind=Kind.DIRECT, priority=Priority.NOTIFICATION, sender="SCSERV",
                     destination="+79160000000", text="t", language="en", now=dt.datetime.now(dt.UTC))
    async with engine.connect() as conn:
        with pytest.raises(ValueError, match="RETURNING"):
            await conn.run_sync(lambda sync: returning.execute(sync, [row]))


_BY_DESTINATION = select(outbox.c.id, outbox.c.destination).where(any_of(outbox.c.destination, "wanted"))
_BY_ID = select(outbox.c.destination).where(any_of(outbox.c.id, "ids"))


async def test_any_of_finds_the_rows_whose_value_is_in_the_list_whatever_its_length(
    engine: AsyncEngine,
) -> None:
    now = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    phones = ["+79160000001", "+79160000002", "+79160000003", "+7916 'quoted\""]
    rows = [
        outbox_row(kind=Kind.DIRECT, priority=Priority.NOTIFICATION, sender="SCSERV", destination=phone,
                   text="t", language="en", now=now)
        for phone in phones
    ]
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: _ADD.execute(sync, rows))
    async with engine.connect() as conn:
        ids = {d: i for i, d in (await conn.execute(select(outbox.c.id, outbox.c.destination))).all()}

        async def destinations(wanted: list[str]) -> set[str]:
            return {d for _, d in await conn.execute(_BY_DESTINATION, {"wanted": wanted})}

        assert await destinations([]) == set()
        assert await destinations(["+79160000002"]) == {"+79160000002"}
        assert await destinations(["+79160000003", "+79160000001", "+70000000000"]) == {
            "+79160000001", "+79160000003"
        }
        assert await destinations(["+7916 'quoted\""]) == {"+7916 'quoted\""}  # a value, not SQL
        found = await conn.execute(_BY_ID, {"ids": [ids["+79160000002"], ids["+79160000003"], 10**9]})
        assert {d for (d,) in found} == {"+79160000002", "+79160000003"}


async def test_any_of_runs_one_statement_text_for_lists_of_any_length(engine: AsyncEngine) -> None:
    """So the statement is compiled once and, on PostgreSQL, prepared once."""
    executed: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        executed.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with engine.connect() as conn:
            for ids in ([1], [1, 2, 3], list(range(100))):
                await conn.execute(_BY_ID, {"ids": ids})
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    statements = [statement for statement, _ in executed if "outbox" in statement]
    assert len(statements) == 3
    assert len(set(statements)) == 1


_ADD_ONE = Prepared(insert(outbox).returning(outbox.c.id, outbox.c.queued_at, sort_by_parameter_order=True))
_QUEUED_TO = Prepared(
    select(outbox.c.destination, outbox.c.queued_at, outbox.c.attempts)
    .where(any_of(outbox.c.id, "ids"))
    .order_by(outbox.c.id)
)
_RETRY = Prepared(update(outbox).where(any_of(outbox.c.id, "ids")).values(attempts=outbox.c.attempts + 1))


async def test_prepared_statements_convert_values_both_ways_like_sqlalchemy(engine: AsyncEngine) -> None:
    moscow = dt.timezone(dt.timedelta(hours=3))
    at = dt.datetime(2026, 12, 1, 12, 30, 15, 123456, tzinfo=moscow)
    rows = [
        outbox_row(kind=Kind.DIRECT, priority=Priority.NOTIFICATION, sender="SCSERV",
                   destination=f"+7916000000{n}", text=f"текст {n}", language="ru", now=at)
        for n in range(3)
    ]
    async with engine.begin() as conn:
        added = await conn.run_sync(lambda sync: _ADD_ONE.each(sync, rows))
        ids = [i for i, _ in added]
        assert ids == sorted(ids)  # one per row, in the rows' order
        assert {queued for _, queued in added} == {at.astimezone(dt.UTC)}
        changed = await conn.run_sync(lambda sync: _RETRY.run(sync, {"ids": ids[1:]}))
        assert changed == 2
        found = await conn.run_sync(lambda sync: _QUEUED_TO.rows(sync, {"ids": ids}))
    assert found == [
        ("+79160000000", at.astimezone(dt.UTC), 0),
        ("+79160000001", at.astimezone(dt.UTC), 1),
        ("+79160000002", at.astimezone(dt.UTC), 1),
    ]
    assert all(queued.tzinfo is dt.UTC for _, queued, _ in found)  # aware UTC, as SQLAlchemy gives it
    async with engine.connect() as conn:
        by_sqlalchemy = await conn.scalar(select(outbox.c.queued_at).where(outbox.c.id == ids[0]))
    assert by_sqlalchemy == found[0][1]


def test_only_a_select_can_be_packed() -> None:
    with pytest.raises(ValueError, match="SELECT"):
        Prepared(update(outbox).values(attempts=0), packed=True)


async def test_a_prepared_statement_refuses_an_expanding_in_list(engine: AsyncEngine) -> None:
    expanding = Prepared(select(outbox.c.id).where(outbox.c.id.in_(bindparam("ids", expanding=True))))
    async with engine.connect() as conn:
        with pytest.raises(ValueError, match="any_of"):
            await conn.run_sync(lambda sync: expanding.rows(sync, {"ids": [1]}))


# -- one statement for many rows, whatever the values ---------------------------------------------

_SEGMENT = Bulk(insert(outbox_segments))
_DONE = Bulk(
    update(outbox_segments)
    .where(outbox_segments.c.message == bindparam("b_message"), outbox_segments.c.seq == bindparam("b_seq"))
    .values(status=bindparam("b_status"), done_at=bindparam("b_at"))
)
_SEGMENTS_OF = Prepared(
    select(
        outbox_segments.c.message, outbox_segments.c.seq, outbox_segments.c.smsc_message_id,
        outbox_segments.c.status, outbox_segments.c.done_at, outbox.c.destination,
    )
    .join(outbox, outbox.c.id == outbox_segments.c.message)
    .where(any_of(outbox_segments.c.message, "ids")),
    packed=True,
)


async def _queued(engine: AsyncEngine, count: int) -> list[int]:
    now = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    rows = [
        outbox_row(kind=Kind.DIRECT, priority=Priority.NOTIFICATION, sender="SCSERV",
                   destination=f"+7916{n:07d}", text="t", language="en", now=now)
        for n in range(count)
    ]
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: _ADD.execute(sync, rows))
        return list((await conn.execute(select(outbox.c.id).order_by(outbox.c.id))).scalars())


async def test_many_rows_keep_every_kind_of_value_both_ways(engine: AsyncEngine) -> None:
    """Text that looks like SQL or JSON, non-ASCII, NULLs, big numbers and times go in and come
    back exactly, for a thousand rows at once, as SQLAlchemy itself would read them."""
    ids = await _queued(engine, 1000)
    odd = ['it\'s "quoted"', "[1, 2]", '{"a": null}', "ё😀\\u0000", "?", "null", ""]
    at = dt.datetime(2026, 12, 1, 9, 31, 2, 999999, tzinfo=dt.UTC)
    segments = [
        {
            "message": message,
            "seq": 1 + n % 3,
            "smsc": "bench",
            "smsc_message_id": f"{odd[n % len(odd)]}-{n}" if n % 5 else f"{2**62 + n}",
            "status": "submitted",
            "submitted_at": at,
            "done_at": None,
        }
        for n, message in enumerate(ids)
    ]
    # A NUL character (which SQLite's JSON functions would cut a text at) in another batch.
    with_nul = [{**segments[n], "seq": 9, "smsc_message_id": f"a\u0000b{n}"} for n in range(2)]
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: _SEGMENT.execute(sync, segments))
        if engine.dialect.name == "sqlite":  # PostgreSQL text cannot hold a NUL at all
            await conn.run_sync(lambda sync: _SEGMENT.execute(sync, with_nul))
            segments += with_nul
        await conn.run_sync(
            lambda sync: _DONE.execute(
                sync,
                [
                    {"b_message": s["message"], "b_seq": s["seq"], "b_status": "delivered", "b_at": at}
                    for s in segments[::2]
                ],
            )
        )
        found = await conn.run_sync(lambda sync: _SEGMENTS_OF.rows(sync, {"ids": ids}))
        by_sqlalchemy = (
            await conn.execute(
                select(*_SEGMENTS_OF.statement.selected_columns).join(
                    outbox, outbox.c.id == outbox_segments.c.message
                )
            )
        ).all()
    assert sorted(found) == sorted(tuple(r) for r in by_sqlalchemy)
    assert len(found) == len(segments)
    expected = {
        (s["message"], s["seq"]): (s["smsc_message_id"], "submitted" if n % 2 else "delivered")
        for n, s in enumerate(segments)
    }
    assert {(m, q): (i, st) for m, q, i, st, _, _ in found} == expected
    assert {done for *_, done, _ in found} == {None, at}


async def test_a_bulk_of_many_rows_is_one_statement_on_sqlite(tmp_path: Path) -> None:
    """Python's sqlite3 hands the GIL over for every row of an executemany; one statement over a
    JSON array of the rows is one step."""
    url = f"sqlite:///{tmp_path / 'one.db'}"
    await upgrade_database_async(url)
    sync = sqlalchemy.create_engine(url)
    statements: list[str] = []
    try:
        with sync.begin() as conn:
            conn.connection.dbapi_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
            _ADD.execute(conn, [
                outbox_row(kind=Kind.DIRECT, priority=Priority.NOTIFICATION, sender="SCSERV",
                           destination=f"+7916{n:07d}", text="t", language="en",
                           now=dt.datetime.now(dt.UTC))
                for n in range(300)
            ])
            ids = [row[0] for row in _ALL_IDS.rows(conn, {})]
            _MARK.execute(conn, [{"b_id": i, "b_smsc": "s", "b_at": dt.datetime.now(dt.UTC)} for i in ids])
            conn.connection.dbapi_connection.set_trace_callback(None)  # type: ignore[union-attr]
            stored = conn.execute(select(outbox.c.status).distinct()).scalars().all()
    finally:
        sync.dispose()
    assert len(ids) == 300
    assert stored == ["submitted"]
    assert len([s for s in statements if "outbox" in s]) == 3  # insert, select, update


_ALL_IDS = Prepared(select(outbox.c.id), packed=True)


async def test_values_json_cannot_carry_still_go_in(engine: AsyncEngine) -> None:
    """SQLite: bytes are written by executemany; a REAL column is read unpacked, exact."""
    if engine.dialect.name != "sqlite":
        pytest.skip("about SQLite's JSON path; PostgreSQL takes arrays of any type")
    table = sqlalchemy.Table(
        "bulk_probe", sqlalchemy.MetaData(),
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True, autoincrement=False),
        sqlalchemy.Column("blob", sqlalchemy.LargeBinary), sqlalchemy.Column("real", sqlalchemy.Float),
    )
    add = Bulk(insert(table))
    read = Prepared(
        select(table.c.id, table.c.blob, table.c.real).where(any_of(table.c.id, "ids")), packed=True
    )
    rows = [{"id": n, "blob": bytes([n, 0, 255]), "real": 0.1 + n / 3} for n in range(5)]
    async with engine.begin() as conn:
        await conn.run_sync(table.create)
        await conn.run_sync(lambda sync: add.execute(sync, rows))
        found = await conn.run_sync(lambda sync: read.rows(sync, {"ids": list(range(5))}))
        await conn.run_sync(table.drop)
    assert sorted(found) == [(r["id"], r["blob"], r["real"]) for r in rows]
