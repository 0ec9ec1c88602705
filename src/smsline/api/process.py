"""The HTTP API in a process of its own (``api_process = true``).

One process runs Python one thread at a time: under load the event loop of `smsline serve` is
busy with both the HTTP requests and the SMPP side (submits, responses, receipts). With
``api_process`` the service starts a second process that serves the whole HTTP side — the API,
``/healthz``, ``/readyz``, ``/metrics`` — on the service's listening socket, with its own
database connections, so that the two halves run on two cores.

The service keeps the listening socket (it binds it, so a busy port fails the start, and
connections wait in its backlog while the API process restarts) and talks with the API process
over a socket pair, one JSON object per line:

- API process → service: ``{"started": true}`` once it serves; ``{"queue": request, "id": n}``
  for each notification (the service runs its transaction, so a SQLite database keeps one
  writer, and hands its SMS to the dispatcher at once); ``{"wake": "outbox"}`` and
  ``{"wake": "campaigns"}`` after other requests queued SMS or changed a campaign;
  ``{"ask": "readiness" | "metrics", "id": n}`` for ``/readyz`` and ``/metrics``, which report
  the service's links and counters.
- service → API process: ``{"id": n, "answer": …}``; ``{"stop": true}``.

To stop, the service asks the API process to: it stops taking connections, finishes the
requests it has and exits; then the service closes the socket pair. An API process that dies is
started again; a service that dies (even ``kill -9``) closes the pair, and the API process exits
at once: it never outlives the service. Rate limits and the token cache live in the API process,
as there is exactly one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import multiprocessing
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn
from prometheus_client import REGISTRY, ProcessCollector

from smsline import eventloop
from smsline.api.app import ServiceStatus, create_app
from smsline.api.context import ApiContext
from smsline.api.problems import ProblemError
from smsline.config import Settings
from smsline.db.engine import Database
from smsline.domain.templates import Problem
from smsline.logs import configure_logging
from smsline.notify.notifications import Answer, NotificationRequest, Refusal

log = logging.getLogger("smsline.api")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
RESTART_DELAY = 1.0


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server for ``app`` on a socket smsline bound, leaving signal handling to
    smsline."""

    def __init__(self, app: Any) -> None:
        super().__init__(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.listening = asyncio.Event()

    async def until_listening(self, serving: asyncio.Task[None]) -> bool:
        """Wait until the server listens (True) or its ``serving`` task has ended (False)."""
        listening = asyncio.ensure_future(self.listening.wait())
        await asyncio.wait({listening, serving}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        return self.listening.is_set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CannotListen(OSError):
    """A port smsline must listen on is taken (or not allowed): which, and the setting for it."""

    def __init__(self, what: str, host: str, port: int, cause: OSError, setting: str) -> None:
        super().__init__(
            f"cannot listen on {host}:{port} for {what}: {cause.strerror or cause}. Is another smsline"
            f" (or another program) using it? Choose another port with {setting}"
        )


def listen(
    host: str, port: int, what: str = "HTTP", setting: str = "http_port (SMSLINE_HTTP_PORT)"
) -> socket.socket:
    """A listening socket for HTTP (port 0: any free port); `CannotListen` names ``what`` it was
    for and the ``setting`` that chooses the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise CannotListen(what, host, port, exc, setting) from None
    return sock


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def request_to_json(request: NotificationRequest) -> dict[str, Any]:
    return dataclasses.asdict(request)


def request_from_json(data: dict[str, Any]) -> NotificationRequest:
    return NotificationRequest(**data)


def outcome_to_json(outcome: Answer | Refusal) -> dict[str, Any]:
    if isinstance(outcome, Answer):
        return {"code": outcome.code, "body": outcome.body, "replayed": outcome.replayed}
    problems = [[p.field, p.message] for p in outcome.problems]
    return {"refused": outcome.kind, "detail": outcome.detail, "problems": problems}


def outcome_from_json(data: dict[str, Any]) -> Answer | Refusal:
    if "refused" in data:
        problems = [Problem(field, message) for field, message in data["problems"]]
        return Refusal(data["refused"], data["detail"], problems)
    return Answer(data["code"], data["body"], replayed=data["replayed"])


# -- the service's side ---------------------------------------------------------------------------


class ApiProcess:
    """Starts the API process, answers it, starts it again if it dies, and ends it."""

    def __init__(
        self,
        settings: Settings,
        *,
        status: ServiceStatus,
        queue: Callable[[NotificationRequest], Awaitable[Answer | Refusal]],
        on_queued: Callable[[], None],
        on_campaigns_changed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self._queue = queue
        self._queueing: set[asyncio.Task[None]] = set()
        self._status = status
        self._on_queued = on_queued
        self._on_campaigns_changed = on_campaigns_changed
        self._listener: socket.socket | None = None
        self._process: BaseProcess | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._started: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._answering: asyncio.Task[None] | None = None  # reads the API process's messages
        self._stopping = False
        self.starts = 0  # how many API processes have been started (1 unless one died)
        # The API process's CPU, memory and file descriptors on the service's /metrics, as
        # smsline_api_process_*.
        self._collector: ProcessCollector | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self, listener: socket.socket) -> int:
        """Start the API process on the service's bound HTTP socket and wait until it serves;
        returns the port."""
        self._listener = listener
        port = int(self._listener.getsockname()[1])
        try:
            await self._start_process()
        except BaseException:
            self._listener.close()
            raise
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="api-process")
        self._collector = ProcessCollector(namespace="smsline_api", pid=lambda: self.pid or "none")
        return port

    async def _start_process(self) -> None:
        assert self._listener is not None
        ours, theirs = socket.socketpair()
        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=run_api_process,
            args=(self.settings, self._listener, theirs),
            name="smsline-api",
            daemon=True,
        )
        process.start()
        theirs.close()
        self._process = process
        self.starts += 1
        loop = asyncio.get_running_loop()
        self._started = loop.create_future()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
        self._answering = loop.create_task(self._answer(reader, self._writer), name="api-channel")
        exited = self._exited(process)
        done, _ = await asyncio.wait(
            {self._started, exited}, timeout=START_TIMEOUT, return_when="FIRST_COMPLETED"
        )
        if self._started not in done:
            self._answering.cancel()
            self._writer.close()
            exited.cancel()
            if process.is_alive():
                process.kill()
            raise RuntimeError(f"the API process did not start (exit code {process.exitcode})")
        exited.cancel()

    def _exited(self, process: BaseProcess) -> asyncio.Future[None]:
        """Done when ``process`` has ended."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            loop.remove_reader(process.sentinel)
            if not done.done():
                done.set_result(None)

        loop.add_reader(process.sentinel, on_exit)
        done.add_done_callback(lambda _f: loop.remove_reader(process.sentinel))
        return done

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if (request := message.get("queue")) is not None:
                    task = asyncio.get_running_loop().create_task(
                        self._queue_one(writer, message["id"], request_from_json(request))
                    )
                    self._queueing.add(task)
                    task.add_done_callback(self._queueing.discard)
                elif (wake := message.get("wake")) is not None:
                    if wake == "outbox":
                        self._on_queued()
                    elif wake == "campaigns":
                        self._on_campaigns_changed()
                elif (ask := message.get("ask")) is not None:
                    answer: object
                    if ask == "readiness":
                        answer = await self._status.readiness()
                    else:
                        answer = (await self._status.exposition()).decode()
                    writer.write(_line({"id": message["id"], "answer": answer}))
                elif message.get("started") and self._started is not None and not self._started.done():
                    self._started.set_result(None)
        except (ConnectionError, ValueError) as exc:
            log.warning("the API process's channel failed: %s", exc)
        finally:
            writer.close()

    async def _queue_one(self, writer: asyncio.StreamWriter, ask: int, request: NotificationRequest) -> None:
        try:
            answer = outcome_to_json(await self._queue(request))
        except Exception as exc:  # the API process answers 500 with no detail; the log has it
            log.exception("queueing a notification for the API process failed")
            answer = {"failed": exc.__class__.__name__}
        if not writer.is_closing():
            writer.write(_line({"id": ask, "answer": answer}))

    async def _supervise(self) -> None:
        while not self._stopping:
            assert self._process is not None
            await self._exited(self._process)
            self._process.join()  # it has ended: reap it
            if self._stopping:
                return
            log.error(
                "the API process stopped (exit code %s); starting it again", self._process.exitcode
            )
            if self._writer is not None:
                self._writer.close()
            await asyncio.sleep(RESTART_DELAY)
            if self._stopping:
                return
            try:
                await self._start_process()
            except Exception:
                log.exception("the API process could not be started again")

    async def stop(self) -> None:
        """End the API process: it finishes the requests it has, then exits."""
        self._stopping = True
        if self._collector is not None:
            REGISTRY.unregister(self._collector)
            self._collector = None
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        process = self._process
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_line({"stop": True}))
        if process is not None and process.is_alive():
            exited = self._exited(process)
            try:
                await asyncio.wait_for(exited, STOP_TIMEOUT)
            except TimeoutError:
                log.warning("the API process did not stop in time; killing it")
                process.kill()
        if process is not None:
            await asyncio.to_thread(process.join)
        if self._queueing:
            await asyncio.wait(self._queueing)
        if self._writer is not None:
            self._writer.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


# -- the API process's side -----------------------------------------------------------------------


class ServiceChannel:
    """The API process's end of the socket pair: wakes the service's dispatcher and campaign
    runner, and asks it for readiness and metrics."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending_wakes: set[str] = set()
        self._asked: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.stopping = asyncio.Event()  # the service asked this process to stop

    def send(self, message: dict[str, Any]) -> None:
        if not self._writer.is_closing():
            self._writer.write(_line(message))

    def _wake(self, what: str) -> None:
        # Many notifications queue in one turn of the loop: one wake-up for all of them.
        if not self._pending_wakes:
            self._loop.call_soon(self._flush_wakes)
        self._pending_wakes.add(what)

    def _flush_wakes(self) -> None:
        for what in sorted(self._pending_wakes):
            self.send({"wake": what})
        self._pending_wakes.clear()

    def outbox_queued(self) -> None:
        self._wake("outbox")

    def campaigns_changed(self) -> None:
        self._wake("campaigns")

    async def _ask(self, message: dict[str, Any], timeout: float | None = None) -> Any:
        if self.closed.done():
            raise ConnectionError("the service has gone")
        self._next_id += 1
        ask = self._next_id
        future: asyncio.Future[Any] = self._loop.create_future()
        self._asked[ask] = future
        self.send(message | {"id": ask})
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._asked.pop(ask, None)

    async def queue(self, request: NotificationRequest) -> Answer | Refusal:
        """Queue a notification through the service; its answer once committed."""
        try:
            answer = await self._ask({"queue": request_to_json(request)})
        except ConnectionError:
            # The service went away (restarting, or killed) before it answered: the request may
            # or may not be queued, and a retry with the same Idempotency-Key finds out safely.
            raise _unavailable(
                "smsline is restarting; send the request again with the same Idempotency-Key"
            ) from None
        if "failed" in answer:
            raise RuntimeError(f"the service could not queue the notification ({answer['failed']})")
        return outcome_from_json(answer)

    async def readiness(self) -> dict[str, object]:
        try:
            state: dict[str, object] = await self._ask({"ask": "readiness"}, 10.0)
        except (TimeoutError, ConnectionError):
            return {"ready": False, "links": {}, "dispatcher_ready": 0}
        return state

    async def exposition(self) -> bytes:
        try:
            text: str = await self._ask({"ask": "metrics"}, 10.0)
        except (TimeoutError, ConnectionError):
            raise _unavailable("the service does not answer") from None
        return text.encode()

    async def listen(self) -> None:
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                if message.get("stop"):
                    self.stopping.set()
                    continue
                future = self._asked.get(message.get("id"))
                if future is not None and not future.done():
                    future.set_result(message.get("answer"))
        except (ConnectionError, ValueError):
            pass
        finally:
            for future in self._asked.values():
                if not future.done():
                    future.set_exception(ConnectionError("the service has gone"))
            if not self.closed.done():
                self.closed.set_result(None)


def _unavailable(detail: str) -> ProblemError:
    return ProblemError("service-unavailable", detail, headers={"Retry-After": "1"})


def run_api_process(settings: Settings, listener: socket.socket, channel: socket.socket) -> None:
    """The API process's main function (started by `ApiProcess`)."""
    # Ctrl-C reaches the whole process group: the service stops first and then ends this
    # process, which finishes its requests.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    eventloop.run(_serve(settings, listener, channel))


async def _serve(settings: Settings, listener: socket.socket, channel: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_unix_connection(sock=channel, limit=1 << 24)
    service = ServiceChannel(reader, writer)
    answers = loop.create_task(service.listen())
    db = Database(settings.database_url)
    api = ApiContext(
        db,
        settings,
        on_queued=service.outbox_queued,
        on_campaigns_changed=service.campaigns_changed,
        queue_elsewhere=service.queue,
    )
    app = create_app(service, api)
    server = EmbeddedServer(app)
    serving = loop.create_task(server.serve(sockets=[listener]))
    terminated = service.stopping
    loop.add_signal_handler(signal.SIGTERM, terminated.set)
    started = await server.until_listening(serving)
    # As in the service: what starting made lives as long as the process; frozen, a full
    # collection does not walk it.
    gc.collect()
    gc.freeze()
    if started:
        service.send({"started": True})
        stopped = loop.create_task(terminated.wait())
        ends: set[asyncio.Future[Any]] = {service.closed, stopped, serving}
        await asyncio.wait(ends, return_when="FIRST_COMPLETED")
        stopped.cancel()
    server.should_exit = True
    await asyncio.gather(serving, return_exceptions=True)
    api.close()
    await db.dispose()
    writer.close()
    answers.cancel()
