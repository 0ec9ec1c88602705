"""Kannel side by side: the same simulator, the same machine, the same kind of HTTP client.

Kannel (the open-source SMS gateway most operators know) takes SMS to send over HTTP
(``smsbox``'s ``/cgi-bin/sendsms``) and submits them over SMPP (``bearerbox``). This suite runs
Debian's ``kannel`` package, when it is installed, against ``smsline simulator`` in its own
process (one transceiver bind, window 64, as smsline's measurements use), and drives it with 8
keep-alive HTTP/1.1 connections, each sending the next request as soon as the previous answer
arrived, as the notifications bench drives smsline. Two configurations:

- ``kannel-plain``: no receipts, messages kept in memory only (what Kannel is usually quoted
  with);
- ``kannel-receipts``: a receipt requested for each SMS and posted back to the bench (Kannel's
  ``dlr-url``, the counterpart of smsline's recorded receipts and status callbacks), and
  Kannel's spool store on (its queue written to files, one per message) so that a restart keeps
  what it accepted.

Each measures accepted/s and latency at HTTP, and how long the SMSC took to receive every
accepted SMS (and, with receipts, Kannel to post back every receipt). Without Kannel the suite
says how to install it and measures nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from bench.link import free_port, simulator_process
from bench.notifications import read_response
from bench.processes import cpu_seconds, stop_gracefully
from bench.report import facts, heading, ms, percentile, rate
from bench.requests_by_sms import HOST, SuiteResult, each_measurement

NAME = "kannel"
CONFIGURATIONS = {"kannel-plain": False, "kannel-receipts": True}
MEASUREMENTS: tuple[str, ...] = tuple(CONFIGURATIONS)

CONNECTIONS = 8
WINDOW = 64
FULL_SECONDS, QUICK_SECONDS = 15.0, 4.0
WARM_UP_SECONDS = 2.0
DRAIN_TIMEOUT = 120.0
USER = "bench"


@dataclass
class Driven:
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    other: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@dataclass
class ReceiptSink:
    """Kannel's ``dlr-url`` target: counts the receipts Kannel posts back."""

    received: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.received += 1
                self.changed.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def kannel_installed() -> bool:
    return shutil.which("bearerbox") is not None and shutil.which("smsbox") is not None


def configuration(folder: Path, *, smpp_port: int, ports: dict[str, int], spool: bool) -> str:
    store = f'store-type = spool\nstore-location = "{folder / "spool"}"\n' if spool else ""
    return f"""group = core
admin-port = {ports["admin"]}
admin-password = {USER}
smsbox-port = {ports["smsbox"]}
log-level = 2
log-file = "{folder / "bearerbox.log"}"
box-allow-ip = "{HOST}"
dlr-storage = internal
{store}
group = smsc
smsc = smpp
smsc-id = simulator
host = {HOST}
port = {smpp_port}
transceiver-mode = true
smsc-username = kannel
smsc-password = kannel
system-type = ""
max-pending-submits = {WINDOW}
source-addr-ton = 5
source-addr-npi = 0
dest-addr-ton = 1
dest-addr-npi = 1

group = smsbox
bearerbox-host = {HOST}
sendsms-port = {ports["sendsms"]}
log-level = 2
log-file = "{folder / "smsbox.log"}"

group = sendsms-user
username = {USER}
password = {USER}
max-messages = 1
"""


async def wait_listening(port: int, process: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.returncode is None:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"bearerbox did not listen on {port} (see its log)")


@asynccontextmanager
async def kannel(folder: Path, config: Path, smsbox_port: int) -> AsyncIterator[tuple[int, int]]:
    """bearerbox and smsbox running: yields their pids. smsbox starts once bearerbox listens for
    it (it gives up at once when it cannot connect)."""
    started: list[asyncio.subprocess.Process] = []
    try:
        for program in ("bearerbox", "smsbox"):
            if started:
                await wait_listening(smsbox_port, started[0])
            out = os.open(folder / f"{program}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                started.append(
                    await asyncio.create_subprocess_exec(
                        program, str(config), stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL
                    )
                )
            finally:
                os.close(out)
        yield started[0].pid, started[1].pid
    finally:
        for process in reversed(started):
            await stop_gracefully(process, 20)


def sendsms(port: int, phone: str, text: str, receipts_to: str | None) -> bytes:
    query = f"username={USER}&password={USER}&from=SCSERV&to={phone}&text={quote(text)}"
    if receipts_to is not None:
        query += f"&dlr-mask=3&dlr-url={quote(receipts_to + '?status=%d&id=%F', safe='')}"
    return f"GET /cgi-bin/sendsms?{query} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()


