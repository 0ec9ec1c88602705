"""A real local HTTP server that receives status callbacks and answers as the test tells it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class CallbackReceiver:
    answers: list[int] = field(default_factory=list)  # status to answer, in turn; then 200
    received: list[Received] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # monotonic, when each arrived
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/smsline/status"

    async def handle(self, request: Request) -> Response:
        self.times.append(time.monotonic())
        self.received.append(Received(dict(request.headers), await request.body()))
        status = self.answers.pop(0) if self.answers else 200
        return Response(b"", status_code=status)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def receiving(answers: list[int]) -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver(answers=list(answers))
    app = Starlette(routes=[Route("/smsline/status", receiver.handle, methods=["POST"])])
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        receiver.port = int(server.servers[0].sockets[0].getsockname()[1])
        yield receiver
    finally:
        server.should_exit = True
        await task
