"""Texts typed by an operator (`smsline send`): queued like notifications, after the
replies to requests, and suppressed for customers who opted out unless marked essential."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.config import Settings
from smsline.db.engine import transaction
from smsline.db.schema import customers, outbox
from smsline.domain.msisdn import normalise_msisdn
from smsline.domain.segments import choose_encoding, count_segments
from smsline.line.outbox import Kind, Priority, outbox_row


@dataclass(frozen=True, slots=True)
class Queued:
    status: Literal["queued", "suppressed"]
    phone: str
    segments: int
    encoding: str
    message_id: int | None = None
    reason: str | None = None


async def send_text(
    engine: AsyncEngine, settings: Settings, phone: str, text: str, *, essential: bool = False
) -> Queued:
    """Queue `text` to `phone` (any format; raises InvalidMsisdn) and say what happened."""
    if not text.strip():
        raise ValueError("the text is empty")
    destination = normalise_msisdn(phone, settings.default_region)
    segments, encoding = count_segments(text), choose_encoding(text)
    async with transaction(engine) as conn:
        customer = (
            await conn.execute(
                select(customers.c.id, customers.c.sms_enabled, customers.c.language).where(
                    customers.c.phone == destination
                )
            )
        ).first()
        if customer is not None and not customer.sms_enabled and not essential:
            return Queued("suppressed", destination, segments, encoding, reason="opted out of SMS")
        row = outbox_row(
            kind=Kind.DIRECT,
            priority=Priority.NOTIFICATION,
            sender=settings.sender,
            destination=destination,
            text=text,
            language=customer.language if customer else settings.default_language,
            now=dt.datetime.now(dt.UTC),
            customer=customer.id if customer else None,
        )
        message_id = (await conn.execute(insert(outbox).values(row).returning(outbox.c.id))).scalar_one()
    return Queued("queued", destination, segments, encoding, message_id=int(message_id))
