"""`smsline send`: an operator's text reaches the handset through the running service."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from smsline.cli import app
from smsline.db.schema import outbox, outbox_segments
from smsline.serve import Service
from smsline.smpp.simulator import Simulator
from tests.line.conftest import add_customer, eventually


def invoke(database_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"SMSLINE_DATABASE_URL": database_url})
    return result.exit_code, result.output


async def test_send_queues_a_text_that_the_service_delivers(
    database_url: str, service: Service, simulator: Simulator
) -> None:
    code, out = await asyncio.to_thread(
        invoke, database_url, "send", "8 (916) 765-43-21", "Ваша карта готова"
    )
    assert code == 0, out
    assert "to +79167654321 (1 segment(s), ucs2)" in out
    service.dispatcher.wake()
    [sms] = await simulator.wait_messages(1, destination="+79167654321", timeout=10)
    assert sms.text == "Ваша карта готова"
    assert sms.source == "SCSERV"


async def test_send_respects_opt_out_unless_essential(
    database_url: str, service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone="+79161234567", sms_enabled=False)
    code, out = await asyncio.to_thread(invoke, database_url, "send", "+79161234567", "Promo")
    assert code == 1
    assert "opted out" in out
    code, out = await asyncio.to_thread(
        invoke, database_url, "send", "+79161234567", "New sign-in to your account", "--essential"
    )
    assert code == 0, out
    service.dispatcher.wake()
    [sms] = await simulator.wait_messages(1, destination="+79161234567", timeout=10)
    assert sms.text == "New sign-in to your account"


async def test_send_rejects_a_bad_phone_clearly(database_url: str) -> None:
    code, out = await asyncio.to_thread(invoke, database_url, "send", "12ab", "hello")
    assert code == 2
    assert "error:" in out


async def test_a_long_text_is_delivered_when_all_its_parts_are(
    database_url: str, service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    text = "Ваш новый тариф начнёт действовать с первого числа следующего месяца. " * 2
    code, out = await asyncio.to_thread(invoke, database_url, "send", "+79167654321", text)
    assert code == 0, out
    assert "(3 segment(s), ucs2)" in out
    service.dispatcher.wake()
    [sms] = await simulator.wait_messages(1, destination="+79167654321", timeout=10)
    assert sms.text == text
    assert len(sms.parts) == 3

    async def delivered() -> bool:
        async with engine.connect() as conn:
            row = (await conn.execute(select(outbox.c.status, outbox.c.done_at))).one()
            parts = (await conn.execute(select(outbox_segments.c.status))).scalars().all()
        return row.status == "delivered" and row.done_at is not None and parts == ["delivered"] * 3

    await eventually(delivered)
