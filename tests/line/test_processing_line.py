"""SPEC §1 end to end: MO over SMPP to the simulator → smsline → acknowledgement and answer back
to the simulated handset, on every database backend."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline.db.schema import consent_events, inbound_messages, outbox, receipts, requests
from smsline.domain.texts import ACK_TEXT
from smsline.serve import Service
from smsline.smpp.simulator import Simulator
from tests.line.conftest import SERVICE_NUMBER, add_customer, customer_row, eventually

PHONE = "+79161234567"
INFO_TEXT = re.compile(
    r"^REGISTRATION CENTER\.\nPersonal Code: 1234\. CLIENT'S PORTAL: login: ivanov, "
    r"password: ([a-z0-9]{8})\. Do not share your registration data with anyone\.$"
)


async def exchange(sim: Simulator, phone: str, text: str, replies: int = 2, **kw: Any) -> list[str]:
    """Text the service from `phone` and return the texts of the first `replies` SMS back."""
    before = len([m for m in sim.messages if m.destination.lstrip("+") == phone.lstrip("+")])
    await sim.inject_mo(phone.lstrip("+"), text, SERVICE_NUMBER.lstrip("+"), **kw)
    got = await sim.wait_messages(before + replies, destination=phone, timeout=15)
    return [m.text for m in got[before:]]


async def count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


async def test_client_info_acknowledges_then_answers_with_a_fresh_password(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    texts = await exchange(simulator, PHONE, "CLIENT info")
    assert texts[0] == ACK_TEXT["en"]
    match = INFO_TEXT.match(texts[1])
    assert match, texts[1]
    password = match.group(1)

    customer = await customer_row(engine, PHONE)
    assert customer["password_hash"] != password
    assert PasswordHasher().verify(customer["password_hash"], password)
    assert customer["password_must_change"] is True
    assert customer["password_expires_at"] is not None

    # The answer left only after the SMSC accepted the acknowledgement.
    async with engine.connect() as conn:
        request = (await conn.execute(select(requests))).mappings().one()
        sent = (await conn.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    assert [m["kind"] for m in sent] == ["ack", "credentials"]
    assert request["status"] == "done"
    assert request["acknowledged_at"] <= sent[1]["sending_at"]
    # History keeps the credential text masked.
    assert "password: ********" in sent[1]["text"]
    assert password not in sent[1]["text"]


async def test_second_info_replaces_the_password(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    first = INFO_TEXT.match((await exchange(simulator, PHONE, "client info"))[1])
    second = INFO_TEXT.match((await exchange(simulator, PHONE, "client info"))[1])
    assert first
    assert second
    assert first.group(1) != second.group(1)
    customer = await customer_row(engine, PHONE)
    hasher = PasswordHasher()
    assert hasher.verify(customer["password_hash"], second.group(1))
    with pytest.raises(Exception, match="does not match"):
        hasher.verify(customer["password_hash"], first.group(1))


@pytest.mark.parametrize(
    "text",
    [
        "client sms stop",
        "CLIENT SMS STOP",
        "  client   SMS  Stop ",
        "\u0421LI\u0415N\u0422 sms stop",  # Cyrillic С, Е, Т
        "Client\tsms\nstop",
    ],
)
async def test_sms_stop_in_any_spelling_turns_notifications_off(
    service: Service, simulator: Simulator, engine: AsyncEngine, text: str
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    texts = await exchange(simulator, PHONE, text)
    assert texts[0].startswith("Your request has been received.")
    assert "off" in texts[1].lower()
    customer = await customer_row(engine, PHONE)
    assert customer["sms_enabled"] is False
    async with engine.connect() as conn:
        event = (await conn.execute(select(consent_events))).mappings().one()
    assert (event["sms_enabled"], event["channel"], event["actor"]) == (False, "sms", PHONE)


async def test_sms_start_turns_them_back_on_and_records_consent(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE, sms_enabled=False)
    texts = await exchange(simulator, PHONE, "CLIENT sms start")
    assert " on" in texts[1].lower()
    assert (await customer_row(engine, PHONE))["sms_enabled"] is True
    assert await count(engine, consent_events, consent_events.c.sms_enabled.is_(True)) == 1


async def test_opted_out_customer_still_gets_info(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE, sms_enabled=False)
    texts = await exchange(simulator, PHONE, "CLIENT info")
    assert INFO_TEXT.match(texts[1])


async def test_russian_customer_gets_russian_replies(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE, language="ru")
    texts = await exchange(simulator, PHONE, "CLIENT sms stop")
    assert all(re.search("[а-яА-Я]", t) for t in texts), texts


async def test_unknown_number_gets_ack_and_not_registered_never_data(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    stranger = "+79031112233"
    texts = await exchange(simulator, stranger, "CLIENT info")
    assert texts[0].startswith("Your request has been received.")
    assert "not registered" in texts[1]
    assert "+7 800 555-35-35" in texts[1]
    assert "ivanov" not in texts[1]
    assert "1234" not in texts[1]
    # Nothing at all went to the registered customer.
    assert [m for m in simulator.messages if m.destination.lstrip("+") == PHONE.lstrip("+")] == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [("hello, is anybody there?", "not a command"), ("CLIENT infos", "command"), ("", "empty")],
)
async def test_anything_else_is_stored_as_ignored_and_gets_no_reply(
    service: Service, simulator: Simulator, engine: AsyncEngine, text: str, reason: str
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    await simulator.inject_mo(PHONE.lstrip("+"), text, SERVICE_NUMBER.lstrip("+"))
    await simulator.wait_delivered(10)  # deliver_sm_resp came back: it is stored
    async with engine.connect() as conn:
        row = (await conn.execute(select(inbound_messages))).mappings().one()
    assert row["status"] == "ignored"
    assert row["text"] == text
    assert reason in (row["reason"] or "").lower()
    assert await count(engine, requests) == 0
    assert await count(engine, outbox) == 0
    # A real request afterwards is answered, and nothing else came before it.
    texts = await exchange(simulator, PHONE, "client sms start")
    assert len([m for m in simulator.messages if m.destination.lstrip("+") == PHONE.lstrip("+")]) == 2
    assert texts[0].startswith("Your request")


async def test_other_destinations_are_ignored(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    await simulator.inject_mo(PHONE.lstrip("+"), "CLIENT info", "79990001122")
    await simulator.wait_delivered(10)
    async with engine.connect() as conn:
        row = (await conn.execute(select(inbound_messages))).mappings().one()
    assert row["status"] == "ignored"
    assert "service number" in row["reason"]
    assert await count(engine, outbox) == 0


@pytest.mark.parametrize(
    "settings_overrides", [{"limit_info_per_hour": 2, "limit_any_per_day": 3}]
)
async def test_abuse_limits_store_rate_limited_and_stay_silent(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    await exchange(simulator, PHONE, "client info")
    await exchange(simulator, PHONE, "client info")
    # Third info within the hour: over the limit.
    await simulator.inject_mo(PHONE.lstrip("+"), "client info", SERVICE_NUMBER.lstrip("+"))
    await simulator.wait_delivered(10)
    # Another kind of request is still allowed (3 a day) ...
    await exchange(simulator, PHONE, "client sms stop")
    # ... but the fourth of any kind is not.
    await simulator.inject_mo(PHONE.lstrip("+"), "client sms start", SERVICE_NUMBER.lstrip("+"))
    await simulator.wait_delivered(10)
    limited = await count(engine, inbound_messages, inbound_messages.c.status == "rate_limited")
    assert limited == 2
    assert await count(engine, requests) == 3
    async with engine.connect() as conn:
        reasons = (
            await conn.execute(
                select(inbound_messages.c.reason).where(inbound_messages.c.status == "rate_limited")
            )
        ).scalars().all()
    assert all(r for r in reasons)
    # 3 requests answered with 2 SMS each; nothing for the limited ones.
    await simulator.wait_messages(6, destination=PHONE, timeout=10)
    assert (await customer_row(engine, PHONE))["sms_enabled"] is False


async def test_redelivered_mo_after_a_lost_response_is_processed_once(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    """The link dies after smsline stored the MO but before the SMSC saw deliver_sm_resp; the
    SMSC delivers it again after the reconnect. One request, one acknowledgement, one answer."""
    await add_customer(engine, customer_id="c1", phone=PHONE)
    simulator.lose_next_deliver_resps(1)
    texts = await exchange(simulator, PHONE, "CLIENT sms stop")
    await simulator.wait_delivered(15)
    attempts = [d for d in simulator.deliveries if getattr(d, "kind", "mo") == "mo"]
    assert len(attempts) >= 2, "the SMSC should have delivered the MO twice"
    assert texts[0].startswith("Your request")
    assert await count(engine, requests) == 1
    assert await count(engine, inbound_messages) == 1
    assert await count(engine, consent_events) == 1
    # Give any wrongly-made second reply the chance to be sent: a following request's replies
    # come after it, and only those two arrive.
    await exchange(simulator, PHONE, "CLIENT sms start")
    assert len([m for m in simulator.messages if m.destination.lstrip("+") == PHONE.lstrip("+")]) == 4


async def test_multipart_inbound_is_reassembled_before_matching(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    text = "client" + " " * 170 + "sms stop"  # longer than one SMS: arrives in two parts
    texts = await exchange(simulator, PHONE, text)
    assert "off" in texts[1].lower()
    async with engine.connect() as conn:
        row = (await conn.execute(select(inbound_messages))).mappings().one()
    assert row["parts"] == 2
    assert row["text"] == text


@pytest.mark.parametrize("long_messages", ["udh8", "udh16", "sar", "payload"])
@pytest.mark.parametrize("data_coding", [0, 8])
async def test_long_inbound_is_reassembled_however_the_smsc_carries_it(
    service: Service, simulator: Simulator, engine: AsyncEngine, long_messages: str, data_coding: int
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    text = "client" + " " * 170 + "sms stop"  # longer than one SMS in either encoding
    delivered_before = len(simulator.deliveries)
    texts = await exchange(simulator, PHONE, text, data_coding=data_coding, long_messages=long_messages)
    assert "off" in texts[1].lower()
    mo_pdus = [d for d in simulator.deliveries[delivered_before:] if d.kind == "mo"]
    assert len(mo_pdus) == (1 if long_messages == "payload" else 2 if data_coding == 0 else 3)
    async with engine.connect() as conn:
        row = (await conn.execute(select(inbound_messages))).mappings().one()
    assert row["text"] == text
    assert row["status"] == "request"


async def test_long_junk_in_ucs2_is_stored_whole(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    text = "Здравствуйте! " * 12 + "Когда придёт карта? 🙂"
    await simulator.inject_mo(PHONE.lstrip("+"), text, SERVICE_NUMBER.lstrip("+"))
    await simulator.wait_delivered(10)
    async with engine.connect() as conn:
        row = (await conn.execute(select(inbound_messages))).mappings().one()
    assert row["text"] == text
    assert row["data_coding"] == 8
    assert row["parts"] > 1
    assert row["status"] == "ignored"


@pytest.mark.parametrize("data_coding", [0, 3, 8])
async def test_command_in_any_inbound_encoding(
    service: Service, simulator: Simulator, engine: AsyncEngine, data_coding: int
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    texts = await exchange(simulator, PHONE, "Client SMS stop", data_coding=data_coding)
    assert "off" in texts[1].lower()


async def test_outbound_sms_use_the_sender_name_and_request_receipts(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    await exchange(simulator, PHONE, "client sms stop")
    for pdu in simulator.submits:
        assert (pdu.source, pdu.source_ton, pdu.source_npi) == ("SCSERV", 5, 0)
        assert (pdu.destination, pdu.dest_ton, pdu.dest_npi) == (PHONE.lstrip("+"), 1, 1)
        assert pdu.registered_delivery & 1 == 1
        assert pdu.data_coding == 0


async def test_receipts_mark_replies_delivered(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    await exchange(simulator, PHONE, "client sms stop")

    async def all_delivered() -> bool:
        async with engine.connect() as conn:
            statuses = (await conn.execute(select(outbox.c.status))).scalars().all()
        return len(statuses) == 2 and set(statuses) == {"delivered"}

    await eventually(all_delivered)
    async with engine.connect() as conn:
        matched = (await conn.execute(select(receipts.c.message, receipts.c.status))).all()
    assert len(matched) == 2
    assert all(message is not None and status == "delivered" for message, status in matched)


async def test_a_receipt_delivered_again_after_a_lost_response_is_stored_once(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    """The SMSC delivers a receipt again when it missed smsline's deliver_sm_resp: the message
    still ends delivered, with one receipt on record, not two."""
    await add_customer(engine, customer_id="c1", phone=PHONE)
    simulator.set_faults(receipt_delay=0.5)
    await exchange(simulator, PHONE, "client sms stop")
    simulator.lose_next_deliver_resps(1)  # the first receipt's response

    async def all_delivered() -> bool:
        async with engine.connect() as conn:
            statuses = (await conn.execute(select(outbox.c.status))).scalars().all()
        return len(statuses) == 2 and set(statuses) == {"delivered"}

    await eventually(all_delivered)
    await simulator.wait_delivered(15)
    receipt_attempts = [d for d in simulator.deliveries if d.kind == "receipt"]
    assert len(receipt_attempts) >= 3, "the SMSC should have delivered one receipt twice"
    assert await count(engine, receipts) == 2


@pytest.mark.parametrize("settings_overrides", [{"multipart_timeout_seconds": 0.0}])
async def test_multipart_whose_parts_never_all_come_is_stored_as_incomplete(
    service: Service, simulator: Simulator, engine: AsyncEngine
) -> None:
    await add_customer(engine, customer_id="c1", phone=PHONE)
    text = "client" + " " * 170 + "info"
    await simulator.inject_mo(PHONE.lstrip("+"), text, SERVICE_NUMBER.lstrip("+"), drop_parts={2})
    await simulator.wait_delivered(10)
    assert await count(engine, inbound_messages) == 0  # waiting for the missing part

    closed = await service.inbound.sweep_parts(dt.datetime.now(dt.UTC))
    assert closed == 1
    async with engine.connect() as conn:
        row = (await conn.execute(select(inbound_messages))).mappings().one()
    assert row["status"] == "ignored"
    assert "1 of 2 parts" in row["reason"]
    assert row["text"].startswith("client ")
    assert await count(engine, requests) == 0
    assert await service.inbound.sweep_parts(dt.datetime.now(dt.UTC)) == 0
