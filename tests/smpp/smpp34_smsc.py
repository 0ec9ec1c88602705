"""An SMSC built on smpp34 (an independent SMPP 3.4 implementation: its ``Server`` is Rust), run as
its own process so that a crash of it never takes the test run down.

It listens on a free port of 127.0.0.1 and speaks JSON lines. On stdout, one object per event:

    {"event": "listening", "port": 40123}
    {"event": "bound", "session": "…", "system_id": "smsline", "can_receive": true}
    {"event": "submit", "session": "…", "message_id": "1a2b01", "source_addr": "SCSERV", …}
    {"event": "unbound", "session": "…"}
    {"event": "delivered", "ref": 1, "status": 0}        (or "error": "…" instead of "status")

Every ``submit_sm`` is accepted with a fresh lower-case hexadecimal message id; its octets
(``short_message``, TLV values) are given in hex. On stdin, one command per line:

    {"deliver": {"destination_addr": "…", "short_message": "<hex>", "tlvs": [[tag, "<hex>"]], …},
     "ref": 1}                   a deliver_sm to the latest bind that can receive (waiting a
                                 few seconds for one)
    {"stop": true}               stop listening and exit
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from typing import Any

import smpp34

_FIELDS = (
    "service_type", "source_addr", "source_addr_ton", "source_addr_npi", "destination_addr",
    "dest_addr_ton", "dest_addr_npi", "esm_class", "protocol_id", "data_coding",
    "registered_delivery",
)
FIRST_MESSAGE_ID = 0x1A2B00
RECEIVER_WAIT = 5.0


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def listen() -> tuple[smpp34.Server, int]:
    last: Exception | None = None
    for _ in range(5):  # another process may take the port between probing and binding it
        port = free_port()
        server = smpp34.Server(host="127.0.0.1", port=port, system_id="RUSTSMSC")
        try:
            await server.start()
        except Exception as exc:
            last = exc
            continue
        return server, port
    raise RuntimeError(f"cannot listen: {last}")


class Smsc:
    def __init__(self, server: smpp34.Server) -> None:
        self.server = server
        self.receivers: dict[str, smpp34.Esme] = {}
        self.receiver_bound = asyncio.Event()
        self.message_numbers = iter(range(FIRST_MESSAGE_ID, 1 << 62))

    async def serve(self) -> None:
        while True:
            event = await self.server.next()
            if isinstance(event, smpp34.Esme):
                if event.can_receive:
                    self.receivers[event.session_id] = event
                    self.receiver_bound.set()
                emit("bound", session=event.session_id, system_id=event.system_id,
                     can_receive=event.can_receive)
            elif isinstance(event, smpp34.SubmitSmEvent):
                message_id = f"{next(self.message_numbers):x}"
                event.accept(message_id=message_id)
                emit(
                    "submit",
                    session=event.session_id,
                    message_id=message_id,
                    short_message=event.short_message.hex(),
                    tlvs=[[tlv.tag, tlv.value.hex()] for tlv in event.tlvs],
                    **{name: getattr(event, name) for name in _FIELDS},
                )
            elif isinstance(event, smpp34.Unbound):
                self.receivers.pop(event.session_id, None)
                if not self.receivers:
                    self.receiver_bound.clear()
                emit("unbound", session=event.session_id)

    async def deliver(self, ref: int, fields: dict[str, Any]) -> None:
        try:
            # The ESME may have its bind_resp before this process hears of the bind.
            await asyncio.wait_for(self.receiver_bound.wait(), RECEIVER_WAIT)
            esme = list(self.receivers.values())[-1]
            options = dict(fields)
            destination = options.pop("destination_addr")
            body = bytes.fromhex(options.pop("short_message", ""))
            tlvs = options.pop("tlvs", [])
            options["tlvs"] = [smpp34.Tlv(tag, bytes.fromhex(value)) for tag, value in tlvs]
            response = await esme.deliver_sm(destination, body, **options)
        except Exception as exc:
            emit("delivered", ref=ref, error=f"{exc.__class__.__name__}: {exc}")
        else:
            emit("delivered", ref=ref, status=response.command_status)


async def main() -> None:
    server, port = await listen()
    smsc = Smsc(server)
    serving = asyncio.create_task(smsc.serve())
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    emit("listening", port=port)
    deliveries: set[asyncio.Task[None]] = set()
    while line := await commands.readline():
        command = json.loads(line)
        if command.get("stop"):
            break
        task = asyncio.create_task(smsc.deliver(int(command["ref"]), command["deliver"]))
        deliveries.add(task)
        task.add_done_callback(deliveries.discard)
    serving.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.stop(), 2.0)
    emit("stopped")


if __name__ == "__main__":
    asyncio.run(main())
    # Leave without the interpreter's teardown, where the extension has been seen to crash.
    os._exit(0)
