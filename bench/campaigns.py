"""Mass texting (issue "Mass texting: campaigns"): audience expansion and send rate.

On SQLite (a file in a temporary directory) and on PostgreSQL (a fresh database created and
dropped by the bench, when a server is reachable):

1. ``smsline db upgrade``, then ``customers`` filled by the bench itself (one
   ``INSERT … SELECT`` over a generated series per 100,000 rows; not a measurement — the
   import has its own suite): eight Russian time zones, a quarter of them Russian speakers,
   one in twenty with SMS off. On PostgreSQL the table is then analysed, as autovacuum would
   do shortly after such a load.
2. Expansion: ``smsline campaign create … --all --quiet-hours 00:00-24:00`` run as an operator
   would, as its own process, timed from launch to exit (so Python's start-up is included; the
   start-up alone, ``smsline campaign list``, is shown beside it), with its peak RSS.
3. Send: ``smsline simulator`` and ``smsline serve`` (one bind, window 64) in their own
   processes, then ``smsline campaign start ID``. The send time runs from the campaign's
   ``started_at`` to the last ``submitted_at`` of its SMS, both written by smsline, so it does not
   depend on how often the bench looks. The bench looks once a second with two indexed queries
   (the campaign's state; its SMS still in the outbox, at most about 2,000 rows), and every 15 s
   counts the SMS submitted so far (on the index (campaign, status, submitted_at)) to show
   progress. The peak RSS of ``smsline serve`` is its VmHWM read just before it is stopped.

Targets (issue, for 1,000,000 customers on this 2-core machine): expansion < 30 s, send
>= 4,000 msg/s, peak RSS < 300 MB (taken here as MiB, for both processes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bench.link import (
    DEFAULT_POSTGRES,
    POSTGRES_ENV,
    WINDOW,
    free_port,
    fresh_postgres,
    simulator_process,
    wait_http,
)
from bench.processes import cpu_seconds, memory_of, run_measured, stop_gracefully
from bench.report import facts, heading, rate, source_revision, table
from bench.requests_by_sms import HOST, ROOT, SMSLINE, SuiteResult
from smsline.campaigns.runner import AHEAD_UNCAPPED, BATCH
from smsline.campaigns.service import SENT
from smsline.db.engine import async_url, create_oneshot_engine
from smsline.db.schema import campaigns, outbox

NAME = "campaigns"
MEASUREMENTS = ("campaigns-sqlite", "campaigns-postgresql")

CUSTOMERS = {"full": 1_000_000, "quick": 20_000}
FILL_STEP = 100_000
ZONES = (
    "Europe/Moscow", "Europe/Kaliningrad", "Europe/Samara", "Asia/Yekaterinburg",
    "Asia/Omsk", "Asia/Novosibirsk", "Asia/Krasnoyarsk", "Asia/Vladivostok",
)
RU_EVERY = 4  # every fourth customer speaks Russian
OPTED_OUT_EVERY = 20  # every twentieth has SMS off
TEXT = "Dear {name}, our spring tariff is here: 100 GB for 500 RUB a month. Reply STOP to opt out."
TEXT_RU = "{name}, у нас весенний тариф: 100 ГБ за 500 руб. в месяц."
QUIET_HOURS = "00:00-24:00"  # always open: the send rate is not shaped by the clock of the run
EXPANSION_TARGET = 30.0  # seconds for 1,000,000 recipients
SEND_TARGET = 4_000  # msg/s
RSS_TARGET = 300  # MiB
POLL_EVERY = 1.0
PROGRESS_EVERY = 15.0
BENCH_DATABASE = "smsline_bench_campaigns"
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Expansion:
    campaign: int
    recipients: int
    seconds: float
    peak_rss: int  # bytes
    startup: float  # seconds of a CLI command that does nothing much (`smsline campaign list`)


@dataclass(frozen=True, slots=True)
class Send:
    submitted: int
    seconds: float  # started_at -> last submitted_at
    first_submit: float  # started_at -> first submitted_at
    complete: bool
    rss_at_start: int  # bytes (VmRSS of smsline serve, bound and idle, before the start)
    rss_half: int  # bytes (VmRSS at the look halfway through the send)
    rss_end: int  # bytes (VmRSS at the last look)
    peak_rss: int  # bytes (VmHWM of smsline serve)
    cpu_share: float  # smsline serve's CPU over the wall time from start to completed (1.0: a core)
    ahead_mean: float  # the campaign's SMS waiting in the outbox, mean of the looks
    ahead_max: int
    looks: int

    @property
    def rate(self) -> float:
        return self.submitted / self.seconds if self.seconds > 0 else math.nan


@dataclass(frozen=True, slots=True)
class Outcome:
    backend: str
    customers: int
    fill_seconds: float
    expansion: Expansion
    send: Send


# -- the database ---------------------------------------------------------------------------------


def _env(url: str, config: Path | None = None, http_port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSLINE_")}
    env.update(SMSLINE_DATABASE_URL=url, SMSLINE_LOG_LEVEL="WARNING")
    if config is not None:
        env["SMSLINE_CONFIG"] = str(config)
    if http_port is not None:
        env.update(SMSLINE_HTTP_HOST=HOST, SMSLINE_HTTP_PORT=str(http_port))
    return env


def _zone_case(column: str) -> str:
    branches = " ".join(f"WHEN {i} THEN '{zone}'" for i, zone in enumerate(ZONES))
    return f"CASE {column} % {len(ZONES)} {branches} END"


def _customer_columns(created: str) -> str:
    """The SELECT list of generated customers over a series ``n`` (the same SQL on both backends
    but for the time stamp)."""
    return (
        "'C-' || lpad_n, '+7916' || lpad_n, lpad_n, 'user' || lpad_n, "
        f"CASE WHEN n % {RU_EVERY} = 0 THEN 'Анна ' ELSE 'Anna ' END || n, "
        f"CASE WHEN n % {RU_EVERY} = 0 THEN 'ru' ELSE 'en' END, {_zone_case('n')}, "
        f"(n % {OPTED_OUT_EVERY} <> 0), {created}, {created}"
    )


INSERT_COLUMNS = (
    "customer_id, phone, personal_code, login, name, language, timezone, sms_enabled, created_at, updated_at"
)


def _fill_sqlite(path: Path, count: int) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")  # the bench's own set-up, not smsline's writes
        for first in range(1, count + 1, FILL_STEP):
            last = min(count, first + FILL_STEP - 1)
            connection.execute("BEGIN")
            connection.execute(
                "WITH RECURSIVE seq(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM seq WHERE n < ?), "
                "padded(n, lpad_n) AS (SELECT n, printf('%07d', n) FROM seq) "
                f"INSERT INTO customers ({INSERT_COLUMNS}) "
                f"SELECT {_customer_columns('?')} FROM padded",
                (first, last, now, now),
            )
            connection.execute("COMMIT")
    finally:
        connection.close()


async def _fill_postgres(url: str, count: int) -> None:
    engine = create_oneshot_engine(url)
    try:
        for first in range(1, count + 1, FILL_STEP):
            last = min(count, first + FILL_STEP - 1)
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        f"INSERT INTO customers ({INSERT_COLUMNS}) "
                        f"SELECT {_customer_columns('now()')} "
                        "FROM (SELECT n, lpad(n::text, 7, '0') AS lpad_n "
                        "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n) AS padded"
                    ),
                    {"first": first, "last": last},
                )
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE customers"))
    finally:
        await engine.dispose()


async def fill_customers(url: str, count: int) -> float:
    started = time.monotonic()
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        assert database
        await asyncio.to_thread(_fill_sqlite, Path(database), count)
    else:
        await _fill_postgres(url, count)
    return time.monotonic() - started


def opted_in(count: int) -> int:
    """How many of ``count`` generated customers have SMS on."""
    return count - count // OPTED_OUT_EVERY


async def drop_postgres() -> None:
    server = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    admin = create_oneshot_engine(server).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def reader(url: str) -> AsyncEngine:
    """An engine for the bench's looks. Unlike smsline's engines it does not open SQLite
    transactions with BEGIN IMMEDIATE, so a look never takes the write lock from smsline."""
    return create_async_engine(async_url(url), poolclass=NullPool)


# -- processes ------------------------------------------------------------------------------------


def _run_with_rusage(argv: Sequence[str], env: dict[str, str], timeout: float) -> tuple[float, int, str]:
    """Run a command to its end: (wall seconds, its peak RSS in bytes, stdout)."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out, tempfile.TemporaryFile(
        "w+", encoding="utf-8"
    ) as err:
        code, elapsed, peak = run_measured(argv, env, timeout, stdout=out, stderr=err)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise RuntimeError(f"{' '.join(argv[1:])} failed ({code}): {stderr.strip()[-2000:]}")
    return elapsed, peak, stdout



