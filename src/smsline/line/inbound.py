"""Inbound: every ``deliver_sm`` is stored before its ``deliver_sm_resp`` goes back.

Deliveries are written in batches (group commit): every delivery that arrived while the database
was busy is stored by one call of `InboundWriter.write` — the inbound messages, the requests they
carry with their acknowledgement SMS, the parts of multipart messages, and delivery receipts —
and only after that transaction commits do the responses go out. A failed transaction answers
every PDU of the batch with a temporary error, so the SMSC delivers them again: nothing that was
acknowledged is lost, and a redelivered MO is recognised and processed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from smsline import metrics
from smsline.config import Settings
from smsline.db.bulk import any_of
from smsline.db.engine import Database
from smsline.db.schema import customers, inbound_messages, inbound_parts, outbox, requests
from smsline.domain.commands import Command, match_command
from smsline.domain.limits import RecentRequests, RequestLimits, limit_exceeded
from smsline.domain.msisdn import InvalidMsisdn, from_smpp_address, normalise_msisdn
from smsline.domain.segments import decode_payload, split_udh
from smsline.domain.texts import ack_text, language_of
from smsline.line.outbox import CLAIM_SECONDS, Kind, OutboxItem, Priority, outbox_row
from smsline.line.receipts import ReceiptIn, parse_receipt, record_receipts
from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu
from smsline.smpp.session import Session

log = logging.getLogger("smsline.inbound")

SWEEP_EVERY = 30.0


@dataclass(slots=True)
class Delivery:
    """One deliver_sm as it came off a link, waiting to be stored and answered."""

    smsc: str
    session: Session
    pdu: Pdu
    received_at: dt.datetime
    received_mono: float


@dataclass(slots=True)
class MoIn:
    """A mobile-originated SMS, or one part of a concatenated one."""

    delivery: Delivery
    source: str
    destination: str
    data_coding: int
    payload: bytes
    dedupe_key: str
    group: tuple[int, int, int] | None = None  # (reference, total, seq)
    text: str = ""
    parts: int = 1
    problem: str | None = None


@dataclass(slots=True)
class Decision:
    mo: MoIn
    status: str
    reason: str | None = None
    command: Command | None = None
    customer: dict[str, Any] | None = None
    inbound_id: int = 0
    part_keys: list[tuple[str, int]] = field(default_factory=list)


def _address(raw: str, ton: int, region: str) -> str:
    try:
        return from_smpp_address(raw, ton, region)
    except InvalidMsisdn:
        return raw


def parse_delivery(delivery: Delivery, region: str) -> MoIn | ReceiptIn:
    """Plain values from a deliver_sm: a receipt, or an MO (or MO part)."""
    pdu = delivery.pdu
    if pdus.is_delivery_receipt(pdu):
        return parse_receipt(delivery.smsc, pdu)
    source_raw = pdus.str_param(pdu, "source_addr")
    dest_raw = pdus.str_param(pdu, "destination_addr")
    data_coding = pdus.data_coding_of(pdu)
    raw = pdus.text_bytes(pdu)
    sar = pdus.sar_of(pdu)
    # A redelivery repeats the PDU; a new SMS from the handset carries a new message reference
    # (TP-MR, passed on as user_message_reference by SMSCs that have it).
    reference = pdu.params.get("user_message_reference")
    digest = hashlib.sha256(
        f"{delivery.smsc}|{source_raw}|{dest_raw}|{data_coding}|{sar}|{reference}|".encode() + raw
    ).hexdigest()[:40]
    mo = MoIn(
        delivery=delivery,
        source=_address(source_raw, pdus.ton_value(pdu.params.get("source_addr_ton")), region),
        destination=_address(dest_raw, pdus.ton_value(pdu.params.get("dest_addr_ton")), region),
        data_coding=data_coding,
        payload=raw,
        dedupe_key=digest,
    )
    if pdus.has_udhi(pdu):
        try:
            concat, mo.payload = split_udh(raw)
        except ValueError as exc:
            mo.problem = f"malformed user data header: {exc}"
            mo.text = decode_payload(data_coding, raw)
            return mo
        if concat is not None and concat.total > 1:
            mo.group = (concat.reference, concat.total, concat.seq)
    elif sar is not None and sar.total > 1:
        mo.group = (sar.reference, sar.total, sar.seq)
    if mo.group is None:
        mo.text = decode_payload(data_coding, mo.payload)
    return mo


# The hot statements, built once (building and keying a statement per call costs more than
# running it).
_RECENT_KEYS = select(inbound_messages.c.dedupe_key).where(
    any_of(inbound_messages.c.dedupe_key, "keys"),
    inbound_messages.c.received_at >= bindparam("since"),
)
_CUSTOMERS_BY_PHONE = select(customers.c.id, customers.c.phone, customers.c.language).where(
    any_of(customers.c.phone, "phones")
)
_IS_INFO = requests.c.command == Command.INFO.value
_RECENT_COUNTS = (
    select(
        requests.c.msisdn,
        func.sum(case((and_(_IS_INFO, requests.c.received_at >= bindparam("hour_ago")), 1), else_=0)),
        func.sum(case((_IS_INFO, 1), else_=0)),
        func.count(),
    )
    .where(
        any_of(requests.c.msisdn, "phones"),
        requests.c.received_at >= bindparam("day_ago"),
    )
    .group_by(requests.c.msisdn)
)
_INSERT_INBOUND = insert(inbound_messages).returning(inbound_messages.c.id, inbound_messages.c.dedupe_key)
_INSERT_REQUESTS = insert(requests).returning(requests.c.id, requests.c.inbound)
_INSERT_ACKS = insert(outbox).returning(outbox.c.id, outbox.c.request)


class InboundWriter:
    """Stores deliveries in batches and answers them after the commit."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        worker_id: str,
        on_acks: Callable[[list[OutboxItem]], None],
    ) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = worker_id
        self.on_acks = on_acks
        self.service_number = normalise_msisdn(settings.service_number, settings.default_region)
        self.limits = RequestLimits(
            info_per_hour=settings.limit_info_per_hour,
            info_per_day=settings.limit_info_per_day,
            any_per_day=settings.limit_any_per_day,
        )
        self._in_flight: set[asyncio.Future[OutboxItem | None]] = set()
        self._last_error: BaseException | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def deliver(self, smsc: str, session: Session, pdu: Pdu) -> None:
        """The connectors' deliver_sm callback: queue it; the response comes after the commit."""
        delivery = Delivery(smsc, session, pdu, dt.datetime.now(dt.UTC), time.monotonic())
        try:
            parsed = parse_delivery(delivery, self.settings.default_region)
            future = self.db.submit(self.write, parsed, loop=session.loop)
        except Exception:
            log.exception("could not take a deliver_sm; answering with a temporary error")
            self._answer_failed(delivery)
            return
        self._in_flight.add(future)
        future.add_done_callback(partial(self._stored, delivery))

    def _stored(self, delivery: Delivery, future: asyncio.Future[OutboxItem | None]) -> None:
        self._in_flight.discard(future)
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if error is not None:
            if error is not self._last_error:  # one log line per failed batch, not per PDU
                self._last_error = error
                log.error(
                    "could not store deliveries; answering with a temporary error",
                    exc_info=(type(error), error, error.__traceback__),
                )
            self._answer_failed(delivery)
            return
        delivery.session.respond(delivery.pdu, pdus.deliver_sm_resp(delivery.pdu))
        ack = future.result()
        if ack is not None:
            self.on_acks([ack])

    @staticmethod
    def _answer_failed(delivery: Delivery) -> None:
        delivery.session.respond(delivery.pdu, pdus.deliver_sm_resp(delivery.pdu, status=pdus.ESME_RX_T_APPN))
        metrics.inbound_store_failures.inc()

    async def run(self) -> None:
        """Sweep multipart leftovers now and then until `stop`; then wait until every delivery
        taken has been stored and answered."""
        next_sweep = time.monotonic() + SWEEP_EVERY
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_sweep - time.monotonic()))
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_EVERY
                try:
                    await self.sweep_parts(dt.datetime.now(dt.UTC))
                except Exception:
                    log.exception("sweeping multipart leftovers failed")
        if self._in_flight:
            await asyncio.wait(list(self._in_flight))

    async def sweep_parts(self, now: dt.datetime) -> int:
        """Parts of a multipart SMS whose other parts never came are stored, after the timeout,
        as one ignored message saying so; parts of complete messages are dropped once no
        redelivery can come any more. Returns how many incomplete messages were closed."""
        cutoff = now - dt.timedelta(seconds=self.settings.multipart_timeout_seconds)
        forget = now - dt.timedelta(
            seconds=max(self.settings.multipart_timeout_seconds, self.settings.duplicate_window_seconds)
        )
        def close(conn: Connection) -> int:
            conn.execute(
                delete(inbound_parts).where(
                    inbound_parts.c.inbound.is_not(None), inbound_parts.c.received_at < forget
                )
            )
            stale = (
                conn.execute(
                    select(inbound_parts)
                    .where(inbound_parts.c.inbound.is_(None), inbound_parts.c.received_at < cutoff)
                    .order_by(inbound_parts.c.group_key, inbound_parts.c.seq)
                )
            ).mappings().all()
            groups: dict[str, list[Any]] = defaultdict(list)
            for part in stale:
                groups[part["group_key"]].append(part)
            for key, parts in groups.items():
                first = parts[0]
                text = "".join(decode_payload(p["data_coding"], bytes(p["payload"])) for p in parts)
                inbound_id = (
                    conn.execute(
                        insert(inbound_messages)
                        .values(
                            received_at=first["received_at"],
                            smsc=first["smsc"],
                            source=first["source"],
                            destination=first["destination"],
                            text=text,
                            data_coding=first["data_coding"],
                            parts=len(parts),
                            status="ignored",
                            reason=f"incomplete multipart message: {len(parts)} of {first['total']} "
                            f"parts arrived",
                            dedupe_key=hashlib.sha256(key.encode()).hexdigest()[:40],
                        )
                        .returning(inbound_messages.c.id)
                    )
                ).scalar_one()
                conn.execute(
                    update(inbound_parts).where(inbound_parts.c.group_key == key).values(inbound=inbound_id)
                )
                metrics.count(metrics.inbound_messages, "ignored").inc()
            return len(groups)

        return await self.db.run(close)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def write(self, conn: Connection, items: list[MoIn | ReceiptIn]) -> list[OutboxItem | None]:
        """Store a batch of deliveries; for each, the acknowledgement it made (if any)."""
        mos = [p for p in items if isinstance(p, MoIn)]
        receipts = [p for p in items if isinstance(p, ReceiptIn)]
        acks = self._store_mos(conn, mos) if mos else {}
        if receipts:
            record_receipts(conn, receipts, self.settings)
        return [acks.get(id(p.delivery)) if isinstance(p, MoIn) else None for p in items]

    # -- MO -----------------------------------------------------------------------------------

    def _store_mos(self, conn: Connection, mos: list[MoIn]) -> dict[int, OutboxItem]:
        """Store MOs; the acknowledgements made, by the id() of the delivery that completed
        their request."""
        now = dt.datetime.now(dt.UTC)  # taken inside the transaction: orders with other writers
        singles, parts = [m for m in mos if m.group is None], [m for m in mos if m.group]
        decisions: list[Decision] = []
        if parts:
            decisions.extend(self._assemble_parts(conn, parts, now))
        fresh = self._drop_duplicates(conn, singles, now)
        decisions.extend(Decision(mo=m, status="") for m in fresh)
        if not decisions:
            return {}
        self._decide(conn, decisions, now)
        return self._insert(conn, decisions, now)

    def _drop_duplicates(
        self, conn: Connection, mos: list[MoIn], now: dt.datetime
    ) -> list[MoIn]:
        if not mos:
            return []
        since = now - dt.timedelta(seconds=self.settings.duplicate_window_seconds)
        keys = list({m.dedupe_key for m in mos})
        seen = set(conn.execute(_RECENT_KEYS, {"keys": keys, "since": since}).scalars())
        fresh = []
        for m in mos:
            if m.dedupe_key in seen:
                metrics.inbound_duplicates.inc()
                log.info("duplicate delivery of an MO from %s ignored", m.source)
                continue
            seen.add(m.dedupe_key)
            fresh.append(m)
        return fresh

    def _assemble_parts(
        self, conn: Connection, parts: list[MoIn], now: dt.datetime
    ) -> list[Decision]:
        """Store new parts; return the messages that are now complete."""
        groups: dict[str, list[MoIn]] = defaultdict(list)
        for m in parts:
            assert m.group is not None
            ref, total, _ = m.group
            key = f"{m.delivery.smsc}|{m.source}|{m.destination}|{ref}|{total}"
            groups[key].append(m)
        existing = {
            (row.group_key, row.seq)
            for row in conn.execute(
                select(inbound_parts.c.group_key, inbound_parts.c.seq).where(
                    inbound_parts.c.group_key.in_(groups)
                )
            )
        }
        rows = []
        for key, members in groups.items():
            for m in members:
                assert m.group is not None
                if (key, m.group[2]) in existing:
                    metrics.inbound_duplicates.inc()
                    continue
                existing.add((key, m.group[2]))
                rows.append(
                    {
                        "received_at": now,
                        "smsc": m.delivery.smsc,
                        "group_key": key,
                        "seq": m.group[2],
                        "total": m.group[1],
                        "source": m.source,
                        "destination": m.destination,
                        "data_coding": m.data_coding,
                        "payload": m.payload,
                    }
                )
        if rows:
            conn.execute(insert(inbound_parts), rows)
        complete: list[Decision] = []
        stored = conn.execute(
            select(
                inbound_parts.c.group_key,
                inbound_parts.c.seq,
                inbound_parts.c.total,
                inbound_parts.c.data_coding,
                inbound_parts.c.payload,
            )
            .where(inbound_parts.c.group_key.in_(groups), inbound_parts.c.inbound.is_(None))
            .order_by(inbound_parts.c.group_key, inbound_parts.c.seq)
        )
        by_group: dict[str, list[Any]] = defaultdict(list)
        for row in stored:
            by_group[row.group_key].append(row)
        for key, members in groups.items():
            got = by_group.get(key, [])
            total = members[0].group[1] if members[0].group else 0
            if len({r.seq for r in got}) < total:
                continue
            first = members[0]
            text = "".join(decode_payload(r.data_coding, bytes(r.payload)) for r in got)
            mo = MoIn(
                delivery=first.delivery,
                source=first.source,
                destination=first.destination,
                data_coding=got[0].data_coding,
                payload=b"",
                dedupe_key=hashlib.sha256(f"{key}|{now.isoformat()}".encode()).hexdigest()[:40],
                text=text,
                parts=total,
            )
            complete.append(Decision(mo=mo, status="", part_keys=[(key, r.seq) for r in got]))
        return complete

    def _decide(self, conn: Connection, decisions: list[Decision], now: dt.datetime) -> None:
        candidates: list[Decision] = []
        for d in decisions:
            m = d.mo
            if m.problem:
                d.status, d.reason = "ignored", m.problem
            elif m.destination != self.service_number:
                d.status, d.reason = "ignored", f"not addressed to the service number {self.service_number}"
            else:
                match = match_command(m.text)
                if match.command is None:
                    d.status, d.reason = "ignored", match.reason
                else:
                    d.command = match.command
                    candidates.append(d)
        if not candidates:
            return
        phones = {d.mo.source for d in candidates}
        found = conn.execute(_CUSTOMERS_BY_PHONE, {"phones": list(phones)})
        by_phone = {row.phone: dict(row._mapping) for row in found}
        recent = self._recent_counts(conn, phones, now)
        for d in candidates:
            assert d.command is not None
            counts = recent[d.mo.source]
            reason = limit_exceeded(d.command, RecentRequests(*counts), self.limits)
            if reason is not None:
                d.status, d.reason = "rate_limited", reason
                continue
            d.status = "request"
            d.customer = by_phone.get(d.mo.source)
            info = 1 if d.command is Command.INFO else 0
            recent[d.mo.source] = (counts[0] + info, counts[1] + info, counts[2] + 1)

    def _recent_counts(
        self, conn: Connection, phones: set[str], now: dt.datetime
    ) -> dict[str, tuple[int, int, int]]:
        rows = conn.execute(
            _RECENT_COUNTS,
            {
                "phones": list(phones),
                "hour_ago": now - dt.timedelta(hours=1),
                "day_ago": now - dt.timedelta(days=1),
            },
        )
        counts: dict[str, tuple[int, int, int]] = defaultdict(lambda: (0, 0, 0))
        for msisdn, info_hour, info_day, any_day in rows:
            counts[msisdn] = (int(info_hour or 0), int(info_day or 0), int(any_day or 0))
        return counts

    def _insert(
        self, conn: Connection, decisions: list[Decision], now: dt.datetime
    ) -> dict[int, OutboxItem]:
        rows = [
            {
                "received_at": d.mo.delivery.received_at,
                "smsc": d.mo.delivery.smsc,
                "source": d.mo.source,
                "destination": d.mo.destination,
                "text": d.mo.text,
                "data_coding": d.mo.data_coding,
                "parts": d.mo.parts,
                "status": d.status,
                "reason": d.reason,
                "dedupe_key": d.mo.dedupe_key,
            }
            for d in decisions
        ]
        # One multi-row INSERT … RETURNING; ids are matched back by a key unique in the batch.
        returned = conn.execute(_INSERT_INBOUND, rows)
        id_of = {key: inbound_id for inbound_id, key in returned}
        part_updates: list[dict[str, Any]] = []
        for d in decisions:
            d.inbound_id = id_of[d.mo.dedupe_key]
            metrics.count(metrics.inbound_messages, d.status).inc()
            part_updates.extend(
                {"b_key": key, "b_seq": seq, "b_inbound": d.inbound_id} for key, seq in d.part_keys
            )
        if part_updates:
            conn.execute(
                update(inbound_parts)
                .where(
                    inbound_parts.c.group_key == bindparam("b_key"),
                    inbound_parts.c.seq == bindparam("b_seq"),
                )
                .values(inbound=bindparam("b_inbound")),
                part_updates,
            )
        accepted = [d for d in decisions if d.status == "request"]
        if not accepted:
            return {}
        returned = conn.execute(
            _INSERT_REQUESTS,
            [
                {
                    "inbound": d.inbound_id,
                    "msisdn": d.mo.source,
                    "command": d.command.value if d.command else "",
                    "customer": d.customer["id"] if d.customer else None,
                    "status": "received",
                    "received_at": d.mo.delivery.received_at,
                }
                for d in accepted
            ],
        )
        request_of = {inbound: request_id for request_id, inbound in returned}
        claimed_until = now + dt.timedelta(seconds=CLAIM_SECONDS)
        ack_rows = []
        for d in accepted:
            language = language_of(d.customer["language"] if d.customer else self.settings.default_language)
            row = outbox_row(
                kind=Kind.ACK,
                priority=Priority.ACK,
                sender=self.settings.sender,
                destination=d.mo.source,
                text=ack_text(language),
                language=language,
                now=now,
                customer=d.customer["id"] if d.customer else None,
                request=request_of[d.inbound_id],
                status="sending",
                claimed_by=self.worker_id,
                claimed_until=claimed_until,
            )
            ack_rows.append((d, row))
        returned = conn.execute(_INSERT_ACKS, [row for _, row in ack_rows])
        ack_of = {request_id: message_id for message_id, request_id in returned}
        return {
            id(d.mo.delivery): OutboxItem.from_row(
                {**row, "id": ack_of[row["request"]], "received_mono": d.mo.delivery.received_mono}
            )
            for d, row in ack_rows
        }