async def drive(
    port: int, first_phone: int, until: float, measure_from: float, receipts_to: str | None, out: Driven
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        n = 0
        while (started := time.monotonic()) < until:
            n += 1
            text = f"Your code is {n}. It expires in 10 minutes."
            writer.write(sendsms(port, f"7916{first_phone + n:07d}", text, receipts_to))
            status = await read_response(reader)
            if status == 202:
                out.accepted += 1
            else:
                out.other[status] = out.other.get(status, 0) + 1
            if started >= measure_from:
                out.latencies.append(time.monotonic() - started)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        out.failures.append(f"{exc.__class__.__name__}: {exc}")
    finally:
        writer.close()


async def simulator_count(control: str) -> int:
    async with httpx.AsyncClient() as client:
        health = (await client.get(f"{control}/healthz")).json()
    return int(health["last_message_id"])  # the simulator keeps only its latest 100,000 messages


async def wait_until_sending(control: str, port: int, receipts_to: str | None, sink: ReceiptSink) -> None:
    """Kannel bound and taking requests: a first SMS reaches the simulator (and its receipt the
    bench)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(sendsms(port, "79160000000", "Warm-up.", receipts_to))
            status = await read_response(reader)
            writer.close()
            if status == 202:
                while time.monotonic() < deadline:
                    if await simulator_count(control) >= 1 and (receipts_to is None or sink.received):
                        return
                    await asyncio.sleep(0.1)
        except (OSError, asyncio.IncompleteReadError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("Kannel did not start sending within 60 s")


async def measure(seconds: float, *, receipts: bool) -> tuple[str, bool]:
    how = "receipts posted back, spool store" if receipts else "no receipts, in memory"
    print(heading(f"Kannel, HTTP sendsms to the simulator, {how} ({CONNECTIONS} keep-alive connections, "
                  f"{seconds:g} s)"), flush=True)
    sink = ReceiptSink()
    receiver = await asyncio.start_server(sink.handle, HOST, 0)
    receipts_to = f"http://{HOST}:{receiver.sockets[0].getsockname()[1]}/dlr" if receipts else None
    with tempfile.TemporaryDirectory(prefix="smsline-bench-kannel-") as name_of_folder:
        folder = Path(name_of_folder)
        (folder / "spool").mkdir()
        async with simulator_process(folder) as (smpp_port, control):
            ports = {"admin": free_port(), "smsbox": free_port(), "sendsms": free_port()}
            config = folder / "kannel.conf"
            config.write_text(configuration(folder, smpp_port=smpp_port, ports=ports, spool=receipts),
                              encoding="utf-8")
            async with kannel(folder, config, ports["smsbox"]) as pids:
                await wait_until_sending(control, ports["sendsms"], receipts_to, sink)
                before = await simulator_count(control)
                receipts_before = sink.received
                cpu_before = sum(cpu_seconds(pid) for pid in pids)
                begin = time.monotonic()
                measure_from = begin + WARM_UP_SECONDS
                until = measure_from + seconds
                driven = [Driven() for _ in range(CONNECTIONS)]
                await asyncio.gather(*(
                    drive(ports["sendsms"], i * 1_000_000, until, measure_from, receipts_to, driven[i])
                    for i in range(CONNECTIONS)
                ))
                ended = time.monotonic()
                accepted = sum(d.accepted for d in driven)
                drain_deadline = ended + DRAIN_TIMEOUT
                at_smsc = math.nan
                while time.monotonic() < drain_deadline:
                    if await simulator_count(control) - before >= accepted:
                        at_smsc = time.monotonic() - begin
                        break
                    await asyncio.sleep(0.1)
                receipts_in = math.nan
                if receipts:
                    while time.monotonic() < drain_deadline:
                        if sink.received - receipts_before >= accepted:
                            receipts_in = time.monotonic() - begin
                            break
                        sink.changed.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(sink.changed.wait(), 1.0)
                cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
                cpu_span = time.monotonic() - begin
    receiver.close()
    await receiver.wait_closed()
    measured = sum(len(d.latencies) for d in driven)
    elapsed = until - measure_from
    latencies = [lat for d in driven for lat in d.latencies]
    per_second = measured / elapsed
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    failures = [f for d in driven for f in d.failures]
    other = {s: n for d in driven for s, n in d.other.items()}
    rows = [
        ("Kannel", "Debian package kannel (bearerbox + smsbox), one SMPP transceiver bind, window 64"),
        ("answered", f"{measured:,} in {elapsed:.1f} s (after {WARM_UP_SECONDS:g} s warm-up)"
                     + (f"; not 202: {other}" if other else "")),
        ("accepted/s", rate(per_second)),
        ("latency", f"p50 {ms(p50)} ms, p99 {ms(p99)} ms, max {ms(max(latencies, default=math.nan))} ms"),
        ("at the SMSC", f"all {accepted:,} accepted after {at_smsc:.1f} s: {rate(accepted / at_smsc)} msg/s"
                        if not math.isnan(at_smsc) else f"not all {accepted:,} within {DRAIN_TIMEOUT:g} s"),
    ]
    if receipts:
        back = sink.received - receipts_before
        rows.append(("receipts back", f"all {accepted:,} posted back after {receipts_in:.1f} s"
                     if not math.isnan(receipts_in) else f"{back:,} of {accepted:,}"))
    rows += [
        ("Kannel CPU", f"{cpu / cpu_span:.0%} of one core (both boxes)"),
        ("connection errors", str(len(failures)) + (f" (first: {failures[0]})" if failures else "")),
    ]
    print(facts(rows), flush=True)
    line = (f"Kannel, {how} ({CONNECTIONS} keep-alive connections, same simulator): {rate(per_second)}/s "
            f"accepted, p50 {ms(p50)} ms, p99 {ms(p99)} ms; all at the SMSC at "
            f"{rate(accepted / at_smsc) if not math.isnan(at_smsc) else 'n/a'} msg/s")
    return line, not failures and not math.isnan(at_smsc) and (not receipts or not math.isnan(receipts_in))


async def run(*, quick: bool, only: frozenset[str]) -> SuiteResult:
    if not kannel_installed():
        print(heading("Kannel side by side"))
        print("  skipped: Kannel is not installed (on Debian: apt-get install kannel)", flush=True)
        return SuiteResult(summary=["Kannel side by side: skipped (not installed)"], ok=True)
    seconds = QUICK_SECONDS if quick else FULL_SECONDS
    return await each_measurement(CONFIGURATIONS, only, lambda receipts: measure(seconds, receipts=receipts))
