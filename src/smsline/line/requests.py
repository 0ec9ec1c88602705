"""The request processor: answers requests whose acknowledgement the SMSC has accepted.

`answer_acknowledged` runs inside the transaction that records the acknowledgement's
submit_sm_resp (the dispatcher calls it), so the handlers' changes (opt-out, consent events) and
the answer SMS commit together with the request going from `received` to `done`: a request is
answered exactly once, and never before its acknowledgement was accepted. The answers come back
already claimed for this worker and go straight to the dispatcher. A polling loop answers
requests left `acknowledged` (by a dispatcher that records acknowledgements without answering).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from smsline import metrics
from smsline.campaigns.service import suppress_opted_out
from smsline.config import Settings
from smsline.db.bulk import any_of
from smsline.db.engine import Database
from smsline.db.schema import consent_events, customers, outbox, requests
from smsline.domain.commands import Command
from smsline.domain.texts import language_of
from smsline.line.handlers import HANDLERS, ConsentChange, RequestContext
from smsline.line.outbox import CLAIM_SECONDS, OutboxItem, Priority, outbox_row

log = logging.getLogger("smsline.requests")

BATCH = 500
POLL_EVERY = 1.0


# The hot statements, built once (building and keying a statement per call costs more than
# running it).
_JUST_ACKNOWLEDGED = select(requests).where(
    any_of(requests.c.id, "ids"), requests.c.status == "received"
)
_CUSTOMERS = select(
    customers.c.id,
    customers.c.language,
    customers.c.personal_code,
    customers.c.login,
    customers.c.sms_enabled,
).where(any_of(customers.c.id, "ids"))
_SET_CONSENT = (
    update(customers)
    .where(customers.c.id == bindparam("b_id"))
    .values(sms_enabled=bindparam("b_enabled"), updated_at=bindparam("b_now"))
)
_INSERT_CONSENT = insert(consent_events)
_INSERT_ANSWERS = insert(outbox).returning(outbox.c.id, outbox.c.request)
_DONE = (
    update(requests)
    .where(any_of(requests.c.id, "ids"))
    .values(status="done", processed_at=bindparam("now"))
)
_DONE_ACKNOWLEDGED = (
    update(requests)
    .where(any_of(requests.c.id, "ids"))
    .values(status="done", acknowledged_at=bindparam("now"), processed_at=bindparam("now"))
)


class RequestProcessor:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        worker_id: str,
        on_results: Callable[[list[OutboxItem]], None],
    ) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = worker_id
        self.on_results = on_results
        self._wake = asyncio.Event()
        self._stopping = False
        self._is_postgres = db.is_postgres

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
        """Answer acknowledged requests that are still waiting for their answer."""
        items = await self.db.run(lambda conn: self.answer(conn, None, dt.datetime.now(dt.UTC)))
        if items:
            self.on_results(items)
        return len(items)

    def answer(
        self, conn: Connection, request_ids: Collection[int] | None, now: dt.datetime
    ) -> list[OutboxItem]:
        """Run the handlers of acknowledged requests (these, or any waiting) and queue their
        answers, claimed for this worker. Call inside a write transaction."""
        query = select(requests).where(requests.c.status == "acknowledged")
        if request_ids is not None:
            if not request_ids:
                return []
            query = query.where(requests.c.id.in_(request_ids))
        query = query.order_by(requests.c.id).limit(BATCH)
        if self._is_postgres:
            query = query.with_for_update(skip_locked=True)
        batch = [dict(r) for r in (conn.execute(query)).mappings()]
        if not batch:
            return []
        items = self._answer(conn, batch, now)
        conn.execute(_DONE, {"ids": [r["id"] for r in batch], "now": now})
        return items

    def answer_acknowledged(
        self, conn: Connection, request_ids: Collection[int], now: dt.datetime
    ) -> list[OutboxItem]:
        """Answer requests whose acknowledgement the SMSC has just accepted, in the transaction
        recording that (they go from `received` straight to `done`)."""
        if not request_ids:
            return []
        batch = [dict(r) for r in conn.execute(_JUST_ACKNOWLEDGED, {"ids": list(request_ids)}).mappings()]
        if not batch:
            return []
        items = self._answer(conn, batch, now)
        conn.execute(_DONE_ACKNOWLEDGED, {"ids": [r["id"] for r in batch], "now": now})
        return items

    def _answer(self, conn: Connection, batch: list[dict[str, Any]], now: dt.datetime) -> list[OutboxItem]:
        ids = {r["customer"] for r in batch if r["customer"] is not None}
        by_id: dict[int, dict[str, object]] = {}
        if ids:
            found = conn.execute(_CUSTOMERS, {"ids": list(ids)})
            by_id = {row["id"]: dict(row) for row in found.mappings()}
        consent: list[ConsentChange] = []
        rows = []
        for request in batch:
            customer = by_id.get(request["customer"])
            language = language_of(
                str(customer["language"]) if customer else self.settings.default_language
            )
            command = Command(request["command"])
            reply = HANDLERS[command](
                RequestContext(
                    request=request,
                    customer=customer,
                    language=language,
                    support_phone=self.settings.support_phone,
                    consent=consent,
                )
            )
            rows.append(
                outbox_row(
                    kind=reply.kind,
                    priority=Priority.REPLY,
                    sender=self.settings.sender,
                    destination=request["msisdn"],
                    text=reply.text,
                    language=language,
                    now=now,
                    customer=request["customer"] if customer else None,
                    request=request["id"],
                    status="sending",
                    claimed_by=self.worker_id,
                    claimed_until=now + dt.timedelta(seconds=CLAIM_SECONDS),
                )
            )
            metrics.count(metrics.requests_processed, command.value).inc()
        if consent:
            self._record_consent(conn, consent, now)
        returned = conn.execute(_INSERT_ANSWERS, rows)
        message_of = {request: message for message, request in returned}
        items = []
        for row in rows:
            item = OutboxItem.from_row({**row, "id": message_of[row["request"]]})
            items.append(item)
        return items

    @staticmethod
    def _record_consent(
        conn: Connection, changes: list[ConsentChange], now: dt.datetime
    ) -> None:
        latest = {c.customer: c.sms_enabled for c in changes}
        conn.execute(
            _SET_CONSENT,
            [{"b_id": customer, "b_enabled": enabled, "b_now": now} for customer, enabled in latest.items()],
        )
        suppress_opted_out(conn, [customer for customer, enabled in latest.items() if not enabled])
        conn.execute(
            _INSERT_CONSENT,
            [
                {
                    "customer": c.customer,
                    "sms_enabled": c.sms_enabled,
                    "channel": "sms",
                    "actor": c.actor,
                    "inbound": c.inbound,
                    "at": now,
                }
                for c in changes
            ],
        )
