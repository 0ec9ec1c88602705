"""The built-in SMSC simulator: an SMPP 3.4 peer that smsline runs and is tested against.

It behaves like an operator's SMSC towards its ESMEs. It authenticates binds, answers
``submit_sm`` with message ids, reassembles concatenated messages the way a handset shows them,
and sends delivery receipts. Mobile-originated SMS are injected as if a customer had sent them.
Every ``deliver_sm`` (MO or receipt) stays in a delivery queue until an ESME answers it with
``ESME_ROK``: it waits for a receiver bind, and it is redelivered after a link loss or an error
response.

Tests inspect what it received (``submits``, ``refused``, ``messages``, ``deliveries``) and wait
on it with ``wait_messages``, ``wait_bound`` and ``wait_delivered``. ``set_faults`` makes it
misbehave (see ``simulator_faults``); ``lose_next_deliver_resps`` and ``drop_links`` inject
one-off faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import heapq
import itertools
import logging
import secrets
import signal
import socket
import time
from collections.abc import Callable, Collection, Generator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from smpp.pdu import constants

from smsline.config import LongMessageMode
from smsline.domain.gsm7 import encode_gsm7, is_gsm7
from smsline.domain.segments import concat_udh, decode_payload, segment, split_udh
from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu
from smsline.smpp.session import ResponseTimeout, Session, SessionClosed
from smsline.smpp.simulator_faults import RECEIPT_FIRST_WAIT, Faults, FaultState, IdFormat

log = logging.getLogger("smsline.simulator")

BindType = Literal["transceiver", "transmitter", "receiver"]
DeliveryKind = Literal["mo", "receipt"]
Outcome = Literal["ok", "error", "lost", "link_down", "timeout"]

SMSC_SYSTEM_ID = "SMSLINESIM"
MESSAGE_STATE_DELIVERED = 2

_BIND_TYPES: dict[str, BindType] = {
    "bind_transceiver": "transceiver",
    "bind_transmitter": "transmitter",
    "bind_receiver": "receiver",
}
_DELIVER_SM_RESP = 0x80000005
_ENCODING_NAMES = {0: "gsm7", 1: "ascii", 3: "latin1", 8: "ucs2"}
_SINGLE_OCTETS = 140
MO_HEADER_OCTETS: dict[LongMessageMode, int] = {"udh8": 6, "udh16": 7, "sar": 0, "payload": 0}
_MAX_PARTS = 255


def digits(number: str) -> str:
    """A phone number as an SMSC carries it: E.164 without the '+'."""
    return number.strip().removeprefix("+")


@dataclass
class SubmittedPdu:
    """One ``submit_sm`` the simulator accepted, decoded to plain values."""

    message_id: str
    system_id: str
    source: str
    source_ton: int
    source_npi: int
    destination: str
    dest_ton: int
    dest_npi: int
    data_coding: int
    udhi: bool
    registered_delivery: int
    short_message: bytes
    message_payload: bytes | None
    sar: pdus.Sar | None
    received_at: float
    received_wall: datetime

    @property
    def receipt_requested(self) -> bool:
        return self.registered_delivery & 0x03 == 0x01


@dataclass(frozen=True)
class RefusedSubmit:
    """One ``submit_sm`` the simulator answered with an error (throttling, injected errors)."""

    system_id: str
    destination: str
    status: int
    at: float


@dataclass
class ReceivedSms:
    """A whole message as the handset shows it, after reassembly of its parts."""

    source: str
    destination: str
    text: str
    encoding: str
    data_coding: int
    parts: list[SubmittedPdu]
    message_ids: list[str]
    completed_at: float
    id: int
    completed_wall: datetime
    system_id: str


@dataclass(frozen=True)
class DeliveryAttempt:
    """One ``deliver_sm`` sent to an ESME and what came of it."""

    delivery_id: int
    kind: DeliveryKind
    attempt: int
    system_id: str
    peer: str
    sequence: int | None
    status: int | None
    """The deliver_sm_resp command_status; None when no response arrived."""
    outcome: Outcome
    at: float


@dataclass(frozen=True)
class _DeliverContent:
    source: str
    source_ton: int
    destination: str
    data_coding: int
    short_message: bytes
    udhi: bool = False
    receipt: bool = False
    receipted_message_id: str | None = None
    message_state: int | None = None
    user_message_reference: int | None = None  # the handset's TP-MR, new for every SMS it sends
    sar: pdus.Sar | None = None
    message_payload: bytes | None = None

    def pdu(self) -> Pdu:
        return pdus.deliver_sm(
            source=self.source,
            source_ton=self.source_ton,
            destination=self.destination,
            data_coding=self.data_coding,
            short_message=self.short_message,
            udhi=self.udhi,
            receipt=self.receipt,
            receipted_message_id=self.receipted_message_id,
            message_state=self.message_state,
            user_message_reference=self.user_message_reference,
            sar=self.sar,
            message_payload=self.message_payload,
        )


@dataclass
class _Delivery:
    id: int
    kind: DeliveryKind
    system_id: str | None
    """Receipts go to binds of the submitter's system_id; None: any receiver bind."""
    content: _DeliverContent
    due: float
    attempts: int = 0
    in_flight: bool = False
    retry_on_bind: bool = False


