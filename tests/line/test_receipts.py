"""Receipts of a multipart message's parts recorded by two transactions at the same moment
(PostgreSQL runs two at once): the message still settles when its last part is final."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.config import Settings
from smsline.db.schema import outbox, outbox_segments
from smsline.domain.receipts import canonical_message_id
from smsline.line.outbox import Kind, Priority, outbox_row
from smsline.line.receipts import ReceiptIn, record_receipts
from tests.line.conftest import eventually, waiting_on_a_lock


def delivered_receipt(message_id: str) -> ReceiptIn:
    return ReceiptIn(
        smsc="sim", message_id=message_id, stat="DELIVRD", err="000", status="delivered",
        submit_date=None, done_date=None, dedupe_key=f"dedupe-{message_id}",
    )


async def test_two_parts_receipted_at_once_settle_their_message(
    engine: AsyncEngine, database_url: str
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time")
    now = dt.datetime.now(dt.UTC)
    row = outbox_row(kind=Kind.DIRECT, priority=Priority.NOTIFICATION, sender="SCSERV",
                     destination="+79161234567", text="x" * 200, language="en", now=now)
    row.update(status="submitted", segments=2)
    async with engine.begin() as conn:
        message = (await conn.execute(insert(outbox).returning(outbox.c.id), row)).scalar_one()
        await conn.execute(insert(outbox_segments), [
            {"message": message, "seq": seq, "smsc": "sim", "status": "submitted", "submitted_at": now,
             "smsc_message_id": canonical_message_id(f"A{seq}", side="resp", base="same")}
            for seq in (1, 2)
        ])
    settings = Settings(database_url=database_url)

    first = await engine.connect()
    try:
        await first.begin()
        await first.run_sync(lambda c: record_receipts(c, [delivered_receipt("A1")], settings))

        async def second_transaction() -> None:
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: record_receipts(c, [delivered_receipt("A2")], settings))

        second = asyncio.ensure_future(second_transaction())

        async def second_waits_or_is_done() -> bool:
            return second.done() or await waiting_on_a_lock(engine)

        await eventually(second_waits_or_is_done)
        await first.commit()
    finally:
        await first.close()
    await second

    async with engine.connect() as conn:
        status = (await conn.execute(select(outbox.c.status).where(outbox.c.id == message))).scalar_one()
        parts = (await conn.execute(select(outbox_segments.c.status))).scalars().all()
    assert parts == ["delivered", "delivered"]
    assert status == "delivered"
