"""Campaigns against a running smsline bound over TCP to the simulator, with a clock the test moves."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.campaigns.service import Audience, Campaign, NewCampaign, act, create_campaign, get_campaign
from smsline.db.schema import campaign_recipients, customer_tags, customers, outbox
from smsline.domain.quiet_hours import Window
from smsline.serve import Service, running
from smsline.smpp.simulator import Simulator
from tests.line.conftest import service_settings, simulator  # noqa: F401 (fixture)

# Noon in Moscow: inside the default quiet-hours window of every recipient of these tests.
NOON_MOSCOW = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)


class Clock:
    """The campaigns' clock (quiet hours, start times), moved by the test."""

    def __init__(self, now: dt.datetime = NOON_MOSCOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def service(database_url: str, simulator: Simulator, clock: Clock) -> AsyncIterator[Service]:  # noqa: F811
    settings = service_settings(database_url, simulator.port)
    async with running(settings, http=False, clock=clock) as svc:
        await svc.wait_bound(10)
        yield svc


def phone_of(i: int) -> str:
    return f"+7916{i:07d}"


async def add_customers(
    engine: AsyncEngine,
    count: int,
    *,
    first: int = 0,
    timezone: str = "Europe/Moscow",
    language: str = "en",
    sms_enabled: bool = True,
    tags: tuple[str, ...] = (),
) -> list[int]:
    """Customers c<i> with phones +7916<i>, i from ``first``; their row ids."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "customer_id": f"c{i}",
            "phone": phone_of(i),
            "personal_code": "1234",
            "login": f"login{i}",
            "name": f"Name{i}",
            "language": language,
            "timezone": timezone,
            "sms_enabled": sms_enabled,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(first, first + count)
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(customers), rows)
        ids = list(
            (
                await conn.execute(
                    select(customers.c.id)
                    .where(customers.c.customer_id.in_([r["customer_id"] for r in rows]))
                    .order_by(customers.c.id)
                )
            ).scalars()
        )
        if tags:
            await conn.execute(insert(customer_tags), [{"customer": i, "tag": t} for i in ids for t in tags])
    return ids


async def new_campaign(
    svc: Service,
    *,
    text: str = "Hello {name}",
    audience: Audience | None = None,
    start: bool = True,
    **kwargs: Any,
) -> Campaign:
    kwargs.setdefault("window", Window())
    created = await create_campaign(
        svc.db.run,
        NewCampaign(name="test", text=text, audience=audience or Audience("all"), **kwargs),
        actor="tester",
    )
    campaign = created.campaign
    if start:
        campaign = await act(svc.db.run, campaign.id, "start", actor="tester", clock_now=svc.clock())
        svc.campaigns.wake()
    return campaign


async def state_of(engine: AsyncEngine, campaign_id: int) -> str:
    async with engine.connect() as conn:
        found = await conn.run_sync(lambda sync: get_campaign(sync, campaign_id))
    assert found is not None
    return found.state


async def recipients(engine: AsyncEngine, campaign_id: int) -> dict[str, int]:
    r = campaign_recipients
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(r.c.status, func.count()).where(r.c.campaign == campaign_id).group_by(r.c.status)
        )
        return {status: int(n) for status, n in rows}


async def waiting_in_outbox(engine: AsyncEngine, campaign_id: int) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(outbox)
                    .where(outbox.c.campaign == campaign_id, outbox.c.status.in_(("queued", "sending")))
                )
            ).scalar_one()
        )


async def steps_pass(svc: Service, count: int = 2) -> None:
    """Wait until the runner has taken ``count`` more full looks (with the clock as it is now)."""
    from tests.line.conftest import eventually

    target = svc.campaigns.steps + count
    svc.campaigns.wake()

    async def done() -> bool:
        svc.campaigns.wake()
        return svc.campaigns.steps >= target

    await eventually(done, timeout=10)
