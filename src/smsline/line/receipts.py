"""Delivery receipts: parse, store, and move the message they refer to to its new status.

A receipt is matched by ``receipted_message_id`` when the SMSC sends it, otherwise by the ``id:``
of its text, compared in canonical form (per-SMSC hex/decimal handling). Multipart messages take
the aggregate of their parts. A receipt that matches nothing is stored with no message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, insert, select, text, update
from sqlalchemy.engine import Connection

from smsline import metrics
from smsline.config import IdBase, Settings
from smsline.db.bulk import Bulk, Prepared, any_of
from smsline.db.schema import outbox, outbox_segments, receipts
from smsline.domain.receipts import (
    FINAL_STATUSES,
    MessageStatus,
    canonical_message_id,
    merge_part_statuses,
    parse_receipt_text,
    status_from_receipt,
)
from smsline.domain.segments import decode_payload
from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu

log = logging.getLogger("smsline.receipts")


@dataclass(slots=True)
class ReceiptIn:
    smsc: str
    message_id: str
    stat: str | None
    err: str | None
    status: MessageStatus | None
    submit_date: str | None
    done_date: str | None
    dedupe_key: str


def parse_receipt(smsc: str, pdu: Pdu) -> ReceiptIn:
    raw = pdus.text_bytes(pdu)
    fields = parse_receipt_text(decode_payload(pdus.data_coding_of(pdu), raw))
    tlv_id = pdus.str_param(pdu, "receipted_message_id").strip("\x00 ")
    state = pdus.int_param(pdu, "message_state")
    return ReceiptIn(
        smsc=smsc,
        message_id=tlv_id or (fields.message_id or ""),
        stat=fields.stat,
        err=fields.err,
        status=status_from_receipt(fields.stat, state),
        submit_date=fields.submit_date,
        done_date=fields.done_date,
        dedupe_key=hashlib.sha256(f"{smsc}|".encode() + raw + tlv_id.encode()).hexdigest()[:40],
    )


RECEIPT_MATCHING_LOCK = 0x736D73_01  # any constant: one advisory lock for receipt matching


def lock_receipt_matching(conn: Connection) -> None:
    """Serialise the two sides of a receipt that overtakes its submit_sm_resp (PostgreSQL; SQLite
    writers are serial already), so the two transactions never miss each other.

    Only those two moments take the lock, each for the rest of its transaction: recording
    submit_sm_resp ids *after* their segments are written, just before looking for receipts
    that wait for them; and storing a receipt whose segment was not found, just before looking
    for the segment once more. Whichever comes second sees what the first committed. Receipts
    that find their segment at once, nearly all of them, never wait for the lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"key": RECEIPT_MATCHING_LOCK})


def id_bases(settings: Settings) -> dict[str, IdBase]:
    return {bind.name: bind.id_base for bind in settings.smsc_binds()}


