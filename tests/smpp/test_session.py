"""One SMPP session over real TCP, against a peer scripted byte by byte."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu
from smsline.smpp.session import ResponseTimeout, Session, SessionClosed

TIMEOUT = 3.0
# A bounded wait used only to show that something does NOT happen (no PDU goes out early).
QUIET = 0.2

DELIVER_SM = 0x00000005
UNBIND = 0x00000006
ENQUIRE_LINK = 0x00000015


def raw_header(length: int, command_id: int, sequence: int, status: int = 0) -> bytes:
    return pdus.HEADER.pack(length, command_id, status, sequence)


def submit() -> Pdu:
    return pdus.submit_sm(
        source="SCSERV",
        source_ton=pdus.TON_ALPHANUMERIC,
        source_npi=pdus.NPI_UNKNOWN,
        destination="79161234567",
        data_coding=0,
        short_message=b"hello",
    )


def deliver(sequence: int) -> Pdu:
    pdu = pdus.deliver_sm(
        source="79161234567",
        source_ton=pdus.TON_INTERNATIONAL,
        destination="79086228779",
        data_coding=0,
        short_message=b"CLIENT info",
    )
    pdu.seqNum = sequence
    return pdu


@dataclass
class Peer:
    """The far end of the client's connection, driven by the test with raw frames."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def frame(self, timeout: float = TIMEOUT) -> bytes:
        head = await asyncio.wait_for(self.reader.readexactly(pdus.HEADER_LEN), timeout)
        length = pdus.parse_header(head).length
        body = await asyncio.wait_for(self.reader.readexactly(length - pdus.HEADER_LEN), timeout)
        return head + body

    async def read(self, timeout: float = TIMEOUT) -> Pdu:
        return pdus.decode(await self.frame(timeout))

    async def nothing_within(self, seconds: float = QUIET) -> bool:
        """True when the client sends nothing for ``seconds``."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        assert data == b"", f"unexpected bytes from the client: {data!r}"
        return True

    async def closed_by_client(self) -> bool:
        """True when the client closes the connection (after whatever it still sends)."""
        await self.rest()
        return True

    async def rest(self) -> bytes:
        """Everything the client still sends until it closes the connection."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    def send(self, pdu: Pdu) -> None:
        self.writer.write(pdus.encode(pdu))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)


@dataclass
class Client:
    session: Session
    requests: asyncio.Queue[Pdu] = field(default_factory=asyncio.Queue)


