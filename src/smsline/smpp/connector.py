"""The ESME side of one SMSC bind: connect, bind, keep alive, reconnect with back-off, submit.

A transceiver bind carries both directions on one session; ``transmitter_receiver`` opens two.
Incoming ``deliver_sm`` (MO messages and receipts) go to ``on_deliver``, which must eventually
call ``session.respond`` — after the message is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Literal

from smsline.config import SmscSettings
from smsline.smpp import pdus
from smsline.smpp.pdus import Pdu
from smsline.smpp.session import Session, SessionClosed

log = logging.getLogger("smsline.smpp")

LinkState = Literal["connecting", "bound", "down", "stopped"]
DeliverHandler = Callable[["Connector", Session, Pdu], None]


class LinkDown(ConnectionError):
    """No bound session can take the request now."""


class BindRefused(ConnectionError):
    """The SMSC answered the bind with an error status."""


class TokenBucket:
    """At most ``rate`` acquisitions a second on average, with a burst of a tenth of a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 10)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


class Connector:
    """One configured SMSC: its sessions, their state, and the submit path."""

    def __init__(self, settings: SmscSettings, *, on_deliver: DeliverHandler) -> None:
        self.settings = settings
        self.name = settings.name
        self.on_deliver = on_deliver
        self.state: LinkState = "down"
        self.last_error: str | None = None
        self.binds = 0
        self._tx: Session | None = None
        self._rx: Session | None = None
        self._bound = asyncio.Event()
        self._changed = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._bucket = TokenBucket(settings.tps)
        self.state_listeners: list[Callable[[Connector], None]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"smpp-{self.name}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Unbind after in-flight responses arrive (bounded by ``timeout``), then stop."""
        self._stopping = True
        sessions = {s for s in (self._tx, self._rx) if s is not None and s.is_open}
        await asyncio.gather(*(s.unbind(timeout) for s in sessions), return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_state("stopped")

    async def wait_bound(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._bound.wait(), timeout)

    @property
    def is_bound(self) -> bool:
        return self._bound.is_set()

    @property
    def free_slots(self) -> int:
        tx = self._tx
        if tx is None or not tx.is_open or not self._bound.is_set():
            return 0
        return tx.free_slots

    def _set_state(self, state: LinkState, error: str | None = None) -> None:
        self.state = state
        if error is not None:
            self.last_error = error
        for listener in self.state_listeners:
            listener(self)

    async def _run(self) -> None:
        delay = self.settings.reconnect_min
        while not self._stopping:
            self._set_state("connecting")
            started = time.monotonic()
            try:
                await self._connect_and_bind()
                self.binds += 1
                self._bound.set()
                self._set_state("bound")
                log.info("%s: bound to %s:%s", self.name, self.settings.host, self.settings.port)
                await self._wait_any_closed()
                reason = self._close_reason()
                log.warning("%s: link lost: %s", self.name, reason)
                self._set_state("down", reason)
            except (OSError, SessionClosed, BindRefused, TimeoutError) as exc:
                self._set_state("down", str(exc) or exc.__class__.__name__)
                log.warning("%s: cannot bind to %s:%s: %s", self.name, self.settings.host,
                            self.settings.port, self.last_error)
            except Exception as exc:
                # A malformed bind_resp, or a setting the PDU codec refuses (its message quotes
                # the value, which may be the password): report it and retry, never die.
                self._set_state("down", self._redact(f"{exc.__class__.__name__}: {exc}"))
                log.warning("%s: cannot bind to %s:%s: %s", self.name, self.settings.host,
                            self.settings.port, self.last_error)
            finally:
                self._bound.clear()
                self._close_sessions()
            if self._stopping:
                break
            if time.monotonic() - started > self.settings.reconnect_max:
                delay = self.settings.reconnect_min
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(self.settings.reconnect_max, delay * 2)

    def _redact(self, text: str) -> str:
        secret = self.settings.password.get_secret_value()
        if secret:
            for form in (secret, repr(secret.encode())[2:-1]):
                text = text.replace(form, "********")
        return text

    async def _connect_and_bind(self) -> None:
        if self.settings.bind_mode == "transceiver":
            session = await self._open("bind_transceiver")
            self._tx = self._rx = session
        else:
            self._tx = await self._open("bind_transmitter")
            self._rx = await self._open("bind_receiver")

    async def _open(self, command: str) -> Session:
        loop = asyncio.get_running_loop()
        s = self.settings
        _, session = await asyncio.wait_for(
            loop.create_connection(
                lambda: Session(
                    name=f"{self.name}/{command.removeprefix('bind_')}",
                    window=s.window,
                    response_timeout=s.response_timeout,
                    enquire_link_interval=s.enquire_link_interval,
                    on_request=self._on_request,
                ),
                s.host,
                s.port,
            ),
            s.response_timeout,
        )
        request = pdus.bind(
            command,
            system_id=s.system_id,
            password=s.password.get_secret_value(),
            system_type=s.system_type,
        )
        try:
            response = await session.request(request, use_window=False)
        except BaseException:
            session.abort("bind failed")
            raise
        status = pdus.status_of(response)
        if status != pdus.ESME_ROK:
            session.close("bind refused")
            raise BindRefused(f"{command} refused: {pdus.status_name(status)}")
        return session

    async def _wait_any_closed(self) -> None:
        sessions = {s for s in (self._tx, self._rx) if s is not None}
        waits = [asyncio.ensure_future(s.wait_closed()) for s in sessions]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _close_reason(self) -> str:
        for s in (self._tx, self._rx):
            if s is not None and not s.is_open:
                return s.close_reason or "connection closed"
        return "connection closed"

    def _close_sessions(self) -> None:
        for s in (self._tx, self._rx):
            if s is not None:
                s.close("reconnecting")
        self._tx = self._rx = None

    # -- traffic ------------------------------------------------------------------------------

    def _on_request(self, session: Session, pdu: Pdu) -> None:
        command = pdus.command_name(pdu)
        if command in ("deliver_sm", "data_sm"):
            self.on_deliver(self, session, pdu)
        else:
            log.warning("%s: unexpected %s from SMSC", self.name, command)
            session.respond(pdu, pdus.generic_nack(pdu.seqNum, pdus.ESME_RINVCMDID))

    async def submit(self, pdu: Pdu) -> Pdu:
        """Send a submit_sm on the bound transmitter and return the SMSC's response."""
        session = self._tx
        if session is None or not session.is_open or not self._bound.is_set() or self._stopping:
            raise LinkDown(f"{self.name} is not bound")
        await self._bucket.acquire()
        return await session.request(pdu)
