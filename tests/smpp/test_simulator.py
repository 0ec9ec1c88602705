"""The built-in SMSC simulator, driven over real TCP by a hand-written ESME."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from smsline.domain.segments import concat_udh, segment, split_udh
from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu
from smsline.smpp.simulator import Simulator, run_standalone
from smsline.smpp.simulator_client import inject_mo
from tests.smpp.conftest import CUSTOMER, SERVICE, TIMEOUT, Connect, Start, bound_esme, text_of

# -- binding ------------------------------------------------------------------------------------


async def test_bind_with_the_right_credentials_is_listed(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator(system_id="smsline", password="secret")
    esme = await connect(simulator.port)

    response = await esme.bind(system_id="smsline", password="secret")

    assert pdus.status_of(response) == pdus.ESME_ROK
    assert pdus.command_name(response) == "bind_transceiver_resp"
    await simulator.wait_bound(TIMEOUT, system_id="smsline")
    [bind] = simulator.binds()
    assert bind["system_id"] == "smsline"
    assert bind["bind_type"] == "transceiver"
    assert bind["peer"].startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [
        ("smsline", "wrong", pdus.ESME_RINVPASWD),
        ("intruder", "secret", pdus.ESME_RINVSYSID),
    ],
)
async def test_bind_with_wrong_credentials_is_refused(
    start_simulator: Start, connect: Connect, system_id: str, password: str, status: int
) -> None:
    simulator = await start_simulator(system_id="smsline", password="secret")
    esme = await connect(simulator.port)

    response = await esme.bind(system_id=system_id, password=password)

    assert pdus.status_of(response) == status
    assert simulator.binds() == []
    with pytest.raises(TimeoutError, match="did not bind"):
        await simulator.wait_bound(0.05)


async def test_bind_state_is_enforced(start_simulator: Start, connect: Connect) -> None:
    simulator = await start_simulator()
    esme = await connect(simulator.port)

    before_bind = await esme.submit(short_message=b"hello")
    assert pdus.command_name(before_bind) == "submit_sm_resp"
    assert pdus.status_of(before_bind) == pdus.ESME_RINVBNDSTS

    assert pdus.status_of(await esme.bind()) == pdus.ESME_ROK
    assert pdus.status_of(await esme.bind()) == pdus.ESME_RALYBND

    receiver = await connect(simulator.port)
    assert pdus.status_of(await receiver.bind("bind_receiver")) == pdus.ESME_ROK
    refused = await receiver.submit(short_message=b"hello")
    assert pdus.status_of(refused) == pdus.ESME_RINVBNDSTS
    assert simulator.submits == []
    assert sorted(b["bind_type"] for b in simulator.binds()) == ["receiver", "transceiver"]


async def test_enquire_link_is_answered_before_and_after_bind(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    esme = await connect(simulator.port)

    first = await esme.session.request(pdus.enquire_link())
    await esme.bind()
    second = await esme.session.request(pdus.enquire_link())

    for response in (first, second):
        assert pdus.command_name(response) == "enquire_link_resp"
        assert pdus.status_of(response) == pdus.ESME_ROK


async def test_unbind_removes_the_bind(start_simulator: Start, connect: Connect) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)

    await esme.session.unbind()

    assert simulator.binds() == []


# -- submit_sm and receipts ---------------------------------------------------------------------


@pytest.mark.parametrize(("id_format", "pattern"), [("hex", "[0-9A-F]+"), ("dec", "[0-9]+")])
async def test_submit_gets_an_id_and_a_matching_receipt(
    start_simulator: Start, connect: Connect, id_format: str, pattern: str
) -> None:
    simulator = await start_simulator(message_id_format=id_format)
    esme = await bound_esme(connect, simulator)
    text = "Your request has been received."

    response = await esme.submit(short_message=text.encode())
    message_id = response.params["message_id"].decode()
    receipt = await esme.received()

    assert pdus.status_of(response) == pdus.ESME_ROK
    assert re.fullmatch(pattern, message_id)
    assert pdus.is_delivery_receipt(receipt)
    assert pdus.str_param(receipt, "receipted_message_id") == message_id
    assert pdus.int_param(receipt, "message_state") == 2
    assert pdus.str_param(receipt, "source_addr") == CUSTOMER.removeprefix("+")
    assert pdus.str_param(receipt, "destination_addr") == "SCSERV"
    body = text_of(receipt)
    assert re.fullmatch(
        rf"id:{message_id} sub:001 dlvrd:001 submit date:\d{{10}} done date:\d{{10}} "
        r"stat:DELIVRD err:000 text:Your request has bee",
        body,
    ), body
    [submitted] = simulator.submits
    assert submitted.message_id == message_id
    assert (submitted.source, submitted.source_ton, submitted.source_npi) == ("SCSERV", 5, 0)
    assert (submitted.destination, submitted.dest_ton, submitted.dest_npi) == ("79161234567", 1, 1)
    assert submitted.registered_delivery == 1
    await simulator.wait_delivered(TIMEOUT)


async def test_records_keep_only_the_newest_when_bounded(start_simulator: Start, connect: Connect) -> None:
    """A simulator left running under load (``smsline simulator``, ``smsline serve`` without an
    SMSC) keeps about ``keep`` of its newest records, not every SMS it ever received."""
    simulator = await start_simulator(keep=10)
    esme = await bound_esme(connect, simulator)
    for n in range(25):
        response = await esme.submit(short_message=f"message {n}".encode())
        assert pdus.status_of(response) == pdus.ESME_ROK
        await esme.received()  # its receipt
    await simulator.wait_delivered(TIMEOUT)

    for records in (simulator.submits, simulator.messages, simulator.deliveries):
        assert 10 <= len(records) <= 11
    assert [sms.text for sms in simulator.messages][-3:] == ["message 22", "message 23", "message 24"]
    assert simulator.last_message_id == 25


async def test_receipt_ids_may_use_another_base_and_no_tlvs(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator(
        message_id_format="hex", receipt_id_format="dec", receipt_tlvs=False
    )
    esme = await bound_esme(connect, simulator)

    response = await esme.submit(short_message=b"hi")
    receipt = await esme.received()

    message_id = response.params["message_id"].decode()
    assert text_of(receipt).startswith(f"id:{int(message_id, 16)} ")
    assert receipt.params.get("receipted_message_id") is None
    assert receipt.params.get("message_state") is None


async def test_receipt_goes_to_the_receiver_bind_after_the_delay(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator(receipt_delay=0.2)
    transmitter = await bound_esme(connect, simulator, "bind_transmitter")
    receiver = await bound_esme(connect, simulator, "bind_receiver")

    sent = time.monotonic()
    response = await transmitter.submit(short_message=b"hello")
    receipt = await receiver.received()

    assert time.monotonic() - sent >= 0.2
    assert pdus.str_param(receipt, "receipted_message_id") == response.params["message_id"].decode()
    assert transmitter.inbox.empty()


async def test_no_receipt_when_none_is_requested(start_simulator: Start, connect: Connect) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)

    response = await esme.submit(short_message=b"hello", registered_delivery=False)

    assert pdus.status_of(response) == pdus.ESME_ROK
    assert simulator.pending_deliveries == 0
    [sms] = await simulator.wait_messages(1, timeout=TIMEOUT)
    assert sms.text == "hello"


# -- reassembly ---------------------------------------------------------------------------------

LONG_GSM7 = (
    "Dear customer, your registration data follows. {Braces} [brackets] ~tilde~ ^caret^ "
    "| pipe \\ backslash and the euro sign € count double. " * 4
)
LONG_UCS2 = "Здравствуйте! Ваш запрос принят 😀 — ждите ответа. " * 5


@pytest.mark.parametrize(
    ("text", "sixteen_bit", "encoding"),
    [(LONG_GSM7, False, "gsm7"), (LONG_UCS2, True, "ucs2")],
    ids=["gsm7-udh8", "ucs2-udh16"],
)
async def test_udh_parts_out_of_order_reassemble_exactly(
    start_simulator: Start, connect: Connect, text: str, sixteen_bit: bool, encoding: str
) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)
    split = segment(text, header_octets=7 if sixteen_bit else 6)
    assert split.count >= 3
    ids: dict[int, str] = {}

    order = [1, *range(split.count - 1, 1, -1), 0]
    for index in order:
        if index == order[-1]:
            assert simulator.messages == []
        udh = concat_udh(300 if sixteen_bit else 42, split.count, index + 1, sixteen_bit=sixteen_bit)
        response = await esme.submit(
            data_coding=split.data_coding, short_message=udh + split.parts[index], udhi=True,
            registered_delivery=False,
        )
        ids[index] = response.params["message_id"].decode()

    [sms] = await simulator.wait_messages(1, destination=CUSTOMER, timeout=TIMEOUT)
    assert sms.text == text
    assert sms.encoding == encoding
    assert sms.source == "SCSERV"
    assert [part.udhi for part in sms.parts] == [True] * split.count
    assert sms.message_ids == [ids[index] for index in range(split.count)]


async def test_sar_parts_reassemble(start_simulator: Start, connect: Connect) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)
    split = segment(LONG_UCS2, header_octets=0)

    for index in reversed(range(split.count)):
        await esme.submit(
            data_coding=split.data_coding,
            short_message=split.parts[index],
            sar=pdus.Sar(7, split.count, index + 1),
            registered_delivery=False,
        )

    [sms] = await simulator.wait_messages(1, destination="79161234567", timeout=TIMEOUT)
    assert sms.text == LONG_UCS2
    assert [part.sar for part in sms.parts] == [
        pdus.Sar(7, split.count, seq) for seq in range(1, split.count + 1)
    ]


async def test_message_payload_is_one_message(start_simulator: Start, connect: Connect) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)

    await esme.submit(
        data_coding=8, message_payload=LONG_UCS2.encode("utf-16-be"), registered_delivery=False
    )

    [sms] = await simulator.wait_messages(1, timeout=TIMEOUT)
    assert sms.text == LONG_UCS2
    assert len(sms.parts) == 1
    assert sms.parts[0].short_message == b""


async def test_interleaved_messages_to_two_phones_stay_apart(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)
    split = segment(LONG_GSM7)
    other = "79160000000"

    for index in range(split.count):
        for destination, reference in ((CUSTOMER[1:], 9), (other, 9)):
            await esme.submit(
                destination=destination,
                short_message=concat_udh(reference, split.count, index + 1) + split.parts[index],
                udhi=True,
                registered_delivery=False,
            )

    [mine] = await simulator.wait_messages(1, destination=CUSTOMER, timeout=TIMEOUT)
    [theirs] = await simulator.wait_messages(1, destination="+" + other, timeout=TIMEOUT)
    assert mine.text == theirs.text == LONG_GSM7
    assert mine.destination != theirs.destination


async def test_wait_messages_times_out_saying_what_arrived(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)
    await esme.submit(destination="79160000000", short_message=b"elsewhere", registered_delivery=False)

    with pytest.raises(TimeoutError, match=r"got 0.*79160000000 'elsewhere'"):
        await simulator.wait_messages(1, destination=CUSTOMER, timeout=0.1)


# -- mobile-originated SMS ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "data_coding", "expected"),
    [
        ("CLIENT info", None, 0),
        ("КЛИЕНТ инфо", None, 8),
        ("Café crème", 3, 3),
        ("CLIENT sms stop", 8, 8),
    ],
)
async def test_inject_mo_delivers_a_deliver_sm(
    start_simulator: Start, connect: Connect, text: str, data_coding: int | None, expected: int
) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)

    ids = await simulator.inject_mo(CUSTOMER, text, SERVICE, data_coding=data_coding)
    mo = await esme.received()

    assert len(ids) == 1
    assert pdus.command_name(mo) == "deliver_sm"
    assert not pdus.is_delivery_receipt(mo)
    assert pdus.str_param(mo, "source_addr") == "79161234567"
    assert pdus.ton_value(mo.params["source_addr_ton"]) == pdus.TON_INTERNATIONAL
    assert pdus.str_param(mo, "destination_addr") == "79086228779"
    assert pdus.data_coding_of(mo) == expected
    assert text_of(mo) == text
    await simulator.wait_delivered(TIMEOUT)
    assert [(d.kind, d.outcome) for d in simulator.deliveries] == [("mo", "ok")]


async def test_long_mo_arrives_in_concatenated_parts(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)

    ids = await simulator.inject_mo(CUSTOMER, LONG_UCS2, SERVICE)
    parts = [await esme.received() for _ in ids]

    headers = [split_udh(pdus.text_bytes(part))[0] for part in parts]
    assert len(ids) == len(parts) >= 3
    assert all(pdus.has_udhi(part) for part in parts)
    assert len({header.reference for header in headers if header}) == 1
    assert [(h.seq, h.total) for h in headers if h] == [(i, len(ids)) for i in range(1, len(ids) + 1)]
    assert "".join(text_of(part) for part in parts) == LONG_UCS2


async def test_inject_mo_refuses_text_the_coding_cannot_carry(start_simulator: Start) -> None:
    simulator = await start_simulator()

    with pytest.raises(ValueError, match="data_coding 3"):
        await simulator.inject_mo(CUSTOMER, "Привет", SERVICE, data_coding=3)
    with pytest.raises(ValueError, match="GSM"):
        await simulator.inject_mo(CUSTOMER, "Привет", SERVICE, data_coding=0)
    assert simulator.pending_deliveries == 0


async def test_mo_waits_for_a_receiver_and_is_delivered_on_bind(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    await bound_esme(connect, simulator, "bind_transmitter")

    await simulator.inject_mo(CUSTOMER, "CLIENT info", SERVICE)
    with pytest.raises(TimeoutError, match="1 deliveries still unacknowledged"):
        await simulator.wait_delivered(0.1)
    assert simulator.deliveries == []

    receiver = await bound_esme(connect, simulator, "bind_receiver")
    mo = await receiver.received()

    assert text_of(mo) == "CLIENT info"
    await simulator.wait_delivered(TIMEOUT)
    assert simulator.pending_deliveries == 0


async def test_lost_deliver_sm_resp_is_redelivered_after_reconnection(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator(redelivery_delay=5.0)
    first = await bound_esme(connect, simulator)
    simulator.lose_next_deliver_resps(1)

    await simulator.inject_mo(CUSTOMER, "CLIENT info", SERVICE)
    original = await first.received()
    await asyncio.wait_for(first.session.wait_closed(), TIMEOUT)
    assert simulator.pending_deliveries == 1

    second = await bound_esme(connect, simulator, answer=False)
    again = await second.received()
    assert pdus.encode(again)[16:] == pdus.encode(original)[16:]
    with pytest.raises(TimeoutError):
        await simulator.wait_delivered(0.05)

    second.answer_now(again)
    await simulator.wait_delivered(TIMEOUT)
    assert [(d.attempt, d.outcome) for d in simulator.deliveries] == [(1, "lost"), (2, "ok")]


async def test_error_deliver_sm_resp_is_redelivered(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator, statuses=[pdus.ESME_RX_T_APPN])

    await simulator.inject_mo(CUSTOMER, "CLIENT sms stop", SERVICE)
    refused = await esme.received()
    again = await esme.received()
    await simulator.wait_delivered(TIMEOUT)

    assert again.seqNum != refused.seqNum
    assert pdus.encode(again)[16:] == pdus.encode(refused)[16:]
    assert [(d.attempt, d.outcome, d.status) for d in simulator.deliveries] == [
        (1, "error", pdus.ESME_RX_T_APPN),
        (2, "ok", pdus.ESME_ROK),
    ]


async def test_dropped_links_redeliver_receipts_on_rebind(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator(redelivery_delay=5.0)
    esme = await bound_esme(connect, simulator, answer=False)
    response = await esme.submit(short_message=b"hello")
    await esme.received()

    simulator.drop_links()
    await asyncio.wait_for(esme.session.wait_closed(), TIMEOUT)
    again = await bound_esme(connect, simulator)
    receipt = await again.received()

    assert pdus.str_param(receipt, "receipted_message_id") == response.params["message_id"].decode()
    await simulator.wait_delivered(TIMEOUT)
    assert [d.outcome for d in simulator.deliveries] == ["link_down", "ok"]


# -- malformed input ----------------------------------------------------------------------------


async def read_pdu(reader: asyncio.StreamReader) -> Pdu:
    header = await asyncio.wait_for(reader.readexactly(16), TIMEOUT)
    length = int.from_bytes(header[:4], "big")
    body = await asyncio.wait_for(reader.readexactly(length - 16), TIMEOUT)
    return pdus.decode(header + body)


def frame(command_id: int, sequence: int, body: bytes = b"") -> bytes:
    return pdus.HEADER.pack(16 + len(body), command_id, 0, sequence) + body


@pytest.fixture
async def raw(start_simulator: Start) -> AsyncIterator[tuple[Simulator, asyncio.StreamReader,
                                                             asyncio.StreamWriter]]:
    simulator = await start_simulator()
    reader, writer = await asyncio.open_connection("127.0.0.1", simulator.port)
    yield simulator, reader, writer
    writer.close()
    await writer.wait_closed()


async def test_unknown_command_id_gets_generic_nack(
    raw: tuple[Simulator, asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    _, reader, writer = raw

    writer.write(frame(0x00000999, 7))
    nack = await read_pdu(reader)
    writer.write(frame(0x00000015, 8))
    alive = await read_pdu(reader)

    assert pdus.command_name(nack) == "generic_nack"
    assert (nack.seqNum, pdus.status_of(nack)) == (7, pdus.ESME_RINVCMDID)
    assert pdus.command_name(alive) == "enquire_link_resp"


async def test_truncated_submit_gets_generic_nack_and_nothing_is_recorded(
    raw: tuple[Simulator, asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    simulator, reader, writer = raw
    bind = pdus.bind("bind_transceiver", system_id="smsline", password="pw")
    bind.seqNum = 1
    writer.write(pdus.encode(bind))
    assert pdus.status_of(await read_pdu(reader)) == pdus.ESME_ROK

    writer.write(frame(0x00000004, 2, b"\x00\x05"))
    nack = await read_pdu(reader)
    writer.write(frame(0x00000015, 3))
    alive = await read_pdu(reader)

    assert pdus.command_name(nack) == "generic_nack"
    assert nack.seqNum == 2
    assert pdus.status_of(nack) != pdus.ESME_ROK
    assert pdus.command_name(alive) == "enquire_link_resp"
    assert simulator.submits == []


@pytest.mark.parametrize(
    "data",
    [b"\xff\xff\xff\xff" + bytes(12), b"\x00\x00\x00\x05" + bytes(12)],
    ids=["absurd-length", "too-short"],
)
async def test_bad_command_length_gets_generic_nack_and_the_simulator_lives_on(
    raw: tuple[Simulator, asyncio.StreamReader, asyncio.StreamWriter],
    connect: Connect,
    data: bytes,
) -> None:
    simulator, reader, writer = raw

    writer.write(data)
    nack = await read_pdu(reader)
    closed = await asyncio.wait_for(reader.read(), TIMEOUT)

    assert pdus.command_name(nack) == "generic_nack"
    assert pdus.status_of(nack) == pdus.ESME_RINVCMDLEN
    assert closed == b""
    await bound_esme(connect, simulator)


# -- HTTP control -------------------------------------------------------------------------------


async def test_http_mo_reaches_the_esme(
    http: tuple[Simulator, httpx.AsyncClient], connect: Connect
) -> None:
    simulator, client = http
    esme = await bound_esme(connect, simulator)

    response = await client.post("/mo", json={"from": CUSTOMER, "text": "CLIENT info"})
    mo = await esme.received()

    assert response.status_code == 202
    assert response.json() == {"queued": 1}
    assert pdus.str_param(mo, "source_addr") == "79161234567"
    assert pdus.str_param(mo, "destination_addr") == "79086228779"
    assert text_of(mo) == "CLIENT info"
    binds = (await client.get("/binds")).json()
    assert [b["bind_type"] for b in binds] == ["transceiver"]
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert health["smpp_port"] == simulator.port


async def test_http_receipt_for_no_message_reaches_the_esme_as_a_receipt(
    http: tuple[Simulator, httpx.AsyncClient], connect: Connect
) -> None:
    simulator, client = http
    esme = await bound_esme(connect, simulator)

    response = await client.post(
        "/receipts", json={"text": "id:0042 stat:DELIVRD err:000", "receipted_message_id": "42"}
    )
    receipt = await esme.received()

    assert response.status_code == 202
    assert pdus.is_delivery_receipt(receipt)
    assert text_of(receipt) == "id:0042 stat:DELIVRD err:000"
    assert pdus.str_param(receipt, "receipted_message_id") == "42"
    assert pdus.str_param(receipt, "source_addr") == "79990000000"
    refused = await client.post("/receipts", json={"text": "stat:ДОСТАВЛЕНО"})
    assert refused.status_code == 422
    assert simulator.pending_deliveries == 0


async def test_http_long_poll_returns_a_message_submitted_meanwhile(
    http: tuple[Simulator, httpx.AsyncClient], connect: Connect
) -> None:
    simulator, client = http
    esme = await bound_esme(connect, simulator)
    assert (await client.get("/messages", params={"to": CUSTOMER})).json() == []

    started = time.monotonic()
    poll = asyncio.create_task(client.get("/messages", params={"to": CUSTOMER, "wait": 10}))
    response = await esme.submit(short_message="Ваш запрос принят".encode("utf-16-be"), data_coding=8)
    messages = (await asyncio.wait_for(poll, TIMEOUT)).json()

    assert time.monotonic() - started < 5
    [message] = messages
    assert message["text"] == "Ваш запрос принят"
    assert message["from"] == "SCSERV"
    assert message["to"] == "79161234567"
    assert message["encoding"] == "ucs2"
    assert message["parts"] == 1
    assert message["message_ids"] == [response.params["message_id"].decode()]
    later = await client.get("/messages", params={"to": CUSTOMER, "after": message["id"]})
    assert later.json() == []


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"text": "CLIENT info"}, "from"),
        ({"from": "not a phone", "text": "CLIENT info"}, "from"),
        ({"from": CUSTOMER, "text": ""}, "text"),
        ({"from": CUSTOMER, "text": "CLIENT info", "data_coding": 5}, "data_coding"),
        ({"from": CUSTOMER, "text": "Привет", "data_coding": 3}, "text"),
    ],
)
async def test_http_mo_with_a_bad_body_is_422(
    http: tuple[Simulator, httpx.AsyncClient], body: dict[str, Any], field_name: str
) -> None:
    simulator, client = http

    response = await client.post("/mo", json=body)

    assert response.status_code == 422
    assert any(field_name in item["loc"] for item in response.json()["detail"])
    assert simulator.pending_deliveries == 0


# -- standalone run and the `smsline mo` client ---------------------------------------------------


@pytest.mark.usefixtures("no_signal_handlers")
async def test_standalone_simulator_answers_the_mo_client(
    connect: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    ready: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
    runner = asyncio.create_task(
        run_standalone(
            host="127.0.0.1", port=0, http_port=0, system_id="smsline", password=None,
            on_ready=lambda smpp, http: ready.set_result((smpp, http)),
        )
    )
    smpp_port, http_port = await asyncio.wait_for(ready, TIMEOUT)
    esme = await connect(smpp_port)
    assert pdus.status_of(await esme.bind()) == pdus.ESME_ROK

    async def reply_to_each_mo() -> None:
        while True:
            mo = await esme.inbox.get()
            if not pdus.is_delivery_receipt(mo):
                await esme.submit(
                    destination=pdus.str_param(mo, "source_addr"),
                    short_message=b"Your request has been received.",
                    registered_delivery=False,
                )

    bot = asyncio.create_task(reply_to_each_mo())
    echoed: list[str] = []
    try:
        summary = await asyncio.to_thread(
            inject_mo, f"http://127.0.0.1:{http_port}", "79161234567", "CLIENT info", SERVICE,
            wait=1.0, echo=echoed.append,
        )
    finally:
        bot.cancel()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner

    assert summary == "sent 'CLIENT info' from +79161234567 to +79086228779; 1 reply"
    [line] = echoed
    assert re.fullmatch(r"← \d\d:\d\d:\d\d SCSERV: Your request has been received\.", line)
    out = capsys.readouterr().out
    assert f"127.0.0.1:{smpp_port}" in out
    assert f'smsline mo +79161234567 "CLIENT info" --url http://127.0.0.1:{http_port}' in out
    assert "simulator stopped" in out
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", smpp_port)
