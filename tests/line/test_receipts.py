"""Receipts that match no message (stored, counted, and the link goes on), and receipts of a
multipart message's parts recorded by two transactions at the same moment (PostgreSQL runs two
at once): the message still settles when its last part is final."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.config import Settings
from smsline.db.schema import outbox, outbox_segments, receipts
from smsline.domain.receipts import canonical_message_id
from smsline.line.outbox import Kind, Priority, outbox_row
from smsline.line.receipts import ReceiptIn, record_receipts
from smsline.serve import Service
from smsline.smpp import pdus
from smsline.smpp.simulator import Simulator
from tests.line.conftest import add_customer, eventually, waiting_on_a_lock


def unmatched() -> float:
    return REGISTRY.get_sample_value("smsline_receipts_unmatched_total") or 0.0


async def test_receipts_that_match_no_message_are_stored_and_counted_and_the_link_goes_on(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    """SMSCs send receipts for messages this service never sent (or sent before the SMSC lost
    its state), with an id that matches nothing, with no id at all, or with a text that is no
    receipt. Each is taken (ESME_ROK, so the SMSC does not send it again and again), kept for
    the record, counted, and sending goes on over the same bind."""
    await add_customer(engine, customer_id="c1", phone="+79161234567")
    [bind_before] = simulator.binds()
    counted_before = unmatched()
    stray = [
        simulator.inject_receipt(
            "id:DEADBEEF01 sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 "
            "stat:DELIVRD err:000 text:",
            receipted_message_id="DEADBEEF01",
        ),
        simulator.inject_receipt("stat:UNDELIV err:001"),  # no id anywhere
        simulator.inject_receipt("nothing like a receipt"),
    ]
    await simulator.wait_delivered(10)

    answers = {d.delivery_id: d for d in simulator.deliveries if d.delivery_id in stray}
    assert [(answers[i].outcome, answers[i].status) for i in stray] == [("ok", pdus.ESME_ROK)] * 3
    async with engine.connect() as conn:
        stored = (await conn.execute(
            select(receipts.c.smsc_message_id, receipts.c.message, receipts.c.stat).order_by(receipts.c.id)
        )).all()
    assert [(message, stat) for _, message, stat in stored] == [
        (None, "DELIVRD"), (None, "UNDELIV"), (None, None)
    ]
    assert stored[0].smsc_message_id == canonical_message_id("DEADBEEF01", side="receipt", base="same")
    assert unmatched() == counted_before + 3

    async with engine.begin() as conn:
        await conn.execute(insert(outbox), outbox_row(
            kind=Kind.DIRECT, priority=Priority.NOTIFICATION, sender="SCSERV",
            destination="+79161234567", text="Still sending.", language="en",
            now=dt.datetime.now(dt.UTC),
        ))
    service.dispatcher.wake()
    [sent] = await simulator.wait_messages(1, destination="+79161234567", timeout=10)
    assert sent.text == "Still sending."
    assert simulator.binds() == [bind_before]  # the same connection all along


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
