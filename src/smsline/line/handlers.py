"""One small handler per inbound command. Each gets the request and its customer (if the number
is registered) inside the processing transaction and returns the reply to send."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsline.db.schema import consent_events, customers
from smsline.domain.commands import Command
from smsline.domain.texts import (
    Language,
    masked_info_text,
    not_registered_text,
    sms_started_text,
    sms_stopped_text,
)
from smsline.line.outbox import Kind


@dataclass(frozen=True, slots=True)
class RequestContext:
    conn: AsyncConnection
    request: dict[str, Any]
    customer: dict[str, Any] | None
    language: Language
    support_phone: str
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class Reply:
    kind: str
    text: str


Handler = Callable[[RequestContext], Awaitable[Reply]]


def _not_registered(ctx: RequestContext) -> Reply:
    return Reply(Kind.RESULT, not_registered_text(ctx.language, support_phone=ctx.support_phone))


async def handle_info(ctx: RequestContext) -> Reply:
    """Registration data with a fresh temporary password. The password is made when the SMS is
    sent (see credentials.py); the outbox only ever holds the masked text."""
    if ctx.customer is None:
        return _not_registered(ctx)
    text = masked_info_text(
        ctx.language, personal_code=ctx.customer["personal_code"], login=ctx.customer["login"]
    )
    return Reply(Kind.CREDENTIALS, text)


async def _set_sms_enabled(ctx: RequestContext, enabled: bool) -> None:
    assert ctx.customer is not None
    await ctx.conn.execute(
        update(customers)
        .where(customers.c.id == ctx.customer["id"])
        .values(sms_enabled=enabled, updated_at=ctx.now)
    )
    await ctx.conn.execute(
        insert(consent_events).values(
            customer=ctx.customer["id"],
            sms_enabled=enabled,
            channel="sms",
            actor=ctx.request["msisdn"],
            inbound=ctx.request["inbound"],
            at=ctx.now,
        )
    )


async def handle_sms_stop(ctx: RequestContext) -> Reply:
    if ctx.customer is None:
        return _not_registered(ctx)
    await _set_sms_enabled(ctx, False)
    return Reply(Kind.RESULT, sms_stopped_text(ctx.language))


async def handle_sms_start(ctx: RequestContext) -> Reply:
    if ctx.customer is None:
        return _not_registered(ctx)
    await _set_sms_enabled(ctx, True)
    return Reply(Kind.RESULT, sms_started_text(ctx.language))


HANDLERS: dict[Command, Handler] = {
    Command.INFO: handle_info,
    Command.SMS_STOP: handle_sms_stop,
    Command.SMS_START: handle_sms_start,
}