# The hot statements, built once (building and keying a statement per call costs more than
# running it).
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
# Receipts already stored, looked up by the message ids they name (an index they need anyway for
# matching): an index on the random dedupe keys themselves would cost every commit a B-tree page
# per receipt once it outgrew the batch.
_SEEN = Prepared(
    select(receipts.c.dedupe_key).where(
        receipts.c.smsc == bindparam("smsc"), any_of(receipts.c.smsc_message_id, "ids")
    ),
    packed=True,
)
_SEGMENTS = Prepared(
    select(
        outbox_segments.c.smsc_message_id, outbox_segments.c.message, outbox_segments.c.seq, outbox.c.segments
    )
    .join(outbox, outbox.c.id == outbox_segments.c.message)
    .where(
        outbox_segments.c.smsc == bindparam("smsc"),
        any_of(outbox_segments.c.smsc_message_id, "ids"),
    ),
    packed=True,
)
_INSERT = Bulk(insert(receipts))
_WAITING = (
    select(
        receipts.c.id, receipts.c.status, outbox_segments.c.message, outbox_segments.c.seq, outbox.c.segments
    )
    .join(
        outbox_segments,
        and_(
            outbox_segments.c.smsc_message_id == receipts.c.smsc_message_id,
            outbox_segments.c.smsc == receipts.c.smsc,
        ),
    )
    .join(outbox, outbox.c.id == outbox_segments.c.message)
    .where(receipts.c.message.is_(None), receipts.c.received_at >= bindparam("since"))
)
_WAITING_FOR = Prepared(_WAITING.where(any_of(receipts.c.smsc_message_id, "ids")), packed=True)
_MATCHED = Bulk(
    update(receipts)
    .where(receipts.c.id == bindparam("b_id"))
    .values(message=bindparam("b_message"), seq=bindparam("b_seq"))
)
_SEGMENT_DONE = Bulk(
    update(outbox_segments)
    .where(outbox_segments.c.message == bindparam("b_message"), outbox_segments.c.seq == bindparam("b_seq"))
    .values(status=bindparam("b_status"), done_at=bindparam("b_now"))
)
_MESSAGE_DONE = Bulk(
    update(outbox)
    .where(outbox.c.id == bindparam("b_id"), outbox.c.status == "submitted")
    .values(status=bindparam("b_status"), done_at=bindparam("b_now"))
)
_LOCK_MESSAGES = Prepared(
    select(outbox.c.id).where(any_of(outbox.c.id, "ids")).order_by(outbox.c.id).with_for_update()
)
_PARTS = Prepared(
    select(outbox_segments.c.message, outbox_segments.c.status, outbox.c.segments)
    .join(outbox, outbox.c.id == outbox_segments.c.message)
    .where(any_of(outbox_segments.c.message, "ids")),
    packed=True,
)
WAITING_RECEIPTS_DAYS = 2


def record_receipts(
    conn: Connection, incoming: list[ReceiptIn], settings: Settings
) -> None:
    now = dt.datetime.now(dt.UTC)
    bases = id_bases(settings)
    keyed = [
        (r, canonical_message_id(r.message_id, side="receipt", base=bases.get(r.smsc, "same")))
        for r in incoming
    ]
    by_smsc: dict[str, set[str]] = defaultdict(set)
    for r, key in keyed:
        by_smsc[r.smsc].add(key)
    seen: set[str] = set()
    for smsc, keys in by_smsc.items():
        seen.update(key for (key,) in _SEEN.rows(conn, {"smsc": smsc, "ids": list(keys)}))
    fresh: list[tuple[ReceiptIn, str]] = []
    for r, key in keyed:
        if r.dedupe_key in seen:
            continue  # delivered again by the SMSC: stored already
        seen.add(r.dedupe_key)
        fresh.append((r, key))
    if not fresh:
        return
    segments = _find_segments(conn, by_smsc)
    unmatched: dict[str, set[str]] = defaultdict(set)
    for r, key in fresh:
        if (r.smsc, key) not in segments:
            unmatched[r.smsc].add(key)
    if unmatched and conn.dialect.name == "postgresql":
        # Its submit_sm_resp may be being recorded right now: wait for that, then look again.
        lock_receipt_matching(conn)
        segments.update(_find_segments(conn, unmatched))
    changes: list[SegmentChange] = []
    rows_out = []
    for r, key in fresh:
        match = segments.get((r.smsc, key))
        if match is None:
            # Usually a receipt that overtook its submit_sm_resp: matched when that is recorded.
            metrics.receipts_unmatched.inc()
            log.debug("receipt for a message id not (yet) known: %r from %s", r.message_id, r.smsc)
        elif r.status is not None:
            changes.append((match[0], match[1], r.status, match[2]))
        metrics.count(metrics.receipts, r.status or "unknown").inc()
        rows_out.append(
            {
                "received_at": now,
                "smsc": r.smsc,
                "smsc_message_id": key,
                "message": match[0] if match else None,
                "seq": match[1] if match else None,
                "stat": r.stat,
                "err": r.err,
                "status": r.status,
                "submit_date": r.submit_date,
                "done_date": r.done_date,
                "dedupe_key": r.dedupe_key,
            }
        )
    _INSERT.execute(conn, rows_out)
    apply_segment_statuses(conn, changes, now)