# -- 2. expansion ---------------------------------------------------------------------------------


CREATED = re.compile(r"created campaign (\d+) .*: (\d+) recipients")


async def expand(url: str) -> Expansion:
    env = _env(url)
    startup, _, _ = await asyncio.to_thread(_run_with_rusage, [str(SMSLINE), "campaign", "list"], env, 120)
    argv = [
        str(SMSLINE), "campaign", "create", "Spring tariff (bench)", "--text", TEXT, "--text-ru", TEXT_RU,
        "--all", "--quiet-hours", QUIET_HOURS,
    ]
    seconds, peak, out = await asyncio.to_thread(_run_with_rusage, argv, env, 3600)
    found = CREATED.search(out)
    if found is None:
        raise RuntimeError(f"smsline campaign create said: {out.strip()[:500]}")
    return Expansion(int(found.group(1)), int(found.group(2)), seconds, peak, startup)


# -- 3. send --------------------------------------------------------------------------------------


async def _look(engine: AsyncEngine, campaign_id: int) -> tuple[str, int]:
    """(state, SMS of the campaign waiting in the outbox): two indexed queries."""
    async with engine.connect() as conn:
        state = (
            await conn.execute(select(campaigns.c.state).where(campaigns.c.id == campaign_id))
        ).scalar_one()
        ahead = (
            await conn.execute(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.campaign == campaign_id, outbox.c.status.in_(("queued", "sending")))
            )
        ).scalar_one()
    return str(state), int(ahead)


