"""The dispatcher: claims outbox rows by priority, submits them over the bound links, records
the SMSC's answers.

Rows are claimed with a lease (``status = 'sending'``, ``claimed_by``, ``claimed_until``) using
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several processes never send the same row. Claimed
rows wait in an in-memory heap ordered by (priority, id): an acknowledgement pushed in by the
inbound writer jumps ahead of everything else. Results are written back in batches: all the
outcomes that came in while the database was busy are recorded by one call of
`Dispatcher.record`.

Delivery guarantee: a row is only ever resent when its outcome is unknown — it was in flight
(submit_sm written, no response) when the link or the process died — so duplicates are bounded
by the windows of the binds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.dml import Update

from smsline import metrics
from smsline.config import Settings
from smsline.db.bulk import Bulk, Prepared, any_of
from smsline.db.engine import Database
from smsline.db.schema import outbox, outbox_segments, requests
from smsline.domain.command_status import rule_for
from smsline.domain.msisdn import to_smpp_address
from smsline.domain.receipts import canonical_message_id
from smsline.domain.segments import concat_udh, segment
from smsline.line.outbox import CLAIM_SECONDS, Kind, OutboxItem
from smsline.line.receipts import lock_receipt_matching, match_waiting_receipts
from smsline.smpp import pdus
from smsline.smpp.connector import Connector, LinkDown
from smsline.smpp.session import ResponseTimeout, SessionClosed

log = logging.getLogger("smsline.dispatcher")

RENEW_EVERY = 15.0
POLL_EVERY = 1.0
RETRY_DELAY_MAX = 300.0
UNRECORDED_PER_WINDOW_SLOT = 4
RECORD_RETRY_AFTER = 0.5
Prepare = Callable[[OutboxItem], Awaitable[str]]
AnswerRequests = Callable[[Connection, list[int], dt.datetime], list[OutboxItem]]


@dataclass(slots=True)
class Outcome:
    item: OutboxItem
    status: str  # submitted | throttled | retry | rejected | failed
    smsc: str = ""
    message_ids: list[str] = field(default_factory=list)
    error: str | None = None
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


# What the dispatcher needs of a claimed row: every other column would only be fetched and converted.
CLAIMED_COLUMNS = (
    outbox.c.id, outbox.c.priority, outbox.c.kind, outbox.c.sender, outbox.c.destination, outbox.c.text,
    outbox.c.language, outbox.c.customer, outbox.c.request, outbox.c.attempts, outbox.c.queued_at,
    outbox.c.campaign,
)


# The hot statements, built once (building and keying a statement per call costs more than
# running it).
_SUBMITTED = Bulk(
    update(outbox)
    .where(outbox.c.id == bindparam("b_id"))
    .values(
        status="submitted",
        submitted_at=bindparam("b_at"),
        smsc=bindparam("b_smsc"),
        attempts=outbox.c.attempts + 1,
        claimed_by=None,
        claimed_until=None,
        error=None,
    )
)
_INSERT_SEGMENTS = Bulk(insert(outbox_segments))
_ACKNOWLEDGED = (
    update(requests)
    .where(any_of(requests.c.id, "ids"), requests.c.status == "received")
    .values(status="acknowledged", acknowledged_at=bindparam("now"))
)


def worker_is_gone(worker: str) -> bool:
    """Whether a worker id (``host:pid:nonce``) names a process of this machine that has ended."""
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _due(halting: bool) -> ColumnElement[bool]:
    """Queued rows whose time has come (``c_now``), not of the campaigns in ``c_halted``."""
    due = or_(outbox.c.not_before.is_(None), outbox.c.not_before <= bindparam("c_now"))
    if halting:
        due = due & or_(
            outbox.c.campaign.is_(None), outbox.c.campaign.not_in(bindparam("c_halted", expanding=True))
        )
    return (outbox.c.status == "queued") & due


def _claim_statement(postgres: bool, halting: bool) -> Update:
    """Take up to ``c_limit`` due queued rows, most urgent first, for this worker (skipping the
    campaigns in ``c_halted``). Built once per variant: building it per claim cost more than
    running it."""
    pick = (
        select(outbox.c.id)
        .where(_due(halting))
        .order_by(outbox.c.priority, outbox.c.id)
        .limit(bindparam("c_limit"))
    )
    if postgres:
        pick = pick.with_for_update(skip_locked=True)
    return (
        update(outbox)
        .where(outbox.c.id.in_(pick.scalar_subquery()))
        .values(
            status="sending",
            claimed_by=bindparam("c_worker"),
            claimed_until=bindparam("c_until"),
            sending_at=bindparam("c_now"),
        )
        .returning(*CLAIMED_COLUMNS)
    )


_CLAIM_HALTING = {pg: _claim_statement(pg, halting=True) for pg in (False, True)}
# The usual claim (no campaign halted), run through the driver: it returns hundreds of rows.
# On PostgreSQL one UPDATE ... RETURNING. On SQLite, where the transaction holds the only write
# lock, a SELECT of the rows read in one step (see db/bulk.py) and an UPDATE of their ids: an
# UPDATE ... RETURNING there is one step, one wait for the GIL, per row.
_CLAIM_ANY = Prepared(_claim_statement(postgres=True, halting=False))
_PICK = Prepared(
    select(*CLAIMED_COLUMNS)
    .where(_due(halting=False))
    .order_by(outbox.c.priority, outbox.c.id)
    .limit(bindparam("c_limit")),
    packed=True,
)
_TAKE = Prepared(
    update(outbox)
    .where(any_of(outbox.c.id, "c_ids"))
    .values(
        status="sending",
        claimed_by=bindparam("c_worker"),
        claimed_until=bindparam("c_until"),
        sending_at=bindparam("c_now"),
    )
)


def _claimed(row: Sequence[Any]) -> OutboxItem:
    """A row of `CLAIMED_COLUMNS` as the dispatcher holds it."""
    message, priority, kind, sender, destination, text, language, customer, request, attempts, at, of = row
    return OutboxItem(
        priority=priority, id=message, kind=kind, sender=sender, destination=destination, text=text,
        language=language, customer=customer, request=request, attempts=attempts, queued_at=at,
        campaign=of,
    )


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        connectors: Sequence[Connector],
        *,
        worker_id: str,
        prepare: dict[str, Prepare] | None = None,
        answer_requests: AnswerRequests | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.connectors = list(connectors)
        self.worker_id = worker_id
        self.prepare = prepare or {}
        self.answer_requests = answer_requests
        self._ready: list[OutboxItem] = []
        self._held: set[int] = set()
        self._busy: dict[str, int] = {c.name: 0 for c in self.connectors}
        self._paused_until: dict[str, float] = {c.name: 0.0 for c in self.connectors}
        self._throttle_pause: dict[str, float] = {c.name: 0.0 for c in self.connectors}
        self._recording: set[asyncio.Future[list[OutboxItem]]] = set()
        self._unrecorded: list[Outcome] = []
        self._retry_timer: asyncio.TimerHandle | None = None
        self._wake_send = asyncio.Event()
        self._wake_fill = asyncio.Event()
        self._wake_housekeeping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refs = itertools.count(int(time.time()) & 0xFF)
        # At most this many answered submits wait to be recorded: with the binds' windows, this
        # bounds the messages a crash can leave sent but not recorded (sent again at restart).
        self._record_cap = UNRECORDED_PER_WINDOW_SLOT * (sum(c.settings.window for c in self.connectors) or 1)
        self._stopping = False
        self._more_queued = True
        # Looked up once when `run` starts: asyncio.get_running_loop() makes a system call
        # (getpid) each time, and a submit is started per message.
        self._loop: asyncio.AbstractEventLoop | None = None
        # Campaigns paused or cancelled: their rows are neither claimed nor submitted.
        self._halted: frozenset[int] = frozenset()
        for c in self.connectors:
            c.state_listeners.append(lambda _c: self._wake_send.set())

    # -- public ---------------------------------------------------------------------------------

    def push(self, items: list[OutboxItem]) -> None:
        """Rows already claimed for this worker (acknowledgements from the inbound writer)."""
        for item in items:
            if item.id not in self._held:
                self._held.add(item.id)
                heapq.heappush(self._ready, item)
        metrics.queue_depth.set(len(self._ready))
        self._wake_send.set()

    def take_over(self, items: list[OutboxItem]) -> None:
        """Rows another part of the service wrote already claimed for this worker (notifications
        queued through the API), so that no claim has to find them. Beyond twice what the
        dispatcher holds when it claims (the SMSC is down or slower than the callers), they go
        back to the queue; after `stop` they stay claimed, and the next start queues them again."""
        if self._stopping:
            return
        room = max(0, 2 * self._capacity() - len(self._ready))
        if room < len(items):
            self._release_later(items[room:])
            items = items[:room]
        self.push(items)

    def wake(self) -> None:
        """New rows were queued in the database."""
        self._more_queued = True
        self._wake_fill.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        loops = [self._fill_loop(), self._send_loop(), self._housekeeping()]
        await asyncio.gather(*loops)

    async def stop(self, timeout: float = 5.0) -> None:
        """Wait for in-flight submits, write their outcomes, release claimed rows; `run` ends."""
        self._stopping = True
        for event in (self._wake_send, self._wake_fill, self._wake_housekeeping):
            event.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        await self._finish_recording()
        await self._release([item.id for item in self._ready])
        self._ready.clear()

    def halt_campaigns(self, campaigns: frozenset[int]) -> None:
        """Stop submitting the SMS of these campaigns (paused or cancelled): held rows of them go
        back to the queue, where the campaign runner withdraws them; none are claimed again."""
        self._halted = frozenset(campaigns)
        if not self._halted:
            return
        dropped = [item for item in self._ready if item.campaign in self._halted]
        if dropped:
            self._ready = [item for item in self._ready if item.campaign not in self._halted]
            heapq.heapify(self._ready)
            self._release_later(dropped)

    def _release_later(self, items: list[OutboxItem]) -> None:
        for item in items:
            self._held.discard(item.id)
        task = asyncio.get_running_loop().create_task(self._release([item.id for item in items]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def ready(self) -> int:
        return len(self._ready)

    # -- claiming -------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Before starting: rows a crashed worker left 'sending' go back to the queue at once
        instead of when their lease ends. On SQLite only one process runs, so that is every
        such row; on PostgreSQL, the rows of workers on this machine whose process is gone."""

        def requeue(conn: Connection) -> int:
            stale = (outbox.c.status == "sending") & (outbox.c.claimed_by != self.worker_id)
            if self.db.is_postgres:
                owners = conn.execute(select(outbox.c.claimed_by).where(stale).distinct()).scalars()
                dead = [owner for owner in owners if owner and worker_is_gone(owner)]
                if not dead:
                    return 0
                stale = stale & outbox.c.claimed_by.in_(dead)
            result = conn.execute(
                update(outbox).where(stale).values(status="queued", claimed_by=None, claimed_until=None)
            )
            return int(result.rowcount)

        count = await self.db.run(requeue)
        if count:
            log.warning("%d messages were in flight at the last stop; queued again", count)

    def _capacity(self) -> int:
        # Enough claimed rows to keep every window full for longer than a claim takes.
        windows = sum(c.settings.window for c in self.connectors)
        return max(256, windows * 16)

    async def _fill_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_fill.wait(), POLL_EVERY)
            self._wake_fill.clear()
            if self._stopping:
                return
            try:
                while not self._stopping:
                    room = self._capacity() - len(self._ready)
                    if room < self._capacity() // 2:
                        break
                    claimed = await self._claim(room)
                    # A full batch means more may be waiting; otherwise only a wake() (new rows)
                    # or the poll brings the next claim.
                    self._more_queued = len(claimed) == room
                    if claimed:
                        self.push(claimed)
                    if not self._more_queued:
                        break
            except Exception:
                log.exception("claiming outbox rows failed; retrying")

    async def _claim(self, limit: int) -> list[OutboxItem]:
        def claim(conn: Connection) -> list[OutboxItem]:
            now = dt.datetime.now(dt.UTC)
            halted = sorted(self._halted)
            parameters: dict[str, Any] = {
                "c_now": now,
                "c_limit": limit,
                "c_worker": self.worker_id,
                "c_until": now + dt.timedelta(seconds=CLAIM_SECONDS),
            }
            if halted:
                parameters["c_halted"] = halted
                claim = _CLAIM_HALTING[self.db.is_postgres]
                return [_claimed(row) for row in conn.execute(claim, parameters)]
            if self.db.is_postgres:
                return [_claimed(row) for row in _CLAIM_ANY.rows(conn, parameters)]
            rows = _PICK.rows(conn, {"c_now": now, "c_limit": limit})
            if rows:
                _TAKE.run(conn, {**parameters, "c_ids": [row[0] for row in rows]})
            return [_claimed(row) for row in rows]

        items = await self.db.run(claim)
        items.sort()
        return items

    async def _housekeeping(self) -> None:
        """Renew our leases; return rows whose lease ran out (a dead worker's) to the queue."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_housekeeping.wait(), RENEW_EVERY)
            if self._stopping:
                return
            try:
                expired = await self.db.run(self._renew_and_reclaim)
                if expired:
                    log.warning("%d messages of a stopped worker queued again", expired)
                    self._wake_fill.set()
            except Exception:
                log.exception("outbox housekeeping failed")

    def _renew_and_reclaim(self, conn: Connection) -> int:
        now = dt.datetime.now(dt.UTC)
        conn.execute(
            update(outbox)
            .where(outbox.c.status == "sending", outbox.c.claimed_by == self.worker_id)
            .values(claimed_until=now + dt.timedelta(seconds=CLAIM_SECONDS))
        )
        expired = conn.execute(
            update(outbox)
            .where(outbox.c.status == "sending", outbox.c.claimed_until < now)
            .values(status="queued", claimed_by=None, claimed_until=None)
        )
        match_waiting_receipts(conn, now)
        return int(expired.rowcount)

    async def _release(self, ids: list[int]) -> None:
        if not ids:
            return

        def release(conn: Connection) -> None:
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids), outbox.c.status == "sending")
                .values(status="queued", claimed_by=None, claimed_until=None)
            )

        await self.db.run(release)

    # -- sending --------------------------------------------------------------------------------

    def _pick_connector(self, now: float) -> Connector | None:
        """The bound, unpaused connector with the most free window slots, if any."""
        best: Connector | None = None
        best_free = 0
        for c in self.connectors:
            if not c.is_bound or self._paused_until[c.name] > now:
                continue
            free = c.settings.window - self._busy[c.name]
            if free > best_free:
                best, best_free = c, free
        return best

    async def _send_loop(self) -> None:
        while True:
            await self._wake_send.wait()
            self._wake_send.clear()
            if self._stopping:
                return
            self._fill_windows()

    def _fill_windows(self) -> None:
        """Start a submit for each free window slot while there are messages ready. Called by
        the send loop and, without waiting for it, by a submit whose answer just freed a slot:
        every event-loop turn between an answer and the next submit idles a slot."""
        if self._stopping:
            return
        while self._ready:
            if len(self._recording) >= self._record_cap:
                break  # bounds what a crash could leave sent but not recorded
            now = time.monotonic()
            connector = self._pick_connector(now)
            if connector is None:
                # Judged with the same `now` as the pick: a pause that ends in between must
                # still get its wake-up.
                paused = [t for t in self._paused_until.values() if t > now]
                if paused:
                    asyncio.get_running_loop().call_later(min(paused) - now, self._wake_send.set)
                break
            item = heapq.heappop(self._ready)
            if item.campaign is not None and item.campaign in self._halted:
                self._release_later([item])
                continue
            if item.kind in self.prepare and item.clear_text is None:
                self._start_preparing(item)
                continue
            self._busy[connector.name] += 1
            task = (self._loop or asyncio.get_running_loop()).create_task(self._send(item, connector))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        metrics.queue_depth.set(len(self._ready))
        if self._more_queued and len(self._ready) < self._capacity() // 2:
            self._wake_fill.set()

    def _start_preparing(self, item: OutboxItem) -> None:
        """Make the text of a message that needs it (a credential SMS) without holding a window
        slot; the message rejoins the queue when it is ready."""
        task = asyncio.get_running_loop().create_task(self._prepare(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prepare(self, item: OutboxItem) -> None:
        try:
            item.clear_text = await self.prepare[item.kind](item)
        except Exception as exc:
            log.exception("message %s could not be prepared", item.id)
            self._held.discard(item.id)
            self._record_outcome(Outcome(item, "retry", error=f"preparing failed: {exc.__class__.__name__}"))
            return
        self._requeue_in_memory(item)

    def _requeue_in_memory(self, item: OutboxItem) -> None:
        heapq.heappush(self._ready, item)
        self._wake_send.set()

    async def _send(self, item: OutboxItem, connector: Connector) -> None:
        try:
            outcome = await self._submit(item, connector)
        except (LinkDown, SessionClosed, ResponseTimeout, ConnectionError) as exc:
            log.info("message %s not confirmed (%s); it will be sent again", item.id, exc)
            self._requeue_in_memory(item)
            return
        except Exception as exc:
            log.exception("message %s could not be submitted", item.id)
            outcome = Outcome(item, "retry", error=f"internal error: {exc.__class__.__name__}")
        finally:
            self._busy[connector.name] -= 1
            self._fill_windows()
        if outcome.status == "throttled":
            if not self._too_old(item):
                self._requeue_in_memory(item)
                return
            error = f"gave up after its validity period passed: {outcome.error}"
            outcome = Outcome(item, "failed", error=error)
        self._held.discard(item.id)
        self._record_outcome(outcome)

    async def _submit(self, item: OutboxItem, connector: Connector) -> Outcome:
        text = item.clear_text if item.clear_text is not None else item.text
        mode = connector.settings.long_messages
        seg = segment(text, header_octets={"udh8": 6, "udh16": 7, "sar": 0, "payload": 0}[mode])
        destination = to_smpp_address(item.destination)
        source_ton = pdus.TON_ALPHANUMERIC if not item.sender.lstrip("+").isdigit() else 1
        source_npi = pdus.NPI_UNKNOWN if source_ton == pdus.TON_ALPHANUMERIC else pdus.NPI_ISDN
        reference = next(self._refs) & (0xFFFF if mode == "udh16" else 0xFF)
        bodies: list[tuple[bytes, bool, pdus.Sar | None, bytes | None]] = []
        if seg.count == 1 or mode == "payload":
            whole = b"".join(seg.parts)
            if mode == "payload" and seg.count > 1:
                bodies.append((b"", False, None, whole))
            else:
                bodies.append((whole, False, None, None))
        else:
            for seq, part in enumerate(seg.parts, start=1):
                if mode == "sar":
                    bodies.append((part, False, pdus.Sar(reference, seg.count, seq), None))
                else:
                    udh = concat_udh(reference, seg.count, seq, sixteen_bit=mode == "udh16")
                    bodies.append((udh + part, True, None, None))
        ids: list[str] = []
        for short_message, udhi, sar, payload in bodies:
            pdu = pdus.submit_sm_encoded(
                source=item.sender.lstrip("+"),
                source_ton=source_ton,
                source_npi=source_npi,
                destination=destination,
                data_coding=seg.data_coding,
                short_message=short_message,
                udhi=udhi,
                sar=sar,
                message_payload=payload,
            )
            if item.kind == Kind.ACK and item.received_mono is not None and not ids:
                metrics.ack_latency.observe(time.monotonic() - item.received_mono)
            response = await connector.submit(pdu)
            status = pdus.status_of(response)
            if status == pdus.ESME_ROK:
                ids.append(pdus.str_param(response, "message_id"))
                continue
            rule = rule_for(status)
            metrics.count(metrics.submits, connector.name, rule.action).inc()
            error = f"{rule.name}: {rule.reason}"
            if rule.action == "throttle":
                self._throttled(connector.name)
                return Outcome(item, "throttled", error=error)
            if rule.action == "fail":
                return Outcome(item, "rejected", smsc=connector.name, error=error)
            return Outcome(item, "retry", smsc=connector.name, error=error)
        metrics.count(metrics.submits, connector.name, "ok").inc()
        self._throttle_pause[connector.name] = 0.0
        return Outcome(item, "submitted", smsc=connector.name, message_ids=ids)

    def _too_old(self, item: OutboxItem, now: dt.datetime | None = None) -> bool:
        if item.queued_at is None:
            return False
        age = (now or dt.datetime.now(dt.UTC)) - item.queued_at
        return age.total_seconds() > self.settings.send_validity_seconds

    def _throttled(self, name: str) -> None:
        """The SMSC asked this bind to slow down: pause it, longer while it keeps asking."""
        now = time.monotonic()
        if self._paused_until[name] > now:
            return  # the other submits that were in flight when it started throttling
        s = self.settings
        pause = min(s.throttle_pause_max, max(s.throttle_pause, self._throttle_pause[name] * 2))
        self._throttle_pause[name] = pause
        self._paused_until[name] = now + pause
        metrics.count(metrics.throttled, name).inc()
        log.info("%s throttles: pausing that bind for %.2f s", name, pause)

    # -- recording ------------------------------------------------------------------------------

    def _record_outcome(self, outcome: Outcome) -> None:
        future = self.db.submit(self.record, outcome, loop=self._loop)
        self._recording.add(future)
        future.add_done_callback(partial(self._recorded, outcome))

    def _recorded(self, outcome: Outcome, future: asyncio.Future[list[OutboxItem]]) -> None:
        self._recording.discard(future)
        if len(self._recording) == self._record_cap - 1:
            self._wake_send.set()
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if error is not None:
            if not self._unrecorded:  # one log line per failed batch
                log.error(
                    "recording submit results failed; will try again",
                    exc_info=(type(error), error, error.__traceback__),
                )
            self._unrecorded.append(outcome)
            if self._retry_timer is None and not self._stopping:
                loop = asyncio.get_running_loop()
                self._retry_timer = loop.call_later(RECORD_RETRY_AFTER, self._record_again)
            return
        answers = future.result()
        if answers:
            self.push(answers)

    def _record_again(self) -> None:
        self._retry_timer = None
        outcomes, self._unrecorded = self._unrecorded, []
        for outcome in outcomes:
            self._record_outcome(outcome)

    async def _finish_recording(self) -> None:
        """At stop: wait for outcomes being recorded and try failed ones once more."""
        for _ in range(2):
            while self._recording:
                await asyncio.wait(list(self._recording))
            if not self._unrecorded:
                return
            if self._retry_timer is not None:
                self._retry_timer.cancel()
            self._record_again()
        if self._unrecorded:
            log.error(
                "%d submit results could not be recorded; those messages will be sent again at the "
                "next start", len(self._unrecorded)
            )

    def record(self, conn: Connection, batch: list[Outcome]) -> list[list[OutboxItem]]:
        """Write the outcomes; for each, the answers to its request if it is an acknowledgement
        the SMSC has just accepted (made in this same transaction)."""
        now = dt.datetime.now(dt.UTC)
        answers: list[OutboxItem] = []
        bases = {c.name: c.settings.id_base for c in self.connectors}
        submitted = [o for o in batch if o.status == "submitted"]
        if submitted:
            _SUBMITTED.execute(conn, [{"b_id": o.item.id, "b_at": o.at, "b_smsc": o.smsc} for o in submitted])
            segment_rows = [
                {
                    "message": o.item.id,
                    "seq": seq,
                    "smsc": o.smsc,
                    "smsc_message_id": canonical_message_id(
                        mid, side="resp", base=bases.get(o.smsc, "same")
                    ),
                    "status": "submitted",
                    "submitted_at": o.at,
                }
                for o in submitted
                for seq, mid in enumerate(o.message_ids, start=1)
            ]
            _INSERT_SEGMENTS.execute(conn, segment_rows)
            acks = [o.item.request for o in submitted if o.item.kind == Kind.ACK and o.item.request]
            if acks and self.answer_requests is not None:
                answers = self.answer_requests(conn, acks, now)  # acknowledged and answered
            elif acks:
                conn.execute(_ACKNOWLEDGED, {"ids": acks, "now": now})
            lock_receipt_matching(conn)  # the segments are written: now look for receipts that overtook them
            match_waiting_receipts(conn, now, {str(r["smsc_message_id"]) for r in segment_rows})
        retries = [o for o in batch if o.status == "retry"]
        s = self.settings
        for o in retries:
            attempts = o.item.attempts + 1
            too_old = self._too_old(o.item, now)
            if attempts >= s.send_max_attempts or too_old:
                o.status = "failed"
                why = "its validity period passed" if too_old else f"{attempts} attempts"
                o.error = f"gave up after {why}: {o.error}"
                continue
            delay = min(RETRY_DELAY_MAX, s.send_retry_delay * 2 ** (attempts - 1))
            conn.execute(
                update(outbox)
                .where(outbox.c.id == o.item.id)
                .values(
                    status="queued",
                    attempts=attempts,
                    error=o.error,
                    not_before=now + dt.timedelta(seconds=delay),
                    claimed_by=None,
                    claimed_until=None,
                )
            )
        final = [o for o in batch if o.status in ("rejected", "failed")]
        for o in final:
            metrics.count(metrics.messages_final, o.status).inc()
            conn.execute(
                update(outbox)
                .where(outbox.c.id == o.item.id)
                .values(
                    status=o.status,
                    error=o.error,
                    done_at=now,
                    attempts=outbox.c.attempts + 1,
                    claimed_by=None,
                    claimed_until=None,
                )
            )
            if o.item.kind == Kind.ACK and o.item.request:
                conn.execute(
                    update(requests)
                    .where(requests.c.id == o.item.request)
                    .values(status="failed", error="the acknowledgement could not be sent")
                )
        answers_to: dict[int, list[OutboxItem]] = defaultdict(list)
        for answer in answers:
            if answer.request is not None:
                answers_to[answer.request].append(answer)
        return [
            answers_to.pop(o.item.request, [])
            if o.status == "submitted" and o.item.kind == Kind.ACK and o.item.request
            else []
            for o in batch
        ]
