"""One SMPP connection, either side: framing, sequence numbers, the window, keep-alive.

The session answers ``enquire_link`` and ``unbind`` itself and hands every other request to its
owner's ``on_request`` callback, which answers later with ``respond`` — so ``deliver_sm_resp``
goes out only when the owner has done its work (stored the message). Requests it sends wait for
a free slot in the window and for their response; a response that does not come in time means a
hung peer, and the session closes so its owner can reconnect.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import cast

from smpp.pdu import constants

from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu

log = logging.getLogger("smsline.smpp")

_known_command_ids = frozenset(constants.command_id_value_map)
_AUTO_ANSWERED = frozenset({"enquire_link", "unbind"})


class SessionClosed(ConnectionError):
    """The connection closed before the response came."""


class ResponseTimeout(TimeoutError):
    """The peer did not answer a request in time."""


class _Window:
    """The slots of a session's window, handed out in the order they were asked for.

    An asyncio.Semaphore does the same, but its acquire looks through all its waiters on every
    call; a submit_sm takes a slot per message, thousands of times a second."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.free = size
        self._loop = loop
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as the wait was cancelled
            raise

    def release(self) -> None:
        """Give the slot to the first waiter still waiting, else back to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class Session(asyncio.Protocol):
    """An SMPP session over an asyncio transport."""

    def __init__(
        self,
        *,
        name: str,
        window: int = 32,
        response_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        on_request: Callable[[Session, Pdu], None] | None = None,
        on_closed: Callable[[Session], None] | None = None,
    ) -> None:
        self.name = name
        self.window = window
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.on_request = on_request
        self.on_closed = on_closed
        self.peer = ""
        self.unbinding = False
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._outgoing: list[bytes] = []
        self._sequence = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Pdu], float]] = {}
        self._writable = asyncio.Event()
        self._writable.set()
        # The loop the session runs on, looked up once: asyncio.get_running_loop() makes a
        # system call (getpid) each time, and a request is made per submit_sm.
        self.loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = self.loop.create_future()
        self._slots = _Window(window, self.loop)
        self._last_read = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self.close_reason: str | None = None

    # -- transport callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._sweep_timeouts(), name=f"{self.name}-timeouts"))
        self._tasks.append(loop.create_task(self._keep_alive(), name=f"{self.name}-keepalive"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._outgoing.clear()
        for task in self._tasks:
            task.cancel()
        reason = self.close_reason or (f"connection lost: {exc}" if exc else "connection closed")
        pending = list(self._pending.values())
        self._pending.clear()
        for future, _ in pending:
            if not future.done():
                future.set_exception(SessionClosed(reason))
        self._writable.set()
        if not self._closed.done():
            self._closed.set_result(None)
        if self.on_closed is not None:
            self.on_closed(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        buffer = self._buffer
        buffer += data
        offset = 0
        size = len(buffer)
        while size - offset >= 4:
            length = int.from_bytes(buffer[offset : offset + 4], "big")
            if length < pdus.HEADER_LEN or length > pdus.MAX_PDU_LEN:
                sequence = 0
                if size - offset >= pdus.HEADER_LEN:
                    sequence = pdus.parse_header(buffer, offset).sequence
                log.warning("%s: invalid command_length %d from %s; closing", self.name, length, self.peer)
                self._write(pdus.generic_nack(sequence, pdus.ESME_RINVCMDLEN))
                self.close(f"invalid command_length {length}")
                return
            if size - offset < length:
                break
            self._handle_frame(bytes(buffer[offset : offset + length]))
            offset += length
            if self._transport is None:
                return
        if offset:
            del buffer[:offset]

    # -- incoming -----------------------------------------------------------------------------

    def _handle_frame(self, frame: bytes) -> None:
        _, command_id, _, sequence = pdus.HEADER.unpack_from(frame)  # no Header object per frame
        if command_id not in _known_command_ids:
            log.warning("%s: unknown command_id 0x%08X from %s", self.name, command_id, self.peer)
            self._write(pdus.generic_nack(sequence, pdus.ESME_RINVCMDID))
            return
        is_response = bool(command_id & 0x80000000)
        try:
            pdu = pdus.decode(frame)
        except pdus.PduError as exc:
            log.warning("%s: malformed PDU from %s: %s", self.name, self.peer, exc)
            if is_response:
                self._resolve_error(sequence, exc)
            else:
                self._write(pdus.generic_nack(sequence, exc.status))
            return
        if is_response:
            self._resolve(pdu)
            return
        command = pdus.command_name(pdu)
        if command == "enquire_link":
            self._write(pdus.enquire_link_resp(pdu))
        elif command == "unbind":
            self.unbinding = True
            self._write(pdus.unbind_resp(pdu))
            self.close("peer unbound")
        elif self.on_request is not None:
            self.on_request(self, pdu)
        else:
            self._write(pdus.generic_nack(sequence, pdus.ESME_RINVCMDID))

    def _resolve(self, pdu: Pdu) -> None:
        entry = self._pending.pop(pdu.seqNum, None)
        if entry is None:
            log.warning(
                "%s: %s for unknown sequence %s from %s",
                self.name, pdus.command_name(pdu), pdu.seqNum, self.peer,
            )
            return
        future = entry[0]
        if not future.done():
            future.set_result(pdu)

    def _resolve_error(self, sequence: int, exc: Exception) -> None:
        entry = self._pending.pop(sequence, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(exc)

    # -- outgoing -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    @property
    def free_slots(self) -> int:
        return max(0, self.window - len(self._pending))

    def _write(self, pdu: Pdu) -> None:
        """Queue a PDU for the socket. PDUs written in one turn of the event loop go out in one
        write (one system call for a whole batch of responses or submits), in order."""
        if self._transport is None or self._transport.is_closing():
            return
        self._outgoing.append(pdus.encode(pdu))
        if len(self._outgoing) == 1:
            self.loop.call_soon(self._flush_outgoing)

    def _flush_outgoing(self) -> None:
        if not self._outgoing:
            return
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def write_raw(self, data: bytes) -> None:
        """Send bytes as they are (for tests of a peer's handling of malformed input)."""
        self._flush_outgoing()
        if self._transport is not None:
            self._transport.write(data)

    def respond(self, request: Pdu, response: Pdu) -> None:
        response.seqNum = request.seqNum
        self._write(response)

    async def request(self, pdu: Pdu, *, use_window: bool = True) -> Pdu:
        """Send a request and wait for its response (the window bounds how many are out)."""
        if use_window:
            await self._slots.acquire()
        try:
            return await self._send_and_wait(pdu)
        finally:
            if use_window:
                self._slots.release()

    async def _send_and_wait(self, pdu: Pdu) -> Pdu:
        if not self.is_open:
            raise SessionClosed(self.close_reason or "session is closed")
        if not self._writable.is_set():
            await self._writable.wait()
            if not self.is_open:
                raise SessionClosed(self.close_reason or "session is closed")
        if self.unbinding and pdus.command_name(pdu) != "unbind":
            # Nothing may follow an unbind: the peer could act on it after we gave up on it.
            raise SessionClosed("unbinding")
        sequence = next(self._sequence)
        if sequence > 0x7FFFFFFF:
            self._sequence = itertools.count(2)
            sequence = 1
        pdu.seqNum = sequence
        future: asyncio.Future[Pdu] = self.loop.create_future()
        self._pending[sequence] = (future, time.monotonic() + self.response_timeout)
        try:
            self._write(pdu)
        except Exception:
            del self._pending[sequence]
            raise
        return await future

    async def _sweep_timeouts(self) -> None:
        period = max(0.05, min(1.0, self.response_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            expired = [seq for seq, (_, deadline) in self._pending.items() if deadline <= now]
            if not expired:
                continue
            for seq in expired:
                future, _ = self._pending.pop(seq)
                if not future.done():
                    future.set_exception(
                        ResponseTimeout(f"no response within {self.response_timeout:g}s")
                    )
            log.warning("%s: %s unanswered for %.1fs; closing the link", self.name, self.peer,
                        self.response_timeout)
            self.close(f"no response within {self.response_timeout:g}s (hung peer)")
            return

    async def _keep_alive(self) -> None:
        interval = self.enquire_link_interval
        while True:
            idle = time.monotonic() - self._last_read
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            try:
                await self.request(pdus.enquire_link(), use_window=False)
            except (SessionClosed, ResponseTimeout):
                return
            # An answered enquire_link counts as traffic.
            self._last_read = time.monotonic()

    # -- closing ------------------------------------------------------------------------------

    def close(self, reason: str = "closed") -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self._flush_outgoing()
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: str = "aborted") -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self._outgoing.clear()
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def unbind(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for outstanding responses, then unbind and close."""
        self.unbinding = True
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline and self.is_open:
            waiting = [future for future, _ in self._pending.values()]
            await asyncio.wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
        if self.is_open:
            with contextlib.suppress(SessionClosed, ResponseTimeout, TimeoutError):
                await asyncio.wait_for(
                    self.request(pdus.unbind(), use_window=False),
                    max(0.1, deadline - time.monotonic()),
                )
        self.close("unbound")
        await self.wait_closed()

