"""Secrets stay secret: the temporary password of `CLIENT info` exists only in the SMS the
handset receives; the SMSC password nowhere but in the bind."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import pytest
from prometheus_client import generate_latest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.config import SmscSettings
from smsline.db.schema import metadata
from smsline.serve import Service, running
from smsline.smpp.simulator import Simulator
from tests.line.conftest import SERVICE_NUMBER, add_customer, eventually, service_settings

PHONE = "+79161234567"


async def database_dump(engine: AsyncEngine) -> str:
    """Every value of every row of every table, as text."""
    parts: list[str] = []
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in await conn.execute(select(table)):
                parts.extend(repr(value) for value in row)
                parts.extend(
                    value.decode("latin-1") for value in row if isinstance(value, bytes | bytearray)
                )
    return "\n".join(parts)


async def test_temporary_password_is_only_in_the_sms_body(
    service: Service,
    simulator: Simulator,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await add_customer(engine, customer_id="c1", phone=PHONE)
    await simulator.inject_mo(PHONE.lstrip("+"), "CLIENT info", SERVICE_NUMBER.lstrip("+"))
    messages = await simulator.wait_messages(2, destination=PHONE, timeout=15)
    found = re.search(r"password: ([a-z0-9]{8})\.", messages[1].text)
    assert found, messages[1].text
    password = found.group(1)
    await simulator.wait_delivered(10)  # receipts too have been through the line

    # In the handset's SMS, and in the submit_sm that carried it: nowhere else in the simulator.
    holders = [m for m in simulator.messages if password in m.text]
    assert holders == [messages[1]]
    carrying = [p for p in simulator.submits if password.encode() in p.short_message]
    assert [p.message_id for p in carrying] == messages[1].message_ids
    for delivery in simulator.deliveries:
        assert password not in repr(delivery)

    assert password not in caplog.text
    for record in caplog.records:
        assert password not in record.getMessage()
    assert password not in await database_dump(engine)
    assert password.encode() not in generate_latest()
    assert password not in repr(await service.readiness())


@pytest.fixture
async def guarded_simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(system_id="smsline", password="s3cr3tpw")
    await sim.start("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await sim.stop()


async def test_smsc_password_is_never_shown(
    database_url: str, guarded_simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = service_settings(database_url, guarded_simulator.port)
    settings.smsc = [
        SmscSettings(
            name="guarded",
            host="127.0.0.1",
            port=guarded_simulator.port,
            system_id="smsline",
            password="s3cr3tpw",  # type: ignore[arg-type]
        ),
        SmscSettings(
            name="wrong",
            host="127.0.0.1",
            port=guarded_simulator.port,
            system_id="smsline",
            password="wr0ngpw",  # type: ignore[arg-type]
            reconnect_min=0.05,
        ),
    ]
    async with running(settings, http=False) as service:
        await service.connectors[0].wait_bound(10)
        wrong = service.connectors[1]

        async def refused() -> bool:
            return wrong.last_error is not None

        await eventually(refused)
        assert wrong.state != "bound"
        assert "RINVPASWD" in (wrong.last_error or "")
        shown = [repr(settings), str(settings), repr(settings.smsc), caplog.text]
        shown += [c.last_error or "" for c in service.connectors]
        shown.append(repr(await service.readiness()))
        for text in shown:
            assert "s3cr3tpw" not in text
            assert "wr0ngpw" not in text
    assert "s3cr3tpw" not in caplog.text
