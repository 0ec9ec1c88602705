"""SPEC §4 end to end: campaigns run by `smsline serve`'s runner, over SMPP to the simulator, on
every database backend."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.campaigns.service import (
    Audience,
    Campaign,
    StateConflict,
    act,
    campaign_history,
    get_campaign,
    progress,
)
from smsline.db.schema import campaign_recipients, outbox
from smsline.domain.quiet_hours import Window
from smsline.domain.texts import ACK_TEXT
from smsline.serve import Service, running
from smsline.smpp.simulator import Simulator
from tests.campaigns.conftest import (
    Clock,
    add_customers,
    new_campaign,
    phone_of,
    recipients,
    state_of,
    steps_pass,
    waiting_in_outbox,
)
from tests.line.conftest import SERVICE_NUMBER, eventually, service_settings


def campaign_sms(sim: Simulator, prefix: str = "Hello ") -> Counter[str]:
    """Campaign SMS each phone received."""
    return Counter("+" + m.destination.lstrip("+") for m in sim.messages if m.text.startswith(prefix))


async def completed(engine: AsyncEngine, campaign_id: int, timeout: float = 30) -> None:
    async def done() -> bool:
        return await state_of(engine, campaign_id) == "completed"

    await eventually(done, timeout=timeout)


async def test_a_campaign_reaches_each_listed_customer_once_in_their_language(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customers(engine, 20)
    await add_customers(engine, 5, first=20, language="ru")
    await add_customers(engine, 3, first=30, sms_enabled=False)
    listed = [f"c{i}" for i in range(25)] + ["c0", "c3", "c30", "c31", "nobody"]
    phones = [phone_of(1), "8 916 000-00-02", phone_of(32), "+79990000000", "not a phone"]
    campaign = await new_campaign(
        service,
        text="Hello {name} ({customer_id})",
        text_ru="Hello по-русски, {name}",
        audience=Audience("list", customer_ids=listed, phones=phones),
    )
    assert campaign.total == 28  # 25 + 3 opted-out listed; duplicates collapsed, unknown left out
    await completed(engine, campaign.id)

    received = campaign_sms(simulator)
    assert received == Counter({phone_of(i): 1 for i in range(25)})
    texts = {m.destination.lstrip("+"): m.text for m in simulator.messages}
    assert texts[phone_of(3).lstrip("+")] == "Hello Name3 (c3)"
    assert texts[phone_of(21).lstrip("+")] == "Hello по-русски, Name21"
    assert await recipients(engine, campaign.id) == {"queued": 25, "suppressed": 3}

    async def delivered() -> bool:
        async with engine.connect() as conn:
            p = await conn.run_sync(lambda sync: progress(sync, campaign))
        return p.delivered == 25

    await eventually(delivered)
    async with engine.connect() as conn:
        p = await conn.run_sync(lambda sync: progress(sync, campaign))
        events = await conn.run_sync(lambda sync: campaign_history(sync, campaign.id))
    assert (p.total, p.sent, p.suppressed, p.remaining, p.failed) == (28, 25, 3, 0, 0)
    assert [(e.actor, e.action) for e in events] == [
        ("tester", "create"),
        ("tester", "audience"),
        ("tester", "start"),
        ("smsline", "complete"),
    ]


async def test_refused_transitions_and_a_scheduled_start(
    service: Service, simulator: Simulator, engine: AsyncEngine, clock: Clock
) -> None:
    await add_customers(engine, 3)
    draft = await new_campaign(service, start=False)
    for action in ("pause", "resume"):
        with pytest.raises(StateConflict, match=f"cannot {action} campaign {draft.id}: it is draft"):
            await act(service.db.run, draft.id, action, actor="tester")

    later = await new_campaign(service, start=True, start_at=clock.now + dt.timedelta(hours=1))
    assert later.state == "scheduled"
    await steps_pass(service)
    assert await state_of(engine, later.id) == "scheduled"
    assert not campaign_sms(simulator)

    clock.now += dt.timedelta(hours=1)
    await steps_pass(service)
    await completed(engine, later.id)
    assert campaign_sms(simulator) == Counter({phone_of(i): 1 for i in range(3)})
    with pytest.raises(StateConflict, match="it is completed"):
        await act(service.db.run, later.id, "cancel", actor="tester")
    async with engine.connect() as conn:
        events = await conn.run_sync(lambda sync: campaign_history(sync, later.id))
    assert [(e.actor, e.action) for e in events][2:] == [
        ("tester", "start"),
        ("smsline", "run"),
        ("smsline", "complete"),
    ]


async def under_way(service: Service, simulator: Simulator, engine: AsyncEngine) -> Campaign:
    """A campaign to 60 customers at 20 SMS/s, once its first 10 SMS have reached the handsets."""
    await add_customers(engine, 60)
    campaign = await new_campaign(service, tps=20)

    async def some_sent() -> bool:
        return sum(campaign_sms(simulator).values()) >= 10

    await eventually(some_sent)
    return campaign


async def test_pause_stops_sending_within_a_second_and_resume_sends_the_rest_once(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    campaign = await under_way(service, simulator, engine)
    paused_at = time.monotonic()
    await act(service.db.run, campaign.id, "pause", actor="operator")
    service.campaigns.wake()

    async def quiet() -> bool:
        return await waiting_in_outbox(engine, campaign.id) == 0

    await eventually(quiet)
    await steps_pass(service)
    sent = campaign_sms(simulator)
    assert 10 <= sum(sent.values()) < 60
    last_submit = max(m.parts[-1].received_at for m in simulator.messages if m.text.startswith("Hello "))
    assert last_submit - paused_at < 1.0
    statuses = await recipients(engine, campaign.id)
    assert statuses == {"queued": sum(sent.values()), "pending": 60 - sum(sent.values())}
    assert await state_of(engine, campaign.id) == "paused"

    await act(service.db.run, campaign.id, "resume", actor="operator")
    service.campaigns.wake()
    await completed(engine, campaign.id)
    assert campaign_sms(simulator) == Counter({phone_of(i): 1 for i in range(60)})
    async with engine.connect() as conn:
        events = await conn.run_sync(lambda sync: campaign_history(sync, campaign.id))
    assert [(e.actor, e.action) for e in events][3:] == [
        ("operator", "pause"),
        ("operator", "resume"),
        ("smsline", "complete"),
    ]


async def test_cancel_mid_run_cancels_everyone_not_yet_sent(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    campaign = await under_way(service, simulator, engine)
    await act(service.db.run, campaign.id, "cancel", actor="operator")
    service.campaigns.wake()

    async def quiet() -> bool:
        return await waiting_in_outbox(engine, campaign.id) == 0

    await eventually(quiet)
    await steps_pass(service)
    sent = sum(campaign_sms(simulator).values())
    assert await recipients(engine, campaign.id) == {"queued": sent, "cancelled": 60 - sent}
    assert max(campaign_sms(simulator).values()) == 1
    async with engine.connect() as conn:
        p = await conn.run_sync(lambda sync: progress(sync, get_campaign(sync, campaign.id)))
    assert (p.state, p.cancelled, p.remaining) == ("cancelled", 60 - sent, 0)


async def test_a_customer_who_texts_stop_mid_campaign_gets_nothing_more(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customers(engine, 40)
    campaign = await new_campaign(service, tps=10)
    stopper = phone_of(39)  # the last in line

    async def started() -> bool:
        return sum(campaign_sms(simulator).values()) >= 3

    await eventually(started)
    await simulator.inject_mo(stopper.lstrip("+"), "CLIENT sms stop", SERVICE_NUMBER.lstrip("+"))
    await simulator.wait_messages(2, destination=stopper, timeout=15)  # ack and confirmation
    await completed(engine, campaign.id)

    assert stopper not in campaign_sms(simulator)
    assert campaign_sms(simulator) == Counter({phone_of(i): 1 for i in range(39)})
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(campaign_recipients.c.status, campaign_recipients.c.reason)
                .where(campaign_recipients.c.campaign == campaign.id)
                .order_by(campaign_recipients.c.id.desc())
                .limit(1)
            )
        ).one()
    assert tuple(row) == ("suppressed", "opted_out")


async def test_quiet_hours_hold_each_recipient_until_their_own_morning(
    service: Service, simulator: Simulator, engine: AsyncEngine, clock: Clock
) -> None:
    await add_customers(engine, 3, timezone="Asia/Vladivostok")  # UTC+10
    await add_customers(engine, 3, first=10, timezone="Europe/Kaliningrad")  # UTC+2
    clock.now = dt.datetime(2026, 3, 10, 22, 30, tzinfo=dt.UTC)  # 08:30 and 00:30 there
    campaign = await new_campaign(service, window=Window(9 * 60, 22 * 60))
    await steps_pass(service)
    assert not campaign_sms(simulator)
    assert await recipients(engine, campaign.id) == {"pending": 6}

    clock.now = dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC)  # 09:00 in Vladivostok

    async def vladivostok_done() -> bool:
        return len(campaign_sms(simulator)) == 3

    await eventually(vladivostok_done)
    await steps_pass(service)
    assert set(campaign_sms(simulator)) == {phone_of(i) for i in range(3)}
    assert await state_of(engine, campaign.id) == "running"

    clock.now = dt.datetime(2026, 3, 11, 7, 0, tzinfo=dt.UTC)  # 09:00 in Kaliningrad
    service.campaigns.wake()
    await completed(engine, campaign.id)
    assert campaign_sms(simulator) == Counter({phone_of(i): 1 for i in (0, 1, 2, 10, 11, 12)})


async def test_a_restart_mid_campaign_sends_everyone_exactly_once(
    database_url: str, simulator: Simulator, engine: AsyncEngine, clock: Clock
) -> None:
    await add_customers(engine, 200)
    settings = service_settings(database_url, simulator.port)
    async with running(settings, http=False, clock=clock) as first:
        await first.wait_bound(10)
        campaign = await new_campaign(first, tps=100)

        async def some_sent() -> bool:
            return sum(campaign_sms(simulator).values()) >= 40

        await eventually(some_sent)
    assert sum(campaign_sms(simulator).values()) < 200
    assert await state_of(engine, campaign.id) == "running"

    async with running(settings, http=False, clock=clock) as second:
        await second.wait_bound(10)
        await completed(engine, campaign.id)
    assert campaign_sms(simulator) == Counter({phone_of(i): 1 for i in range(200)})


async def test_a_paused_campaign_stays_paused_across_a_restart(
    database_url: str, simulator: Simulator, engine: AsyncEngine, clock: Clock
) -> None:
    await add_customers(engine, 50)
    settings = service_settings(database_url, simulator.port)
    async with running(settings, http=False, clock=clock) as first:
        await first.wait_bound(10)
        campaign = await new_campaign(first, tps=20)

        async def some_sent() -> bool:
            return sum(campaign_sms(simulator).values()) >= 5

        await eventually(some_sent)
        await act(first.db.run, campaign.id, "pause", actor="operator")
        first.campaigns.wake()

        async def quiet() -> bool:
            return await waiting_in_outbox(engine, campaign.id) == 0

        await eventually(quiet)
    sent = sum(campaign_sms(simulator).values())
    async with running(settings, http=False, clock=clock) as second:
        await second.wait_bound(10)
        await steps_pass(second)
        assert await state_of(engine, campaign.id) == "paused"
        assert sum(campaign_sms(simulator).values()) == sent
        await act(second.db.run, campaign.id, "resume", actor="operator")
        second.campaigns.wake()
        await completed(engine, campaign.id)
    assert campaign_sms(simulator) == Counter({phone_of(i): 1 for i in range(50)})


async def test_requests_are_acknowledged_promptly_while_a_campaign_runs(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customers(engine, 3000)
    campaign = await new_campaign(service, tps=500)

    async def running_hard() -> bool:
        return sum(campaign_sms(simulator).values()) >= 300

    await eventually(running_hard, timeout=30)
    latencies = []
    for n in range(5):
        handset = f"7903111000{n}"
        sent_at = time.monotonic()
        await simulator.inject_mo(handset, "CLIENT info", SERVICE_NUMBER.lstrip("+"))
        replies = await simulator.wait_messages(1, destination=handset, timeout=15)
        assert replies[0].text == ACK_TEXT["en"]
        latencies.append(replies[0].completed_at - sent_at)
    assert await state_of(engine, campaign.id) == "running"  # the campaign was still going
    assert max(latencies) < 1.0, latencies
    async with engine.connect() as conn:
        p = await conn.run_sync(lambda sync: progress(sync, get_campaign(sync, campaign.id)))
    assert p.state == "running"
    assert 0 < p.sent < 3000
    assert p.rate > 50  # capped at 500/s
    assert p.eta_seconds is not None
    assert p.eta_seconds > 0
    async with engine.connect() as conn:
        priorities = set(
            (await conn.execute(select(outbox.c.priority).where(outbox.c.campaign == campaign.id))).scalars()
        )
    assert priorities == {9}
    await completed(engine, campaign.id, timeout=120)
    assert len(campaign_sms(simulator)) == 3000
