"""The simulator's fault injection, seen from a hand-written ESME over real TCP."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu
from smsline.smpp.session import SessionClosed
from smsline.smpp.simulator import Simulator, run_standalone
from smsline.smpp.simulator_client import clear_faults, drop_links, set_faults
from smsline.smpp.simulator_faults import Faults
from tests.smpp.conftest import CUSTOMER, SERVICE, TIMEOUT, Connect, Esme, Start, bound_esme, text_of

# A bounded wait used only to show that something does NOT happen.
QUIET = 0.3


def message_id(response: Pdu) -> str:
    return str(pdus.str_param(response, "message_id"))


async def receipts(esme: Esme, count: int) -> list[Pdu]:
    found = [await esme.received() for _ in range(count)]
    assert all(pdus.is_delivery_receipt(pdu) for pdu in found)
    return found


# -- submit_sm_resp -------------------------------------------------------------------------------


async def test_response_delay_holds_every_answer_but_keeps_their_order(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    simulator.set_faults(response_delay=0.3)
    esme = await bound_esme(connect, simulator)

    started = time.monotonic()
    responses = await asyncio.gather(*(esme.submit(short_message=f"m{i}".encode()) for i in range(3)))

    assert time.monotonic() - started >= 0.3
    assert [pdus.status_of(r) for r in responses] == [pdus.ESME_ROK] * 3
    assert [message_id(r) for r in responses] == [s.message_id for s in simulator.submits]


async def test_submits_over_the_tps_are_throttled_until_the_second_has_passed(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    simulator.set_faults(throttle_tps=5)
    esme = await bound_esme(connect, simulator)

    started = time.monotonic()
    burst = await asyncio.gather(*(esme.submit(short_message=f"m{i}".encode()) for i in range(8)))
    statuses = [pdus.status_of(r) for r in burst]
    while pdus.status_of(retry := await esme.submit(short_message=b"retry")) == pdus.ESME_RTHROTTLED:
        assert time.monotonic() - started < TIMEOUT
        await asyncio.sleep(0.05)
    accepted_after = time.monotonic() - started

    assert statuses.count(pdus.ESME_ROK) == 5
    assert statuses.count(pdus.ESME_RTHROTTLED) == 3
    assert pdus.status_of(retry) == pdus.ESME_ROK
    assert accepted_after >= 0.95
    assert len(simulator.submits) == 6
    assert {r.status for r in simulator.refused} == {pdus.ESME_RTHROTTLED}
    await simulator.wait_messages(6, timeout=TIMEOUT)
    assert sorted(sms.text for sms in simulator.messages) == ["m0", "m1", "m2", "m3", "m4", "retry"]


async def test_a_seeded_fraction_of_submits_gets_the_chosen_error(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)

    async def refused_numbers() -> list[int]:
        statuses = [
            pdus.status_of(await esme.submit(short_message=f"m{i}".encode())) for i in range(30)
        ]
        assert set(statuses) == {pdus.ESME_ROK, pdus.ESME_RMSGQFUL}
        return [i for i, status in enumerate(statuses) if status != pdus.ESME_ROK]

    simulator.set_faults(error_fraction=0.3, error_status=pdus.ESME_RMSGQFUL, seed=7)
    first = await refused_numbers()
    simulator.set_faults(seed=7)
    second = await refused_numbers()

    assert 3 <= len(first) <= 18
    assert second == first
    accepted = 60 - 2 * len(first)
    assert len(simulator.submits) == accepted
    assert len(simulator.refused) == 2 * len(first)
    # A refused submit_sm is no message: no text for the handset, no receipt.
    await simulator.wait_messages(accepted, timeout=TIMEOUT)
    assert [sms.text for sms in simulator.messages[: 30 - len(first)]] == [
        f"m{i}" for i in range(30) if i not in first
    ]
    assert len(await receipts(esme, accepted)) == accepted
    await simulator.wait_delivered(TIMEOUT)


# -- the link -----------------------------------------------------------------------------------


async def test_link_is_dropped_after_every_nth_submit_and_only_answered_submits_count(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    simulator.set_faults(drop_link_every=3)
    first = await bound_esme(connect, simulator)

    answered = [await first.submit(short_message=f"a{i}".encode()) for i in range(3)]
    await asyncio.wait_for(first.session.wait_closed(), TIMEOUT)

    second = await bound_esme(connect, simulator)
    results = await asyncio.gather(
        *(second.submit(short_message=f"b{i}".encode()) for i in range(5)), return_exceptions=True
    )
    await asyncio.wait_for(second.session.wait_closed(), TIMEOUT)

    assert [pdus.status_of(r) for r in answered] == [pdus.ESME_ROK] * 3
    ok = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert [pdus.status_of(r) for r in ok] == [pdus.ESME_ROK] * 3
    assert len(lost) == 2
    assert all(isinstance(exc, SessionClosed) for exc in lost)
    # Every submit the SMSC took was answered: whatever the ESME must resend is new to it.
    assert [s.message_id for s in simulator.submits] == [message_id(r) for r in answered + ok]


async def test_hung_link_answers_nothing_until_the_fault_is_cleared(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)
    simulator.set_faults(hung=True)

    enquire = asyncio.ensure_future(esme.session.request(pdus.enquire_link(), use_window=False))
    submit = asyncio.ensure_future(esme.submit(short_message=b"into the void"))
    await simulator.inject_mo(CUSTOMER, "CLIENT info", SERVICE)
    newcomer = await connect(simulator.port)
    bind = asyncio.ensure_future(newcomer.bind())
    done, pending = await asyncio.wait({enquire, submit, bind}, timeout=QUIET)

    assert not done
    assert esme.session.is_open
    assert newcomer.session.is_open
    assert esme.inbox.empty()
    assert simulator.submits == []

    simulator.clear_faults()
    mo = await esme.received()
    answer = await esme.session.request(pdus.enquire_link(), use_window=False)

    assert text_of(mo) == "CLIENT info"
    assert pdus.command_name(answer) == "enquire_link_resp"
    assert not bind.done()  # what came in while hung is never answered, as with a real hung peer
    for request in pending:
        request.cancel()


async def test_drop_links_aborts_every_connection(start_simulator: Start, connect: Connect) -> None:
    simulator = await start_simulator()
    esmes = [await bound_esme(connect, simulator) for _ in range(2)]

    dropped = simulator.drop_links()

    assert dropped == 2
    for esme in esmes:
        await asyncio.wait_for(esme.session.wait_closed(), TIMEOUT)
    assert simulator.binds() == []


# -- receipts -------------------------------------------------------------------------------------


async def test_receipt_id_bases_can_change_while_running(start_simulator: Start, connect: Connect) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)
    simulator.set_faults(message_id_format="dec", receipt_id_format="hex")

    response = await esme.submit(short_message=b"hello")
    [receipt] = await receipts(esme, 1)

    decimal = message_id(response)
    assert decimal.isdigit()
    hexadecimal = f"{int(decimal):X}"
    assert pdus.str_param(receipt, "receipted_message_id") == hexadecimal
    assert text_of(receipt).startswith(f"id:{hexadecimal} ")


async def test_receipt_before_response_comes_first_and_the_response_follows_its_answer(
    start_simulator: Start, connect: Connect
) -> None:
    simulator = await start_simulator()
    simulator.set_faults(receipt_before_response=True)
    esme = await bound_esme(connect, simulator, answer=False)

    submit = asyncio.ensure_future(esme.submit(short_message=b"hello"))
    receipt = await esme.received()
    await asyncio.sleep(0)
    assert not submit.done()
    answered = time.monotonic()
    esme.answer_now(receipt)
    response = await asyncio.wait_for(submit, TIMEOUT)

    assert time.monotonic() - answered < 1.0  # not the fallback: it followed the receipt's answer
    assert pdus.status_of(response) == pdus.ESME_ROK
    assert pdus.str_param(receipt, "receipted_message_id") == message_id(response)


async def test_a_seeded_fraction_of_receipts_is_late(start_simulator: Start, connect: Connect) -> None:
    simulator = await start_simulator()
    simulator.set_faults(late_receipt_fraction=0.5, late_receipt_delay=0.4, seed=3)
    esme = await bound_esme(connect, simulator)

    for i in range(10):
        await esme.submit(short_message=f"m{i}".encode())
    arrived: dict[str, float] = {}
    for _ in range(10):
        receipt = await esme.received()
        arrived[pdus.str_param(receipt, "receipted_message_id")] = time.monotonic()

    waited = [arrived[s.message_id] - s.received_at for s in simulator.submits]
    late = [w for w in waited if w >= 0.4]
    on_time = [w for w in waited if w < 0.4]
    assert late
    assert on_time
    assert len(late) + len(on_time) == 10


async def test_a_seeded_fraction_of_receipts_never_comes(start_simulator: Start, connect: Connect) -> None:
    simulator = await start_simulator()
    esme = await bound_esme(connect, simulator)

    async def submit_and_see_which_get_receipts() -> list[int]:
        first = len(simulator.submits)
        for i in range(12):
            await esme.submit(short_message=f"m{i}".encode())
        await simulator.wait_delivered(TIMEOUT)
        got: set[str] = set()
        while not esme.inbox.empty():
            got.add(pdus.str_param(esme.inbox.get_nowait(), "receipted_message_id"))
        return [i for i, s in enumerate(simulator.submits[first:]) if s.message_id in got]

    simulator.set_faults(missing_receipt_fraction=0.5, seed=11)
    first = await submit_and_see_which_get_receipts()
    simulator.set_faults(seed=11)
    second = await submit_and_see_which_get_receipts()

    assert 0 < len(first) < 12
    assert second == first
    assert len(simulator.messages) == 24


def test_faults_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="error_fraction"):
        Faults(error_fraction=1.5)
    with pytest.raises(ValueError, match="error_status"):
        Faults(error_status=0)


# -- control over HTTP --------------------------------------------------------------------------


async def test_http_sets_reads_and_clears_faults(
    http: tuple[Simulator, httpx.AsyncClient], connect: Connect
) -> None:
    simulator, client = http
    esme = await bound_esme(connect, simulator)

    changed = await client.patch("/faults", json={"error_fraction": 1, "error_status": "ESME_RMSGQFUL"})
    refused = await esme.submit(short_message=b"hello")
    again = await client.patch("/faults", json={"response_delay": 0.1})
    current = (await client.get("/faults")).json()
    cleared = await client.delete("/faults")
    accepted = await esme.submit(short_message=b"hello")

    assert changed.status_code == 200
    assert changed.json()["error_status"] == pdus.ESME_RMSGQFUL
    assert pdus.status_of(refused) == pdus.ESME_RMSGQFUL
    assert again.json()["error_fraction"] == 1  # a change keeps the other faults
    assert current == again.json()
    assert current["response_delay"] == 0.1
    assert cleared.json()["error_fraction"] == 0
    assert pdus.status_of(accepted) == pdus.ESME_ROK


@pytest.mark.parametrize(
    "body",
    [
        {"error_fraction": 2},
        {"error_status": "ESME_NOSUCHTHING"},
        {"error_status": 0},
        {"drop_link_every": -1},
        {"hung": "maybe"},
        {"response_delay": None},
        {"no_such_fault": True},
    ],
)
async def test_http_refuses_bad_faults_and_keeps_the_current_ones(
    http: tuple[Simulator, httpx.AsyncClient], body: dict[str, object]
) -> None:
    simulator, client = http
    simulator.set_faults(throttle_tps=10)

    response = await client.patch("/faults", json=body)

    assert response.status_code == 422
    assert simulator.faults == Faults(throttle_tps=10)


@pytest.mark.usefixtures("no_signal_handlers")
async def test_the_control_client_drives_a_standalone_simulator(connect: Connect) -> None:
    ready: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
    runner = asyncio.create_task(
        run_standalone(
            host="127.0.0.1", port=0, http_port=0, system_id=None, password=None,
            on_ready=lambda smpp, http: ready.set_result((smpp, http)),
        )
    )
    try:
        smpp_port, http_port = await asyncio.wait_for(ready, TIMEOUT)
        url = f"http://127.0.0.1:{http_port}"
        esme = await connect(smpp_port)
        assert pdus.status_of(await esme.bind()) == pdus.ESME_ROK

        faults = await asyncio.to_thread(set_faults, url, error_fraction=1.0, error_status=0x45)
        refused = await esme.submit(short_message=b"hello")
        await asyncio.to_thread(clear_faults, url)
        accepted = await esme.submit(short_message=b"hello")
        dropped = await asyncio.to_thread(drop_links, url)
        await asyncio.wait_for(esme.session.wait_closed(), TIMEOUT)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner

    assert faults["error_status"] == 0x45
    assert pdus.status_of(refused) == 0x45
    assert pdus.status_of(accepted) == pdus.ESME_ROK
    assert dropped == 1
