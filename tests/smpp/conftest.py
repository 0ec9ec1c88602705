"""A hand-written ESME and a simulator factory, for the tests of the SMSC simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from smsline.domain.segments import decode_payload, split_udh
from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu
from smsline.smpp.session import Session
from smsline.smpp.simulator import Simulator
from smsline.smpp.simulator_http import create_app

CUSTOMER = "+79161234567"
SERVICE = "+79086228779"
TIMEOUT = 3.0


# -- a hand-written ESME ----------------------------------------------------------------------


@dataclass
class Esme:
    """An SMPP client: a Session plus the requests the SMSC sent it.

    Each deliver_sm is answered with the next status of ``statuses`` (ESME_ROK once they
    run out), or left unanswered when ``answer`` is False.
    """

    session: Session
    inbox: asyncio.Queue[Pdu]
    answer: bool = True
    statuses: list[int] = field(default_factory=list)

    async def bind(
        self, command: str = "bind_transceiver", system_id: str = "smsline", password: str = "pw"
    ) -> Pdu:
        return await self.session.request(
            pdus.bind(command, system_id=system_id, password=password)
        )

    async def submit(self, **fields: Any) -> Pdu:
        options: dict[str, Any] = {
            "source": "SCSERV",
            "source_ton": pdus.TON_ALPHANUMERIC,
            "source_npi": pdus.NPI_UNKNOWN,
            "destination": CUSTOMER.removeprefix("+"),
            "data_coding": 0,
            "short_message": b"",
        }
        options.update(fields)
        return await self.session.request(pdus.submit_sm(**options))

    async def received(self) -> Pdu:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT)

    def answer_now(self, pdu: Pdu, status: int = pdus.ESME_ROK) -> None:
        self.session.respond(pdu, pdus.deliver_sm_resp(pdu, status=status))


Connect = Callable[..., Awaitable[Esme]]
Start = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def start_simulator() -> AsyncIterator[Start]:
    started: list[Simulator] = []

    async def start(**options: Any) -> Simulator:
        simulator = Simulator(**{"redelivery_delay": 0.05, **options})
        await simulator.start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        await simulator.stop()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    esmes: list[Esme] = []

    async def open_esme(port: int, *, answer: bool = True, statuses: list[int] | None = None) -> Esme:
        inbox: asyncio.Queue[Pdu] = asyncio.Queue()
        holder: list[Esme] = []

        def on_request(session: Session, pdu: Pdu) -> None:
            inbox.put_nowait(pdu)
            esme = holder[0]
            if esme.answer:
                status = esme.statuses.pop(0) if esme.statuses else pdus.ESME_ROK
                esme.answer_now(pdu, status)

        loop = asyncio.get_running_loop()
        _, session = await loop.create_connection(
            lambda: Session(name="esme", response_timeout=TIMEOUT, on_request=on_request),
            "127.0.0.1",
            port,
        )
        esme = Esme(session=session, inbox=inbox, answer=answer, statuses=list(statuses or []))
        holder.append(esme)
        esmes.append(esme)
        return esme

    yield open_esme
    for esme in esmes:
        esme.session.close()
        await esme.session.wait_closed()


async def bound_esme(connect: Connect, simulator: Simulator, command: str = "bind_transceiver",
                     **options: Any) -> Esme:
    esme = await connect(simulator.port, **options)
    response = await esme.bind(command)
    assert pdus.status_of(response) == pdus.ESME_ROK
    return esme


def text_of(pdu: Pdu) -> str:
    body = pdus.text_bytes(pdu)
    if pdus.has_udhi(pdu):
        body = split_udh(body)[1]
    return decode_payload(pdus.data_coding_of(pdu), body)


@pytest.fixture
async def http(start_simulator: Start) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    simulator = await start_simulator()
    app = create_app(simulator, service_number=SERVICE)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://simulator") as client:
        yield simulator, client


@pytest.fixture
async def no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the test runner's own Ctrl-C handling while run_standalone runs."""

    def refuse(*_: object) -> None:
        raise NotImplementedError

    monkeypatch.setattr(asyncio.get_running_loop(), "add_signal_handler", refuse)
