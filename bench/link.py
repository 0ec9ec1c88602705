"""The SMPP link and the dispatcher at full speed (issue "An SMPP link that holds in production").

1. ``link``: the ESME connector alone, one bind with a window of 64, sending pre-built
   ``submit_sm`` (no receipts requested) to the simulator as fast as the window allows.
   ``link-receipts``: the same with a receipt requested for each, answered at once: what the
   simulator itself can do with receipts, the ceiling of measurement 2 on this machine.
2. ``outbox``: ``smsline serve`` starting with 200,000 queued messages: the rate from bound to
   all submitted, and to all delivered (every receipt recorded), on SQLite and on PostgreSQL.
3. ``outbox-window``: the same on SQLite with the SMSC answering each ``submit_sm`` after 20 ms,
   window 64: the window allows at most 64 / 0.020 = 3,200 submits/s.

The simulator runs as its own process (``smsline simulator``) so that the bench process only
drives and watches; smsline runs as ``smsline serve`` as in production.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url

from bench.processes import cpu_seconds, stop_gracefully
from bench.report import facts, heading, rate, source_revision, table
from bench.requests_by_sms import HOST, ROOT, SMSLINE, SuiteResult
from smsline.config import SmscSettings
from smsline.db.engine import create_oneshot_engine
from smsline.db.schema import outbox
from smsline.line.outbox import Kind, Priority, outbox_row
from smsline.smpp import pdus
from smsline.smpp.connector import Connector
from smsline.smpp.pdus import Pdu
from smsline.smpp.session import Session

NAME = "link"
MEASUREMENTS = ("link-submit", "link-receipts", "outbox", "outbox-window")

WINDOW = 64
LINK_MESSAGES = {"full": 100_000, "quick": 10_000}
OUTBOX_MESSAGES = {"full": 200_000, "quick": 20_000}
WINDOW_MESSAGES = {"full": 50_000, "quick": 10_000}
RESPONSE_DELAY = 0.020
TARGETS = {"link-submit": 15_000, "sqlite": 8_000, "postgresql": 6_000, "outbox-window": 2_800}
POSTGRES_ENV = "SMSLINE_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DATABASE = "smsline_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


@asynccontextmanager
async def simulator_process(workdir: Path) -> AsyncIterator[tuple[int, str]]:
    """``smsline simulator`` in its own process: (SMPP port, HTTP control URL)."""
    port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSLINE_")}
    log = os.open(workdir / f"simulator-{port}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    process = await asyncio.create_subprocess_exec(
        str(SMSLINE), "simulator", "--port", str(port), "--http-port", str(http_port),
        env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
    )
    control = f"http://{HOST}:{http_port}"
    try:
        await wait_http(f"{control}/faults")
        yield port, control
    finally:
        await stop_gracefully(process, 20)
        os.close(log)


async def set_faults(control: str, **faults: object) -> None:
    async with httpx.AsyncClient() as client:
        (await client.patch(f"{control}/faults", json=faults)).raise_for_status()


# -- 1. the link alone ----------------------------------------------------------------------------


async def link_submit(size: str, workdir: Path, *, receipts: bool = False) -> tuple[str, bool]:
    count = LINK_MESSAGES[size]
    asked = "each with a receipt requested and answered at once" if receipts else "no receipts"
    print(heading(f"1. Link only: {count:,} pre-built submit_sm ({asked}), one bind, window {WINDOW}"),
          flush=True)
    receipts_in = 0
    all_in = asyncio.Event()

    def on_deliver(_: Connector, session: Session, pdu: Pdu) -> None:
        nonlocal receipts_in
        session.respond(pdu, pdus.deliver_sm_resp(pdu))
        receipts_in += 1
        if receipts_in == count:
            all_in.set()

    async with simulator_process(workdir) as (port, _):
        settings = SmscSettings(name="bench", host=HOST, port=port, window=WINDOW)
        connector = Connector(settings, on_deliver=on_deliver)
        connector.start()
        try:
            await connector.wait_bound(10.0)
            messages = [
                pdus.submit_sm(
                    source="SCSERV", source_ton=pdus.TON_ALPHANUMERIC, source_npi=pdus.NPI_UNKNOWN,
                    destination=f"7916{n % 10_000_000:07d}", data_coding=0,
                    short_message=b"Your card ending 1234 is ready for collection.",
                    registered_delivery=receipts,
                )
                for n in range(count)
            ]
            queue = iter(messages)
            failures = 0

            async def worker() -> None:
                nonlocal failures
                for pdu in queue:
                    response = await connector.submit(pdu)
                    if pdus.status_of(response) != pdus.ESME_ROK:
                        failures += 1

            cpu = time.process_time()
            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(WINDOW)))
            elapsed = time.monotonic() - started
            if receipts:
                await asyncio.wait_for(all_in.wait(), 120.0)
            receipts_after = time.monotonic() - started
            cpu = time.process_time() - cpu
        finally:
            await connector.stop()
    achieved = count / elapsed
    if receipts:
        print(facts([
            ("submitted", f"{count:,} in {elapsed:.2f} s, {failures} refused: {rate(achieved)} submit_sm/s"),
            ("receipts", f"all {count:,} in {receipts_after:.2f} s: {rate(count / receipts_after)}/s"),
        ]), flush=True)
        return (f"Link only with receipts (the simulator's ceiling for 2.): {rate(achieved)} submit_sm/s, "
                f"all receipts in at {rate(count / receipts_after)}/s"), True
    met = achieved >= TARGETS["link-submit"]
    print(facts([
        ("submitted", f"{count:,} in {elapsed:.2f} s, {failures} refused"),
        ("rate", f"{rate(achieved)} submit_sm/s (target >= {TARGETS['link-submit']:,}: "
                 f"{'met' if met else 'MISSED'})"),
        ("ESME CPU", f"{cpu / elapsed * 100:.0f}% of a core ({cpu / count * 1e6:.0f} µs per submit_sm)"),
    ]), flush=True)
    return (f"Link only, one bind, window {WINDOW}: {rate(achieved)} submit_sm/s "
            f"({count:,} pre-built, simulator in its own process)"), met


# -- 2./3. from the outbox ------------------------------------------------------------------------


async def fill_outbox(url: str, count: int) -> float:
    engine = create_oneshot_engine(url)
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    try:
        async with engine.begin() as conn:
            for first in range(0, count, 5_000):
                rows = [
                    outbox_row(
                        kind=Kind.DIRECT, priority=Priority.NOTIFICATION, sender="SCSERV",
                        destination=f"+7916{n:07d}", text=f"Your card ending {n % 10_000:04d} is ready.",
                        language="en", now=now,
                    )
                    for n in range(first, min(count, first + 5_000))
                ]
                await conn.execute(insert(outbox), rows)
    finally:
        await engine.dispose()
    return time.monotonic() - started


async def status_counts(url: str) -> dict[str, int]:
    engine = create_oneshot_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status))
            return {status: int(n) for status, n in rows}
    finally:
        await engine.dispose()


async def fresh_postgres(database: str = BENCH_DATABASE) -> str | None:
    """A new, empty PostgreSQL database of that name (each suite its own, so that none drops
    another's), or None when there is no server."""
    server = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    admin = create_oneshot_engine(server).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{database}"'))
    except (OSError, ConnectionError) as exc:
        print(f"  PostgreSQL not reachable at {server} ({exc}); skipped", flush=True)
        return None
    finally:
        await admin.dispose()
    url = make_url(server).set(database=database)
    return url.render_as_string(hide_password=False)


async def outbox_run(url: str, count: int, workdir: Path, *, delay: float) -> tuple[float, float, float]:
    """(seconds to all submitted, seconds to all delivered, smsline CPU seconds) from bound."""
    async with simulator_process(workdir) as (port, control):
        if delay:
            await set_faults(control, response_delay=delay)
        config = workdir / "smsline.toml"
        config.write_text(
            f'[[smsc]]\nname = "bench"\nhost = "{HOST}"\nport = {port}\nwindow = {WINDOW}\n', encoding="utf-8"
        )
        http_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSLINE_")}
        env.update(SMSLINE_DATABASE_URL=url, SMSLINE_CONFIG=str(config), SMSLINE_HTTP_HOST=HOST,
                   SMSLINE_HTTP_PORT=str(http_port), SMSLINE_LOG_LEVEL="WARNING")
        upgrade = await asyncio.create_subprocess_exec(str(SMSLINE), "db", "upgrade", env=env,
                                                       stdout=asyncio.subprocess.DEVNULL)
        if await upgrade.wait() != 0:
            raise RuntimeError("smsline db upgrade failed")
        filled = await fill_outbox(url, count)
        print(f"  {count:,} messages queued in {filled:.1f} s", flush=True)
        log = os.open(workdir / "serve.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        serve = await asyncio.create_subprocess_exec(str(SMSLINE), "serve", env=env, stdout=log, stderr=log,
                                                     stdin=asyncio.subprocess.DEVNULL)
        try:
            await wait_http(f"http://{HOST}:{http_port}/readyz")
            started = time.monotonic()
            cpu_start = cpu_seconds(serve.pid)
            submitted_at = math.nan
            deadline = started + max(600.0, count / 200)
            while time.monotonic() < deadline:
                counts = await status_counts(url)
                done = counts.get("delivered", 0)
                if math.isnan(submitted_at) and counts.get("submitted", 0) + done >= count:
                    submitted_at = time.monotonic() - started
                if done >= count:
                    break
                await asyncio.sleep(0.25)
            else:
                raise RuntimeError(f"not all delivered within {deadline - started:.0f} s: {counts}")
            delivered_at = time.monotonic() - started
            cpu = cpu_seconds(serve.pid) - cpu_start
        finally:
            await stop_gracefully(serve, 60)
            os.close(log)
    return submitted_at, delivered_at, cpu



async def outbox_rates(size: str, workdir: Path) -> tuple[list[str], bool]:
    count = OUTBOX_MESSAGES[size]
    print(heading(f"2. From {count:,} queued outbox rows to all submitted and delivered "
                  f"(one bind, window {WINDOW})"), flush=True)
    rows: list[list[str]] = []
    summary: list[str] = []
    ok = True
    for backend in ("sqlite", "postgresql"):
        url = f"sqlite:///{workdir / 'outbox.db'}" if backend == "sqlite" else await fresh_postgres()
        if url is None:
            continue
        submitted, delivered, cpu = await outbox_run(url, count, workdir, delay=0.0)
        met = count / submitted >= TARGETS[backend]
        ok = ok and met
        rows.append([backend, f"{count:,}", f"{submitted:.1f}", rate(count / submitted), f"{delivered:.1f}",
                     rate(count / delivered), f"{cpu / delivered * 100:.0f}%",
                     f">= {TARGETS[backend]:,}: {'met' if met else 'MISSED'}"])
        summary.append(f"From {count:,} queued rows on {backend}: {rate(count / submitted)} msg/s to all "
                       f"submitted, {rate(count / delivered)} msg/s to all delivered (receipts recorded)")
        print(f"  {backend}: {rate(count / submitted)} msg/s to submitted", flush=True)
    print(table(["database", "messages", "submitted s", "submitted/s", "delivered s", "delivered/s",
                 "smsline CPU", "target (submitted/s)"], rows))
    return summary, ok


async def outbox_window(size: str, workdir: Path) -> tuple[str, bool]:
    count = WINDOW_MESSAGES[size]
    bound = WINDOW / RESPONSE_DELAY
    print(heading(f"3. {count:,} queued rows, SMSC answering after {RESPONSE_DELAY * 1000:g} ms, "
                  f"window {WINDOW} (bound {bound:,.0f}/s), SQLite"), flush=True)
    url = f"sqlite:///{workdir / 'window.db'}"
    submitted, delivered, _ = await outbox_run(url, count, workdir, delay=RESPONSE_DELAY)
    achieved = count / submitted
    met = achieved >= TARGETS["outbox-window"]
    verdict = "met" if met else "MISSED"
    print(facts([
        ("submitted", f"{count:,} in {submitted:.1f} s: {rate(achieved)} msg/s ({achieved / bound:.0%} of "
                      f"the window bound; target >= {TARGETS['outbox-window']:,}: {verdict})"),
        ("delivered", f"all in {delivered:.1f} s: {rate(count / delivered)} msg/s"),
    ]), flush=True)
    return (f"SMSC answering after {RESPONSE_DELAY * 1000:g} ms, window {WINDOW}: {rate(achieved)} msg/s "
            f"submitted ({achieved / bound:.0%} of the {bound:,.0f}/s bound)"), met


async def run(*, quick: bool, only: frozenset[str]) -> SuiteResult:
    size = "quick" if quick else "full"
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="smsline-bench-link-") as tmp:
        workdir = Path(tmp)
        print(facts([("smsline", f"{SMSLINE} at commit {source_revision(ROOT)}"),
                     ("python", sys.version.split()[0])]), flush=True)
        if not only or "link-submit" in only:
            line, _ = await link_submit(size, workdir)
            summary.append(line)
        if not only or "link-receipts" in only:
            line, _ = await link_submit(size, workdir, receipts=True)
            summary.append(line)
        if not only or "outbox" in only:
            lines, _ = await outbox_rates(size, workdir)
            summary.extend(lines)
        if not only or "outbox-window" in only:
            line, _ = await outbox_window(size, workdir)
            summary.append(line)
    # Missed targets are reported in the figures; the suite fails only when something broke.
    return SuiteResult(summary=summary, ok=True)