class _SmscSession(Session):
    """The SMSC side of one connection; it can lose deliver_sm_resp, or hang, on purpose."""

    def __init__(
        self,
        *,
        name: str,
        window: int,
        response_timeout: float,
        enquire_link_interval: float,
        on_request: Callable[[Session, Pdu], None],
        on_closed: Callable[[Session], None],
        lose_response: Callable[[], bool],
        hung: Callable[[], bool],
    ) -> None:
        super().__init__(
            name=name,
            window=window,
            response_timeout=response_timeout,
            enquire_link_interval=enquire_link_interval,
            on_request=on_request,
            on_closed=on_closed,
        )
        self._lose_response = lose_response
        self._hung = hung
        self.lost_sequences: set[int] = set()

    def _handle_frame(self, frame: bytes) -> None:
        if not self.is_open or self._hung():
            return
        header = pdus.parse_header(frame)
        if (
            header.command_id == _DELIVER_SM_RESP
            and header.sequence in self._pending
            and self._lose_response()
        ):
            self.lost_sequences.add(header.sequence)
            log.info("%s: losing the deliver_sm_resp %d from %s and aborting the link",
                     self.name, header.sequence, self.peer)
            self.abort("deliver_sm_resp lost")
            return
        super()._handle_frame(frame)


@dataclass
class _Link:
    session: _SmscSession
    system_id: str
    bind_type: BindType
    peer: str
    in_flight: int = 0

    @property
    def receives(self) -> bool:
        return self.bind_type != "transmitter"


@dataclass
class _Partial:
    total: int
    parts: dict[int, tuple[SubmittedPdu, bytes]]


_PartialKey = tuple[str, str, str, str, int, int]


