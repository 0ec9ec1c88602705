"""The running service against a misbehaving SMSC: every message still reaches its handset, once.

None of these faults leaves a message with an unknown outcome (the SMSC either answered a
submit_sm or never read it), so no message may arrive twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.db.schema import outbox
from smsline.line.direct import send_text
from smsline.serve import Service, running
from smsline.smpp import pdus
from smsline.smpp.simulator import Simulator
from tests.line.conftest import eventually, service_settings


@pytest.fixture
async def service(database_url: str, simulator: Simulator) -> AsyncIterator[Service]:
    """The service, quick to give up on an SMSC that does not answer."""
    settings = service_settings(database_url, simulator.port)
    settings.smsc[0] = settings.smsc[0].model_copy(update={"response_timeout": 0.5})
    async with running(settings, http=False) as svc:
        await svc.wait_bound(10)
        yield svc


async def statuses(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as conn:
        return Counter((await conn.execute(select(outbox.c.status))).scalars().all())


def throttled(simulator: Simulator, service: Service) -> bool:
    return any(refusal.status == pdus.ESME_RTHROTTLED for refusal in simulator.refused)


def receipts_answered(simulator: Simulator, service: Service) -> bool:
    receipts = [d for d in simulator.deliveries if d.kind == "receipt"]
    return len(receipts) == 10 and all(d.outcome == "ok" for d in receipts)


def relinked(simulator: Simulator, service: Service) -> bool:
    return service.connectors[0].binds > 1


def some_receipts_late(simulator: Simulator, service: Service) -> bool:
    """Some receipt came at least 0.3 s after the first submit_sm."""
    start = simulator.submits[0].received_at
    waited = [d.at - start for d in simulator.deliveries if d.kind == "receipt"]
    return max(waited) >= 0.3


@pytest.mark.parametrize(
    ("faults", "count", "exercised"),
    [
        ({"throttle_tps": 40, "response_delay": 0.01}, 60, throttled),
        ({"receipt_before_response": True, "message_id_format": "dec"}, 10, receipts_answered),
        ({"drop_link_every": 7}, 30, relinked),
        ({"late_receipt_fraction": 0.5, "late_receipt_delay": 0.3, "seed": 5}, 20, some_receipts_late),
    ],
    ids=["throttled", "receipt-before-response", "link-dropped", "late-receipts"],
)
async def test_every_message_is_delivered_exactly_once(
    service: Service,
    simulator: Simulator,
    faults: dict[str, Any],
    count: int,
    exercised: Callable[[Simulator, Service], bool],
) -> None:
    engine = service.engine
    assert engine is not None
    simulator.set_faults(**faults)
    texts = [f"Notification number {i}" for i in range(count)]
    for text in texts:
        await send_text(engine, service.settings, "+79161234567", text)
    service.dispatcher.wake()

    async def all_delivered() -> bool:
        return (await statuses(engine)) == Counter({"delivered": count})

    await eventually(all_delivered, timeout=20)
    assert Counter(sms.text for sms in simulator.messages) == Counter(texts)
    assert exercised(simulator, service)


async def test_a_hung_smsc_is_left_and_the_messages_go_once_it_answers_again(
    service: Service, simulator: Simulator
) -> None:
    engine = service.engine
    assert engine is not None
    simulator.set_faults(hung=True)
    texts = [f"Notification number {i}" for i in range(10)]
    for text in texts:
        await send_text(engine, service.settings, "+79161234567", text)
    service.dispatcher.wake()
    [connector] = service.connectors

    async def link_given_up() -> bool:
        return connector.state != "bound"

    await eventually(link_given_up, timeout=10)
    simulator.clear_faults()

    async def all_delivered() -> bool:
        return (await statuses(engine)) == Counter({"delivered": 10})

    await eventually(all_delivered, timeout=20)
    # What the hung SMSC never read, it never took: each message reached the handset once.
    assert Counter(sms.text for sms in simulator.messages) == Counter(texts)
    assert connector.binds >= 2
