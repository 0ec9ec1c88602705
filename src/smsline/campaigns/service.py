"""Campaigns: creation (checked, audience expanded in the database), state changes with their
events, withdrawal of queued SMS, opt-out at send time, and progress.

Every function that takes a ``Connection`` runs inside the caller's transaction. The async ones
take a ``Run`` (``Database.run`` in the service, a one-shot transaction in the CLI) and split
long work — expanding a million-customer audience, cancelling its pending recipients — into
many short transactions, so SQLite's single writer is never held for long.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Literal, TypeVar

from sqlalchemy import and_, delete, exists, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping

from smsline.campaigns.texts import SAMPLE, CompiledText, check_text, sample_rendering
from smsline.db.schema import (
    campaign_events,
    campaign_recipients,
    campaigns,
    customer_tags,
    customers,
    outbox,
)
from smsline.domain.msisdn import InvalidMsisdn, normalise_msisdn
from smsline.domain.quiet_hours import Window, is_known_zone
from smsline.domain.templates import Problem, Rendering, measure
from smsline.line.outbox import Kind, Priority, outbox_row

T = TypeVar("T")
Run = Callable[[Callable[[Connection], T]], Awaitable[T]]

STATES: Final = ("draft", "scheduled", "running", "paused", "completed", "cancelled")
ACTIVE_STATES: Final = ("scheduled", "running", "paused")
FINAL_STATES: Final = ("completed", "cancelled")
# action -> (states it may be taken from, what the campaign becomes)
TRANSITIONS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "start": (("draft",), "running"),  # "scheduled" when the start time is ahead
    "run": (("scheduled",), "running"),  # the start time came
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "cancel": (("draft", "scheduled", "running", "paused"), "cancelled"),
    "complete": (("running",), "completed"),
}
EXPAND_STEP: Final = 20_000  # customer ids per expansion transaction
LIST_CHUNK: Final = 500  # listed ids or phones resolved per transaction
SWEEP_BATCH: Final = 20_000  # pending recipients cancelled per transaction
MAX_LIST: Final = 1_000_000
MAX_UNKNOWN_REPORTED: Final = 1000
SENT: Final = ("submitted", "delivered", "undeliverable", "expired")
FAILED: Final = ("undeliverable", "expired", "rejected", "failed")
RATE_WINDOW: Final = 30.0  # seconds of submits the current rate is measured over
OPTED_OUT: Final = "opted_out"


class CampaignError(Exception):
    pass


class InvalidCampaign(CampaignError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


class CampaignNotFound(CampaignError):
    pass


class StateConflict(CampaignError):
    """The action is not allowed in the campaign's current state."""

    def __init__(self, campaign: int, action: str, state: str) -> None:
        self.campaign, self.action, self.state = campaign, action, state
        allowed = ", ".join(TRANSITIONS[action][0])
        super().__init__(f"cannot {action} campaign {campaign}: it is {state} (allowed from: {allowed})")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- audience --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Audience:
    """Who gets a campaign: all customers with SMS on, a filter, or a list of ids and phones."""

    kind: Literal["all", "filter", "list"]
    tags: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    timezones: tuple[str, ...] = ()
    customer_ids: Sequence[str] = ()
    phones: Sequence[str] = ()

    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        if self.kind == "filter" and not (self.tags or self.languages or self.timezones):
            problems.append(Problem("audience", "a filter needs at least one of tags, languages, timezones"))
        if self.kind == "list":
            if not self.customer_ids and not self.phones:
                problems.append(Problem("audience", "a list needs customer_ids or phones"))
            if len(self.customer_ids) + len(self.phones) > MAX_LIST:
                problems.append(Problem("audience", f"a list has at most {MAX_LIST} entries"))
        for index, language in enumerate(self.languages):
            if language not in ("en", "ru"):
                problems.append(Problem(f"audience.languages.{index}", f"{language!r} is not en or ru"))
        for index, zone in enumerate(self.timezones):
            if not is_known_zone(zone):
                problems.append(Problem(f"audience.timezones.{index}", f"{zone!r} is not an IANA time zone"))
        return problems

    def describe(self) -> dict[str, Any]:
        """What is stored of the audience (a list by its size, not its entries)."""
        if self.kind == "all":
            return {"type": "all"}
        if self.kind == "filter":
            return {
                "type": "filter",
                "tags": list(self.tags),
                "languages": list(self.languages),
                "timezones": list(self.timezones),
            }
        return {"type": "list", "customer_ids": len(self.customer_ids), "phones": len(self.phones)}


