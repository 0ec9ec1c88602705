"""The ESME side of an SMSC bind over real TCP: against the simulator and misbehaving SMSCs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from pydantic import SecretStr

from smsline.config import SmscSettings
from smsline.smpp import pdus
from smsline.smpp.connector import Connector, LinkDown
from smsline.smpp.pdus import Pdu
from smsline.smpp.session import Session, SessionClosed
from smsline.smpp.simulator import Simulator

CUSTOMER = "+79161234567"
SERVICE = "+79086228779"
TIMEOUT = 3.0
# A bounded wait used only to show that something does NOT happen.
QUIET = 0.2

SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
ENQUIRE_LINK = 0x00000015
GENERIC_NACK = 0x80000000


def submit_pdu(text: bytes = b"hello") -> Pdu:
    return pdus.submit_sm(
        source="SCSERV",
        source_ton=pdus.TON_ALPHANUMERIC,
        source_npi=pdus.NPI_UNKNOWN,
        destination=CUSTOMER.removeprefix("+"),
        data_coding=0,
        short_message=text,
    )


def mo_pdu(text: bytes = b"CLIENT info") -> Pdu:
    return pdus.deliver_sm(
        source=CUSTOMER.removeprefix("+"),
        source_ton=pdus.TON_INTERNATIONAL,
        destination=SERVICE.removeprefix("+"),
        data_coding=0,
        short_message=text,
    )


def spawn(coro: Coroutine[Any, Any, Pdu]) -> asyncio.Task[Pdu]:
    return asyncio.get_running_loop().create_task(coro)


class Changes:
    """Lets a test wait until a condition on some recorded state holds."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def changed(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, ready: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while not ready():
                await self._event.wait()


# -- a scriptable SMSC built from Session ------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    connection: int
    command_id: int
    sequence: int


class _SmscSide(Session):
    def __init__(self, smsc: FakeSmsc, number: int) -> None:
        super().__init__(
            name=f"fake-smsc-{number}",
            on_request=smsc._on_request,
            on_closed=smsc._on_closed,
        )
        self.smsc = smsc
        self.number = number

    def _handle_frame(self, frame: bytes) -> None:
        header = pdus.parse_header(frame)
        self.smsc.frames.append(Frame(self.number, header.command_id, header.sequence))
        super()._handle_frame(frame)
        self.smsc.changes.changed()


class FakeSmsc:
    """An SMSC that refuses the first ``refuse_binds`` binds and can hold submit_sm unanswered."""

    def __init__(self, *, refuse_binds: int = 0, hold_submits: bool = False) -> None:
        self.refuse_binds = refuse_binds
        self.hold_submits = hold_submits
        self.changes = Changes()
        self.sessions: list[_SmscSide] = []
        self.frames: list[Frame] = []
        self.bind_times: list[float] = []
        self.bound: list[_SmscSide] = []
        self.held: list[tuple[Session, Pdu]] = []
        self.most_held = 0
        self.submits = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in self.sessions:
            session.abort("test over")
            await session.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()

    def _new_session(self) -> _SmscSide:
        session = _SmscSide(self, len(self.sessions) + 1)
        self.sessions.append(session)
        self.changes.changed()
        return session

    def _on_closed(self, session: Session) -> None:
        self.held = [(s, p) for s, p in self.held if s is not session]
        self.changes.changed()

    def _on_request(self, session: Session, pdu: Pdu) -> None:
        command = pdus.command_name(pdu)
        if command.startswith("bind_"):
            self.bind_times.append(time.monotonic())
            refused = len(self.bind_times) <= self.refuse_binds
            status = pdus.ESME_RINVPASWD if refused else pdus.ESME_ROK
            session.respond(pdu, pdus.bind_resp(pdu, status=status, system_id="FAKESMSC"))
            if not refused:
                assert isinstance(session, _SmscSide)
                self.bound.append(session)
        elif command == "submit_sm":
            self.submits += 1
            if self.hold_submits:
                self.held.append((session, pdu))
                self.most_held = max(self.most_held, len(self.held))
            else:
                session.respond(pdu, pdus.submit_sm_resp(pdu, message_id=f"M{self.submits}"))
        else:
            session.respond(pdu, pdus.generic_nack(pdu.seqNum, pdus.ESME_RINVCMDID))
        self.changes.changed()

    def release(self, count: int | None = None) -> None:
        """Answer the oldest ``count`` held submit_sm (all by default)."""
        count = len(self.held) if count is None else count
        releasing, self.held = self.held[:count], self.held[count:]
        for session, pdu in releasing:
            session.respond(pdu, pdus.submit_sm_resp(pdu, message_id=f"R{pdu.seqNum}"))

    def seen(self, command_id: int, connection: int | None = None) -> list[Frame]:
        return [
            f for f in self.frames
            if f.command_id == command_id and (connection is None or f.connection == connection)
        ]

    @property
    def last(self) -> _SmscSide:
        return self.bound[-1]


