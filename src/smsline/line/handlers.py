"""One small handler per inbound command. Each gets the request and its customer (if the number
is registered) and returns the reply to send; changes of consent it records in the context, and
the request processor writes them in the same transaction as the reply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
class ConsentChange:
    customer: int
    sms_enabled: bool
    actor: str
    inbound: int


@dataclass(frozen=True, slots=True)
class RequestContext:
    request: dict[str, Any]
    customer: dict[str, Any] | None
    language: Language
    support_phone: str
    consent: list[ConsentChange]  # collected here, written by the processor in one go


@dataclass(frozen=True, slots=True)
class Reply:
    kind: str
    text: str


Handler = Callable[[RequestContext], Reply]


def _not_registered(ctx: RequestContext) -> Reply:
    return Reply(Kind.RESULT, not_registered_text(ctx.language, support_phone=ctx.support_phone))


def handle_info(ctx: RequestContext) -> Reply:
    """Registration data with a fresh temporary password. The password is made when the SMS is
    sent (see credentials.py); the outbox only ever holds the masked text."""
    if ctx.customer is None:
        return _not_registered(ctx)
    text = masked_info_text(
        ctx.language, personal_code=ctx.customer["personal_code"], login=ctx.customer["login"]
    )
    return Reply(Kind.CREDENTIALS, text)


def _set_sms_enabled(ctx: RequestContext, enabled: bool) -> None:
    assert ctx.customer is not None
    ctx.customer["sms_enabled"] = enabled
    ctx.consent.append(
        ConsentChange(ctx.customer["id"], enabled, ctx.request["msisdn"], ctx.request["inbound"])
    )


def handle_sms_stop(ctx: RequestContext) -> Reply:
    if ctx.customer is None:
        return _not_registered(ctx)
    _set_sms_enabled(ctx, False)
    return Reply(Kind.RESULT, sms_stopped_text(ctx.language))


def handle_sms_start(ctx: RequestContext) -> Reply:
    if ctx.customer is None:
        return _not_registered(ctx)
    _set_sms_enabled(ctx, True)
    return Reply(Kind.RESULT, sms_started_text(ctx.language))


HANDLERS: dict[Command, Handler] = {
    Command.INFO: handle_info,
    Command.SMS_STOP: handle_sms_stop,
    Command.SMS_START: handle_sms_start,
}
