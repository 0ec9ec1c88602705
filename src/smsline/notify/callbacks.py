"""Status callbacks: when a notification's message reaches a final status, POST it to the
``status_callback`` URL the caller gave, signed with the caller's token's signing secret.

A worker of its own finds due callbacks with an indexed query (notifications whose callback is
pending and due, joined to their message, whose status is final); receipts and the dispatcher
know nothing of it. Each due callback is leased (its next attempt pushed out) in the transaction
that picks it, so several processes sharing PostgreSQL never post one twice at once. A failure
(no answer, an answer other than 2xx) is retried with exponential back-off until
``callback_retry_hours`` after the message's final status, then given up. Posting runs on its own
tasks with a bounded number in flight, so a slow receiver never delays sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from smsline.config import Settings
from smsline.db.engine import Database
from smsline.db.schema import api_tokens, customers, notifications, outbox
from smsline.domain.receipts import FINAL_STATUSES
from smsline.domain.signatures import SIGNATURE_HEADER, sign, signing_secret

log = logging.getLogger("smsline.callbacks")

BATCH: Final = 100
IN_FLIGHT: Final = 16
POLL_EVERY: Final = 1.0
LEASE: Final = dt.timedelta(seconds=120)
MAX_DELAY_SECONDS: Final = 3600.0
USER_AGENT: Final = "smsline-callbacks/1"


@dataclass(frozen=True, slots=True)
class DueCallback:
    notification: int
    url: str
    attempts: int
    token_public_id: str
    done_at: dt.datetime
    body: bytes


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def callback_body(row: Any, sent_at: dt.datetime) -> bytes:
    """The JSON a callback carries: the message's final status and when it got there."""
    history = [
        {"status": status, "at": _iso(at)}
        for status, at in (
            ("queued", row.queued_at),
            ("sending", row.sending_at),
            ("submitted", row.submitted_at),
            (row.message_status, row.done_at),
        )
        if at is not None
    ]
    return json.dumps(
        {
            "event": "message.final",
            "message_id": row.message,
            "status": row.message_status,
            "error": row.error,
            "segments": row.segments,
            "customer_id": row.customer_id,
            "template": row.template,
            "idempotency_key": row.idempotency_key,
            "history": history,
            "sent_at": _iso(sent_at),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


class CallbackSender:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        service_key: Callable[[], bytes],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.service_key = service_key
        self._client = httpx.AsyncClient(
            timeout=settings.callback_timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        try:
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_EVERY)
                self._wake.clear()
                if self._stopping:
                    break
                try:
                    while not self._stopping and await self.send_due() == BATCH:
                        pass
                except Exception:
                    log.exception("status callbacks: picking due callbacks failed; will try again")
        finally:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=self.settings.callback_timeout_seconds + 1)
            await self._client.aclose()

    async def send_due(self) -> int:
        """Pick the callbacks due now and start posting them; the number picked."""
        due = await self.db.run(self._pick_due)
        for callback in due:
            await self._slots.acquire()
            task = asyncio.get_running_loop().create_task(self._deliver(callback))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(due)

    def _pick_due(self, conn: Connection) -> list[DueCallback]:
        now = dt.datetime.now(dt.UTC)
        query = (
            select(
                notifications.c.id,
                notifications.c.status_callback,
                notifications.c.callback_attempts,
                notifications.c.message,
                notifications.c.template,
                notifications.c.idempotency_key,
                api_tokens.c.public_id,
                outbox.c.status.label("message_status"),
                outbox.c.error,
                outbox.c.segments,
                outbox.c.queued_at,
                outbox.c.sending_at,
                outbox.c.submitted_at,
                outbox.c.done_at,
                customers.c.customer_id,
            )
            .join(outbox, outbox.c.id == notifications.c.message)
            .join(api_tokens, api_tokens.c.id == notifications.c.token)
            .outerjoin(customers, customers.c.id == notifications.c.customer)
            .where(
                notifications.c.callback_state == "pending",
                notifications.c.callback_next_at <= now,
                outbox.c.status.in_(sorted(FINAL_STATUSES)),
            )
            .order_by(notifications.c.callback_next_at)
            .limit(BATCH)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=notifications, skip_locked=True)
        rows = conn.execute(query).all()
        if not rows:
            return []
        conn.execute(
            update(notifications)
            .where(notifications.c.id == bindparam("b_id"))
            .values(callback_next_at=now + LEASE),
            [{"b_id": row.id} for row in rows],
        )
        return [
            DueCallback(
                notification=row.id,
                url=row.status_callback,
                attempts=row.callback_attempts,
                token_public_id=row.public_id,
                done_at=row.done_at or now,
                body=callback_body(row, now),
            )
            for row in rows
        ]

    async def _deliver(self, callback: DueCallback) -> None:
        try:
            error = await self._post(callback)
            retry_in = await self.db.run(lambda conn: self._record(conn, callback, error))
            if retry_in is not None and retry_in < POLL_EVERY:
                asyncio.get_running_loop().call_later(retry_in, self._wake.set)
        except Exception:
            log.exception(
                "status callback of notification %s: recording the outcome failed", callback.notification
            )
        finally:
            self._slots.release()

    async def _post(self, callback: DueCallback) -> str | None:
        """None when the receiver took it (2xx), else what went wrong."""
        try:
            secret = signing_secret(self.service_key(), callback.token_public_id)
        except Exception as exc:
            return f"cannot sign: {exc}"
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, callback.body),
        }
        try:
            response = await self._client.post(callback.url, content=callback.body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{exc.__class__.__name__}: {exc}"[:200]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    def _record(self, conn: Connection, callback: DueCallback, error: str | None) -> float | None:
        """Store the outcome of an attempt; the seconds until the next one, None when done."""
        now = dt.datetime.now(dt.UTC)
        attempts = callback.attempts + 1
        if error is None:
            values: dict[str, Any] = {
                "callback_state": "done",
                "callback_attempts": attempts,
                "callback_next_at": None,
                "callback_error": None,
            }
        else:
            delay = min(MAX_DELAY_SECONDS, self.settings.callback_retry_seconds * 2 ** (attempts - 1))
            next_at = now + dt.timedelta(seconds=delay)
            give_up = next_at > callback.done_at + dt.timedelta(hours=self.settings.callback_retry_hours)
            values = {
                "callback_state": "failed" if give_up else "pending",
                "callback_attempts": attempts,
                "callback_next_at": None if give_up else next_at,
                "callback_error": error[:200],
            }
            log.info(
                "status callback of notification %s failed (attempt %d, %s)%s",
                callback.notification,
                attempts,
                error,
                "; giving up" if give_up else "",
            )
        conn.execute(
            update(notifications).where(notifications.c.id == callback.notification).values(**values)
        )
        if values["callback_next_at"] is None:
            return None
        return float((values["callback_next_at"] - now).total_seconds())
