"""The request processor: answers requests whose acknowledgement the SMSC has accepted.

Each batch is one transaction: the handlers' changes (opt-out, consent events) and the result
SMS in the outbox commit together, so a request is answered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline import metrics
from smsline.config import Settings
from smsline.db.engine import transaction
from smsline.db.schema import customers, outbox, requests
from smsline.domain.commands import Command
from smsline.domain.texts import language_of
from smsline.line.handlers import HANDLERS, RequestContext
from smsline.line.outbox import Priority, outbox_row

log = logging.getLogger("smsline.requests")

BATCH = 200
POLL_EVERY = 1.0


class RequestProcessor:
    def __init__(
        self, engine: AsyncEngine, settings: Settings, *, on_results: Callable[[], None]
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.on_results = on_results
        self._wake = asyncio.Event()
        self._stopping = False
        self._is_postgres = engine.dialect.name == "postgresql"

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_EVERY)
            self._wake.clear()
            if self._stopping:
                return
            try:
                while await self.process_batch() == BATCH:
                    pass
            except Exception:
                log.exception("processing requests failed; will try again")

    async def process_batch(self) -> int:
        query = (
            select(requests)
            .where(requests.c.status == "acknowledged")
            .order_by(requests.c.id)
            .limit(BATCH)
        )
        if self._is_postgres:
            query = query.with_for_update(skip_locked=True)
        async with transaction(self.engine) as conn:
            now = dt.datetime.now(dt.UTC)
            batch = [dict(r) for r in (await conn.execute(query)).mappings()]
            if not batch:
                return 0
            ids = {r["customer"] for r in batch if r["customer"] is not None}
            found = await conn.execute(select(customers).where(customers.c.id.in_(ids)))
            by_id = {row["id"]: dict(row) for row in found.mappings()}
            results = []
            for request in batch:
                customer = by_id.get(request["customer"])
                language = language_of(
                    customer["language"] if customer else self.settings.default_language
                )
                command = Command(request["command"])
                reply = await HANDLERS[command](
                    RequestContext(
                        conn=conn,
                        request=request,
                        customer=customer,
                        language=language,
                        support_phone=self.settings.support_phone,
                        now=now,
                    )
                )
                if customer is not None and command is not Command.INFO:
                    customer["sms_enabled"] = command is Command.SMS_START
                results.append(
                    outbox_row(
                        kind=reply.kind,
                        priority=Priority.REPLY,
                        sender=self.settings.sender,
                        destination=request["msisdn"],
                        text=reply.text,
                        language=language,
                        now=now,
                        customer=customer["id"] if customer else None,
                        request=request["id"],
                    )
                )
                metrics.requests_processed.labels(command=command.value).inc()
            await conn.execute(insert(outbox), results)
            await conn.execute(
                update(requests)
                .where(requests.c.id.in_([r["id"] for r in batch]))
                .values(status="done", processed_at=now)
            )
        self.on_results()
        return len(batch)
