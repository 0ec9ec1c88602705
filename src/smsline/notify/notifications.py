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
from typing import Any, Final, Literal, NamedTuple

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from smsline.config import Settings
from smsline.db.bulk import Prepared, any_of
from smsline.db.schema import customers, notifications, outbox, templates
from smsline.domain.templates import MAX_SEGMENTS, Problem, check_values, render
from smsline.domain.texts import language_of
from smsline.line.outbox import CLAIM_SECONDS, Kind, OutboxItem, Priority, outbox_row

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
    # The SMS queued by this answer, claimed for the worker given to `queue_notifications`.
    claimed: OutboxItem | None = None

    @property
    def queued(self) -> bool:
        return self.body.get("status") == "queued"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The request cannot be carried out as asked; nothing was written."""

    kind: Literal["unknown-template", "invalid-parameters", "idempotency-key-reused", "text-too-long"]
    detail: str
    problems: list[Problem] = field(default_factory=list)


# Statements built once and run through the driver (`Prepared`): building a statement per request,
# or SQLAlchemy's execution of it, costs more than running it.
_EARLIER = Prepared(
    select(
        notifications.c.token,
        notifications.c.idempotency_key,
        notifications.c.request_hash,
        notifications.c.response_code,
        notifications.c.response,
    ).where(any_of(notifications.c.token, "n_tokens"), any_of(notifications.c.idempotency_key, "n_keys"))
)
_TEMPLATES = Prepared(
    select(
        templates.c.name,
        templates.c.text_en,
        templates.c.text_ru,
        templates.c.parameters,
        templates.c.essential,
    ).where(any_of(templates.c.name, "t_names"))
)
_CUSTOMER_COLUMNS = (
    customers.c.id,
    customers.c.customer_id,
    customers.c.phone,
    customers.c.language,
    customers.c.sms_enabled,
)
_CUSTOMERS_BY_ID = Prepared(select(*_CUSTOMER_COLUMNS).where(any_of(customers.c.customer_id, "c_refs")))
_CUSTOMERS_BY_PHONE = Prepared(select(*_CUSTOMER_COLUMNS).where(any_of(customers.c.phone, "c_refs")))
_OUTBOX_INSERT = Prepared(insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True))
_OUTBOX_DELETE = delete(outbox).where(any_of(outbox.c.id, "o_ids"))
_RETURNING_KEYS = (notifications.c.token, notifications.c.idempotency_key)
# On PostgreSQL a concurrent transaction may store the same key between our look-up and our
# insert: the insert skips it (ON CONFLICT waits for that transaction, then does nothing). On
# SQLite the transaction holds the write lock from its BEGIN IMMEDIATE, so the look-up cannot be
# raced and a plain insert does.
_NOTIFICATION_INSERT = {
    "postgresql": Prepared(
        postgresql.insert(notifications)
        .on_conflict_do_nothing(index_elements=[notifications.c.token, notifications.c.idempotency_key])
        .returning(*_RETURNING_KEYS)
    ),
    "sqlite": Prepared(insert(notifications).returning(*_RETURNING_KEYS)),
}

Key = tuple[int, str]  # (token, idempotency key)


class _Template(NamedTuple):
    name: str
    text_en: str
    text_ru: str
    parameters: str
    essential: bool


class _Customer(NamedTuple):
    id: int
    customer_id: str | None
    phone: str | None
    language: str | None
    sms_enabled: bool


@dataclass(slots=True)
class _Stored:
    """An answer already given under a key: what was asked (its hash) and what was answered."""

    request_hash: str
    code: int
    body: dict[str, Any]


def _replay(stored: _Stored, request: NotificationRequest) -> Answer | Refusal:
    if stored.request_hash != request.fingerprint():
        return Refusal(
            "idempotency-key-reused",
            "this Idempotency-Key was used before for a different request; "
            "use a new key for a new notification",
        )
    return Answer(stored.code, stored.body, replayed=True)


def _stored_answers(conn: Connection, keys: set[Key]) -> dict[Key, _Stored]:
    if not keys:
        return {}
    rows = _EARLIER.rows(
        conn,
        {"n_tokens": sorted({token for token, _ in keys}), "n_keys": sorted({key for _, key in keys})},
    )
    return {
        (token, key): _Stored(request_hash, code, json.loads(response))
        for token, key, request_hash, code, response in rows
        if (token, key) in keys
    }


@dataclass(slots=True)
class _New:
    """A notification decided in this transaction, waiting for its rows to be written."""

    index: int
    request: NotificationRequest
    fingerprint: str
    now: dt.datetime
    customer: int | None
    body: dict[str, Any]  # the answer; its message_id is filled in when the SMS is queued
    outbox_row: dict[str, Any] | None

    @property
    def key(self) -> Key:
        return (self.request.token, self.request.idempotency_key)

    @property
    def code(self) -> int:
        return 202 if self.body["message_id"] is not None else 200


def queue_notifications(
    conn: Connection,
    items: list[tuple[NotificationRequest, dt.datetime]],
    *,
    settings: Settings,
    worker: str | None = None,
) -> list[Answer | Refusal]:
    """Queue (or suppress) each notification, in order, in one transaction; see the module
    documentation. Every look-up is one statement for the whole batch and the rows are written
    with one statement per table, so a batch of a hundred costs little more than one.

    With a ``worker``, the SMS are written already claimed for it and each new answer carries
    its SMS (`Answer.claimed`), for that worker's dispatcher to send without claiming it."""
    requests = [request for request, _ in items]
    stored = _stored_answers(conn, {(r.token, r.idempotency_key) for r in requests})
    names = sorted({r.template for r in requests if r.template is not None})
    template_rows = (
        {row.name: row for row in map(_Template._make, _TEMPLATES.rows(conn, {"t_names": names}))}
        if names
        else {}
    )
    by_id = sorted({r.customer_id for r in requests if r.customer_id is not None})
    by_phone = sorted({r.phone for r in requests if r.customer_id is None and r.phone is not None})
    customers_by_id = (
        {row.customer_id: row for row in map(_Customer._make, _CUSTOMERS_BY_ID.rows(conn, {"c_refs": by_id}))}
        if by_id
        else {}
    )
    customers_by_phone = (
        {row.phone: row for row in map(_Customer._make, _CUSTOMERS_BY_PHONE.rows(conn, {"c_refs": by_phone}))}
        if by_phone
        else {}
    )

    outcomes: list[Answer | Refusal | None] = [None] * len(items)
    fresh: dict[Key, _New] = {}
    repeats: list[tuple[int, Key]] = []  # a key used again later in this same batch
    for index, (request, now) in enumerate(items):
        key = (request.token, request.idempotency_key)
        if key in stored:
            outcomes[index] = _replay(stored[key], request)
            continue
        if key in fresh:
            repeats.append((index, key))
            continue
        template_row = template_rows.get(request.template) if request.template is not None else None
        if request.customer_id is not None:
            customer = customers_by_id.get(request.customer_id)
        else:
            customer = customers_by_phone.get(request.phone)
        decided = _decide(index, request, now, template_row, customer, settings, worker)
        if isinstance(decided, Refusal):
            outcomes[index] = decided
        else:
            fresh[key] = decided

    _write(conn, list(fresh.values()), outcomes)
    for index, key in repeats:
        first = fresh[key]
        outcome = outcomes[first.index]
        if isinstance(outcome, Answer):
            outcomes[index] = _replay(_Stored(first.fingerprint, outcome.code, outcome.body), items[index][0])
        else:  # the first lost a race to another transaction: answer what that one stored
            outcomes[index] = outcome
    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]