@dataclass(frozen=True, slots=True)
class NewCampaign:
    name: str
    text: str
    audience: Audience
    text_ru: str | None = None
    start_at: dt.datetime | None = None
    tps: int | None = None
    window: Window = field(default_factory=Window)

    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        if not self.name.strip() or len(self.name) > 200:
            problems.append(Problem("name", "must be 1 to 200 characters"))
        problems += check_text(self.text, "text")
        if self.text_ru is not None:
            problems += check_text(self.text_ru, "text_ru", "ru")
        if self.tps is not None and not 1 <= self.tps <= 10_000:
            problems.append(Problem("tps", "must be between 1 and 10000"))
        if self.start_at is not None and self.start_at.tzinfo is None:
            problems.append(Problem("start_at", "needs a time zone (e.g. 2026-03-10T09:00:00+03:00)"))
        return problems + self.audience.check()


@dataclass(frozen=True, slots=True)
class Unknown:
    """An entry of an uploaded list that names no customer."""

    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    name: str
    text: str
    text_ru: str | None
    audience: dict[str, Any]
    start_at: dt.datetime | None
    tps: int | None
    window: Window
    state: str
    total: int | None
    total_ru: int | None
    timezones: list[str]
    created_at: dt.datetime
    created_by: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> Campaign:
        return cls(
            id=row["id"],
            name=row["name"],
            text=row["text"],
            text_ru=row["text_ru"],
            audience=json.loads(row["audience"]),
            start_at=row["start_at"],
            tps=row["tps"],
            window=Window(row["quiet_start"], row["quiet_end"]),
            state=row["state"],
            total=row["total"],
            total_ru=row["total_ru"],
            timezones=json.loads(row["timezones"]) if row["timezones"] else [],
            created_at=row["created_at"],
            created_by=row["created_by"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"],
        )

    def renderings(self) -> dict[str, Rendering]:
        """The texts rendered for a sample customer: what an SMS of each language costs."""
        found = {"en": sample_rendering(self.text, "en")}
        if self.text_ru:
            found["ru"] = sample_rendering(self.text_ru, "ru")
        return found

    def estimated_segments(self) -> int | None:
        """Recipients × segments of their language's sample rendering: the cost before start."""
        if self.total is None:
            return None
        renderings = self.renderings()
        ru = (self.total_ru or 0) if "ru" in renderings else 0
        ru_segments = renderings.get("ru", renderings["en"]).segments
        return (self.total - ru) * renderings["en"].segments + ru * ru_segments


@dataclass(frozen=True, slots=True)
class Event:
    at: dt.datetime
    actor: str
    action: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class Created:
    campaign: Campaign
    unknown: list[Unknown]
    unknown_count: int


# --- reading ---------------------------------------------------------------------------------


def get_campaign(conn: Connection, campaign_id: int, *, lock: bool = False) -> Campaign | None:
    query = select(campaigns).where(campaigns.c.id == campaign_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return Campaign.from_row(row) if row is not None else None


def list_campaigns(conn: Connection, *, states: Collection[str] = (), limit: int = 100) -> list[Campaign]:
    query = select(campaigns).order_by(campaigns.c.id.desc()).limit(limit)
    if states:
        query = query.where(campaigns.c.state.in_(list(states)))
    return [Campaign.from_row(row) for row in conn.execute(query).mappings()]


def campaign_history(conn: Connection, campaign_id: int) -> list[Event]:
    rows = conn.execute(
        select(campaign_events)
        .where(campaign_events.c.campaign == campaign_id)
        .order_by(campaign_events.c.at, campaign_events.c.id)
    ).mappings()
    return [Event(r["at"], r["actor"], r["action"], r["detail"]) for r in rows]


def record_event(
    conn: Connection, campaign_id: int, actor: str, action: str, detail: str | None = None, *, at: dt.datetime
) -> None:
    conn.execute(
        insert(campaign_events).values(
            campaign=campaign_id, at=at, actor=actor[:128], action=action, detail=detail and detail[:500]
        )
    )


# --- creating --------------------------------------------------------------------------------


def _insert_campaign(conn: Connection, new: NewCampaign, actor: str, now: dt.datetime) -> int:
    campaign_id = conn.execute(
        insert(campaigns)
        .values(
            name=new.name.strip(),
            text=new.text,
            text_ru=new.text_ru,
            audience=json.dumps(new.audience.describe()),
            start_at=new.start_at,
            tps=new.tps,
            quiet_start=new.window.start,
            quiet_end=new.window.end,
            state="draft",
            created_at=now,
            created_by=actor[:128],
            updated_at=now,
        )
        .returning(campaigns.c.id)
    ).scalar_one()
    record_event(conn, int(campaign_id), actor, "create", f"audience: {new.audience.kind}", at=now)
    return int(campaign_id)


def _insert_ignoring_duplicates(conn: Connection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(campaign_recipients).on_conflict_do_nothing(
        index_elements=[campaign_recipients.c.campaign, campaign_recipients.c.customer]
    )


def _expand_range(conn: Connection, *, campaign_id: int, audience: Audience, low: int, high: int) -> int:
    """Add the customers with ids in [low, high) that match the audience, in one statement."""
    where = [customers.c.id >= low, customers.c.id < high, customers.c.sms_enabled.is_(True)]
    if audience.languages:
        where.append(customers.c.language.in_(audience.languages))
    if audience.timezones:
        where.append(customers.c.timezone.in_(audience.timezones))
    if audience.tags:
        where.append(
            exists().where(customer_tags.c.customer == customers.c.id, customer_tags.c.tag.in_(audience.tags))
        )
    chosen = select(
        literal(campaign_id), customers.c.id, customers.c.timezone, literal("pending")
    ).where(*where)
    statement = _insert_ignoring_duplicates(conn).from_select(
        ["campaign", "customer", "timezone", "status"], chosen
    )
    return int(conn.execute(statement).rowcount)


def _add_listed(
    conn: Connection, *, campaign_id: int, customer_ids: Sequence[str], phones: Sequence[str], region: str
) -> list[Unknown]:
    """Add the listed customers (by id, by phone); return the entries that name nobody."""
    unknown: list[Unknown] = []
    found: list[tuple[int, str]] = []
    if customer_ids:
        by_id = {
            row.customer_id: (row.id, row.timezone)
            for row in conn.execute(
                select(customers.c.id, customers.c.customer_id, customers.c.timezone).where(
                    customers.c.customer_id.in_(list(set(customer_ids)))
                )
            )
        }
        for value in customer_ids:
            if value in by_id:
                found.append(by_id[value])
            else:
                unknown.append(Unknown(value, "no customer has this id"))
    if phones:
        normalised: dict[str, str] = {}
        for value in phones:
            try:
                normalised[value] = normalise_msisdn(value, region)
            except InvalidMsisdn:
                unknown.append(Unknown(value, "not a phone number"))
        by_phone = {
            row.phone: (row.id, row.timezone)
            for row in conn.execute(
                select(customers.c.id, customers.c.phone, customers.c.timezone).where(
                    customers.c.phone.in_(list(set(normalised.values())))
                )
            )
        }
        for value, phone in normalised.items():
            if phone in by_phone:
                found.append(by_phone[phone])
            else:
                unknown.append(Unknown(value, "no customer has this phone"))
    if found:
        rows = [
            {"campaign": campaign_id, "customer": customer, "timezone": zone, "status": "pending"}
            for customer, zone in dict(found).items()
        ]
        conn.execute(_insert_ignoring_duplicates(conn), rows)
    return unknown


def _id_bounds(conn: Connection) -> tuple[int | None, int | None]:
    low, high = conn.execute(select(func.min(customers.c.id), func.max(customers.c.id))).one()
    return low, high


def _finish_expansion(conn: Connection, campaign_id: int, actor: str, unknown: int, now: dt.datetime) -> None:
    r = campaign_recipients
    total = conn.execute(select(func.count()).select_from(r).where(r.c.campaign == campaign_id)).scalar_one()
    total_ru = conn.execute(
        select(func.count())
        .select_from(r.join(customers, customers.c.id == r.c.customer))
        .where(r.c.campaign == campaign_id, customers.c.language == "ru")
    ).scalar_one()
    zones = sorted(
        conn.execute(select(r.c.timezone).where(r.c.campaign == campaign_id).distinct()).scalars()
    )
    conn.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id)
        .values(total=total, total_ru=total_ru, timezones=json.dumps(zones), updated_at=now)
    )
    detail = f"{total} recipients" + (f", {unknown} listed entries unknown" if unknown else "")
    record_event(conn, campaign_id, actor, "audience", detail, at=now)


async def create_campaign(
    run: Run[Any], new: NewCampaign, *, actor: str, region: str = "RU"
) -> Created:
    """Check and store a campaign (a draft) and expand its audience; raises InvalidCampaign."""
    problems = new.check()
    if problems:
        raise InvalidCampaign(problems)
    campaign_id: int = await run(lambda conn: _insert_campaign(conn, new, actor, utcnow()))
    audience = new.audience
    unknown: list[Unknown] = []
    unknown_count = 0
    if audience.kind == "list":
        for start in range(0, max(len(audience.customer_ids), len(audience.phones)), LIST_CHUNK):
            ids = audience.customer_ids[start : start + LIST_CHUNK]
            phones = audience.phones[start : start + LIST_CHUNK]
            add = partial(
                _add_listed, campaign_id=campaign_id, customer_ids=ids, phones=phones, region=region
            )
            missing: list[Unknown] = await run(add)
            unknown_count += len(missing)
            unknown.extend(missing[: MAX_UNKNOWN_REPORTED - len(unknown)])
    else:
        low, high = await run(_id_bounds)
        if low is not None:
            for start in range(int(low), int(high) + 1, EXPAND_STEP):
                await run(
                    partial(
                        _expand_range,
                        campaign_id=campaign_id,
                        audience=audience,
                        low=start,
                        high=start + EXPAND_STEP,
                    )
                )
    await run(lambda conn: _finish_expansion(conn, campaign_id, actor, unknown_count, utcnow()))
    campaign = await run(lambda conn: get_campaign(conn, campaign_id))
    assert campaign is not None
    return Created(campaign, unknown, unknown_count)


# --- state changes ---------------------------------------------------------------------------


def withdraw(conn: Connection, campaign_id: int, *, to: str, reason: str | None = None) -> int:
    """Take the campaign's SMS still waiting in the outbox (``queued``: not claimed by a
    dispatcher) out of it; their recipients become ``to`` (pending again, or cancelled)."""
    taken = list(
        conn.execute(
            delete(outbox)
            .where(outbox.c.campaign == campaign_id, outbox.c.status == "queued")
            .returning(outbox.c.customer)
        ).scalars()
    )
    r = campaign_recipients
    for start in range(0, len(taken), 500):
        conn.execute(
            update(r)
            .where(
                r.c.campaign == campaign_id,
                r.c.customer.in_(taken[start : start + 500]),
                r.c.status == "queued",
            )
            .values(status=to, reason=reason)
        )
    return len(taken)


def change_state(
    conn: Connection,
    campaign_id: int,
    action: str,
    *,
    actor: str,
    now: dt.datetime,
    clock_now: dt.datetime | None = None,
    detail: str | None = None,
) -> Campaign:
    """Take ``action`` (start, pause, resume, cancel; run and complete by the runner); raises
    CampaignNotFound or StateConflict. Pause and cancel withdraw the SMS still queued."""
    campaign = get_campaign(conn, campaign_id, lock=True)
    if campaign is None:
        raise CampaignNotFound(f"there is no campaign {campaign_id}")
    allowed, target = TRANSITIONS[action]
    if campaign.state not in allowed:
        raise StateConflict(campaign_id, action, campaign.state)
    if action == "start" and campaign.total is None:
        raise StateConflict(campaign_id, action, "still expanding its audience")
    values: dict[str, Any] = {"updated_at": now}
    if action == "start" and campaign.start_at is not None and campaign.start_at > (clock_now or now):
        target = "scheduled"
    if target == "running" and campaign.started_at is None:
        values["started_at"] = now
    if target in FINAL_STATES:
        values["finished_at"] = now
    changed = conn.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id, campaigns.c.state == campaign.state)
        .values(state=target, **values)
    )
    if changed.rowcount != 1:  # changed by another process since it was read (SQLite: never)
        raise StateConflict(campaign_id, action, "being changed by another operator")
    if action == "pause":
        withdraw(conn, campaign_id, to="pending")
    elif action == "cancel":
        withdrawn = withdraw(conn, campaign_id, to="cancelled")
        detail = detail or (f"{withdrawn} queued SMS withdrawn" if withdrawn else None)
    record_event(conn, campaign_id, actor, action, detail, at=now)
    found = get_campaign(conn, campaign_id)
    assert found is not None
    return found


