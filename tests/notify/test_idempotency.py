"""Two transactions queueing a notification under one key at the same moment: exactly one SMS.

The first transaction stays open while the second starts; on PostgreSQL the test waits until the
second is seen blocked on the first (in pg_stat_activity) before letting the first commit, so the
second really did get past its look-up of the key and relies on the unique constraint."""

from __future__ import annotations

import asyncio
import datetime as dt

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.config import Settings
from smsline.db.schema import notifications, outbox
from smsline.notify.notifications import Answer, NotificationRequest, Refusal, queue_notifications
from smsline.notify.tokens import create_token
from tests.line.conftest import add_customer, eventually, waiting_on_a_lock


async def test_the_loser_of_a_race_answers_what_the_winner_answered(
    engine: AsyncEngine, database_url: str
) -> None:
    settings = Settings(database_url=database_url, secret_key=SecretStr("k"))
    await add_customer(engine, customer_id="C-1", phone="+79161234567")
    async with engine.begin() as conn:
        token = await conn.run_sync(
            lambda c: create_token(c, "crm", ["notifications:send"], service_key=b"k")
        )
    request = NotificationRequest(
        token=token.info.id,
        idempotency_key="k-1",
        customer_id="C-1",
        phone=None,
        template=None,
        parameters={},
        text="Your branch is closed on Monday.",
        status_callback=None,
    )

    def queue(conn: Connection) -> Answer:
        [answer] = queue_notifications(conn, [(request, dt.datetime.now(dt.UTC))], settings=settings)
        assert isinstance(answer, Answer)
        return answer

    first_conn = await engine.connect()
    try:
        await first_conn.begin()
        first = await first_conn.run_sync(queue)

        async def second_transaction() -> Answer:
            async with engine.begin() as conn:
                return await conn.run_sync(queue)

        second_task = asyncio.ensure_future(second_transaction())
        if engine.dialect.name == "postgresql":
            await eventually(lambda: waiting_on_a_lock(engine))
        await first_conn.commit()
    finally:
        await first_conn.close()
    second = await second_task

    assert first.code == second.code == 202
    assert second.body == first.body
    assert second.replayed
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(outbox)) == 1
        assert await conn.scalar(select(func.count()).select_from(notifications)) == 1


async def test_a_batch_answers_each_request_as_if_it_came_alone(
    engine: AsyncEngine, database_url: str
) -> None:
    """Requests that arrive together are decided in one transaction; each still gets its own
    answer, and a key repeated within the batch is a retry of its first use."""
    settings = Settings(database_url=database_url, secret_key=SecretStr("k"))
    await add_customer(engine, customer_id="C-1", phone="+79161234567")
    await add_customer(engine, customer_id="C-2", phone="+79161234568", login="petrov", sms_enabled=False)
    async with engine.begin() as conn:
        token = await conn.run_sync(
            lambda c: create_token(c, "crm", ["notifications:send"], service_key=b"k")
        )

    def asking(key: str, customer: str, text: str, template: str | None = None) -> NotificationRequest:
        return NotificationRequest(
            token=token.info.id,
            idempotency_key=key,
            customer_id=customer,
            phone=None,
            template=template,
            parameters={},
            text=None if template else text,
            status_callback=None,
        )

    now = dt.datetime.now(dt.UTC)
    batch = [
        asking("k-1", "C-1", "Your card is ready."),
        asking("k-1", "C-1", "Your card is ready."),  # a retry
        asking("k-1", "C-1", "Something else."),  # the key reused for another request
        asking("k-2", "C-1", "", template="no_such_template"),
        asking("k-3", "C-404", "Hello."),
        asking("k-4", "C-2", "Hello."),
    ]
    async with engine.begin() as conn:
        answers = await conn.run_sync(
            lambda c: queue_notifications(c, [(r, now) for r in batch], settings=settings)
        )

    queued, retry, reused, unknown_template, unknown_customer, opted_out = answers
    assert isinstance(queued, Answer)
    assert queued.code == 202
    assert not queued.replayed
    assert isinstance(retry, Answer)
    assert retry.replayed
    assert retry.body == queued.body
    assert isinstance(reused, Refusal)
    assert reused.kind == "idempotency-key-reused"
    assert isinstance(unknown_template, Refusal)
    assert unknown_template.kind == "unknown-template"
    assert isinstance(unknown_customer, Answer)
    assert (unknown_customer.code, unknown_customer.body["reason"]) == (200, "unknown_customer")
    assert isinstance(opted_out, Answer)
    assert (opted_out.code, opted_out.body["reason"]) == (200, "opted_out")
    async with engine.connect() as conn:
        texts = (await conn.execute(select(outbox.c.destination, outbox.c.text))).tuples().all()
        assert texts == [("+79161234567", "Your card is ready.")]
        keys = (await conn.execute(select(notifications.c.idempotency_key))).scalars().all()
        assert sorted(keys) == ["k-1", "k-3", "k-4"]
