"""The running service against a misbehaving SMSC: every message still reaches its handset, once.

None of these faults leaves a message with an unknown outcome (the SMSC either answered a
submit_sm or never read it), so no message may arrive twice."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.config import SmscSettings
from smsline.db.schema import outbox
from smsline.line.direct import send_text
from smsline.line.outbox import Kind, Priority, outbox_row
from smsline.serve import Service, running
from smsline.smpp import pdus
from smsline.smpp.simulator import Simulator
from tests.line.conftest import eventually, service_settings


@pytest.fixture
def response_timeout() -> float:
    """How long the service waits for an answer before it takes the SMSC for hung. Generous by
    default: a slow test machine must not turn a late answer into a resend."""
    return 5.0


@pytest.fixture
async def service(database_url: str, simulator: Simulator, response_timeout: float) -> AsyncIterator[Service]:
    settings = service_settings(database_url, simulator.port)
    settings.smsc[0] = settings.smsc[0].model_copy(update={"response_timeout": response_timeout})
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


@pytest.mark.parametrize("response_timeout", [0.5])  # quick to give up on an SMSC that does not answer
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


ESME_RINVDSTADR = 0x0B  # a permanent error: invalid destination address


async def queue_texts(engine: AsyncEngine, texts: list[str], phone: str = "+79161234567") -> None:
    """Queue many texts at once, straight into the outbox (as a bulk sender would)."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        outbox_row(
            kind=Kind.DIRECT,
            priority=Priority.NOTIFICATION,
            sender="SCSERV",
            destination=phone,
            text=text,
            language="en",
            now=now,
        )
        for text in texts
    ]
    async with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            await conn.execute(insert(outbox), rows[start : start + 2000])


@pytest.mark.slow
async def test_ten_thousand_messages_through_link_drops_and_throttling_arrive_once_each(
    service: Service, simulator: Simulator
) -> None:
    engine = service.engine
    assert engine is not None
    simulator.set_faults(drop_link_every=2000, throttle_tps=1000)
    texts = [f"Bulk message {i:05d}" for i in range(10_000)]
    await queue_texts(engine, texts)
    service.dispatcher.wake()

    async def all_delivered() -> bool:
        return (await statuses(engine)) == Counter({"delivered": 10_000})

    await eventually(all_delivered, timeout=90)
    received = Counter(sms.text for sms in simulator.messages)
    assert received == Counter(texts)  # every one, none twice
    assert service.connectors[0].binds >= 5  # the link really was dropped every 2,000 submits
    # (Whether the 1,000/s limit is reached depends on the machine; the throttling itself is
    # tested above.)


async def fail_every_submit(database_url: str, simulator: Simulator, **overrides: Any) -> tuple[int, str]:
    """Send one text while the SMSC answers every submit_sm with ESME_RSYSERR (a transient error);
    wait for the message to fail and return its attempts and error."""
    settings = service_settings(database_url, simulator.port, send_retry_delay=0.05, **overrides)
    simulator.set_faults(error_fraction=1.0, error_status=pdus.ESME_RSYSERR)
    async with running(settings, http=False) as service:
        await service.wait_bound(10)
        engine = service.engine
        assert engine is not None
        await send_text(engine, settings, "+79161234567", "Your card is ready")
        service.dispatcher.wake()

        async def settled() -> bool:
            return (await statuses(engine)) == Counter({"failed": 1})

        await eventually(settled, timeout=20)
        async with engine.connect() as conn:
            row = (await conn.execute(select(outbox.c.attempts, outbox.c.error))).one()
    assert simulator.messages == []
    return int(row.attempts), str(row.error)


async def test_a_message_that_keeps_failing_gives_up_with_the_reason(
    database_url: str, simulator: Simulator
) -> None:
    attempts, error = await fail_every_submit(database_url, simulator, send_max_attempts=3)
    assert attempts == 3
    assert error.startswith("gave up after 3 attempts: ESME_RSYSERR")
    assert len(simulator.refused) == 3  # tried exactly three times, then left alone


async def test_a_message_past_its_validity_is_not_retried(database_url: str, simulator: Simulator) -> None:
    _, error = await fail_every_submit(
        database_url, simulator, send_validity_seconds=0.5, send_max_attempts=1000
    )
    assert error.startswith("gave up after its validity period passed: ESME_RSYSERR")
    assert 2 <= len(simulator.refused) < 1000


async def test_a_permanent_error_rejects_the_message_at_once_with_the_reason(
    service: Service, simulator: Simulator
) -> None:
    engine = service.engine
    assert engine is not None
    simulator.set_faults(error_fraction=1.0, error_status=ESME_RINVDSTADR)
    await send_text(engine, service.settings, "+79161234567", "Your card is ready")
    service.dispatcher.wake()

    async def rejected() -> bool:
        return (await statuses(engine)) == Counter({"rejected": 1})

    await eventually(rejected, timeout=10)
    async with engine.connect() as conn:
        error = (await conn.execute(select(outbox.c.error))).scalar_one()
    assert error.startswith("ESME_RINVDSTADR")
    assert len(simulator.refused) == 1


async def test_with_two_binds_sending_goes_on_while_one_is_down(database_url: str) -> None:
    first, second = Simulator(redelivery_delay=0.05), Simulator(redelivery_delay=0.05)
    await first.start("127.0.0.1", 0)
    await second.start("127.0.0.1", 0)
    binds = [
        SmscSettings(name=name, host="127.0.0.1", port=sim.port, reconnect_min=0.05, reconnect_max=0.2)
        for name, sim in (("one", first), ("two", second))
    ]
    settings = service_settings(database_url, first.port, smsc=binds)
    try:
        async with running(settings, http=False) as service:
            await service.wait_bound(10)
            engine = service.engine
            assert engine is not None
            await queue_texts(engine, [f"Spread {i}" for i in range(200)])
            service.dispatcher.wake()

            async def all_delivered() -> bool:
                return (await statuses(engine)) == Counter({"delivered": 200})

            await eventually(all_delivered, timeout=30)
            # The work was spread over both binds.
            assert first.messages
            assert second.messages

            # One SMSC goes away (hung: the bind is given up); the other carries everything.
            first.set_faults(hung=True)
            first.drop_links()
            await queue_texts(engine, [f"Alone {i}" for i in range(100)])
            service.dispatcher.wake()

            async def all_delivered_again() -> bool:
                return (await statuses(engine)) == Counter({"delivered": 300})

            await eventually(all_delivered_again, timeout=30)
            assert Counter(s.text for s in second.messages if s.text.startswith("Alone")) == Counter(
                f"Alone {i}" for i in range(100)
            )
    finally:
        await first.stop()
        await second.stop()
