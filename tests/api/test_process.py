"""The HTTP API in a process of its own (``api_process``): over real HTTP to the API process,
a notification reaches the simulator and turns delivered; ``/readyz`` and ``/metrics`` report
the service's links and counters; an API process that dies is started again and loses nothing
it acknowledged; stopping the service ends it, and so does the service's own death."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from smsline.api.app import create_app
from smsline.api.context import ApiContext
from smsline.api.process import ServiceChannel
from smsline.db.engine import Database, create_engine
from smsline.db.schema import outbox
from smsline.notify.tokens import IssuedToken, create_token
from smsline.serve import Service, running
from smsline.smpp.simulator import Simulator
from tests.api.conftest import ALL_SCOPES, CARD_READY, SECRET_KEY, api_settings, issue, problem_of
from tests.line.conftest import add_customer, eventually, service_settings
from tests.test_serve import free_port, wait_ready

SMSLINE = str(Path(sys.executable).parent / "smsline")


@pytest.fixture
async def service(database_url: str, simulator: Simulator) -> AsyncIterator[Service]:
    settings = service_settings(
        database_url,
        simulator.port,
        api_process=True,
        http_port=0,
        secret_key=SecretStr(SECRET_KEY),
    )
    async with running(settings) as svc:
        await svc.wait_bound(10)
        yield svc


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as c:
        yield c


async def notify(client: httpx.AsyncClient, token: IssuedToken, customer: str, text: str, key: str) -> Any:
    response = await client.post(
        "/api/v1/notifications",
        json={"customer_id": customer, "text": text},
        headers={"Authorization": f"Bearer {token.token}", "Idempotency-Key": key},
    )
    assert response.status_code == 202, response.text
    return response.json()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_api_process_queues_what_the_service_sends_and_reports_the_service(
    service: Service, simulator: Simulator, client: httpx.AsyncClient
) -> None:
    assert service.engine is not None
    assert service.api_process is not None
    assert service.api_process.pid not in (None, os.getpid())
    await add_customer(service.engine, customer_id="C-1", phone="+79161234567")
    token = await issue(service)
    auth = {"Authorization": f"Bearer {token.token}"}

    queued = await notify(client, token, "C-1", "Your card is ready.", "card-1")
    [sms] = await simulator.wait_messages(1, destination="+79161234567", timeout=10)
    assert (sms.text, sms.source) == ("Your card is ready.", "SCSERV")

    async def delivered() -> bool:
        message = await client.get(f"/api/v1/messages/{queued['message_id']}", headers=auth)
        return bool(message.json()["status"] == "delivered")

    await eventually(delivered)
    again = await client.post(
        "/api/v1/notifications",
        json={"customer_id": "C-1", "text": "Your card is ready."},
        headers=auth | {"Idempotency-Key": "card-1"},
    )
    assert again.json()["message_id"] == queued["message_id"]
    assert len(simulator.messages) == 1

    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["links"] == {"sim": "bound"}
    metrics = (await client.get("/metrics")).text
    assert 'smsline_smsc_link_up{smsc="sim"} 1.0' in metrics  # the service's, not the API's own
    assert "smsline_api_process_resident_memory_bytes" in metrics  # and the API process's size
    assert (await client.get("/api/openapi.json")).status_code == 200


async def test_refusals_come_back_through_the_service_as_they_are(
    service: Service, client: httpx.AsyncClient
) -> None:
    assert service.engine is not None
    await add_customer(service.engine, customer_id="C-1", phone="+79161234567")
    token = await issue(service)
    auth = {"Authorization": f"Bearer {token.token}"}
    template = await client.put("/api/v1/templates/card_ready", json=CARD_READY, headers=auth)
    assert template.status_code == 201

    missing = await client.post(
        "/api/v1/notifications",
        json={"customer_id": "C-1", "template": "card_ready"},
        headers=auth | {"Idempotency-Key": "m-1"},
    )
    reused = await client.post(
        "/api/v1/notifications",
        json={"customer_id": "C-1", "template": "card_ready", "parameters": {"last4": "4242"}},
        headers=auth | {"Idempotency-Key": "m-2"},
    )
    other = await client.post(
        "/api/v1/notifications",
        json={"customer_id": "C-1", "template": "card_ready", "parameters": {"last4": "1111"}},
        headers=auth | {"Idempotency-Key": "m-2"},
    )

    assert missing.status_code == 422
    assert missing.json()["errors"] == [
        {"field": "body.parameters.last4", "message": "is required by the template"}
    ]
    assert reused.status_code == 202
    assert other.status_code == 422
    assert other.json()["type"] == "/api/problems/idempotency-key-reused"


async def test_readyz_follows_the_link_the_service_holds(
    service: Service, simulator: Simulator, client: httpx.AsyncClient
) -> None:
    await simulator.stop()

    async def unready() -> bool:
        return (await client.get("/readyz")).status_code == 503

    await eventually(unready)


async def test_a_killed_api_process_is_started_again_and_loses_nothing_it_accepted(
    service: Service, simulator: Simulator, client: httpx.AsyncClient
) -> None:
    assert service.engine is not None
    assert service.api_process is not None
    await add_customer(service.engine, customer_id="C-2", phone="+79162223344")
    token = await issue(service)
    await notify(client, token, "C-2", "First.", "k-1")
    first = service.api_process.pid
    assert first is not None

    os.kill(first, signal.SIGKILL)

    async def restarted() -> bool:
        return service.api_process is not None and service.api_process.starts == 2

    await eventually(restarted, timeout=30)
    assert service.api_process.pid != first
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as fresh:
        await notify(fresh, token, "C-2", "Second.", "k-2")
    texts = [m.text for m in await simulator.wait_messages(2, destination="+79162223344", timeout=10)]
    assert sorted(texts) == ["First.", "Second."]


async def test_stopping_the_service_ends_the_api_process(database_url: str, simulator: Simulator) -> None:
    settings = service_settings(database_url, simulator.port, api_process=True, http_port=0)
    async with running(settings) as service:
        assert service.api_process is not None
        pid = service.api_process.pid
        assert pid is not None
        assert alive(pid)
        port = service.http_port
    assert not alive(pid)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as c:
            await c.get(f"http://127.0.0.1:{port}/healthz")


async def test_a_stop_finishes_the_requests_in_flight_and_loses_none(
    database_url: str, simulator: Simulator
) -> None:
    settings = service_settings(
        database_url, simulator.port, api_process=True, http_port=0, secret_key=SecretStr(SECRET_KEY)
    )
    async with running(settings) as service:
        await service.wait_bound(10)
        assert service.engine is not None
        await add_customer(service.engine, customer_id="C-3", phone="+79163334455")
        token = await issue(service)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as c:
            asking = [
                asyncio.ensure_future(
                    c.post(
                        "/api/v1/notifications",
                        json={"customer_id": "C-3", "text": f"Message {n}."},
                        headers={"Authorization": f"Bearer {token.token}", "Idempotency-Key": f"s-{n}"},
                    )
                )
                for n in range(40)
            ]
            engine = service.engine

            async def some_queued() -> bool:  # the others are on their way or being served
                async with engine.connect() as conn:
                    return bool(await conn.scalar(select(func.count()).select_from(outbox)))

            await eventually(some_queued)
            stopping = asyncio.ensure_future(service.stop())
            answers = await asyncio.gather(*asking, return_exceptions=True)
            await stopping
    responses = [a for a in answers if isinstance(a, httpx.Response)]
    accepted = {a.json()["message_id"] for a in responses if a.status_code == 202}
    refused = [a for a in responses if a.status_code != 202]
    assert accepted, "no request was answered before the stop"
    assert refused == []
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            stored = set((await conn.execute(select(outbox.c.id))).scalars())
    finally:
        await engine.dispose()
    assert accepted <= stored  # every 202 is a queued (or sent) SMS
    assert len(stored) == len(accepted) or len(answers) > len(responses)


@pytest.mark.slow
async def test_the_api_process_does_not_outlive_a_killed_service(database_url: str) -> None:
    http_port = free_port()
    env = {
        **os.environ,
        "SMSLINE_DATABASE_URL": database_url,
        "SMSLINE_HTTP_PORT": str(http_port),
        "SMSLINE_SIMULATOR_PORT": str(free_port()),
        "SMSLINE_SIMULATOR_HTTP_PORT": str(free_port()),
        "SMSLINE_API_PROCESS": "true",
    }
    process = await asyncio.create_subprocess_exec(
        SMSLINE, "serve", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_ready(f"http://127.0.0.1:{http_port}/readyz", process)
        api_pids = children_of(process.pid)
        assert api_pids, "no API process"
        process.kill()
        await process.wait()

        async def gone() -> bool:
            return not any(alive(pid) and _not_zombie(pid) for pid in api_pids)

        await eventually(gone, timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_a_request_the_service_goes_away_under_is_answered_503_to_retry(database_url: str) -> None:
    """The API process's end of the channel, as in the API process, with the service's end a
    plain socket: the service takes the request and closes (as a killed or restarting service
    does) before answering."""
    service_end, api_end = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=api_end)
    channel = ServiceChannel(reader, writer)
    listening = asyncio.ensure_future(channel.listen())
    db = Database(database_url)
    context = ApiContext(db, api_settings(database_url), queue_elsewhere=channel.queue)
    token = await db.run(
        lambda conn: create_token(conn, "crm", ALL_SCOPES, service_key=SECRET_KEY.encode())
    )
    transport = httpx.ASGITransport(app=create_app(channel, context))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://smsline.test") as client:

            def ask(key: str) -> Any:
                return client.post(
                    "/api/v1/notifications",
                    json={"customer_id": "C-1", "text": "Your card is ready."},
                    headers={"Authorization": f"Bearer {token.token}", "Idempotency-Key": key},
                )

            asking = asyncio.ensure_future(ask("k-1"))
            service_reader, service_writer = await asyncio.open_unix_connection(sock=service_end)
            taken = json.loads(await service_reader.readline())
            assert taken["queue"]["idempotency_key"] == "k-1"
            service_writer.close()  # gone before answering

            answered = await asking
            assert answered.status_code == 503
            assert answered.headers["retry-after"] == "1"
            problem = problem_of(answered)
            assert problem["type"] == "/api/problems/service-unavailable"
            assert "same Idempotency-Key" in problem["detail"]

            later = await ask("k-2")  # while no service is there to ask
            assert later.status_code == 503
            assert problem_of(later)["type"] == "/api/problems/service-unavailable"
            metrics = await client.get("/metrics")
            assert metrics.status_code == 503
    finally:
        context.close()
        await db.dispose()
        writer.close()
        await listening