async def _submitted(
    engine: AsyncEngine, campaign_id: int
) -> tuple[int, dt.datetime | None, dt.datetime | None]:
    """(SMS of the campaign accepted by the SMSC, first and last submitted_at), on the index
    (campaign, status, submitted_at)."""
    async with engine.connect() as conn:
        count, first, last = (
            await conn.execute(
                select(func.count(), func.min(outbox.c.submitted_at), func.max(outbox.c.submitted_at)).where(
                    outbox.c.campaign == campaign_id, outbox.c.status.in_(SENT)
                )
            )
        ).one()
    return int(count), _utc(first), _utc(last)


def _utc(value: object) -> dt.datetime | None:
    """min()/max() of a datetime column come back untyped on SQLite (text)."""
    if value is None:
        return None
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def send(url: str, campaign_id: int, recipients: int, workdir: Path) -> Send:
    async with simulator_process(workdir) as (port, _):
        config = workdir / "smsline.toml"
        config.write_text(
            f'[[smsc]]\nname = "bench"\nhost = "{HOST}"\nport = {port}\nwindow = {WINDOW}\n', encoding="utf-8"
        )
        http_port = free_port()
        env = _env(url, config, http_port)
        log = os.open(workdir / "serve.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        serve = await asyncio.create_subprocess_exec(
            str(SMSLINE), "serve", env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
        )
        engine = reader(url)
        try:
            await wait_http(f"http://{HOST}:{http_port}/readyz")
            rss_at_start = memory_of(serve.pid, "VmRSS")
            cpu_start, wall_start = cpu_seconds(serve.pid), time.monotonic()
            start = await asyncio.to_thread(
                _run_with_rusage, [str(SMSLINE), "campaign", "start", str(campaign_id)], env, 120
            )
            if "running" not in start[2]:
                raise RuntimeError(f"smsline campaign start said: {start[2].strip()}")
            looked = time.monotonic()
            deadline = looked + max(120.0, recipients / 250)
            aheads: list[int] = []
            rss: list[int] = []
            state = "running"
            next_report = looked + PROGRESS_EVERY
            while time.monotonic() < deadline:
                await asyncio.sleep(POLL_EVERY)
                state, ahead = await _look(engine, campaign_id)
                aheads.append(ahead)
                rss.append(memory_of(serve.pid, "VmRSS"))
                if state != "running":
                    break
                if time.monotonic() >= next_report:
                    next_report += PROGRESS_EVERY
                    done, _, _ = await _submitted(engine, campaign_id)
                    print(f"    {time.monotonic() - looked:5.0f} s: {done:,} of {recipients:,} submitted, "
                          f"{ahead:,} waiting in the outbox", flush=True)
            cpu_share = (cpu_seconds(serve.pid) - cpu_start) / (time.monotonic() - wall_start)
            peak = memory_of(serve.pid, "VmHWM")
            async with engine.connect() as conn:
                started_at = (
                    await conn.execute(select(campaigns.c.started_at).where(campaigns.c.id == campaign_id))
                ).scalar_one()
            submitted, first, last = await _submitted(engine, campaign_id)
        finally:
            await engine.dispose()
            await stop_gracefully(serve, 60)
            os.close(log)
    begun = _utc(started_at)
    assert begun is not None
    seconds = (last - begun).total_seconds() if last else math.nan
    first_submit = (first - begun).total_seconds() if first else math.nan
    if state != "completed":
        print(f"  campaign {campaign_id} is still {state} after {time.monotonic() - looked:.0f} s "
              f"({submitted:,} of {recipients:,} submitted); see {workdir / 'serve.log'}", flush=True)
    return Send(
        submitted=submitted, seconds=seconds, first_submit=first_submit,
        complete=state == "completed" and submitted == recipients, rss_at_start=rss_at_start,
        rss_half=rss[len(rss) // 2] if rss else 0, rss_end=rss[-1] if rss else 0,
        peak_rss=peak, cpu_share=cpu_share,
        ahead_mean=sum(aheads) / len(aheads) if aheads else math.nan,
        ahead_max=max(aheads, default=0), looks=len(aheads),
    )


# -- one backend ----------------------------------------------------------------------------------


async def measure(backend: str, url: str, count: int, workdir: Path) -> Outcome:
    print(f"\n  {backend}:", flush=True)
    upgrade = await asyncio.to_thread(_run_with_rusage, [str(SMSLINE), "db", "upgrade"], _env(url), 300)
    del upgrade
    filled = await fill_customers(url, count)
    print(f"    {count:,} customers generated in {filled:.2f} s (bench set-up, not measured)", flush=True)
    expansion = await expand(url)
    print(f"    expansion: campaign {expansion.campaign}, {expansion.recipients:,} recipients in "
          f"{expansion.seconds:.1f} s (CLI start-up alone {expansion.startup:.1f} s), peak RSS "
          f"{expansion.peak_rss / MIB:.0f} MiB", flush=True)
    if expansion.recipients != opted_in(count):
        raise RuntimeError(f"expected {opted_in(count):,} recipients (SMS on), got {expansion.recipients:,}")
    sent = await send(url, expansion.campaign, expansion.recipients, workdir)
    print(f"    send: {sent.submitted:,} submitted in {sent.seconds:.1f} s, {rate(sent.rate)} msg/s; first "
          f"after {sent.first_submit:.2f} s; serve RSS {sent.rss_at_start / MIB:.0f} MiB before the start, "
          f"{sent.rss_half / MIB:.0f} halfway, {sent.rss_end / MIB:.0f} at the end, peak "
          f"{sent.peak_rss / MIB:.0f}", flush=True)
    return Outcome(backend, count, filled, expansion, sent)


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report(outcomes: Sequence[Outcome], quick: bool) -> tuple[list[str], bool]:
    rows = []
    for o in outcomes:
        e, s = o.expansion, o.send
        rows.append([
            o.backend, f"{e.recipients:,}", f"{e.seconds:.1f}", f"{e.startup:.1f}", f"{e.peak_rss / MIB:.0f}",
            f"{s.submitted:,}", f"{s.seconds:.1f}", rate(s.rate), f"{s.first_submit:.2f}",
            f"{s.rss_at_start / MIB:.0f} / {s.peak_rss / MIB:.0f}", f"{s.cpu_share * 100:.0f}%",
            f"{s.ahead_mean:,.0f} / {s.ahead_max:,}",
        ])
    print()
    print(table(
        ["database", "recipients", "expand s", "CLI start s", "create RSS MiB", "submitted", "send s",
         "msg/s", "1st SMS s", "serve RSS MiB start/peak", "serve CPU", "in outbox mean/max"],
        rows,
    ))
    print(f"  in outbox: the campaign's SMS queued or held by the dispatcher at each look (the runner "
          f"allows {AHEAD_UNCAPPED:,});\n  well below that while the rate misses, the dispatcher is waiting "
          "for the runner")
    targets: list[list[str]] = [
        [f"expansion < {EXPANSION_TARGET:g} s (CLI, wall)"],
        [f"send >= {SEND_TARGET:,} msg/s"],
        [f"peak RSS < {RSS_TARGET} MiB (smsline serve)"],
        [f"peak RSS < {RSS_TARGET} MiB (campaign create)"],
    ]
    ok = True
    for o in outcomes:
        e, s = o.expansion, o.send
        checks = [
            (e.seconds < EXPANSION_TARGET, f"{e.seconds:.1f} s"),
            (s.complete and s.rate >= SEND_TARGET,
             f"{rate(s.rate)}/s" + ("" if s.complete else " (unfinished)")),
            (s.peak_rss < RSS_TARGET * MIB, f"{s.peak_rss / MIB:.0f} MiB"),
            (e.peak_rss < RSS_TARGET * MIB, f"{e.peak_rss / MIB:.0f} MiB"),
        ]
        for row, (met, figure) in zip(targets, checks, strict=True):
            row.append(f"{figure}: {_verdict(met)}")
            ok = ok and met
    print()
    print(table(["target", *(o.backend for o in outcomes)], targets))
    if quick:
        print(f"  (the targets are for {CUSTOMERS['full']:,} customers; a quick run checks the machinery "
              "only)")
    summary = []
    for o in outcomes:
        e, s = o.expansion, o.send
        summary.append(
            f"Campaign to {e.recipients:,} recipients on {o.backend}: expansion {e.seconds:.1f} s "
            f"(`smsline campaign create --all`, wall, peak RSS {e.peak_rss / MIB:.0f} MiB); send "
            f"{rate(s.rate)} msg/s from start to all submitted ({s.seconds:.1f} s, simulator, one bind, "
            f"window {WINDOW}), `smsline serve` peak RSS {s.peak_rss / MIB:.0f} MiB"
        )
    return summary, ok


async def run(*, quick: bool, only: frozenset[str]) -> SuiteResult:
    size = "quick" if quick else "full"
    count = CUSTOMERS[size]
    backends = [b for b in ("sqlite", "postgresql") if not only or f"campaigns-{b}" in only]
    print(heading(f"Campaigns: {count:,} customers, expansion and send (one bind, window {WINDOW})"))
    print(facts([
        ("smsline", f"{SMSLINE} at commit {source_revision(ROOT)}"),
        ("python", sys.version.split()[0]),
        ("customers", f"{len(ZONES)} time zones, 1 in {RU_EVERY} Russian, 1 in {OPTED_OUT_EVERY} with "
                      f"SMS off; quiet hours {QUIET_HOURS} (always open)"),
        ("expansion", "`smsline campaign create … --all` as its own process, wall time from launch to exit"),
        ("send", "from the campaign's started_at to its last submitted_at (both recorded by smsline)"),
        ("campaign runner", f"feeds {BATCH} recipients a step, the next step at once while whole batches go, "
                            f"keeps up to {AHEAD_UNCAPPED:,} SMS queued ahead (no TPS cap)"),
    ]), flush=True)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="smsline-bench-campaigns-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            if backend == "sqlite":
                outcomes.append(await measure(backend, f"sqlite:///{workdir / 'cb.db'}", count, workdir))
                continue
            postgres = await fresh_postgres(BENCH_DATABASE)
            if postgres is None:
                continue
            try:
                outcomes.append(await measure(backend, postgres, count, workdir))
            finally:
                await drop_postgres()
    summary, _ = report(outcomes, quick)
    # Missed targets are reported in the figures; the suite fails only when something broke.
    return SuiteResult(summary=summary, ok=True)
