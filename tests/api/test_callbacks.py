"""A callback that keeps failing is retried with back-off, then given up after the retry window;
the SMS itself is not held up."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from smsline.api.app import create_app
from smsline.db.schema import notifications
from smsline.notify.tokens import create_token
from smsline.serve import Service
from smsline.smpp.simulator import Simulator
from tests.api.callback_receiver import receiving
from tests.api.conftest import ALL_SCOPES, SECRET_KEY
from tests.line.conftest import add_customer, eventually


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Retries after 0.1 s, 0.2 s, 0.4 s …, given up 1.8 s after the message was delivered.
    return {
        "secret_key": SecretStr(SECRET_KEY),
        "callback_retry_seconds": 0.1,
        "callback_retry_hours": 0.0005,
    }


async def test_a_failing_callback_is_retried_then_given_up(service: Service, simulator: Simulator) -> None:
    assert service.engine is not None
    await add_customer(service.engine, customer_id="C-1", phone="+79161234567")
    key = service.service_key()
    token = await service.db.run(lambda conn: create_token(conn, "crm", ALL_SCOPES, service_key=key))
    transport = httpx.ASGITransport(app=create_app(service, service.api))
    async with (
        receiving(answers=[500] * 1000) as receiver,
        httpx.AsyncClient(transport=transport, base_url="http://smsline.test") as client,
    ):
        queued = await client.post(
            "/api/v1/notifications",
            json={"customer_id": "C-1", "text": "Branch closed on Monday.", "status_callback": receiver.url},
            headers={"Authorization": f"Bearer {token.token}", "Idempotency-Key": "k"},
        )
        assert queued.status_code == 202
        [sms] = await simulator.wait_messages(1, destination="+79161234567", timeout=10)
        assert sms.text == "Branch closed on Monday."

        async def given_up() -> bool:
            async with service.engine.connect() as conn:  # type: ignore[union-attr]
                state = await conn.scalar(select(notifications.c.callback_state))
            return state == "failed"

        await eventually(given_up, timeout=15)

    async with service.engine.connect() as conn:
        row = (await conn.execute(select(notifications))).mappings().one()
    assert row["callback_attempts"] == len(receiver.received) >= 3
    assert row["callback_error"] == "HTTP 500"
    gaps = [b - a for a, b in zip(receiver.times, receiver.times[1:], strict=False)]
    assert gaps == sorted(gaps), "each retry waits longer than the one before"
