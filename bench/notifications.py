"""Notifications accepted per second through the HTTP API (SPEC §3), with their latency.

smsline runs as its own ``smsline serve`` process on SQLite, bound to the SMSC simulator in the
bench process, exactly as in production: once as one process (``notifications-one-process``),
once with the API in a process of its own (``api_process``, ``notifications-api-process``). The
bench is the calling system: 8 keep-alive HTTP/1.1 connections, each sending
``POST /api/v1/notifications`` (a template with one parameter, a fresh customer and a fresh
``Idempotency-Key`` each time) as soon as the previous answer arrived. Latency is from writing a
request to reading the whole answer. The dispatcher sends the queued SMS to the simulator
meanwhile, so the figure includes the cost of sending them.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import facts, filesystem_of, heading, ms, percentile, rate, source_revision
from bench.requests_by_sms import HOST, ROOT, ServiceProcess, SuiteResult, each_measurement
from smsline.smpp.simulator import Simulator

NAME = "notifications"
MODES = {"notifications-one-process": False, "notifications-api-process": True}
MEASUREMENTS: tuple[str, ...] = tuple(MODES)

CONNECTIONS = 8
CUSTOMERS = 40_000  # enough fresh customers for 17 s at ~2,300/s: the run must not end early
RATE_TARGET = 1500
P99_TARGET = 0.050
FULL_SECONDS, QUICK_SECONDS = 15.0, 4.0
WARM_UP_SECONDS = 2.0
SECRET_KEY = "bench-secret-key-not-for-production"
TOKEN = re.compile(r"token:\s+(sml_\S+)")


@dataclass
class Connection:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def request_bytes(port: int, token: str, customer: int, key: str) -> bytes:
    body = json.dumps(
        {
            "customer_id": f"bench-{customer}",
            "template": "bench_notice",
            "parameters": {"code": str(customer)},
        }
    ).encode()
    head = (
        f"POST /api/v1/notifications HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def drive(
    port: int, token: str, customers: range, until: float, measure_from: float, conn: Connection, tag: str
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for n, customer in enumerate(customers):
            if time.monotonic() >= until:
                break
            started = time.monotonic()
            writer.write(request_bytes(port, token, customer, f"{tag}-{n}"))
            status = await read_response(reader)
            done = time.monotonic()
            if started >= measure_from:
                conn.latencies.append(done - started)
                conn.statuses[status] = conn.statuses.get(status, 0) + 1
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        conn.failures.append(f"{exc.__class__.__name__}: {exc}")
    finally:
        writer.close()


async def wait_ready(port: int, svc: ServiceProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not svc.running:
            raise RuntimeError("smsline serve stopped:\n" + "\n".join(svc.log_tail()))
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(f"GET /readyz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            status = await read_response(reader)
            writer.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("smsline serve did not become ready")


async def run(*, quick: bool, only: frozenset[str]) -> SuiteResult:
    seconds = QUICK_SECONDS if quick else FULL_SECONDS
    return await each_measurement(MODES, only, lambda api_process: measure(seconds, api_process=api_process))


async def measure(seconds: float, *, api_process: bool) -> tuple[str, bool]:
    how = "the API in its own process" if api_process else "one process"
    print(
        heading(
            f"Notifications through the API, {how} ({CONNECTIONS} keep-alive connections, {seconds:g} s)"
        )
    )
    simulator = Simulator()
    await simulator.start(HOST, 0)
    with tempfile.TemporaryDirectory(prefix="smsline-bench-") as folder:
        svc = ServiceProcess(Path(folder), simulator.port)
        svc.env["SMSLINE_SECRET_KEY"] = SECRET_KEY
        svc.env["SMSLINE_API_PROCESS"] = "true" if api_process else "false"
        try:
            await svc.prepare(CUSTOMERS)
            created = await svc.command(
                "tokens", "create", "bench", "--scope", "notifications:send", "--rate-limit", "1000000"
            )
            found = TOKEN.search(created)
            assert found, "no token printed"
            token = found.group(1)
            await svc.command(
                "templates",
                "set",
                "bench_notice",
                "--en",
                "Your code is {code}. It expires in 10 minutes.",
                "--ru",
                "Ваш код {code}. Он действует 10 минут.",
                "--param",
                "code",
            )
            await svc.start()
            await wait_ready(svc.http_port, svc)
            cpu_before = svc.cpu_seconds()
            begin = time.monotonic()
            measure_from = begin + WARM_UP_SECONDS
            until = measure_from + seconds
            per_connection = CUSTOMERS // CONNECTIONS
            connections = [Connection() for _ in range(CONNECTIONS)]
            await asyncio.gather(
                *(
                    drive(
                        svc.http_port,
                        token,
                        range(i * per_connection, (i + 1) * per_connection),
                        until,
                        measure_from,
                        connections[i],
                        f"c{i}",
                    )
                    for i in range(CONNECTIONS)
                )
            )
            elapsed = time.monotonic() - measure_from
            cpu = (svc.cpu_seconds() - cpu_before) / (time.monotonic() - begin)
            sent_to_smsc = len(simulator.messages)
        finally:
            exit_code = await svc.stop()
            await simulator.stop()
    latencies = [lat for c in connections for lat in c.latencies]
    statuses: dict[int, int] = {}
    for c in connections:
        for status, count in c.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    accepted = statuses.get(202, 0)
    per_second = accepted / elapsed if elapsed > 0 else math.nan
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    failures = [f for c in connections for f in c.failures]
    met = per_second >= RATE_TARGET and p99 < P99_TARGET
    print(
        facts(
            [
                ("code", source_revision(ROOT)),
                ("file system", filesystem_of(Path(tempfile.gettempdir()))),
                ("accepted", f"{accepted:,} in {elapsed:.1f} s (after {WARM_UP_SECONDS:g} s warm-up)"),
                ("answers", ", ".join(f"{status}: {count:,}" for status, count in sorted(statuses.items()))),
                ("accepted/s", rate(per_second)),
                (
                    "latency",
                    f"p50 {ms(p50)} ms, p99 {ms(p99)} ms, max {ms(max(latencies, default=math.nan))} ms",
                ),
                ("SMS at the SMSC", f"{sent_to_smsc:,} by the end of the run"),
                ("smsline CPU", f"{cpu:.0%} of one core" + (" (both processes)" if api_process else "")),
                ("connection errors", str(len(failures)) + (f" (first: {failures[0]})" if failures else "")),
                ("serve exit", str(exit_code)),
            ]
        )
    )
    line = (
        f"notifications through the API, {how} ({CONNECTIONS} keep-alive connections): "
        f"{rate(per_second)}/s accepted, p50 {ms(p50)} ms, p99 {ms(p99)} ms "
        f"(target >= {RATE_TARGET:,}/s with p99 < {P99_TARGET * 1000:g} ms: {'met' if met else 'missed'})"
    )
    return line, exit_code == 0 and not failures and accepted > 0