def cancel_pending(conn: Connection, campaign_id: int, limit: int = SWEEP_BATCH) -> int:
    """Mark up to ``limit`` pending recipients of a cancelled campaign cancelled."""
    r = campaign_recipients
    batch = (
        select(r.c.id)
        .where(r.c.campaign == campaign_id, r.c.status == "pending")
        .limit(limit)
        .scalar_subquery()
    )
    return int(conn.execute(update(r).where(r.c.id.in_(batch)).values(status="cancelled")).rowcount)


async def act(
    run: Run[Any], campaign_id: int, action: str, *, actor: str, clock_now: dt.datetime | None = None
) -> Campaign:
    """A state change in its own transaction; a cancel then marks the pending recipients
    cancelled in batches."""
    campaign: Campaign = await run(
        lambda conn: change_state(conn, campaign_id, action, actor=actor, now=utcnow(), clock_now=clock_now)
    )
    if action == "cancel":
        while await run(lambda conn: cancel_pending(conn, campaign_id)) == SWEEP_BATCH:
            pass
    return campaign


# --- opt-out at send time --------------------------------------------------------------------


def suppress_opted_out(conn: Connection, customer_ids: Collection[int]) -> int:
    """Customers who have just turned SMS off: their pending recipients are suppressed and the
    campaign SMS still queued for them withdrawn. Call in the transaction that turns SMS off."""
    ids = list(set(customer_ids))
    if not ids:
        return 0
    r = campaign_recipients
    count = int(
        conn.execute(
            update(r)
            .where(r.c.customer.in_(ids), r.c.status == "pending")
            .values(status="suppressed", reason=OPTED_OUT)
        ).rowcount
    )
    queued = conn.execute(
        select(r.c.campaign, r.c.customer).where(r.c.customer.in_(ids), r.c.status == "queued")
    )
    for campaign_id, customer in list(queued):
        taken = conn.execute(
            delete(outbox)
            .where(
                outbox.c.campaign == campaign_id, outbox.c.customer == customer, outbox.c.status == "queued"
            )
            .returning(outbox.c.id)
        ).first()
        if taken is not None:
            conn.execute(
                update(r)
                .where(r.c.campaign == campaign_id, r.c.customer == customer)
                .values(status="suppressed", reason=OPTED_OUT)
            )
            count += 1
    return count