class HungSmsc:
    """Accepts the bind (or not even that), then reads and never answers, leaving the socket open."""

    def __init__(self, *, answer_bind: bool = True) -> None:
        self.answer_bind = answer_bind
        self.binds = 0
        self.changes = Changes()
        self.connections = 0
        self.closed_by_esme = 0
        self.enquire_links = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        self.changes.changed()
        try:
            while True:
                head = await reader.readexactly(pdus.HEADER_LEN)
                header = pdus.parse_header(head)
                body = await reader.readexactly(header.length - pdus.HEADER_LEN)
                pdu = pdus.decode(head + body)
                if pdus.command_name(pdu).startswith("bind_"):
                    self.binds += 1
                if pdus.command_name(pdu).startswith("bind_") and self.answer_bind:
                    writer.write(pdus.encode(pdus.bind_resp(pdu, status=pdus.ESME_ROK, system_id="HUNG")))
                elif header.command_id == ENQUIRE_LINK:
                    self.enquire_links += 1
                self.changes.changed()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_esme += 1
            self.changes.changed()


# -- fixtures -----------------------------------------------------------------------------------


class Esme:
    """A connector plus what it handed to its owner and the link states it went through."""

    def __init__(self, settings: SmscSettings, *, answer: bool) -> None:
        self.answer = answer
        self.changes = Changes()
        self.delivered: list[tuple[Session, Pdu]] = []
        self.states: list[str] = []
        self.connector = Connector(settings, on_deliver=self._on_deliver)
        self.connector.state_listeners.append(self._on_state)

    def _on_deliver(self, connector: Connector, session: Session, pdu: Pdu) -> None:
        self.delivered.append((session, pdu))
        if self.answer:
            session.respond(pdu, pdus.deliver_sm_resp(pdu))
        self.changes.changed()

    def _on_state(self, connector: Connector) -> None:
        self.states.append(connector.state)
        self.changes.changed()

    async def state(self, wanted: str, *, count: int = 1) -> None:
        await self.changes.until(lambda: self.states.count(wanted) >= count)

    async def bound(self) -> None:
        await self.connector.wait_bound(TIMEOUT)


class Server(Protocol):
    async def start(self) -> int: ...

    async def stop(self) -> None: ...


MakeEsme = Callable[..., Esme]
Servers = Callable[[Server], Awaitable[int]]


@pytest.fixture
async def esme() -> AsyncIterator[MakeEsme]:
    made: list[Esme] = []

    def make(port: int, *, answer: bool = True, **options: Any) -> Esme:
        settings = SmscSettings(
            **{
                "name": "test-smsc",
                "port": port,
                "system_id": "smsline",
                "password": SecretStr("pw"),
                "reconnect_min": 0.05,
                "reconnect_max": 1.0,
                "response_timeout": TIMEOUT,
                **options,
            }
        )
        created = Esme(settings, answer=answer)
        made.append(created)
        created.connector.start()
        return created

    yield make
    for created in made:
        await asyncio.wait_for(created.connector.stop(timeout=0.5), TIMEOUT)


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    started: list[Server] = []

    async def start(server: Server) -> int:
        port = await server.start()
        started.append(server)
        return port

    yield start
    for server in started:
        await server.stop()


# -- binding ------------------------------------------------------------------------------------


