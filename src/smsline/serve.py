"""`smsline serve`: SMPP connectors (or the built-in simulator), the processing line, the
dispatcher and the HTTP endpoints, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from prometheus_client import generate_latest
from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncEngine

from smsline import eventloop, metrics
from smsline.api.app import create_app
from smsline.api.context import ApiContext
from smsline.api.process import ApiProcess, CannotListen, EmbeddedServer, listen
from smsline.campaigns.runner import CampaignRunner, Clock
from smsline.campaigns.service import utcnow
from smsline.config import Settings, SmscSettings
from smsline.db.engine import Database
from smsline.db.migrate import DatabaseNotMigrated, check_migrated
from smsline.db.vacuum import Vacuum
from smsline.line.credentials import CredentialIssuer
from smsline.line.dispatcher import Dispatcher
from smsline.line.inbound import InboundWriter
from smsline.line.outbox import Kind, OutboxItem
from smsline.line.requests import RequestProcessor
from smsline.logs import configure_logging
from smsline.notify.callbacks import CallbackSender
from smsline.notify.service_key import service_key
from smsline.smpp.connector import Connector
from smsline.smpp.simulator import Simulator
from smsline.smpp.simulator_http import create_app as create_simulator_app

log = logging.getLogger("smsline.serve")

STOP_TIMEOUT = 30.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Service:
    """Everything `smsline serve` runs; tests start it in-process the same way."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: bool = True,
        simulator: Simulator | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.settings = settings
        self.clock = clock  # for campaigns: quiet hours and start times
        self.http = http
        self.simulator = simulator
        self.owns_simulator = False
        self.engine: AsyncEngine | None = None
        self.connectors: list[Connector] = []
        self.http_port: int | None = None
        self.simulator_http_port: int | None = None
        self._servers: list[EmbeddedServer] = []
        self.api_process: ApiProcess | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.worker_id = worker_id()
        self._service_key: bytes | None = None

    def service_key(self) -> bytes:
        """The secret key callback signatures derive from (read or made once)."""
        if self._service_key is None:
            self._service_key = service_key(self.settings)
        return self._service_key

    # -- start / stop -------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        binds = s.smsc_binds()
        run_simulator = not binds and self.simulator is None
        http_socket, simulator_sockets = self._bind_ports(run_simulator)
        self.db = Database(s.database_url)
        self.engine = self.db.engine
        if simulator_sockets is not None:
            smpp, control = simulator_sockets
            self.simulator = Simulator(receipt_delay=s.simulator_receipt_delay, keep=s.simulator_keep)
            await self.simulator.start(s.simulator_host, sock=smpp)
            self.owns_simulator = True
            if control is not None:
                app = create_simulator_app(self.simulator, service_number=s.service_number)
                self.simulator_http_port = await self._serve_http(app, control)
        if not binds:
            assert self.simulator is not None
            binds = [SmscSettings(name="simulator", host=s.simulator_host, port=self.simulator.port)]
        self.inbound = InboundWriter(
            self.db, s, worker_id=self.worker_id, on_acks=self._on_acks
        )
        self.connectors = [
            Connector(bind, on_deliver=lambda c, sess, pdu: self.inbound.deliver(c.name, sess, pdu))
            for bind in binds
        ]
        for c in self.connectors:
            c.state_listeners.append(_track_link)
        self.credentials = CredentialIssuer(self.db, ttl_hours=s.password_ttl_hours)
        self.processor = RequestProcessor(
            self.db, s, worker_id=self.worker_id, on_results=self._on_acks
        )
        self.dispatcher = Dispatcher(
            self.db,
            s,
            self.connectors,
            worker_id=self.worker_id,
            prepare={Kind.CREDENTIALS: self.credentials.issue},
            answer_requests=self.processor.answer_acknowledged,
        )
        self.callbacks = CallbackSender(self.db, s, service_key=self.service_key)
        self.campaigns = CampaignRunner(
            self.db, s, halt=self.dispatcher.halt_campaigns, on_queued=self.dispatcher.wake, clock=self.clock
        )
        # With an API process this context only queues the notifications it passes on.
        self.api = ApiContext(
            self.db, s, on_queued=self.dispatcher.wake, on_campaigns_changed=self.campaigns.wake,
            campaign_clock=self.clock, worker_id=self.worker_id, hand_over=self.dispatcher.take_over,
        )
        self.vacuum = Vacuum(self.db.engine) if self.db.is_postgres else None
        await self.dispatcher.recover()
        self._spawn(self.inbound.run(), "inbound")
        self._spawn(self.dispatcher.run(), "dispatcher")
        self._spawn(self.processor.run(), "requests")
        self._spawn(self.callbacks.run(), "callbacks")
        self._spawn(self.campaigns.run(), "campaigns")
        if self.vacuum is not None:
            self._spawn(self.vacuum.run(), "vacuum")
        for c in self.connectors:
            c.start()
        if self.http and s.api_process:
            self.api_process = ApiProcess(
                s,
                status=self,
                queue=self.api.queue_notification,
                on_queued=self.dispatcher.wake,
                on_campaigns_changed=self.campaigns.wake,
            )
            assert http_socket is not None
            self.http_port = await self.api_process.start(http_socket)
        elif http_socket is not None:
            self.http_port = await self._serve_http(create_app(self, self.api), http_socket)

    def _bind_ports(
        self, run_simulator: bool
    ) -> tuple[socket.socket | None, tuple[socket.socket, socket.socket | None] | None]:
        """Every port, before anything runs: a taken one stops the start with a clear error.
        The HTTP socket, and the simulator's SMPP and HTTP control sockets when it runs here."""
        s = self.settings
        with contextlib.ExitStack() as bound:
            http_socket = bound.enter_context(listen(s.http_host, s.http_port)) if self.http else None
            simulator_sockets = None
            if run_simulator:
                smpp = bound.enter_context(
                    listen(s.simulator_host, s.simulator_port, "the SMSC simulator",
                           "simulator_port (SMSLINE_SIMULATOR_PORT)")
                )
                control = None
                if self.http:
                    control = bound.enter_context(
                        listen(s.simulator_host, s.simulator_http_port, "the simulator's HTTP control",
                               "simulator_http_port (SMSLINE_SIMULATOR_HTTP_PORT)")
                    )
                simulator_sockets = (smpp, control)
            bound.pop_all()
        return http_socket, simulator_sockets

    def _on_acks(self, items: list[OutboxItem]) -> None:
        self.dispatcher.push(items)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)
        return task

    async def _serve_http(self, app: Any, sock: socket.socket) -> int:
        """Serve ``app`` on a bound socket; its port, once it answers."""
        port = int(sock.getsockname()[1])
        server = EmbeddedServer(app)
        if not await server.until_listening(self._spawn(server.serve(sockets=[sock]), f"http:{port}")):
            raise RuntimeError(f"the HTTP server on port {port} did not start")
        self._servers.append(server)
        return port

    async def stop(self) -> None:
        """Graceful: finish in-flight submits, unbind, store what came in, leave the queue queued."""
        if self.engine is None:
            return
        if self.api_process is not None:  # first: no new notifications while the rest stops
            await self.api_process.stop()
        self.campaigns.stop()
        await self.dispatcher.stop()
        await asyncio.gather(*(c.stop() for c in self.connectors), return_exceptions=True)
        self.processor.stop()
        self.inbound.stop()
        self.callbacks.stop()
        if self.vacuum is not None:
            self.vacuum.stop()
        for server in self._servers:
            server.should_exit = True
        _, stuck = await asyncio.wait(self._tasks, timeout=10)
        for task in stuck:
            log.warning("%s did not stop in time; cancelling it", task.get_name())
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.credentials.close()
        self.api.close()
        if self.simulator is not None and self.owns_simulator:
            await self.simulator.stop()
        await self.db.dispose()
        self.engine = None

    async def wait_bound(self, timeout: float = 10.0) -> None:
        await asyncio.gather(*(c.wait_bound(timeout) for c in self.connectors))

    async def readiness(self) -> dict[str, object]:
        links = {c.name: c.state for c in self.connectors}
        return {
            "ready": any(c.is_bound for c in self.connectors),
            "links": links,
            "dispatcher_ready": self.dispatcher.ready if self.engine else 0,
        }

    async def exposition(self) -> bytes:
        return generate_latest()