def _find_segments(
    conn: Connection, by_smsc: dict[str, set[str]]
) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(smsc, canonical id) -> (message, seq, segments) of the submitted segments with those ids."""
    segments: dict[tuple[str, str], tuple[int, int, int]] = {}
    for smsc, keys in by_smsc.items():
        for smsc_id, message, seq, total in _SEGMENTS.rows(conn, {"smsc": smsc, "ids": list(keys)}):
            segments[(smsc, smsc_id)] = (message, seq, total)
    return segments


def match_waiting_receipts(
    conn: Connection, now: dt.datetime, smsc_ids: set[str] | None = None
) -> None:
    """Receipts stored before their submit_sm_resp was recorded find their message now
    (all recent waiting ones, or those with the given canonical ids)."""
    since = now - dt.timedelta(days=WAITING_RECEIPTS_DAYS)
    if smsc_ids is None:
        found = [tuple(r) for r in conn.execute(_WAITING, {"since": since})]
    else:
        found = _WAITING_FOR.rows(conn, {"since": since, "ids": list(smsc_ids)})
    if not found:
        return
    _MATCHED.execute(
        conn, [{"b_id": rid, "b_message": message, "b_seq": seq} for rid, _, message, seq, _ in found]
    )
    apply_segment_statuses(
        conn,
        [(message, seq, status, total) for _, status, message, seq, total in found if status],
        now,
    )


SegmentChange = tuple[int, int, str, int]  # message, seq, status the receipt gave, segments


def apply_segment_statuses(conn: Connection, changes: list[SegmentChange], now: dt.datetime) -> None:
    """Record what receipts said about segments and settle their messages: a one-part message
    takes its receipt's status at once, a multipart one the aggregate of its parts."""
    # One change per segment (a later receipt of a segment in the same batch wins): the
    # statements below set each row once.
    final = list({(c[0], c[1]): c for c in changes if c[2] != "submitted"}.values())
    if not final:
        return
    _SEGMENT_DONE.execute(
        conn, [{"b_message": m, "b_seq": q, "b_status": st, "b_now": now} for m, q, st, _ in final]
    )
    finished = {m: st for m, _, st, total in final if total == 1}
    multipart = {m for m, _, _, total in final if total > 1}
    if multipart:
        finished.update(_settled_multipart(conn, multipart))
    if finished:
        _MESSAGE_DONE.execute(conn, [{"b_id": m, "b_status": st, "b_now": now} for m, st in finished.items()])
        for status in finished.values():
            metrics.count(metrics.messages_final, status).inc()


def _settled_multipart(conn: Connection, message_ids: set[int]) -> dict[int, str]:
    """The final status of each multipart message all of whose parts have a final status.

    On PostgreSQL the receipts of two parts of one message may be recorded by two transactions
    at once, each seeing its own part final and the other's not yet: neither would settle the
    message. So each locks the messages (in id order) after writing its parts and before reading
    them all; the one that gets a lock second reads what the first committed."""
    ids = {"ids": sorted(message_ids)}
    if conn.dialect.name == "postgresql":
        _LOCK_MESSAGES.rows(conn, ids)
    rows = _PARTS.rows(conn, ids)
    parts: dict[int, list[MessageStatus]] = defaultdict(list)
    expected: dict[int, int] = {}
    for message, status, total in rows:
        parts[message].append(status)
        expected[message] = total
    settled: dict[int, str] = {}
    for message, statuses in parts.items():
        if len(statuses) < expected[message]:
            continue
        status = merge_part_statuses(statuses)
        if status in FINAL_STATUSES:
            settled[message] = status
    return settled
