"""Queueing a notification: one transaction that finds the customer and the template, decides
whether the SMS goes or is suppressed, queues it in the outbox and records the answer under the
caller's idempotency key.

Idempotency rests on the unique (token, idempotency key) of the notifications table, not on a
check before inserting: two concurrent requests with one key both try to insert; the database
lets one through and the other (on PostgreSQL it waits for the first to commit) finds the first
one's row, throws away the outbox row it had made in its own uncommitted transaction, and answers
what the first answered. Exactly one SMS either way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from smsline.config import Settings
from smsline.db.schema import customers, notifications, outbox, templates
from smsline.domain.templates import MAX_SEGMENTS, Problem, check_values, render
from smsline.domain.texts import language_of
from smsline.line.outbox import Kind, Priority, outbox_row

SUPPRESSION_REASONS: Final[dict[str, str]] = {
    "opted_out": "the customer has opted out of SMS notifications",
    "unknown_customer": "no customer has this customer id or phone",
}


@dataclass(frozen=True, slots=True)
class NotificationRequest:
    token: int
    idempotency_key: str
    customer_id: str | None
    phone: str | None  # E.164
    template: str | None
    parameters: Mapping[str, str]
    text: str | None
    status_callback: str | None

    def fingerprint(self) -> str:
        """A hash of what was asked, to tell a retry from another request under the same key."""
        canonical = json.dumps(
            {
                "customer_id": self.customer_id,
                "phone": self.phone,
                "template": self.template,
                "parameters": dict(self.parameters),
                "text": self.text,
                "status_callback": self.status_callback,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Answer:
    code: int  # 202 queued, 200 suppressed
    body: dict[str, Any]
    replayed: bool = False

    @property
    def queued(self) -> bool:
        return self.body.get("status") == "queued"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The request cannot be carried out as asked; nothing was written."""

    kind: Literal["unknown-template", "invalid-parameters", "idempotency-key-reused", "text-too-long"]
    detail: str
    problems: list[Problem] = field(default_factory=list)


# Statements built once and executed with parameters: building a statement per request costs
# more than running it.
_EARLIER = select(
    notifications.c.request_hash, notifications.c.response_code, notifications.c.response
).where(
    notifications.c.token == bindparam("n_token"),
    notifications.c.idempotency_key == bindparam("n_key"),
)
_TEMPLATE = select(
    templates.c.text_en, templates.c.text_ru, templates.c.parameters, templates.c.essential
).where(templates.c.name == bindparam("t_name"))
_CUSTOMER_COLUMNS = (
    customers.c.id,
    customers.c.customer_id,
    customers.c.phone,
    customers.c.language,
    customers.c.sms_enabled,
)
_CUSTOMER_BY_ID = select(*_CUSTOMER_COLUMNS).where(customers.c.customer_id == bindparam("c_ref"))
_CUSTOMER_BY_PHONE = select(*_CUSTOMER_COLUMNS).where(customers.c.phone == bindparam("c_ref"))
_OUTBOX_INSERT = insert(outbox).returning(outbox.c.id)
_OUTBOX_DELETE = delete(outbox).where(outbox.c.id == bindparam("o_id"))
_NOTIFICATION_INSERT = {
    name: dialect.insert(notifications)
    .on_conflict_do_nothing(index_elements=[notifications.c.token, notifications.c.idempotency_key])
    .returning(notifications.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _insert_ignoring_conflict(conn: Connection, values: dict[str, Any]) -> int | None:
    found = conn.execute(_NOTIFICATION_INSERT[conn.dialect.name], values).scalar()
    return int(found) if found is not None else None


def _earlier(conn: Connection, request: NotificationRequest) -> Answer | Refusal | None:
    row = conn.execute(_EARLIER, {"n_token": request.token, "n_key": request.idempotency_key}).first()
    if row is None:
        return None
    if row.request_hash != request.fingerprint():
        return Refusal(
            "idempotency-key-reused",
            "this Idempotency-Key was used before for a different request; "
            "use a new key for a new notification",
        )
    return Answer(row.response_code, json.loads(row.response), replayed=True)


def queue_notification(
    conn: Connection, request: NotificationRequest, settings: Settings, now: dt.datetime
) -> Answer | Refusal:
    """Queue (or suppress) one notification; see the module documentation."""
    earlier = _earlier(conn, request)
    if earlier is not None:
        return earlier

    essential = False
    template_row = None
    if request.template is not None:
        template_row = conn.execute(_TEMPLATE, {"t_name": request.template}).first()
        if template_row is None:
            return Refusal("unknown-template", f"there is no template named {request.template!r}")
        problems = check_values(template_row.parameters.split(), request.parameters)
        if problems:
            return Refusal("invalid-parameters", problems[0].message, problems)
        essential = bool(template_row.essential)

    if request.customer_id is not None:
        customer = conn.execute(_CUSTOMER_BY_ID, {"c_ref": request.customer_id}).first()
    else:
        customer = conn.execute(_CUSTOMER_BY_PHONE, {"c_ref": request.phone}).first()

    body: dict[str, Any] = {
        "message_id": None,
        "status": "suppressed",
        "reason": None,
        "detail": None,
        "customer_id": customer.customer_id if customer else request.customer_id,
        "phone": customer.phone if customer else request.phone,
        "template": request.template,
        "essential": essential,
        "language": None,
        "encoding": None,
        "segments": None,
        "created_at": now.isoformat().replace("+00:00", "Z"),
    }
    reason: str | None = None
    if customer is None:
        reason = "unknown_customer"
    elif not customer.sms_enabled and not essential:
        reason = "opted_out"

    message_id: int | None = None
    if reason is None:
        assert customer is not None
        language = language_of(customer.language)
        if template_row is not None:
            source = template_row.text_ru if language == "ru" else template_row.text_en
            text = render(source, request.parameters)
        else:
            assert request.text is not None
            text = request.text
        row = outbox_row(
            kind=Kind.NOTIFICATION,
            priority=Priority.NOTIFICATION,
            sender=settings.sender,
            destination=customer.phone,
            text=text,
            language=language,
            now=now,
            customer=customer.id,
        )
        if row["segments"] > MAX_SEGMENTS:
            return Refusal(
                "text-too-long",
                f"the text takes {row['segments']} SMS segments; at most {MAX_SEGMENTS} are allowed",
            )
        message_id = int(conn.execute(_OUTBOX_INSERT, row).scalar_one())
        body.update(
            message_id=message_id,
            status="queued",
            language=language,
            encoding=row["encoding"],
            segments=row["segments"],
        )
    else:
        body.update(reason=reason, detail=SUPPRESSION_REASONS[reason])

    code = 202 if message_id is not None else 200
    inserted = _insert_ignoring_conflict(
        conn,
        {
            "token": request.token,
            "idempotency_key": request.idempotency_key,
            "request_hash": request.fingerprint(),
            "customer": customer.id if customer else None,
            "template": request.template,
            "message": message_id,
            "status": body["status"],
            "reason": reason,
            "response_code": code,
            "response": json.dumps(body, ensure_ascii=False),
            "status_callback": request.status_callback if message_id is not None else None,
            "callback_state": "pending" if message_id is not None and request.status_callback else None,
            "callback_next_at": now if message_id is not None and request.status_callback else None,
            "created_at": now,
        },
    )
    if inserted is None:
        # A concurrent request with the same key got there first: its answer stands, and the
        # message made here (never committed) goes.
        if message_id is not None:
            conn.execute(_OUTBOX_DELETE, {"o_id": message_id})
        earlier = _earlier(conn, request)
        assert earlier is not None
        return earlier
    return Answer(code, body)
