"""End to end over SMPP: a notification queued through the API reaches the simulated handset as
the right SMS, its receipt turns the message delivered (visible through the API), and the signed
status callback reaches the caller's server — again after that server first failed."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from smsline.api.app import create_app
from smsline.db.schema import outbox
from smsline.domain.signatures import SIGNATURE_HEADER, verify
from smsline.notify.notifications import NotificationRequest
from smsline.serve import Service
from smsline.smpp.simulator import Simulator
from tests.api.callback_receiver import receiving
from tests.api.conftest import CARD_READY, SECRET_KEY, issue
from tests.line.conftest import SERVICE_NUMBER, add_customer, eventually


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"secret_key": SecretStr(SECRET_KEY), "callback_retry_seconds": 0.2}


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(service, service.api))
    async with httpx.AsyncClient(transport=transport, base_url="http://smsline.test") as c:
        yield c


async def test_a_notification_is_delivered_and_called_back(
    service: Service, simulator: Simulator, client: httpx.AsyncClient
) -> None:
    assert service.engine is not None
    await add_customer(service.engine, customer_id="C-1", phone="+79161234567", language="ru")
    token = await issue(service)
    auth = {"Authorization": f"Bearer {token.token}"}
    template = await client.put("/api/v1/templates/card_ready", json=CARD_READY, headers=auth)
    assert template.status_code == 201

    async with receiving(answers=[500]) as receiver:
        queued = await client.post(
            "/api/v1/notifications",
            json={
                "customer_id": "C-1",
                "template": "card_ready",
                "parameters": {"last4": "4242"},
                "status_callback": receiver.url,
            },
            headers=auth | {"Idempotency-Key": "card-4242"},
        )
        assert queued.status_code == 202, queued.text
        message_id = queued.json()["message_id"]

        [sms] = await simulator.wait_messages(1, destination="+79161234567", timeout=10)
        assert sms.text == "Ваша карта *4242 готова."
        assert sms.source == "SCSERV"

        async def delivered() -> bool:
            response = await client.get(f"/api/v1/messages/{message_id}", headers=auth)
            return bool(response.json()["status"] == "delivered")

        await eventually(delivered)

        async def called_back_twice() -> bool:
            return len(receiver.received) >= 2

        await eventually(called_back_twice)

    for call in receiver.received:
        assert verify(token.signing_secret, call.body, call.headers[SIGNATURE_HEADER.lower()])
        assert not verify(token.signing_secret, call.body + b" ", call.headers[SIGNATURE_HEADER.lower()])
    payload = json.loads(receiver.received[-1].body)
    assert (payload["message_id"], payload["status"], payload["customer_id"]) == (
        message_id,
        "delivered",
        "C-1",
    )
    assert payload["idempotency_key"] == "card-4242"
    assert [h["status"] for h in payload["history"]] == ["queued", "sending", "submitted", "delivered"]

    message = (await client.get(f"/api/v1/messages/{message_id}", headers=auth)).json()
    assert [h["status"] for h in message["history"]] == ["queued", "sending", "submitted", "delivered"]
    assert [p["status"] for p in message["parts"]] == ["delivered"]
    assert message["error"] is None

    async def callback_recorded() -> bool:
        current = (await client.get(f"/api/v1/messages/{message_id}", headers=auth)).json()
        return bool(current["callback"]["state"] == "done")

    await eventually(callback_recorded)
    final = (await client.get(f"/api/v1/messages/{message_id}", headers=auth)).json()
    assert final["callback"] == {"state": "done", "attempts": 2, "last_error": None}


async def test_a_credential_sms_stays_masked_in_the_api(
    service: Service, simulator: Simulator, client: httpx.AsyncClient
) -> None:
    assert service.engine is not None
    await add_customer(service.engine, customer_id="C-1", phone="+79161234567")
    token = await issue(service)
    await simulator.inject_mo("79161234567", "CLIENT info", SERVICE_NUMBER.lstrip("+"))
    messages = await simulator.wait_messages(2, destination="+79161234567", timeout=15)
    found = re.search(r"password: ([a-z0-9]{8})\.", messages[1].text)
    assert found, messages[1].text
    async with service.engine.connect() as conn:
        message_id = await conn.scalar(select(outbox.c.id).where(outbox.c.kind == "credentials"))

    response = await client.get(
        f"/api/v1/messages/{message_id}", headers={"Authorization": f"Bearer {token.token}"}
    )

    assert response.status_code == 200
    assert "password: ********" in response.json()["text"]
    assert found.group(1) not in response.text


async def test_a_notification_goes_out_even_if_its_request_is_cancelled_once_queued(
    service: Service, simulator: Simulator
) -> None:
    """Its SMS is written already claimed for this process's dispatcher: the hand-over must not
    depend on the HTTP request that asked for it still waiting (a client that hangs up)."""
    engine = service.engine
    assert engine is not None
    await add_customer(engine, customer_id="C-9", phone="+79169998877")
    token = await issue(service)
    request = NotificationRequest(
        token=token.info.id, idempotency_key="gone-1", customer_id="C-9", phone=None, template=None,
        parameters={}, text="Your parcel is at the branch.", status_callback=None,
    )
    asking = asyncio.ensure_future(service.api.queue_notification(request))
    await asyncio.sleep(0)  # one turn of the loop: its transaction is queued, not yet committed
    asking.cancel()
    [sms] = await simulator.wait_messages(1, destination="+79169998877", timeout=10)
    assert sms.text == "Your parcel is at the branch."
    assert asking.cancelled()

    async def delivered() -> bool:
        async with engine.connect() as conn:
            return (await conn.execute(select(outbox.c.status))).scalar_one() == "delivered"

    await eventually(delivered)