Connect = Callable[..., Awaitable[tuple[Client, Peer]]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    accepted: asyncio.Queue[Peer] = asyncio.Queue()
    peers: list[Peer] = []
    clients: list[Client] = []

    def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        peers.append(peer)
        accepted.put_nowait(peer)

    server = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def open_client(**options: Any) -> tuple[Client, Peer]:
        requests: asyncio.Queue[Pdu] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        _, session = await loop.create_connection(
            lambda: Session(
                name="esme",
                on_request=lambda _session, pdu: requests.put_nowait(pdu),
                **options,
            ),
            "127.0.0.1",
            port,
        )
        client = Client(session, requests)
        clients.append(client)
        return client, await asyncio.wait_for(accepted.get(), TIMEOUT)

    yield open_client
    for client in clients:
        client.session.abort("test over")
        await client.session.wait_closed()
    for peer in peers:
        peer.writer.close()
        with contextlib.suppress(ConnectionError):
            await peer.writer.wait_closed()
    server.close()
    await server.wait_closed()


def spawn(coro: Coroutine[Any, Any, Pdu]) -> asyncio.Task[Pdu]:
    return asyncio.get_running_loop().create_task(coro)


async def settle(tasks: list[asyncio.Task[Pdu]]) -> list[Pdu | BaseException]:
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
    return list(done)


# -- requests, responses and the window ---------------------------------------------------------


async def test_responses_are_matched_by_sequence_and_the_window_bounds_outstanding(
    connect: Connect,
) -> None:
    client, peer = await connect(window=2)
    tasks = [spawn(client.session.request(submit())) for _ in range(5)]

    first = [await peer.read(), await peer.read()]
    assert [pdus.command_name(p) for p in first] == ["submit_sm", "submit_sm"]
    assert client.session.free_slots == 0
    assert await peer.nothing_within(), "a third submit_sm went out with the window full"

    # Answer out of order: each caller must get the response carrying its own sequence.
    outstanding = {p.seqNum: p for p in first}
    answered: dict[int, str] = {}
    most_outstanding = len(outstanding)
    while outstanding:
        sequence = max(outstanding)
        request = outstanding.pop(sequence)
        answered[sequence] = f"id-{sequence}"
        peer.send(pdus.submit_sm_resp(request, message_id=answered[sequence]))
        if len(answered) + len(outstanding) < len(tasks):
            nxt = await peer.read()
            outstanding[nxt.seqNum] = nxt
        most_outstanding = max(most_outstanding, len(outstanding))

    responses = await settle(tasks)
    assert most_outstanding == 2
    for response in responses:
        assert not isinstance(response, BaseException)
        assert pdus.status_of(response) == pdus.ESME_ROK
        assert pdus.str_param(response, "message_id") == answered[response.seqNum]
    assert sorted(answered) == [1, 2, 3, 4, 5]
    assert client.session.free_slots == 2


async def test_a_request_cancelled_while_waiting_for_a_slot_neither_goes_out_nor_keeps_a_slot(
    connect: Connect,
) -> None:
    client, peer = await connect(window=1)
    first = spawn(client.session.request(submit()))
    waiting = [spawn(client.session.request(submit())) for _ in range(2)]
    sent = await peer.read()
    assert await peer.nothing_within()
    waiting[0].cancel()  # gives up while the window is full
    peer.send(pdus.submit_sm_resp(sent, message_id="m1"))
    assert pdus.str_param(await first, "message_id") == "m1"

    # The freed slot goes to the one still waiting, not to the cancelled one.
    second = await peer.read()
    assert await peer.nothing_within(), "the cancelled request went out"
    peer.send(pdus.submit_sm_resp(second, message_id="m2"))
    assert pdus.str_param(await waiting[1], "message_id") == "m2"
    assert waiting[0].cancelled()
    assert client.session.free_slots == 1

    # And the slot is free again for the next request.
    third = spawn(client.session.request(submit()))
    peer.send(pdus.submit_sm_resp(await peer.read(), message_id="m3"))
    assert pdus.str_param(await third, "message_id") == "m3"


async def test_frames_split_across_reads_and_coalesced_in_one_are_all_handled(connect: Connect) -> None:
    client, peer = await connect()
    first = spawn(client.session.request(submit()))
    second = spawn(client.session.request(submit()))
    requests = [await peer.read(), await peer.read()]
    one, two = (pdus.encode(pdus.submit_sm_resp(r, message_id=f"m{r.seqNum}")) for r in requests)

    for byte in one[:-1]:
        peer.send_raw(bytes([byte]))
        await peer.writer.drain()
    peer.send_raw(one[-1:] + two)

    assert pdus.str_param(await asyncio.wait_for(first, TIMEOUT), "message_id") == f"m{requests[0].seqNum}"
    assert pdus.str_param(await asyncio.wait_for(second, TIMEOUT), "message_id") == f"m{requests[1].seqNum}"

    # Three requests from the peer in a single write are all handed over, in order.
    peer.send_raw(b"".join(pdus.encode(deliver(seq)) for seq in (70, 71, 72)))
    got = [await asyncio.wait_for(client.requests.get(), TIMEOUT) for _ in range(3)]
    assert [p.seqNum for p in got] == [70, 71, 72]


# -- requests from the peer -----------------------------------------------------------------------


async def test_deliver_sm_is_answered_only_when_the_owner_responds(connect: Connect) -> None:
    client, peer = await connect()
    peer.send(deliver(41))

    request = await asyncio.wait_for(client.requests.get(), TIMEOUT)
    assert pdus.command_name(request) == "deliver_sm"
    assert pdus.text_bytes(request) == b"CLIENT info"
    assert await peer.nothing_within(), "deliver_sm_resp went out before the owner answered"

    client.session.respond(request, pdus.deliver_sm_resp(request))
    response = await peer.read()
    assert pdus.command_name(response) == "deliver_sm_resp"
    assert response.seqNum == 41
    assert pdus.status_of(response) == pdus.ESME_ROK


async def test_enquire_link_from_the_peer_is_answered_by_the_session(connect: Connect) -> None:
    client, peer = await connect()
    peer.send_raw(raw_header(16, ENQUIRE_LINK, 9))

    response = await peer.read()
    assert pdus.command_name(response) == "enquire_link_resp"
    assert response.seqNum == 9
    assert client.requests.empty()
    assert client.session.is_open


async def test_unbind_from_the_peer_is_answered_and_the_session_closes(connect: Connect) -> None:
    client, peer = await connect()
    pending = spawn(client.session.request(submit()))
    await peer.read()
    peer.send_raw(raw_header(16, UNBIND, 12))

    response = await peer.read()
    assert pdus.command_name(response) == "unbind_resp"
    assert response.seqNum == 12
    assert await peer.closed_by_client()
    await asyncio.wait_for(client.session.wait_closed(), TIMEOUT)
    assert client.session.unbinding
    with pytest.raises(SessionClosed):
        await asyncio.wait_for(pending, TIMEOUT)


# -- keep-alive and hung peers --------------------------------------------------------------------


async def test_idle_session_sends_enquire_link_and_stays_up_when_answered(connect: Connect) -> None:
    client, peer = await connect(enquire_link_interval=0.1, response_timeout=1.0)

    for _ in range(2):
        probe = await peer.read()
        assert pdus.command_name(probe) == "enquire_link"
        peer.send(pdus.enquire_link_resp(probe))
    assert client.session.is_open


async def test_hung_peer_is_detected_by_keep_alive_and_the_link_closed(connect: Connect) -> None:
    client, peer = await connect(enquire_link_interval=0.1, response_timeout=0.3)
    started = time.monotonic()

    assert pdus.command_name(await peer.read()) == "enquire_link"
    assert await peer.closed_by_client()
    await asyncio.wait_for(client.session.wait_closed(), TIMEOUT)
    assert time.monotonic() - started < 2.0
    assert "hung peer" in (client.session.close_reason or "")


async def test_unanswered_request_times_out_and_closes_the_link(connect: Connect) -> None:
    client, peer = await connect(response_timeout=0.3)
    pending = spawn(client.session.request(submit()))

    assert pdus.command_name(await peer.read()) == "submit_sm"
    with pytest.raises(ResponseTimeout):
        await asyncio.wait_for(pending, TIMEOUT)
    assert await peer.closed_by_client()
    await asyncio.wait_for(client.session.wait_closed(), TIMEOUT)
    with pytest.raises(SessionClosed):
        await client.session.request(submit())


async def test_in_flight_requests_fail_with_session_closed_when_the_link_drops(connect: Connect) -> None:
    client, peer = await connect()
    tasks = [spawn(client.session.request(submit())) for _ in range(3)]
    for _ in tasks:
        await peer.read()

    peer.writer.transport.abort()

    results = await settle(tasks)
    assert all(isinstance(r, SessionClosed) for r in results), results
    await asyncio.wait_for(client.session.wait_closed(), TIMEOUT)
    with pytest.raises(SessionClosed):
        await asyncio.wait_for(client.session.request(submit()), TIMEOUT)


# -- malformed input ------------------------------------------------------------------------------


async def test_unknown_command_id_gets_generic_nack_and_the_link_stays(connect: Connect) -> None:
    client, peer = await connect()
    peer.send_raw(raw_header(20, 0x00000777, 42) + b"\x00\x01\x02\x03")

    nack = await peer.read()
    assert pdus.command_name(nack) == "generic_nack"
    assert nack.seqNum == 42
    assert pdus.status_of(nack) == pdus.ESME_RINVCMDID
    assert client.requests.empty()

    task = spawn(client.session.request(submit()))
    request = await peer.read()
    peer.send(pdus.submit_sm_resp(request, message_id="after"))
    assert pdus.str_param(await asyncio.wait_for(task, TIMEOUT), "message_id") == "after"


async def test_truncated_body_gets_generic_nack_and_the_link_stays(connect: Connect) -> None:
    client, peer = await connect()
    peer.send_raw(raw_header(21, DELIVER_SM, 43) + b"\x01\x02\x03\x04\x05")

    nack = await peer.read()
    assert pdus.command_name(nack) == "generic_nack"
    assert nack.seqNum == 43
    assert pdus.status_of(nack) != pdus.ESME_ROK
    assert client.requests.empty()
    assert client.session.is_open

    peer.send(deliver(44))
    assert (await asyncio.wait_for(client.requests.get(), TIMEOUT)).seqNum == 44


async def test_malformed_response_fails_only_its_request(connect: Connect) -> None:
    client, peer = await connect()
    task = spawn(client.session.request(submit()))
    request = await peer.read()

    # A submit_sm_resp whose message_id has no terminating NUL.
    peer.send_raw(raw_header(19, 0x80000004, request.seqNum) + b"abc")

    with pytest.raises(pdus.PduError):
        await asyncio.wait_for(task, TIMEOUT)
    assert client.session.is_open
    assert client.session.outstanding == 0


@pytest.mark.parametrize(
    "length",
    [pytest.param(8, id="shorter-than-header"), pytest.param(0xFFFFFFFF, id="4GiB"),
     pytest.param(pdus.MAX_PDU_LEN + 1, id="over-limit")],
)
async def test_absurd_command_length_gets_generic_nack_and_closes(connect: Connect, length: int) -> None:
    client, peer = await connect()
    pending = spawn(client.session.request(submit()))
    await peer.read()

    peer.send_raw(raw_header(length, DELIVER_SM, 45))

    nack = await peer.read()
    assert pdus.command_name(nack) == "generic_nack"
    assert pdus.status_of(nack) == pdus.ESME_RINVCMDLEN
    assert nack.seqNum == 45
    assert await peer.closed_by_client()
    await asyncio.wait_for(client.session.wait_closed(), TIMEOUT)
    assert "command_length" in (client.session.close_reason or "")
    with pytest.raises(SessionClosed):
        await asyncio.wait_for(pending, TIMEOUT)
    assert client.requests.empty()


# -- unbinding ------------------------------------------------------------------------------------


async def test_unbind_waits_for_in_flight_responses_first(connect: Connect) -> None:
    client, peer = await connect()
    tasks = [spawn(client.session.request(submit())) for _ in range(2)]
    requests = [await peer.read(), await peer.read()]

    unbinding = asyncio.get_running_loop().create_task(client.session.unbind(timeout=TIMEOUT))
    assert await peer.nothing_within(), "unbind went out while submit_sm were unanswered"
    assert not unbinding.done()

    for request in requests:
        peer.send(pdus.submit_sm_resp(request, message_id=f"m{request.seqNum}"))
    unbind = await peer.read()
    assert pdus.command_name(unbind) == "unbind"
    peer.send(pdus.unbind_resp(unbind))

    await asyncio.wait_for(unbinding, TIMEOUT)
    assert await peer.closed_by_client()
    for response in await settle(tasks):
        assert not isinstance(response, BaseException)
        assert pdus.status_of(response) == pdus.ESME_ROK


async def test_unbind_is_bounded_when_the_peer_never_answers(connect: Connect) -> None:
    client, peer = await connect(response_timeout=TIMEOUT)
    pending = spawn(client.session.request(submit()))
    await peer.read()
    started = time.monotonic()

    await asyncio.wait_for(client.session.unbind(timeout=0.3), TIMEOUT)

    assert time.monotonic() - started < 1.5
    assert pdus.command_name(await peer.read()) == "unbind"
    assert await peer.closed_by_client()
    with pytest.raises(SessionClosed):
        await asyncio.wait_for(pending, TIMEOUT)


async def test_no_request_goes_out_after_unbind(connect: Connect) -> None:
    client, peer = await connect()
    unbinding = asyncio.get_running_loop().create_task(client.session.unbind(timeout=TIMEOUT))
    unbind = await peer.read()
    assert pdus.command_name(unbind) == "unbind"

    # A submit_sm sent now could be acted on by the SMSC while its caller sees the link close
    # and requeues it: a duplicate SMS. It must fail without reaching the wire.
    with pytest.raises(SessionClosed):
        await asyncio.wait_for(client.session.request(submit()), TIMEOUT)

    peer.send(pdus.unbind_resp(unbind))
    await asyncio.wait_for(unbinding, TIMEOUT)
    assert await peer.rest() == b""