async def test_transceiver_bind_reports_bound_and_submits(servers: Servers, esme: MakeEsme) -> None:
    simulator = Simulator(system_id="smsline", password="pw")
    client = esme(await servers(simulator))

    await client.bound()

    assert client.connector.state == "bound"
    assert client.states[:2] == ["connecting", "bound"]
    assert client.connector.binds == 1
    [bind] = simulator.binds()
    assert (bind["system_id"], bind["bind_type"]) == ("smsline", "transceiver")

    response = await asyncio.wait_for(client.connector.submit(submit_pdu(b"hi there")), TIMEOUT)
    assert pdus.status_of(response) == pdus.ESME_ROK
    [sms] = await simulator.wait_messages(1, timeout=TIMEOUT)
    assert sms.text == "hi there"
    assert pdus.str_param(response, "message_id") == sms.message_ids[0]


async def test_transmitter_receiver_mode_uses_two_sessions(servers: Servers, esme: MakeEsme) -> None:
    simulator = Simulator(system_id="smsline", password="pw", redelivery_delay=0.05)
    client = esme(await servers(simulator), bind_mode="transmitter_receiver")
    await client.bound()
    await simulator.wait_bound(TIMEOUT)

    peers = {b["bind_type"]: b["peer"] for b in simulator.binds()}
    assert sorted(peers) == ["receiver", "transmitter"]

    # The simulator refuses submit_sm on a receiver bind, so acceptance proves the transmitter.
    response = await asyncio.wait_for(client.connector.submit(submit_pdu()), TIMEOUT)
    assert pdus.status_of(response) == pdus.ESME_ROK

    await simulator.inject_mo(CUSTOMER, "CLIENT info", SERVICE)
    await simulator.wait_delivered(TIMEOUT)
    mo = [(s, p) for s, p in client.delivered if not pdus.is_delivery_receipt(p)]
    [(session, pdu)] = mo
    assert pdus.text_bytes(pdu) == b"CLIENT info"
    assert session.name.endswith("/receiver")
    assert {a.peer for a in simulator.deliveries} == {peers["receiver"]}


async def test_refused_bind_is_retried_with_back_off_until_it_succeeds(
    servers: Servers, esme: MakeEsme
) -> None:
    smsc = FakeSmsc(refuse_binds=3)
    client = esme(await servers(smsc), reconnect_min=0.1, reconnect_max=2.0)

    await client.state("down")
    assert client.states[:2] == ["connecting", "down"]
    assert client.connector.last_error is not None
    assert "ESME_RINVPASWD" in client.connector.last_error
    assert not client.connector.is_bound

    await client.bound()
    assert client.connector.state == "bound"
    assert len(smsc.bind_times) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(smsc.bind_times)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert client.states.count("down") == 3

    response = await asyncio.wait_for(client.connector.submit(submit_pdu()), TIMEOUT)
    assert pdus.status_of(response) == pdus.ESME_ROK


async def test_wrong_password_keeps_the_link_down_and_submits_fail_fast(
    servers: Servers, esme: MakeEsme
) -> None:
    simulator = Simulator(system_id="smsline", password="right")
    client = esme(await servers(simulator), password=SecretStr("wrong"), reconnect_min=0.05)

    await client.state("down", count=3)

    assert client.connector.state in ("down", "connecting")
    assert "ESME_RINVPASWD" in (client.connector.last_error or "")
    assert simulator.binds() == []
    with pytest.raises(LinkDown):
        await client.connector.submit(submit_pdu())