# --- progress --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    state: str
    total: int
    pending: int  # not yet handed to the outbox (waiting for their turn or their quiet hours)
    queued: int  # in the outbox, not yet submitted
    sent: int  # accepted by the SMSC
    delivered: int
    failed: int
    suppressed: int
    cancelled: int
    remaining: int
    rate: float  # SMS submitted per second, lately
    eta_seconds: float | None

    @property
    def done(self) -> int:
        return self.total - self.remaining


def progress(conn: Connection, campaign: Campaign | None, now: dt.datetime | None = None) -> Progress:
    assert campaign is not None
    now = now or utcnow()
    r = campaign_recipients
    by_recipient: dict[str, int] = {
        status: int(n)
        for status, n in conn.execute(
            select(r.c.status, func.count()).where(r.c.campaign == campaign.id).group_by(r.c.status)
        )
    }
    by_message: dict[str, int] = {
        status: int(n)
        for status, n in conn.execute(
            select(outbox.c.status, func.count())
            .where(outbox.c.campaign == campaign.id)
            .group_by(outbox.c.status)
        )
    }
    since = now - dt.timedelta(seconds=RATE_WINDOW)
    recent = int(
        conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(
                outbox.c.campaign == campaign.id, outbox.c.status.in_(SENT), outbox.c.submitted_at >= since
            )
        ).scalar_one()
    )
    span = RATE_WINDOW
    if campaign.started_at is not None:
        span = max(1.0, min(RATE_WINDOW, (now - campaign.started_at).total_seconds()))
    rate = recent / span
    pending = by_recipient.get("pending", 0)
    cancelled = by_recipient.get("cancelled", 0)
    if campaign.state == "cancelled":  # the sweep may not have reached them yet
        cancelled, pending = cancelled + pending, 0
    queued = by_message.get("queued", 0) + by_message.get("sending", 0)
    remaining = pending + queued
    eta = remaining / rate if rate > 0 and remaining else (0.0 if not remaining else None)
    return Progress(
        state=campaign.state,
        total=campaign.total or 0,
        pending=pending,
        queued=queued,
        sent=sum(by_message.get(s, 0) for s in SENT),
        delivered=by_message.get("delivered", 0),
        failed=sum(by_message.get(s, 0) for s in FAILED),
        suppressed=by_recipient.get("suppressed", 0),
        cancelled=cancelled,
        remaining=remaining,
        rate=rate,
        eta_seconds=eta,
    )


