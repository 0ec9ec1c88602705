"""``GET /api/v1/messages/{id}``: a message's status, its history, its segments, its SMSC error."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field
from sqlalchemy import select

from smsline.api.auth import Context, require
from smsline.api.problems import ProblemError, responses
from smsline.db.schema import customers, notifications, outbox, outbox_segments
from smsline.line.outbox import Kind
from smsline.logs import redaction
from smsline.notify.tokens import TokenInfo

router = APIRouter(prefix="/api/v1", tags=["messages"])


class StatusChange(BaseModel):
    status: str
    at: dt.datetime


class Segment(BaseModel):
    seq: int
    status: str
    submitted_at: dt.datetime
    done_at: dt.datetime | None


class Callback(BaseModel):
    state: str = Field(description="pending | done | failed")
    attempts: int
    last_error: str | None


class MessageOut(BaseModel):
    id: int
    kind: str = Field(
        description="ack | result | credentials | direct | notification | campaign | campaign_test"
    )
    status: str = Field(
        description="queued | sending | submitted | delivered | undeliverable | expired | rejected | failed"
    )
    phone: str
    customer_id: str | None
    sender: str
    language: str
    text: str = Field(description="credential texts are shown masked, as they are stored")
    encoding: str
    segments: int
    attempts: int
    error: str | None = Field(description="the SMSC's error (SMPP status name and meaning), if any")
    history: list[StatusChange]
    parts: list[Segment]
    template: str | None = None
    idempotency_key: str | None = None
    callback: Callback | None = None


@router.get(
    "/messages/{message_id}",
    response_model=MessageOut,
    summary="A message's status and history",
    responses=responses(401, 403, 404, 422, 429),
)
async def get_message(
    message_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    context: Context,
    _token: Annotated[TokenInfo, Depends(require("messages:read"))],
) -> MessageOut:
    async with context.db.read() as conn:
        row = (
            (
                await conn.execute(
                    select(outbox, customers.c.customer_id.label("customer_ref"))
                    .outerjoin(customers, customers.c.id == outbox.c.customer)
                    .where(outbox.c.id == message_id)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise ProblemError("not-found", f"there is no message {message_id}")
        parts = (
            (
                await conn.execute(
                    select(outbox_segments)
                    .where(outbox_segments.c.message == message_id)
                    .order_by(outbox_segments.c.seq)
                )
            )
            .mappings()
            .all()
        )
        notification = (
            (await conn.execute(select(notifications).where(notifications.c.message == message_id)))
            .mappings()
            .first()
        )
    history = [
        StatusChange(status=status, at=at)
        for status, at in (
            ("queued", row["queued_at"]),
            ("sending", row["sending_at"]),
            ("submitted", row["submitted_at"]),
            (row["status"], row["done_at"]),
        )
        if at is not None
    ]
    text = row["text"] if row["kind"] != Kind.CREDENTIALS else redaction.redact(row["text"])
    return MessageOut(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        phone=row["destination"],
        customer_id=row["customer_ref"],
        sender=row["sender"],
        language=row["language"],
        text=text,
        encoding=row["encoding"],
        segments=row["segments"],
        attempts=row["attempts"],
        error=row["error"],
        history=history,
        parts=[
            Segment(seq=p["seq"], status=p["status"], submitted_at=p["submitted_at"], done_at=p["done_at"])
            for p in parts
        ],
        template=notification["template"] if notification else None,
        idempotency_key=notification["idempotency_key"] if notification else None,
        callback=Callback(
            state=notification["callback_state"],
            attempts=notification["callback_attempts"],
            last_error=notification["callback_error"],
        )
        if notification and notification["callback_state"]
        else None,
    )