class Simulator:
    """An SMSC that smsline's ESMEs bind to over TCP."""

    def __init__(
        self,
        *,
        system_id: str | None = None,
        password: str | None = None,
        receipt_delay: float = 0.0,
        message_id_format: IdFormat = "hex",
        receipt_tlvs: bool = True,
        window: int = 64,
        enquire_link_interval: float = 30.0,
        response_timeout: float = 10.0,
        redelivery_delay: float = 1.0,
        receipt_id_format: IdFormat | None = None,
        keep: int | None = None,
    ) -> None:
        """The receipt and id settings are the initial ``faults`` (see ``Faults``):
        ``receipt_id_format`` renders the id in receipts in another base than in
        ``submit_sm_resp`` (as some SMSCs do); by default both use ``message_id_format``.
        ``keep`` bounds each of the records (submits, refusals, messages, deliveries) to about
        that many of the newest, so that a simulator left running under load does not grow
        without end; None keeps everything (tests)."""
        self.system_id = system_id
        self.password = password
        self._faults = FaultState(
            Faults(
                receipt_delay=receipt_delay,
                message_id_format=message_id_format,
                receipt_id_format=receipt_id_format,
                receipt_tlvs=receipt_tlvs,
            )
        )
        self.window = window
        self.enquire_link_interval = enquire_link_interval
        self.response_timeout = response_timeout
        self.redelivery_delay = redelivery_delay

        self.keep = keep
        self.submits: list[SubmittedPdu] = []
        self.refused: list[RefusedSubmit] = []
        self.messages: list[ReceivedSms] = []
        self.deliveries: list[DeliveryAttempt] = []

        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._stopped = False
        self._connections: set[_SmscSession] = set()
        self._links: dict[Session, _Link] = {}
        self._partials: dict[_PartialKey, _Partial] = {}
        self._queue: dict[int, _Delivery] = {}
        # (due, id) of the deliveries waiting for an attempt, soonest first; an entry whose
        # delivery has gone, is in flight or has another due time since is stale and skipped.
        self._waiting: list[tuple[float, int]] = []
        self._stalled: list[tuple[float, int]] = []
        self._delivery_ids = itertools.count(1)
        self._session_numbers = itertools.count(1)
        self._message_numbers = itertools.count(0x10000000 + secrets.randbelow(0x40000000))
        self._sms_ids = itertools.count(1)
        self._mo_reference = secrets.randbelow(256)
        self._handset_mr: dict[str, int] = {}
        self._lose_responses = 0
        self._change = asyncio.Event()
        self._watchers = 0
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._attempts: set[asyncio.Task[None]] = set()
        self._answers_after_receipt: dict[int, Callable[[], None]] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
    ) -> int:
        """Listen for ESMEs (on ``sock`` when given, bound already); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        loop = asyncio.get_running_loop()
        self._stopped = False
        if sock is not None:
            self._server = await loop.create_server(self._new_session, sock=sock)
        else:
            self._server = await loop.create_server(self._new_session, host, port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._dispatcher = loop.create_task(self._dispatch(), name="simulator-dispatch")
        log.info("SMSC simulator listening on %s:%d", host, self._port)
        return self._port

    async def stop(self) -> None:
        """Close every link and stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopped = True
        server.close()
        sessions = list(self._connections)
        for session in sessions:
            session.close("simulator stopping")
        tasks: list[asyncio.Task[None]] = list(self._attempts)
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
            self._dispatcher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for delivery in self._queue.values():
            if delivery.in_flight:
                heapq.heappush(self._waiting, (delivery.due, delivery.id))
            delivery.in_flight = False
            delivery.retry_on_bind = True
        for link in self._links.values():
            link.in_flight = 0
        for session in sessions:
            try:
                await asyncio.wait_for(session.wait_closed(), 2.0)
            except TimeoutError:
                session.abort("simulator stopping")
                await session.wait_closed()
        await server.wait_closed()
        self._changed()
        log.info(
            "SMSC simulator stopped: %d submit_sm, %d messages, %d deliver_sm sent, %d queued",
            len(self.submits), len(self.messages), len(self.deliveries), len(self._queue),
        )

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator has not been started")
        return self._port

    @property
    def pending_deliveries(self) -> int:
        """MO and receipts not yet acknowledged with ESME_ROK by an ESME."""
        return len(self._queue)

    def _new_session(self) -> _SmscSession:
        session = _SmscSession(
            name=f"smsc-{next(self._session_numbers)}",
            window=self.window,
            response_timeout=self.response_timeout,
            enquire_link_interval=self.enquire_link_interval,
            on_request=self._on_request,
            on_closed=self._on_closed,
            lose_response=self._take_lost_response,
            hung=lambda: self._faults.faults.hung,
        )
        self._connections.add(session)
        return session

    def _on_closed(self, session: Session) -> None:
        assert isinstance(session, _SmscSession)
        self._connections.discard(session)
        link = self._links.pop(session, None)
        if link is not None:
            log.info(
                "%s %s system_id=%s peer=%s (%s); %d binds left",
                "unbound" if session.unbinding else "link closed",
                link.bind_type, link.system_id, link.peer, session.close_reason or "closed",
                len(self._links),
            )
        self._changed()
        self._wake.set()

    def binds(self) -> list[dict[str, str]]:
        """The bound ESME links: system_id, bind type, peer address."""
        return [
            {"system_id": link.system_id, "bind_type": link.bind_type, "peer": link.peer}
            for link in self._links.values()
        ]

    def drop_links(self) -> int:
        """Abort every ESME connection now, as a network failure would; returns how many."""
        sessions = list(self._connections)
        log.info("dropping %d links", len(sessions))
        for session in sessions:
            session.abort("dropped by the simulator")
        return len(sessions)

    @property
    def faults(self) -> Faults:
        """How the simulator misbehaves now."""
        return self._faults.faults

    def set_faults(self, **changes: Any) -> Faults:
        """Misbehave from now on as the current faults with ``changes`` (fields of ``Faults``)
        say. The random generator is seeded again and the count towards ``drop_link_every``
        starts over, so the same calls give the same faults."""
        faults = replace(self._faults.faults, **changes)
        self._faults = FaultState(faults)
        log.info("faults now: %s", faults)
        self._wake.set()
        return faults

    def clear_faults(self) -> Faults:
        """Behave well again: answer at once, accept everything, send every receipt."""
        self._faults = FaultState(Faults())
        log.info("faults cleared")
        self._wake.set()
        return self._faults.faults

    def lose_next_deliver_resps(self, count: int = 1) -> None:
        """Treat the next ``count`` deliver_sm_resp as lost: ignore each and abort its link."""
        self._lose_responses = count

    def _take_lost_response(self) -> bool:
        if self._lose_responses <= 0:
            return False
        self._lose_responses -= 1
        return True

    # -- requests from ESMEs ------------------------------------------------------------------

    def _on_request(self, session: Session, pdu: Pdu) -> None:
        try:
            self._handle_request(session, pdu)
        except Exception:
            log.exception("failed to handle %s from %s", pdus.command_name(pdu), session.peer)
            with contextlib.suppress(Exception):
                session.respond(pdu, pdus.generic_nack(pdu.seqNum, pdus.ESME_RSYSERR))

    def _handle_request(self, session: Session, pdu: Pdu) -> None:
        command = pdus.command_name(pdu)
        link = self._links.get(session)
        bind_type = _BIND_TYPES.get(command)
        if bind_type is not None:
            self._bind(session, pdu, bind_type, bound=link is not None)
        elif link is None:
            self._reject(session, pdu, pdus.ESME_RINVBNDSTS)
        elif command == "submit_sm":
            if link.bind_type == "receiver":
                self._reject(session, pdu, pdus.ESME_RINVBNDSTS)
            else:
                self._submit(session, link, pdu)
        else:
            session.respond(pdu, pdus.generic_nack(pdu.seqNum, pdus.ESME_RINVCMDID))

    def _reject(self, session: Session, pdu: Pdu, status: int) -> None:
        session.respond(pdu, _error_response(pdu, status))

    def _bind(self, session: Session, pdu: Pdu, bind_type: BindType, *, bound: bool) -> None:
        system_id = pdus.str_param(pdu, "system_id")
        password = pdus.str_param(pdu, "password")
        status = pdus.ESME_ROK
        if bound:
            status = pdus.ESME_RALYBND
        elif self.system_id is not None and system_id != self.system_id:
            status = pdus.ESME_RINVSYSID
        elif self.password is not None and password != self.password:
            status = pdus.ESME_RINVPASWD
        if status != pdus.ESME_ROK:
            log.warning(
                "refused bind_%s system_id=%r from %s: %s",
                bind_type, system_id, session.peer, pdus.status_name(status),
            )
            session.respond(pdu, pdus.bind_resp(pdu, status=status, system_id=SMSC_SYSTEM_ID))
            return
        assert isinstance(session, _SmscSession)
        link = _Link(session=session, system_id=system_id, bind_type=bind_type, peer=session.peer)
        self._links[session] = link
        session.respond(pdu, pdus.bind_resp(pdu, status=pdus.ESME_ROK, system_id=SMSC_SYSTEM_ID))
        log.info(
            "bound %s system_id=%s peer=%s; %d binds",
            bind_type, system_id, session.peer, len(self._links),
        )
        if link.receives:
            now = time.monotonic()
            for delivery in self._queue.values():
                if delivery.retry_on_bind:
                    delivery.retry_on_bind = False
                    delivery.due = min(delivery.due, now)
                    if not delivery.in_flight:
                        heapq.heappush(self._waiting, (delivery.due, delivery.id))
        self._changed()
        self._wake.set()

    def _submit(self, session: Session, link: _Link, pdu: Pdu) -> None:
        state = self._faults
        faults = state.faults
        refusal = (
            pdus.ESME_RTHROTTLED if state.throttles()
            else faults.error_status if state.refuses()
            else None
        )
        if refusal is not None:
            destination = pdus.str_param(pdu, "destination_addr")
            self.refused.append(RefusedSubmit(link.system_id, destination, refusal, time.monotonic()))
            self._trim(self.refused)
            self._answer(session, pdu, _error_response(pdu, refusal), delay=faults.response_delay)
            self._changed()
            return
        number = next(self._message_numbers)
        message_id = _render_id(number, faults.message_id_format)
        record = _submitted(pdu, message_id=message_id, system_id=link.system_id)
        self.submits.append(record)
        self._trim(self.submits)
        drop = state.accept()
        response = pdus.submit_sm_resp(pdu, message_id=message_id)
        self._reassemble(record)
        receipt: int | None = None
        if record.receipt_requested:
            delay = state.receipt_delay()
            if delay is not None:
                receipt = self._enqueue_receipt(record, _render_id(number, faults.receipt_ids), delay)
        if faults.receipt_before_response and receipt is not None:
            self._answer_after_receipt(session, pdu, response, receipt, drop=drop)
        else:
            self._answer(session, pdu, response, delay=faults.response_delay, drop=drop)
        log.debug("submit_sm from %s: %d accepted so far", link.system_id, len(self.submits))
        self._changed()

    def _answer(
        self, session: Session, request: Pdu, response: Pdu, *, delay: float = 0.0, drop: bool = False
    ) -> None:
        """Answer now or after ``delay`` seconds; with ``drop``, close the link right after."""
        if delay > 0:
            asyncio.get_running_loop().call_later(
                delay, lambda: self._answer(session, request, response, drop=drop)
            )
            return
        session.respond(request, response)
        if drop:
            log.info("dropping the link to %s after %d submit_sm", session.peer,
                     self.faults.drop_link_every)
            session.close("dropped by the simulator")

    def _answer_after_receipt(
        self, session: Session, request: Pdu, response: Pdu, delivery_id: int, *, drop: bool
    ) -> None:
        """Answer once the receipt's first deliver_sm attempt is over, or at the latest after
        ``RECEIPT_FIRST_WAIT`` seconds."""

        def answer() -> None:
            if self._answers_after_receipt.pop(delivery_id, None) is not None:
                timer.cancel()
                self._answer(session, request, response, drop=drop)

        timer = asyncio.get_running_loop().call_later(RECEIPT_FIRST_WAIT, answer)
        self._answers_after_receipt[delivery_id] = answer

    # -- reassembly ---------------------------------------------------------------------------

    def _reassemble(self, record: SubmittedPdu) -> None:
        payload = _user_data(record)
        key: _PartialKey | None = None
        seq = total = 0
        body = record.message_payload if record.message_payload is not None else record.short_message
        if record.udhi:
            with contextlib.suppress(ValueError):
                concat, _ = split_udh(body)
                if concat is not None and concat.total > 1:
                    key = self._partial_key(record, "udh", concat.reference, concat.total)
                    seq, total = concat.seq, concat.total
        sar = record.sar
        if key is None and sar is not None and sar.total > 1 and 1 <= sar.seq <= sar.total:
            key = self._partial_key(record, "sar", sar.reference, sar.total)
            seq, total = sar.seq, sar.total
        if key is None:
            self._complete([(record, payload)])
            return
        partial = self._partials.setdefault(key, _Partial(total=total, parts={}))
        if seq in partial.parts:
            log.debug("duplicate part %d/%d ignored", seq, total)
            return
        partial.parts[seq] = (record, payload)
        if len(partial.parts) == partial.total:
            del self._partials[key]
            self._complete([partial.parts[index] for index in sorted(partial.parts)])

    @staticmethod
    def _partial_key(record: SubmittedPdu, kind: str, reference: int, total: int) -> _PartialKey:
        return (record.system_id, record.source, digits(record.destination), kind, reference, total)

    def _complete(self, parts: list[tuple[SubmittedPdu, bytes]]) -> None:
        first = parts[0][0]
        text = decode_payload(first.data_coding, b"".join(payload for _, payload in parts))
        sms = ReceivedSms(
            source=first.source,
            destination=first.destination,
            text=text,
            encoding=_ENCODING_NAMES.get(first.data_coding, f"data_coding {first.data_coding}"),
            data_coding=first.data_coding,
            parts=[record for record, _ in parts],
            message_ids=[record.message_id for record, _ in parts],
            completed_at=time.monotonic(),
            id=next(self._sms_ids),
            completed_wall=datetime.now(UTC),
            system_id=first.system_id,
        )
        self.messages.append(sms)
        self._trim(self.messages)
        log.debug("message %d complete (%d parts); %d messages", sms.id, len(parts),
                  len(self.messages))

    def _trim(self, records: list[Any]) -> None:
        """Forget the oldest records once there are a tenth more than ``keep`` (amortised)."""
        if self.keep is not None and len(records) > self.keep + self.keep // 10:
            del records[: len(records) - self.keep]

    # -- waiting ------------------------------------------------------------------------------

    def _changed(self) -> None:
        if self._watchers:  # a new event per submit only when someone waits for one
            self._change.set()
            self._change = asyncio.Event()

    async def _wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        self._watchers += 1
        try:
            async with asyncio.timeout(timeout):
                while not ready():
                    await self._change.wait()
        except TimeoutError:
            return False
        finally:
            self._watchers -= 1
        return True

    def _messages_to(self, destination: str | None, after: int = 0) -> list[ReceivedSms]:
        wanted = None if destination is None else digits(destination)
        return [
            sms
            for sms in self.messages
            if sms.id > after and (wanted is None or digits(sms.destination) == wanted)
        ]

    async def wait_messages(
        self, count: int, *, destination: str | None = None, timeout: float = 10.0
    ) -> list[ReceivedSms]:
        """The first ``count`` reassembled messages (to ``destination``), once they are in."""
        if await self._wait_until(lambda: len(self._messages_to(destination)) >= count, timeout):
            return self._messages_to(destination)[:count]
        received = self._messages_to(destination)
        where = "" if destination is None else f" to {destination}"
        summary = "; ".join(
            f"#{sms.id} {sms.source}->{sms.destination} {sms.text[:60]!r}" for sms in self.messages
        )
        raise TimeoutError(
            f"expected {count} message(s){where} within {timeout:g}s, got {len(received)}; "
            f"all {len(self.messages)} received: [{summary}]; "
            f"{len(self.submits)} submit_sm, {len(self._partials)} incomplete multipart"
        )

    async def messages_after(
        self, after: int, *, destination: str | None = None, timeout: float = 0.0
    ) -> list[ReceivedSms]:
        """Messages newer than id ``after``; waits up to ``timeout`` for at least one."""
        await self._wait_until(
            lambda: self._stopped or bool(self._messages_to(destination, after)), timeout
        )
        return self._messages_to(destination, after)

    @property
    def last_message_id(self) -> int:
        return self.messages[-1].id if self.messages else 0

    async def wait_bound(self, timeout: float, system_id: str | None = None) -> None:
        """Wait until an ESME (with that system_id) is bound."""

        def bound() -> bool:
            return any(
                system_id is None or link.system_id == system_id for link in self._links.values()
            )

        if not await self._wait_until(bound, timeout):
            who = "an ESME" if system_id is None else f"system_id {system_id!r}"
            raise TimeoutError(
                f"{who} did not bind within {timeout:g}s; binds: {self.binds()}, "
                f"{len(self._connections)} connections"
            )

    async def wait_delivered(self, timeout: float) -> None:
        """Wait until every MO and receipt has been acknowledged with ESME_ROK."""
        if not await self._wait_until(lambda: not self._queue, timeout):
            waiting = ", ".join(
                f"{d.kind} #{d.id} ({d.attempts} attempts)" for d in self._queue.values()
            )
            raise TimeoutError(
                f"{len(self._queue)} deliveries still unacknowledged after {timeout:g}s: "
                f"{waiting}; receiver binds: "
                f"{[b for b in self.binds() if b['bind_type'] != 'transmitter']}"
            )

    # -- deliveries ---------------------------------------------------------------------------

    async def inject_mo(
        self,
        source: str,
        text: str,
        destination: str,
        *,
        data_coding: int | None = None,
        drop_parts: Collection[int] = (),
        long_messages: LongMessageMode = "udh8",
    ) -> list[int]:
        """Queue an SMS from a handset (``source``) to ``destination``; returns the part ids.

        A long text goes as the SMSC would pass it on: parts with a concatenation UDH (8- or
        16-bit reference), parts with SAR TLVs, or one ``deliver_sm`` with ``message_payload``.
        ``drop_parts`` (1-based part numbers) are lost in the network and never delivered."""
        sender = digits(source)
        receiver = digits(destination)
        if not sender.isdigit() or len(sender) > 20:
            raise ValueError(f"the sender must be a phone number, got {source!r}")
        if not receiver or len(receiver) > 20:
            raise ValueError(f"the destination must be a number or short code, got {destination!r}")
        coding, payloads = _encode_mo(text, data_coding, MO_HEADER_OCTETS[long_messages])
        sars: list[pdus.Sar | None] = [None] * len(payloads)
        message_payload: bytes | None = None
        udhi = False
        if len(payloads) > 1:
            self._mo_reference = (self._mo_reference + 1) % (256 if long_messages == "udh8" else 65536)
            reference = self._mo_reference
            total = len(payloads)
            if long_messages in ("udh8", "udh16"):
                udhi = True
                payloads = [
                    concat_udh(reference, total, index, sixteen_bit=long_messages == "udh16") + payload
                    for index, payload in enumerate(payloads, start=1)
                ]
            elif long_messages == "sar":
                sars = [pdus.Sar(reference, total, index) for index in range(1, total + 1)]
            else:
                message_payload = b"".join(payloads)
                payloads, sars = [b""], [None]
        ids = [
            self._enqueue(
                "mo",
                _DeliverContent(
                    source=sender,
                    source_ton=pdus.TON_INTERNATIONAL,
                    destination=receiver,
                    data_coding=coding,
                    short_message=payload,
                    udhi=udhi,
                    sar=sar,
                    message_payload=message_payload,
                    user_message_reference=self._next_mr(sender),
                ),
                system_id=None,
                delay=0.0,
            )
            for number, (payload, sar) in enumerate(zip(payloads, sars, strict=True), start=1)
            if number not in drop_parts
        ]
        log.info("MO queued in %d part(s); %d deliveries queued", len(ids), len(self._queue))
        self._changed()
        return ids

    def inject_receipt(
        self,
        text: str,
        *,
        receipted_message_id: str | None = None,
        source: str = "79990000000",
        to: str = "SCSERV",
    ) -> int:
        """Queue a delivery receipt that refers to no ``submit_sm`` this simulator answered, as
        SMSCs send now and then (for a message of before their restart, of another ESME, or
        with an id mangled on the way): ``text`` as its short message, and a
        ``receipted_message_id`` TLV if given, from handset ``source`` to the ESME's sender
        ``to``. Returns its delivery id."""
        sender = digits(source)
        if not sender.isdigit() or len(sender) > 20:
            raise ValueError(f"the handset must be a phone number, got {source!r}")
        if not is_gsm7(text) or len(encode_gsm7(text)) > 254:
            raise ValueError("a receipt's text must be GSM-7 and fit one short_message (254 octets)")
        content = _DeliverContent(
            source=sender,
            source_ton=pdus.TON_INTERNATIONAL,
            destination=to,
            data_coding=0,
            short_message=encode_gsm7(text),
            receipt=True,
            receipted_message_id=receipted_message_id,
        )
        return self._enqueue("receipt", content, system_id=None, delay=0.0)

    def _next_mr(self, handset: str) -> int:
        reference = (self._handset_mr.get(handset, secrets.randbelow(256)) + 1) % 256
        self._handset_mr[handset] = reference
        return reference

    def _enqueue_receipt(self, record: SubmittedPdu, receipt_id: str, delay: float) -> int:
        submitted = record.received_wall.timestamp()
        snippet = decode_payload(record.data_coding, _user_data(record))[:20]
        if not is_gsm7(snippet):
            snippet = "".join(char if is_gsm7(char) else "?" for char in snippet)
        text = (
            f"id:{receipt_id} sub:001 dlvrd:001 submit date:{_receipt_date(submitted)} "
            f"done date:{_receipt_date(submitted + delay)} stat:DELIVRD err:000 text:{snippet}"
        )
        content = _DeliverContent(
            source=digits(record.destination),
            source_ton=record.dest_ton,
            destination=record.source,
            data_coding=0,
            short_message=encode_gsm7(text),
            receipt=True,
            receipted_message_id=receipt_id if self.faults.receipt_tlvs else None,
            message_state=MESSAGE_STATE_DELIVERED if self.faults.receipt_tlvs else None,
        )
        return self._enqueue("receipt", content, system_id=record.system_id, delay=delay)

    def _enqueue(
        self, kind: DeliveryKind, content: _DeliverContent, *, system_id: str | None, delay: float
    ) -> int:
        delivery = _Delivery(
            id=next(self._delivery_ids),
            kind=kind,
            system_id=system_id,
            content=content,
            due=time.monotonic() + delay,
        )
        self._queue[delivery.id] = delivery
        heapq.heappush(self._waiting, (delivery.due, delivery.id))
        self._wake.set()
        return delivery.id

    def _receiver_for(self, system_id: str | None) -> _Link | None:
        candidates = [
            link
            for link in self._links.values()
            if link.receives
            and link.session.is_open
            and (system_id is None or link.system_id == system_id)
        ]
        return min(candidates, key=lambda link: link.in_flight, default=None)

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if self.faults.hung:
                await self._wake.wait()
                continue
            now = time.monotonic()
            # Due deliveries go out while a receiver bind has room in its window; the rest wait
            # for an answer to free a slot (which wakes this loop). Only what is due and fits is
            # looked at, so a backlog of receipts costs nothing per wake-up.
            for entry in self._stalled:  # due, but no receiver had room for them last time
                heapq.heappush(self._waiting, entry)
            self._stalled = []
            while self._waiting and self._waiting[0][0] <= now and len(self._stalled) < self.window:
                due, delivery_id = heapq.heappop(self._waiting)
                delivery = self._queue.get(delivery_id)
                if delivery is None or delivery.in_flight or delivery.due != due:
                    continue  # stale entry
                link = self._receiver_for(delivery.system_id)
                if link is None or link.in_flight >= self.window:
                    self._stalled.append((due, delivery_id))  # an answer or a bind wakes us
                    continue
                delivery.in_flight = True
                link.in_flight += 1
                task = loop.create_task(self._attempt(delivery, link))
                self._attempts.add(task)
                task.add_done_callback(self._attempts.discard)
            # Sleep until the next delivery falls due; what is due already but found no room
            # waits for a wake-up (an answer frees a slot, a bind adds one, a delivery arrives).
            next_due = self._waiting[0][0] if self._waiting else None
            if next_due is None or (self._stalled and next_due <= now):
                timeout = None
            else:
                timeout = max(0.0, next_due - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _attempt(self, delivery: _Delivery, link: _Link) -> None:
        delivery.attempts += 1
        session = link.session
        pdu = delivery.content.pdu()
        status: int | None = None
        outcome: Outcome
        try:
            response = await session.request(pdu)
        except ResponseTimeout:
            outcome = "timeout"
        except SessionClosed:
            outcome = "lost" if pdu.seqNum in session.lost_sequences else "link_down"
        except pdus.PduError as exc:
            outcome, status = "error", exc.status
        except Exception:
            log.exception("%s #%d could not be sent to %s", delivery.kind, delivery.id, link.peer)
            outcome = "error"
        else:
            status = pdus.status_of(response)
            outcome = "ok" if status == pdus.ESME_ROK else "error"
        link.in_flight -= 1
        delivery.in_flight = False
        self.deliveries.append(
            DeliveryAttempt(
                delivery_id=delivery.id,
                kind=delivery.kind,
                attempt=delivery.attempts,
                system_id=link.system_id,
                peer=link.peer,
                sequence=pdu.seqNum,
                status=status,
                outcome=outcome,
                at=time.monotonic(),
            )
        )
        self._trim(self.deliveries)
        answer = self._answers_after_receipt.get(delivery.id)
        if answer is not None:
            answer()
        if outcome == "ok":
            del self._queue[delivery.id]
        else:
            delivery.due = time.monotonic() + self.redelivery_delay
            delivery.retry_on_bind = outcome != "error"
            heapq.heappush(self._waiting, (delivery.due, delivery.id))
            log.info(
                "%s #%d attempt %d to %s: %s%s; redelivering",
                delivery.kind, delivery.id, delivery.attempts, link.system_id, outcome,
                "" if status is None else f" ({pdus.status_name(status)})",
            )
        self._changed()
        self._wake.set()


# -- helpers ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _receipt_minute(minute: int) -> str:
    return time.strftime("%y%m%d%H%M", time.localtime(minute * 60))


def _receipt_date(timestamp: float) -> str:
    """A receipt's date (YYMMDDhhmm, the SMSC's local time), formatted once per minute: at full
    speed the simulator writes thousands of them a second."""
    return _receipt_minute(int(timestamp // 60))


def _render_id(number: int, fmt: IdFormat) -> str:
    return f"{number:X}" if fmt == "hex" else str(number)


def _error_response(request: Pdu, status: int) -> Pdu:
    """The request's response carrying an error status (a generic_nack if it has none)."""
    try:
        response = request.requireAck(seqNum=request.seqNum, status=pdus.status_enum(status))
        pdus.encode(response)
    except Exception:
        return pdus.generic_nack(request.seqNum, status)
    return response


def _npi_value(member: Any) -> int:
    return 0 if member is None else int(constants.addr_npi_name_map[member.name])


def _submitted(pdu: Pdu, *, message_id: str, system_id: str) -> SubmittedPdu:
    params = pdu.params
    payload = params.get("message_payload")
    short = params.get("short_message")
    return SubmittedPdu(
        message_id=message_id,
        system_id=system_id,
        source=pdus.str_param(pdu, "source_addr"),
        source_ton=pdus.ton_value(params.get("source_addr_ton")),
        source_npi=_npi_value(params.get("source_addr_npi")),
        destination=pdus.str_param(pdu, "destination_addr"),
        dest_ton=pdus.ton_value(params.get("dest_addr_ton")),
        dest_npi=_npi_value(params.get("dest_addr_npi")),
        data_coding=pdus.data_coding_of(pdu),
        udhi=pdus.has_udhi(pdu),
        registered_delivery=pdus.registered_delivery_of(pdu),
        short_message=bytes(short) if short else b"",
        message_payload=None if payload is None else bytes(payload),
        sar=pdus.sar_of(pdu),
        received_at=time.monotonic(),
        received_wall=datetime.now(UTC),
    )


def _user_data(record: SubmittedPdu) -> bytes:
    """The message's text octets: message_payload or short_message, less any UDH."""
    body = record.message_payload if record.message_payload is not None else record.short_message
    if record.udhi:
        with contextlib.suppress(ValueError):
            return split_udh(body)[1]
    return body


def _encode_mo(text: str, data_coding: int | None, header_octets: int) -> tuple[int, list[bytes]]:
    """Encode an MO text as a handset would, split into parts without their UDH (each part
    leaves room for ``header_octets`` of it)."""
    if data_coding is None or data_coding == 0:
        if data_coding == 0 and not is_gsm7(text):
            raise ValueError("the text has characters outside the GSM 03.38 alphabet (data_coding 0)")
        segmentation = segment(text, header_octets=header_octets)
        if segmentation.count > _MAX_PARTS:
            raise ValueError(f"the text takes {segmentation.count} SMS; at most {_MAX_PARTS}")
        return segmentation.data_coding, list(segmentation.parts)
    codecs = {3: "latin-1", 8: "utf-16-be"}
    codec = codecs.get(data_coding)
    if codec is None:
        raise ValueError(f"data_coding must be 0, 3 or 8, got {data_coding}")
    try:
        pieces = [char.encode(codec) for char in text]
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"the text has characters that data_coding {data_coding} cannot carry: "
            f"{exc.object[exc.start:exc.end]!r}"
        ) from None
    if sum(len(piece) for piece in pieces) <= _SINGLE_OCTETS:
        return data_coding, [b"".join(pieces)]
    parts: list[bytes] = []
    current = bytearray()
    for piece in pieces:
        if len(current) + len(piece) > _SINGLE_OCTETS - header_octets:
            parts.append(bytes(current))
            current = bytearray()
        current += piece
    parts.append(bytes(current))
    if len(parts) > _MAX_PARTS:
        raise ValueError(f"the text takes {len(parts)} SMS; at most {_MAX_PARTS}")
    return data_coding, parts


# -- standalone ---------------------------------------------------------------------------------


def _listening_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if hasattr(socket, "SO_REUSEADDR") and not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


FREEZE_EVERY = 2.0  # seconds


async def _freeze_what_lives() -> None:
    """Keep the records the simulator holds (up to ``keep`` of each kind) out of the garbage
    collector's full collections. Walking them took a pause that grew with them, to ~180 ms,
    during which no submit_sm was answered. Every couple of seconds the young garbage is
    collected and what still lives is frozen; records are freed by their reference counts when
    they are trimmed, as before."""
    while True:
        gc.collect(1)
        gc.freeze()
        await asyncio.sleep(FREEZE_EVERY)


async def run_standalone(
    *,
    host: str,
    port: int,
    http_port: int,
    system_id: str | None,
    password: str | None,
    service_number: str = "+79086228779",
    receipt_delay: float = 0.0,
    keep: int | None = None,
    on_ready: Callable[[int, int], None] | None = None,
) -> None:
    """Run the simulator and its HTTP control endpoint until cancelled or interrupted.

    ``on_ready`` is called with the SMPP and HTTP ports once both listen.
    """
    import uvicorn
    from rich.console import Console
    from rich.markup import escape

    from smsline.smpp.simulator_http import create_app

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    console = Console(highlight=False, soft_wrap=True)
    handler: logging.Handler | None = None
    if not logging.getLogger().handlers and not log.handlers:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    simulator = Simulator(system_id=system_id, password=password, receipt_delay=receipt_delay, keep=keep)
    smpp_port = await simulator.start(host, port)
    try:
        sock = _listening_socket(host, http_port)
    except OSError:
        await simulator.stop()
        raise
    bound_http_port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(simulator, service_number=service_number),
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        handled.append(signum)
    serving = loop.create_task(server.serve(sockets=[sock]), name="simulator-http")
    stopping = loop.create_task(stop.wait(), name="simulator-stop")
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown_host}:{bound_http_port}"
    auth = "any system_id" if system_id is None else f"system_id {escape(system_id)}"
    auth += ", password checked" if password is not None else ", any password"
    console.print("[bold]smsline SMSC simulator[/bold]")
    console.print(f"  SMPP  {shown_host}:{smpp_port}  ({auth})")
    console.print(
        f"  HTTP  {base_url}  (POST /mo, POST /receipts, GET /messages, GET /binds, "
        "GET|PATCH|DELETE /faults, POST /drop-links, GET /healthz)"
    )
    console.print(
        f"  try   [cyan]smsline mo +79161234567 \"CLIENT info\" --url {base_url}[/cyan]"
    )
    console.print("  Ctrl-C stops it.")
    if on_ready is not None:
        on_ready(smpp_port, bound_http_port)
    freezing = loop.create_task(_freeze_what_lives(), name="simulator-gc")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()
    finally:
        freezing.cancel()
        server.should_exit = True
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
        with contextlib.suppress(Exception):
            await serving
        await simulator.stop()
        sock.close()
        for signum in handled:
            loop.remove_signal_handler(signum)
        if handler is not None:
            log.removeHandler(handler)
        console.print(
            f"simulator stopped: {len(simulator.submits)} submit_sm, "
            f"{len(simulator.messages)} messages, {simulator.pending_deliveries} undelivered"
        )
