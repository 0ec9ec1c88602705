"""A running smsline (processing line, dispatcher, connector) bound over TCP to the simulator."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.config import Settings, SmscSettings
from smsline.db.schema import customers
from smsline.serve import Service, running
from smsline.smpp.simulator import Simulator

SERVICE_NUMBER = "+79086228779"


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(redelivery_delay=0.05)
    await sim.start("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await sim.stop()


def service_settings(database_url: str, port: int, **overrides: Any) -> Settings:
    smsc = SmscSettings(
        name="sim",
        host="127.0.0.1",
        port=port,
        reconnect_min=0.05,
        reconnect_max=0.5,
        response_timeout=5.0,
    )
    values: dict[str, Any] = {
        "database_url": database_url,
        "service_number": SERVICE_NUMBER,
        "smsc": [smsc],
        "support_phone": "+7 800 555-35-35",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def service(
    database_url: str, simulator: Simulator, settings_overrides: dict[str, Any]
) -> AsyncIterator[Service]:
    settings = service_settings(database_url, simulator.port, **settings_overrides)
    async with running(settings, http=False) as svc:
        await svc.wait_bound(10)
        yield svc


async def add_customer(
    engine: AsyncEngine,
    *,
    customer_id: str,
    phone: str,
    personal_code: str = "1234",
    login: str = "ivanov",
    language: str = "en",
    sms_enabled: bool = True,
) -> int:
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(customers)
            .values(
                customer_id=customer_id,
                phone=phone,
                personal_code=personal_code,
                login=login,
                language=language,
                sms_enabled=sms_enabled,
                created_at=now,
                updated_at=now,
            )
            .returning(customers.c.id)
        )
        return int(result.scalar_one())


async def customer_row(engine: AsyncEngine, phone: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(customers).where(customers.c.phone == phone))).mappings().one()
        return dict(row)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until `check()` holds (the database reached a state), or fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout:g}s")
        await asyncio.sleep(0.02)


async def waiting_on_a_lock(engine: AsyncEngine) -> bool:
    """Whether a transaction of this PostgreSQL database is blocked on a lock right now."""
    async with engine.connect() as probe:
        waiting = await probe.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)