def recipient_statuses(conn: Connection, campaign_id: int) -> dict[str, int]:
    r = campaign_recipients
    return {
        status: int(n)
        for status, n in conn.execute(
            select(r.c.status, func.count()).where(r.c.campaign == campaign_id).group_by(r.c.status)
        )
    }


def in_outbox(conn: Connection, campaign_id: int) -> int:
    """The campaign's SMS waiting in the outbox (queued, or claimed and not yet submitted)."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.campaign == campaign_id, outbox.c.status.in_(("queued", "sending")))
        ).scalar_one()
    )


def has_pending(conn: Connection, campaign_id: int) -> bool:
    r = campaign_recipients
    return (
        conn.execute(
            select(r.c.id).where(and_(r.c.campaign == campaign_id, r.c.status == "pending")).limit(1)
        ).first()
        is not None
    )


# --- test send -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleSent:
    status: Literal["queued", "suppressed"]
    phone: str
    text: str
    rendering: Rendering
    message_id: int | None = None
    reason: str | None = None


def send_sample(
    conn: Connection,
    campaign_id: int,
    phone: str,
    *,
    sender: str,
    actor: str,
    language: str | None = None,
) -> SampleSent:
    """Queue the campaign's text to one phone (an E.164 number), rendered with that customer's
    fields when the phone is a customer's, else with sample values. Not part of the campaign's
    progress; a customer who opted out gets nothing."""
    campaign = get_campaign(conn, campaign_id)
    if campaign is None:
        raise CampaignNotFound(f"there is no campaign {campaign_id}")
    customer = conn.execute(
        select(
            customers.c.id, customers.c.customer_id, customers.c.name, customers.c.language,
            customers.c.sms_enabled,
        ).where(customers.c.phone == phone)
    ).first()
    chosen = language or (customer.language if customer is not None else "en")
    if customer is not None:
        values = {"name": customer.name or "", "customer_id": customer.customer_id, "phone": phone}
    else:
        values = {**SAMPLE["ru" if chosen == "ru" else "en"], "phone": phone}
    text = CompiledText.of(campaign.text, campaign.text_ru).render(chosen, values)
    now = utcnow()
    if customer is not None and not customer.sms_enabled:
        return SampleSent("suppressed", phone, text, measure(text), reason="the customer opted out of SMS")
    row = outbox_row(
        kind=Kind.CAMPAIGN_TEST,
        priority=Priority.NOTIFICATION,
        sender=sender,
        destination=phone,
        text=text,
        language=chosen,
        now=now,
        customer=customer.id if customer is not None else None,
    )
    message_id = conn.execute(insert(outbox).values(row).returning(outbox.c.id)).scalar_one()
    record_event(conn, campaign_id, actor, "test", f"to {phone} (message {message_id})", at=now)
    return SampleSent("queued", phone, text, measure(text), message_id=int(message_id))