def _track_link(connector: Connector) -> None:
    metrics.link_up.labels(smsc=connector.name).set(1 if connector.state == "bound" else 0)


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())


@contextlib.asynccontextmanager
async def running(settings: Settings, **kwargs: Any) -> AsyncIterator[Service]:
    service = Service(settings, **kwargs)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def _banner(service: Service, console: Console) -> None:
    s = service.settings
    console.print(f"[bold]smsline[/bold] is running (worker {service.worker_id})")
    if service.owns_simulator and service.simulator is not None:
        console.print(
            f"No SMSC configured: using the built-in SMSC simulator on "
            f"{s.simulator_host}:{service.simulator.port} "
            f"(control API http://{s.simulator_host}:{service.simulator_http_port})"
        )
        console.print(
            "Text the service as a demo customer from another terminal, for example:\n"
            "  [cyan].venv/bin/smsline mo +79161234567 \"CLIENT info\"[/cyan]\n"
            "  [cyan].venv/bin/smsline mo +79161234568 \"client sms stop\"[/cyan]\n"
            "The acknowledgement and then the answer are printed as the simulated phone gets them."
        )
    else:
        for c in service.connectors:
            console.print(f"SMSC {c.name}: {c.settings.host}:{c.settings.port} as {c.settings.system_id}")
    if service.http_port:
        console.print(
            f"HTTP: http://{s.http_host}:{service.http_port} "
            f"(API docs /api/docs; /healthz, /readyz, /metrics)"
            + (
                f", served by the API process {service.api_process.pid}"
                if service.api_process is not None
                else ""
            )
        )
    console.print("Stop with Ctrl-C.")


async def _serve(settings: Settings) -> None:
    await check_migrated(settings.database_url)
    service = Service(settings)
    await service.start()
    # Everything made while starting (modules, FastAPI's routes, SQLAlchemy's tables and caches)
    # lives as long as the process. Left in the collector's oldest generation it is walked on
    # every full collection: a pause of ~100 ms every few seconds under load, which stalls every
    # SMPP window and HTTP answer. Frozen, a full collection walks only what came later.
    gc.collect()
    gc.freeze()
    _banner(service, Console())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing in-flight messages (press Ctrl-C again to stop at once)")
    stop.clear()
    stopping = asyncio.ensure_future(service.stop())
    forced = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait(
        {stopping, forced}, timeout=STOP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
    )
    if stopping not in done:
        log.warning("stopped without finishing: messages in flight are sent again at the next start")
        raise SystemExit(1)
    forced.cancel()
    stopping.result()


def run_service(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    try:
        eventloop.run(_serve(settings))
    except DatabaseNotMigrated as exc:
        Console(stderr=True).print(f"[red]Cannot start:[/red] {exc}")
        raise SystemExit(2) from None
    except CannotListen as exc:
        Console(stderr=True).print(f"[red]Cannot start:[/red] {escape(str(exc))}.")
        raise SystemExit(2) from None
