"""The dispatcher taking over SMS written already claimed for it (notifications queued through
the API): it holds what it can send soon and returns the rest to the queue, losing none."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, insert, select

from smsline.config import Settings
from smsline.db.engine import Database
from smsline.db.schema import outbox
from smsline.line.dispatcher import Dispatcher
from smsline.line.outbox import CLAIM_SECONDS, Kind, OutboxItem, Priority, outbox_row
from tests.line.conftest import eventually

WORKER = "test-host:1:abc"


async def test_sms_beyond_what_the_dispatcher_holds_go_back_to_the_queue(database_url: str) -> None:
    db = Database(database_url)
    try:
        now = dt.datetime.now(dt.UTC)
        rows = [
            outbox_row(
                kind=Kind.NOTIFICATION, priority=Priority.NOTIFICATION, sender="SCSERV",
                destination=f"+7916{n:07d}", text=f"Code {n}", language="en", now=now,
                status="sending", claimed_by=WORKER, claimed_until=now + dt.timedelta(seconds=CLAIM_SECONDS),
            )
            for n in range(600)
        ]
        async with db.engine.begin() as conn:
            ids = (await conn.execute(insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True),
                                      rows)).scalars().all()
        # No SMSC bound: nothing is sent, so the dispatcher holds twice its claim size (256).
        dispatcher = Dispatcher(db, Settings(database_url=database_url), [], worker_id=WORKER)
        items = [OutboxItem.from_row({**row, "id": i}) for row, i in zip(rows, ids, strict=True)]
        dispatcher.take_over(items)
        assert dispatcher.ready == 512

        async def by_status() -> dict[tuple[str, str | None], int]:
            async with db.engine.connect() as conn:
                counted = await conn.execute(
                    select(outbox.c.status, outbox.c.claimed_by, func.count()).group_by(
                        outbox.c.status, outbox.c.claimed_by
                    )
                )
                return {(status, owner): n for status, owner, n in counted}

        async def returned() -> bool:
            return await by_status() == {("sending", WORKER): 512, ("queued", None): 88}

        await eventually(returned)
        await dispatcher.stop()
        assert await by_status() == {("queued", None): 600}  # stopping returns what it held
    finally:
        await db.dispose()