async def test_the_smsc_password_is_never_disclosed(
    servers: Servers, esme: MakeEsme, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Pw9#zQ!x"
    simulator = Simulator(system_id="smsline", password=secret, redelivery_delay=0.05)
    port = await servers(simulator)

    refused = esme(port, password=SecretStr("Wr0ng#pw"))
    await refused.state("down", count=2)
    accepted = esme(port, password=SecretStr(secret))
    await accepted.bound()
    simulator.drop_links()
    await accepted.state("bound", count=2)

    settings = accepted.connector.settings
    assert secret not in repr(settings)
    assert secret not in str(settings)
    assert secret not in settings.model_dump_json()
    assert "Wr0ng#pw" not in repr(refused.connector.settings)
    for client in (refused, accepted):
        assert secret not in (client.connector.last_error or "")
        assert "Wr0ng#pw" not in (client.connector.last_error or "")
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert secret not in text
        assert "Wr0ng#pw" not in text


async def test_a_password_smpp_cannot_carry_is_reported_without_disclosing_it(
    servers: Servers, esme: MakeEsme, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "much-too-long-for-smpp"
    smsc = FakeSmsc()
    client = esme(await servers(smsc), password=SecretStr(secret))

    await client.state("down", count=2)

    assert client.connector.last_error
    assert secret not in client.connector.last_error
    for record in caplog.records:
        assert secret not in record.getMessage() + (record.exc_text or "")
    await asyncio.wait_for(client.connector.stop(timeout=0.5), TIMEOUT)
    assert client.connector.state == "stopped"


# -- losing the link ----------------------------------------------------------------------------


async def test_dropped_link_goes_down_and_comes_back_by_itself(servers: Servers, esme: MakeEsme) -> None:
    simulator = Simulator(system_id="smsline", password="pw")
    # reconnect_min leaves an outage of at least 0.24 s (jitter included) to submit into.
    client = esme(await servers(simulator), reconnect_min=0.3)
    await client.bound()

    simulator.drop_links()
    await client.state("down")
    assert not client.connector.is_bound
    assert client.connector.free_slots == 0
    with pytest.raises(LinkDown):
        await asyncio.wait_for(client.connector.submit(submit_pdu()), TIMEOUT)

    await client.state("bound", count=2)
    assert client.connector.state == "bound"
    assert client.connector.binds == 2
    response = await asyncio.wait_for(client.connector.submit(submit_pdu(b"after")), TIMEOUT)
    assert pdus.status_of(response) == pdus.ESME_ROK
    await simulator.wait_messages(1, timeout=TIMEOUT)


async def test_hung_smsc_is_detected_and_the_link_reopened(servers: Servers, esme: MakeEsme) -> None:
    smsc = HungSmsc()
    client = esme(await servers(smsc), enquire_link_interval=0.1, response_timeout=0.3)
    started = time.monotonic()

    await client.state("bound")
    await smsc.changes.until(lambda: smsc.connections >= 2)

    assert time.monotonic() - started < 2.0
    assert smsc.enquire_links >= 1
    assert smsc.closed_by_esme >= 1
    assert client.states.index("down") > client.states.index("bound")
    assert "hung peer" in (client.connector.last_error or "")


async def test_smsc_that_never_answers_the_bind_is_retried(servers: Servers, esme: MakeEsme) -> None:
    smsc = HungSmsc(answer_bind=False)
    client = esme(await servers(smsc), response_timeout=0.2)

    await client.state("down")
    await smsc.changes.until(lambda: smsc.binds >= 2 and smsc.closed_by_esme >= 1)

    assert not client.connector.is_bound
    assert "no response" in (client.connector.last_error or "")
    with pytest.raises(LinkDown):
        await client.connector.submit(submit_pdu())


async def test_in_flight_and_queued_submits_fail_when_the_link_dies(
    servers: Servers, esme: MakeEsme
) -> None:
    smsc = FakeSmsc(hold_submits=True)
    client = esme(await servers(smsc), window=2)
    await client.bound()
    tasks = [spawn(client.connector.submit(submit_pdu())) for _ in range(4)]
    await smsc.changes.until(lambda: len(smsc.held) == 2)

    smsc.last.abort("cable cut")

    # Both the two on the wire and the two waiting for the window fail, so the caller can requeue.
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
    assert all(isinstance(r, SessionClosed) for r in results), results
    await client.state("bound", count=2)
    smsc.hold_submits = False
    response = await asyncio.wait_for(client.connector.submit(submit_pdu()), TIMEOUT)
    assert pdus.status_of(response) == pdus.ESME_ROK


async def test_no_more_than_window_submits_are_outstanding(servers: Servers, esme: MakeEsme) -> None:
    smsc = FakeSmsc(hold_submits=True)
    client = esme(await servers(smsc), window=3)
    await client.bound()

    tasks = [spawn(client.connector.submit(submit_pdu())) for _ in range(8)]
    await smsc.changes.until(lambda: len(smsc.held) == 3)
    assert client.connector.free_slots == 0
    with contextlib.suppress(TimeoutError):
        # Give a client that ignored its window the time to send more.
        await smsc.changes.until(lambda: smsc.submits > 3, QUIET)
    assert smsc.submits == 3
    assert sum(not t.done() for t in tasks) == 8

    def holding(count: int) -> Callable[[], bool]:
        return lambda: len(smsc.held) == count

    # Answer one at a time: each answer lets exactly one more queued submit_sm out.
    for released in range(8):
        await smsc.changes.until(holding(min(3, 8 - released)))
        smsc.release(1)

    results = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert [pdus.status_of(r) for r in results] == [pdus.ESME_ROK] * 8
    assert smsc.most_held == 3


# -- what the SMSC sends ------------------------------------------------------------------------


async def test_deliver_sm_is_acknowledged_only_when_the_owner_responds(
    servers: Servers, esme: MakeEsme
) -> None:
    simulator = Simulator(system_id="smsline", password="pw")
    client = esme(await servers(simulator), answer=False)
    await client.bound()

    await simulator.inject_mo(CUSTOMER, "CLIENT info", SERVICE)
    await client.changes.until(lambda: bool(client.delivered))
    with contextlib.suppress(TimeoutError):
        # A deliver_sm_resp sent on the owner's behalf would show up as a finished attempt.
        await simulator.wait_delivered(QUIET)
    assert simulator.deliveries == []
    assert simulator.pending_deliveries == 1

    [(session, pdu)] = client.delivered
    assert pdus.text_bytes(pdu) == b"CLIENT info"
    session.respond(pdu, pdus.deliver_sm_resp(pdu))
    await simulator.wait_delivered(TIMEOUT)
    [attempt] = simulator.deliveries
    assert attempt.outcome == "ok"


async def test_enquire_link_both_ways(servers: Servers, esme: MakeEsme) -> None:
    smsc = FakeSmsc()
    client = esme(await servers(smsc), enquire_link_interval=0.1)
    await client.bound()

    answer = await asyncio.wait_for(smsc.last.request(pdus.enquire_link()), TIMEOUT)
    assert pdus.command_name(answer) == "enquire_link_resp"

    await smsc.changes.until(lambda: len(smsc.seen(ENQUIRE_LINK)) >= 2)
    assert client.connector.state == "bound"
    assert len(smsc.sessions) == 1


async def test_unexpected_request_from_the_smsc_is_refused_and_the_link_stays(
    servers: Servers, esme: MakeEsme
) -> None:
    smsc = FakeSmsc()
    client = esme(await servers(smsc))
    await client.bound()

    response = await asyncio.wait_for(smsc.last.request(submit_pdu()), TIMEOUT)

    assert pdus.command_name(response) == "generic_nack"
    assert pdus.status_of(response) == pdus.ESME_RINVCMDID
    assert client.delivered == []
    assert client.connector.state == "bound"


@pytest.mark.parametrize(
    ("garbage", "closes"),
    [
        pytest.param(pdus.HEADER.pack(20, 0x00000777, 0, 501) + b"\x00" * 4, False, id="unknown-command"),
        pytest.param(pdus.HEADER.pack(21, DELIVER_SM, 0, 502) + b"\x01" * 5, False, id="truncated-body"),
        pytest.param(pdus.HEADER.pack(0x7FFFFFFF, DELIVER_SM, 0, 503), True, id="absurd-length"),
        pytest.param(pdus.HEADER.pack(10, DELIVER_SM, 0, 504), True, id="too-short"),
    ],
)
async def test_malformed_pdus_from_the_smsc_never_break_the_connector(
    servers: Servers, esme: MakeEsme, garbage: bytes, closes: bool
) -> None:
    smsc = FakeSmsc()
    client = esme(await servers(smsc))
    await client.bound()
    sequence = pdus.parse_header(garbage).sequence

    smsc.last.write_raw(garbage)

    await smsc.changes.until(lambda: bool(smsc.seen(GENERIC_NACK)))
    [nack] = smsc.seen(GENERIC_NACK)
    assert (nack.connection, nack.sequence) == (1, sequence)
    if closes:
        await client.state("bound", count=2)
        assert len(smsc.sessions) == 2
    else:
        assert client.connector.state == "bound"
    assert client.delivered == []

    response = await asyncio.wait_for(client.connector.submit(submit_pdu()), TIMEOUT)
    assert pdus.status_of(response) == pdus.ESME_ROK
    await asyncio.wait_for(smsc.last.request(mo_pdu()), TIMEOUT)
    assert len(client.delivered) == 1


async def test_malformed_bind_response_is_retried(servers: Servers, esme: MakeEsme) -> None:
    class GarbledFirstBind(FakeSmsc):
        def _on_request(self, session: Session, pdu: Pdu) -> None:
            if pdus.command_name(pdu).startswith("bind_") and not self.bind_times:
                self.bind_times.append(time.monotonic())
                # A bind_transceiver_resp whose system_id has no terminating NUL.
                session.write_raw(pdus.HEADER.pack(19, 0x80000009, 0, pdu.seqNum) + b"abc")
                return
            super()._on_request(session, pdu)

    smsc = GarbledFirstBind()
    client = esme(await servers(smsc))

    await client.state("down")
    assert client.connector.last_error
    await client.bound()
    assert len(smsc.bind_times) == 2
    response = await asyncio.wait_for(client.connector.submit(submit_pdu()), TIMEOUT)
    assert pdus.status_of(response) == pdus.ESME_ROK


# -- stopping -----------------------------------------------------------------------------------


async def test_stop_waits_for_in_flight_submits_then_unbinds_for_good(
    servers: Servers, esme: MakeEsme
) -> None:
    smsc = FakeSmsc(hold_submits=True)
    client = esme(await servers(smsc))
    await client.bound()
    tasks = [spawn(client.connector.submit(submit_pdu())) for _ in range(2)]
    await smsc.changes.until(lambda: len(smsc.held) == 2)

    stopping = asyncio.get_running_loop().create_task(client.connector.stop(timeout=TIMEOUT))
    with contextlib.suppress(TimeoutError):
        # An early unbind would arrive within this bounded wait.
        await smsc.changes.until(lambda: bool(smsc.seen(UNBIND)), QUIET)
    assert smsc.seen(UNBIND) == []
    assert not stopping.done()
    with pytest.raises(LinkDown):
        await client.connector.submit(submit_pdu())

    smsc.release()
    results = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert [pdus.status_of(r) for r in results] == [pdus.ESME_ROK] * 2
    await asyncio.wait_for(stopping, TIMEOUT)
    assert len(smsc.seen(UNBIND)) == 1
    assert client.connector.state == "stopped"

    with contextlib.suppress(TimeoutError):
        # reconnect_min is 0.05 s: a reconnect would happen well within this bounded wait.
        await smsc.changes.until(lambda: len(smsc.sessions) > 1, QUIET)
    assert len(smsc.sessions) == 1
    assert client.connector.state == "stopped"


async def test_stop_is_bounded_when_responses_never_come(servers: Servers, esme: MakeEsme) -> None:
    smsc = FakeSmsc(hold_submits=True)
    client = esme(await servers(smsc))
    await client.bound()
    pending = spawn(client.connector.submit(submit_pdu()))
    await smsc.changes.until(lambda: len(smsc.held) == 1)
    started = time.monotonic()

    await asyncio.wait_for(client.connector.stop(timeout=0.3), TIMEOUT)

    assert time.monotonic() - started < 1.5
    assert client.connector.state == "stopped"
    assert len(smsc.seen(UNBIND)) == 1
    with pytest.raises(SessionClosed):
        await asyncio.wait_for(pending, TIMEOUT)


async def test_stop_never_sends_submit_sm_after_unbind(servers: Servers, esme: MakeEsme) -> None:
    smsc = FakeSmsc(hold_submits=True)
    client = esme(await servers(smsc), window=1)
    await client.bound()
    tasks = [spawn(client.connector.submit(submit_pdu())) for _ in range(3)]
    await smsc.changes.until(lambda: len(smsc.held) == 1)

    stopping = asyncio.get_running_loop().create_task(client.connector.stop(timeout=TIMEOUT))
    smsc.hold_submits = False
    smsc.release()

    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
    await asyncio.wait_for(stopping, TIMEOUT)
    commands = [f.command_id for f in smsc.frames]
    assert commands.count(UNBIND) == 1
    assert SUBMIT_SM not in commands[commands.index(UNBIND):]
    # What reached the SMSC was answered; what was still waiting for the window failed unsent,
    # so requeueing it cannot send a duplicate.
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert all(pdus.status_of(r) == pdus.ESME_ROK for r in answered)
    assert all(isinstance(r, SessionClosed) for r in results if isinstance(r, BaseException)), results
    assert len(answered) == smsc.submits >= 1