def _decide(
    index: int,
    request: NotificationRequest,
    now: dt.datetime,
    template_row: Any,
    customer: Any,
    settings: Settings,
    worker: str | None,
) -> _New | Refusal:
    essential = False
    if request.template is not None:
        if template_row is None:
            return Refusal("unknown-template", f"there is no template named {request.template!r}")
        problems = check_values(template_row.parameters.split(), request.parameters)
        if problems:
            return Refusal("invalid-parameters", problems[0].message, problems)
        essential = bool(template_row.essential)

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
    row: dict[str, Any] | None = None
    if reason is None:
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
            status="sending" if worker else "queued",
            claimed_by=worker,
            claimed_until=now + dt.timedelta(seconds=CLAIM_SECONDS) if worker else None,
        )
        if row["segments"] > MAX_SEGMENTS:
            return Refusal(
                "text-too-long",
                f"the text takes {row['segments']} SMS segments; at most {MAX_SEGMENTS} are allowed",
            )
        body.update(status="queued", language=language, encoding=row["encoding"], segments=row["segments"])
    else:
        body.update(reason=reason, detail=SUPPRESSION_REASONS[reason])
    return _New(
        index, request, request.fingerprint(), now, customer.id if customer else None, body, row
    )


def _write(conn: Connection, decided: list[_New], outcomes: list[Answer | Refusal | None]) -> None:
    """Write the outbox rows, then the notifications that answer with their ids. A key another
    transaction stored meanwhile (PostgreSQL waits for it on the unique constraint) loses: its
    outbox row goes and the other transaction's answer stands."""
    if not decided:
        return
    sending = [(new, new.outbox_row) for new in decided if new.outbox_row is not None]
    if sending:
        ids = [message_id for (message_id,) in _OUTBOX_INSERT.each(conn, [row for _, row in sending])]
        for (new, _), message_id in zip(sending, ids, strict=True):
            new.body["message_id"] = int(message_id)
    rows = []
    for new in decided:
        message_id = new.body["message_id"]
        callback = new.request.status_callback if message_id is not None else None
        rows.append(
            {
                "token": new.request.token,
                "idempotency_key": new.request.idempotency_key,
                "request_hash": new.fingerprint,
                "customer": new.customer,
                "template": new.request.template,
                "message": message_id,
                "status": new.body["status"],
                "reason": new.body["reason"],
                "response_code": new.code,
                "response": json.dumps(new.body, ensure_ascii=False),
                "status_callback": callback,
                "callback_state": "pending" if callback else None,
                "callback_next_at": new.now if callback else None,
                "created_at": new.now,
            }
        )
    inserted = {(token, key) for token, key in _NOTIFICATION_INSERT[conn.dialect.name].each(conn, rows)}
    lost: list[_New] = []
    for new in decided:
        if new.key in inserted:
            claimed = None
            if new.outbox_row is not None and new.outbox_row["claimed_by"] is not None:
                claimed = OutboxItem.from_row({**new.outbox_row, "id": new.body["message_id"]})
            outcomes[new.index] = Answer(new.code, new.body, claimed=claimed)
        else:
            lost.append(new)
    if not lost:
        return
    made = [new.body["message_id"] for new in lost if new.body["message_id"] is not None]
    if made:
        conn.execute(_OUTBOX_DELETE, {"o_ids": made})
    winners = _stored_answers(conn, {new.key for new in lost})
    for new in lost:
        outcomes[new.index] = _replay(winners[new.key], new.request)
