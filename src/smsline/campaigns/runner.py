"""The campaign runner: `smsline serve` runs one. It watches the campaigns table (every
``POLL_EVERY`` seconds, or at once when woken by the API of its own process) and, for each running
campaign, feeds the outbox in small transactions:

- pending recipients whose local time is inside the quiet-hours window (judged in Python for the
  campaign's few distinct time zones, then ``timezone IN (…)`` in SQL), oldest first;
- each one checked again: a customer who has turned SMS off since is ``suppressed``, never sent;
- the texts rendered for that batch only, the outbox rows inserted (kind ``campaign``, priority
  9) and the recipients marked ``queued`` in the same transaction, so a crash loses nobody.

It keeps about one second of traffic queued ahead per campaign (``tps`` rows, or
``AHEAD_UNCAPPED`` without a cap) and feeds at most ``tps`` per second, so a pause takes effect
within a second and memory does not grow with the audience. Paused and cancelled campaigns are
reported to the dispatcher, which hands back what it holds of them; the runner withdraws those
rows. A scheduled campaign starts when its start time comes; a running one with no recipient
pending and nothing left in the outbox is completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from smsline.campaigns.service import (
    Campaign,
    StateConflict,
    cancel_pending,
    change_state,
    has_pending,
    in_outbox,
    utcnow,
    withdraw,
)
from smsline.campaigns.texts import CompiledText
from smsline.config import Settings
from smsline.db.bulk import Bulk
from smsline.db.engine import Database
from smsline.db.schema import campaign_recipients, campaigns, customers, outbox
from smsline.domain.quiet_hours import is_open
from smsline.line.outbox import Kind, Priority, outbox_row

log = logging.getLogger("smsline.campaigns")

POLL_EVERY = 0.5  # seconds between looks at the campaigns table
FEED_EVERY = 0.1  # seconds between feeds while a campaign runs
AHEAD_UNCAPPED = 2000  # rows queued ahead for a campaign without a TPS cap
BATCH = 1000  # recipients per feeding transaction
CANCELLED_WATCH = dt.timedelta(minutes=10)  # how long a cancelled campaign's leftovers are swept
ACTOR = "smsline"

Clock = Callable[[], dt.datetime]


@dataclass(slots=True)
class _Budget:
    """Feeding allowance of a capped campaign: a token bucket of ``tps`` per second."""

    tokens: float
    at: float


@dataclass(frozen=True, slots=True)
class Fed:
    queued: int
    suppressed: int
    fetched: int


class CampaignRunner:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        halt: Callable[[frozenset[int]], None] = lambda _ids: None,
        on_queued: Callable[[], None] = lambda: None,
        clock: Clock = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.halt = halt
        self.on_queued = on_queued
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        self._halted: frozenset[int] = frozenset()
        self._budgets: dict[int, _Budget] = {}
        self._texts: dict[int, CompiledText] = {}
        self.steps = 0  # looks taken so far (tests wait on it instead of sleeping)

    def wake(self) -> None:
        """Look at the campaigns now (a state changed, the test clock moved)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        delay = 0.0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            if self._stopping:
                return
            try:
                delay = await self.step()
            except Exception:
                log.exception("running campaigns failed; will try again")
                delay = POLL_EVERY
            self.steps += 1

    # -- one look at every campaign ---------------------------------------------------------------

    async def step(self) -> float:
        """Do what each active campaign needs now; returns how soon to look again: at once when a
        campaign filled a whole batch and has room for more, soon while one is feeding, else at
        the next poll."""
        real_now = utcnow()
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(campaigns).where(
                        or_(
                            campaigns.c.state.in_(("scheduled", "running", "paused")),
                            (campaigns.c.state == "cancelled")
                            & (campaigns.c.finished_at >= real_now - CANCELLED_WATCH),
                        )
                    )
                )
            ).mappings().all()
        active = [Campaign.from_row(row) for row in rows]
        now = self.clock()  # read after the campaigns: a clock moved before a change is seen with it
        halted = frozenset(c.id for c in active if c.state in ("paused", "cancelled"))
        if halted != self._halted:
            self._halted = halted
            self.halt(halted)
        for gone in set(self._budgets) - {c.id for c in active if c.state == "running"}:
            del self._budgets[gone]
            self._texts.pop(gone, None)
        delay = POLL_EVERY
        for campaign in active:
            if campaign.state == "scheduled" and campaign.start_at is not None and campaign.start_at <= now:
                await self._change(campaign.id, "run", "its start time came")
                delay = 0.0
            elif campaign.state in ("paused", "cancelled"):
                await self._clear_halted(campaign)
            elif campaign.state == "running":
                delay = min(delay, await self._feed(campaign, now))
        return delay

    async def _change(self, campaign_id: int, action: str, detail: str) -> None:
        try:
            await self.db.run(
                lambda conn: change_state(conn, campaign_id, action, actor=ACTOR, now=utcnow(), detail=detail)
            )
        except StateConflict as exc:  # another process changed it first
            log.info("%s", exc)
        else:
            log.info("campaign %d: %s (%s)", campaign_id, action, detail)

    async def _clear_halted(self, campaign: Campaign) -> None:
        """Withdraw what the dispatcher handed back; finish the sweep of a cancelled campaign."""
        async with self.db.read() as conn:
            waiting = await conn.run_sync(lambda sync: in_outbox(sync, campaign.id))
            pending = campaign.state == "cancelled" and await conn.run_sync(
                lambda sync: has_pending(sync, campaign.id)
            )
        if waiting:
            to = "pending" if campaign.state == "paused" else "cancelled"
            await self.db.run(lambda conn: _withdraw_if(conn, campaign.id, campaign.state, to))
        if pending:
            await self.db.run(lambda conn: cancel_pending(conn, campaign.id))

    # -- feeding --------------------------------------------------------------------------------

    def _allowance(self, campaign: Campaign, ahead: int) -> int:
        if campaign.tps is None:
            return max(0, min(BATCH, AHEAD_UNCAPPED - ahead))
        mono = time.monotonic()
        budget = self._budgets.get(campaign.id)
        if budget is None:
            budget = self._budgets[campaign.id] = _Budget(tokens=1.0, at=mono)
        budget.tokens = min(float(campaign.tps), budget.tokens + (mono - budget.at) * campaign.tps)
        budget.at = mono
        return max(0, min(BATCH, int(budget.tokens), campaign.tps - ahead))

    async def _feed(self, campaign: Campaign, now: dt.datetime) -> float:
        """Feed one running campaign; how soon it wants to be fed again."""
        zones = [z for z in campaign.timezones if is_open(campaign.window, z, now)]
        async with self.db.read() as conn:
            ahead = await conn.run_sync(lambda sync: in_outbox(sync, campaign.id))
        limit = self._allowance(campaign, ahead)
        fed = Fed(0, 0, 0)
        if zones and limit > 0:
            text = self._texts.get(campaign.id)
            if text is None:
                text = self._texts[campaign.id] = CompiledText.of(campaign.text, campaign.text_ru)
            fed = await self.db.run(
                lambda conn: self.feed(conn, campaign.id, text, zones, limit, utcnow())
            )
            budget = self._budgets.get(campaign.id)
            if budget is not None:
                budget.tokens -= fed.queued
            if fed.queued:
                self.on_queued()
        if fed.fetched == 0 and ahead == 0 and limit > 0:
            async with self.db.read() as conn:
                pending = await conn.run_sync(lambda sync: has_pending(sync, campaign.id))
            if not pending:
                await self._complete(campaign.id)
                return POLL_EVERY
        if campaign.tps is None and fed.fetched == limit == BATCH:
            return 0.0  # a whole batch went and there is room ahead: the outbox drains faster than this
        busy = fed.fetched > 0 or ahead > 0 or (bool(zones) and limit == 0)
        return FEED_EVERY if busy else POLL_EVERY

    async def _complete(self, campaign_id: int) -> None:
        def complete(conn: Connection) -> bool:
            if has_pending(conn, campaign_id) or in_outbox(conn, campaign_id):
                return False
            change_state(conn, campaign_id, "complete", actor=ACTOR, now=utcnow())
            return True

        try:
            if await self.db.run(complete):
                log.info("campaign %d completed", campaign_id)
        except StateConflict as exc:
            log.info("%s", exc)

    def feed(
        self,
        conn: Connection,
        campaign_id: int,
        text: CompiledText,
        zones: list[str],
        limit: int,
        now: dt.datetime,
    ) -> Fed:
        """Hand up to ``limit`` pending recipients in open time zones to the outbox (one
        transaction): opted-out ones are suppressed, the others queued with their text."""
        state_query = select(campaigns.c.state).where(campaigns.c.id == campaign_id)
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            state_query = state_query.with_for_update()
        if conn.execute(state_query).scalar_one_or_none() != "running":
            return Fed(0, 0, 0)
        r = campaign_recipients
        rows: list[Row[Any]] = []
        for zone in zones:
            query = (
                select(
                    r.c.id,
                    r.c.customer,
                    customers.c.phone,
                    customers.c.name,
                    customers.c.customer_id,
                    customers.c.language,
                    customers.c.sms_enabled,
                )
                .select_from(r.join(customers, customers.c.id == r.c.customer))
                .where(r.c.campaign == campaign_id, r.c.status == "pending", r.c.timezone == zone)
                .order_by(r.c.id)
                .limit(limit - len(rows))
            )
            if postgres:
                query = query.with_for_update(of=r, skip_locked=True)
            rows.extend(conn.execute(query).all())
            if len(rows) >= limit:
                break
        if not rows:
            return Fed(0, 0, 0)
        suppressed = [row.id for row in rows if not row.sms_enabled]
        sending = [row for row in rows if row.sms_enabled]
        if suppressed:
            conn.execute(
                update(r).where(r.c.id.in_(suppressed)).values(status="suppressed", reason="opted_out")
            )
        if sending:
            sender = self.settings.sender
            _QUEUE.execute(
                conn,
                [
                    outbox_row(
                        kind=Kind.CAMPAIGN,
                        priority=Priority.CAMPAIGN,
                        sender=sender,
                        destination=row.phone,
                        text=text.render(
                            row.language,
                            {"name": row.name or "", "customer_id": row.customer_id, "phone": row.phone},
                        ),
                        language=row.language,
                        now=now,
                        customer=row.customer,
                        campaign=campaign_id,
                    )
                    for row in sending
                ],
            )
            conn.execute(update(r).where(r.c.id.in_([row.id for row in sending])).values(status="queued"))
        return Fed(len(sending), len(suppressed), len(rows))


_QUEUE = Bulk(insert(outbox))  # a feed's thousand rows through the driver's executemany


def _withdraw_if(conn: Connection, campaign_id: int, state: str, to: str) -> int:
    """Withdraw the campaign's queued SMS if it is still in ``state`` (it may have been resumed)."""
    current = conn.execute(
        select(campaigns.c.state).where(campaigns.c.id == campaign_id)
    ).scalar_one_or_none()
    if current != state:
        return 0
    return withdraw(conn, campaign_id, to=to)
