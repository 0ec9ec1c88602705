"""Importing customers from CSV (``smsline customers import``) at scale.

A generated file of N customers (1,000,000 by default, 20,000 with ``--quick``) — Russian phones
written in the usual ways (``+7…``, ``8 (…) …``, ``7…``, mobile and fixed lines of Moscow,
Kaliningrad and Vladivostok), both languages, several time zones, some tags, some customers who
opted out — is imported by ``smsline customers import`` as its own process into a freshly
migrated SQLite file and, when ``SMSLINE_BENCH_POSTGRES_URL`` or ``SMSLINE_TEST_POSTGRES_URL``
names a server, into a fresh PostgreSQL database the bench creates and drops. The figures are the
command's wall time from start to exit (rows per second) and its peak resident memory.
"""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bench.link import DEFAULT_POSTGRES
from bench.processes import run_measured
from bench.report import facts, filesystem_of, heading, rate, source_revision, table
from bench.requests_by_sms import ROOT, SMSLINE, SuiteResult
from smsline.db.engine import create_oneshot_engine
from smsline.db.schema import consent_events, customer_tags, customers

NAME = "customers_import"
MEASUREMENTS = ("customers_import-sqlite", "customers_import-postgresql")

ROWS = {"full": 1_000_000, "quick": 20_000}
TARGET = 20_000  # rows/s, on each database
POSTGRES_ENVS = ("SMSLINE_BENCH_POSTGRES_URL", "SMSLINE_TEST_POSTGRES_URL")
BENCH_DATABASE = "smsline_bench_customers_import"

# (national prefix, digits after it, time zone or "" for the default)
_NUMBERING = (
    ("916", 7, ""),
    ("903", 7, "Europe/Moscow"),
    ("926", 7, ""),
    ("985", 7, ""),
    ("999", 7, "Asia/Yekaterinburg"),
    ("914", 7, "Asia/Vladivostok"),
    ("4012", 6, "Europe/Kaliningrad"),  # Kaliningrad, fixed line
    ("423", 7, "Asia/Vladivostok"),  # Vladivostok, fixed line
    ("495", 7, "Europe/Moscow"),  # Moscow, fixed line
    ("950", 7, ""),
)
_NAMES = ("Иван Петров", "Anna Smirnova", "Ольга Кузнецова", "", "Sergei Ivanov", "Мария Соколова")


def _written(national: str, style: int) -> str:
    """A Russian number as people write it, in one of four usual forms."""
    if style == 0:
        return "+7" + national
    if style == 1:
        return f"8 ({national[:3]}) {national[3:6]}-{national[6:8]}-{national[8:]}"
    if style == 2:
        return "7" + national
    return f"+7 {national[:3]} {national[3:6]} {national[6:]}"


def generate(path: Path, count: int) -> dict[str, int]:
    """Write ``count`` customers to ``path``; what the import must store from them."""
    expected = {"customers": count, "tags": 0, "opted_out": 0}
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["customer_id", "phone", "personal_code", "login", "name", "language", "timezone",
                         "tags", "sms_enabled"])
        for n in range(count):
            prefix, digits, zone = _NUMBERING[n % len(_NUMBERING)]
            national = prefix + f"{n // len(_NUMBERING):0{digits}d}"
            tags = "vip" if n % 7 == 0 else "moscow;gold" if n % 11 == 0 else ""
            expected["tags"] += len(tags.split(";")) if tags else 0
            opted_out = n % 20 == 0
            expected["opted_out"] += opted_out
            writer.writerow([
                f"C-{n:08d}",
                _written(national, (n // len(_NUMBERING)) % 4),
                f"{(n * 7919) % 10_000:04d}",
                f"user{n}",
                _NAMES[n % len(_NAMES)],
                ("ru", "en", "")[n % 3],
                zone,
                tags,
                "0" if opted_out else "1" if n % 3 == 0 else "",
            ])
    return expected


async def _stored(url: str) -> dict[str, int]:
    engine = create_oneshot_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                "customers": int(await conn.scalar(select(func.count()).select_from(customers)) or 0),
                "tags": int(await conn.scalar(select(func.count()).select_from(customer_tags)) or 0),
                "opted_out": int(await conn.scalar(select(func.count()).select_from(consent_events)) or 0),
            }
    finally:
        await engine.dispose()


def _run_measured(argv: list[str], env: dict[str, str], log: Path) -> tuple[int, float, int]:
    """(exit status, wall seconds, peak RSS in bytes) of a command run to its end."""
    with log.open("w", encoding="utf-8") as out:
        return run_measured(argv, env, 3600, stdout=out, stderr=out)


def _postgres_server() -> str:
    """The server the other suites use too: the first of POSTGRES_ENVS set, else the local one."""
    for name in POSTGRES_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return DEFAULT_POSTGRES


async def _postgres_admin(server: str, *statements: str) -> None:
    admin = create_oneshot_engine(server).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await admin.dispose()


async def import_into(
    backend: str, url: str, csv_path: Path, workdir: Path
) -> tuple[float, int, dict[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSLINE_")}
    env.update(SMSLINE_DATABASE_URL=url, SMSLINE_CONFIG=str(workdir / "none.toml"), COLUMNS="120")
    upgrade = await asyncio.to_thread(
        subprocess.run, [str(SMSLINE), "db", "upgrade"], env=env, capture_output=True, check=False
    )
    if upgrade.returncode != 0:
        raise RuntimeError(f"smsline db upgrade failed on {backend}: {upgrade.stderr.decode()[-2000:]}")
    log = workdir / f"import-{backend}.log"
    status, elapsed, peak = await asyncio.to_thread(
        _run_measured, [str(SMSLINE), "customers", "import", str(csv_path)], env, log
    )
    if status != 0:
        raise RuntimeError(f"smsline customers import failed on {backend} (exit {status}):\n"
                           + log.read_text(encoding="utf-8", errors="replace")[-3000:])
    return elapsed, peak, await _stored(url)


async def run(*, quick: bool, only: frozenset[str]) -> SuiteResult:
    count = ROWS["quick" if quick else "full"]
    summary: list[str] = []
    rows: list[list[str]] = []
    ok = True
    print(heading(f"Customer import: {count:,} generated customers into an empty database"), flush=True)
    with tempfile.TemporaryDirectory(prefix="smsline-bench-import-") as tmp:
        workdir = Path(tmp)
        (workdir / "none.toml").write_text("", encoding="utf-8")
        csv_path = workdir / "customers.csv"
        started = time.monotonic()
        expected = await asyncio.to_thread(generate, csv_path, count)
        print(facts([
            ("smsline", f"{SMSLINE} at commit {source_revision(ROOT)}"),
            ("file", f"{count:,} rows, {csv_path.stat().st_size / 1e6:.0f} MB, generated in "
                     f"{time.monotonic() - started:.1f} s"),
            ("SQLite file system", filesystem_of(workdir)),
        ]), flush=True)
        backends = [("sqlite", f"sqlite:///{workdir / 'import.db'}"), ("postgresql", _postgres_server())]
        for backend, target in backends:
            if only and f"{NAME}-{backend}" not in only:
                continue
            url = target
            if backend == "postgresql":
                try:
                    await _postgres_admin(target, f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)',
                                          f'CREATE DATABASE "{BENCH_DATABASE}"')
                except (OSError, ConnectionError) as exc:
                    print(f"  postgresql: not reachable at {target} ({exc}); skipped", flush=True)
                    continue
                url = make_url(target).set(database=BENCH_DATABASE).render_as_string(hide_password=False)
            try:
                elapsed, peak, stored = await import_into(backend, url, csv_path, workdir)
            finally:
                if backend == "postgresql":
                    await _postgres_admin(target, f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
            achieved = count / elapsed
            met = achieved >= TARGET
            complete = stored == expected
            ok = ok and complete
            rows.append([backend, f"{count:,}", f"{elapsed:.1f}", rate(achieved), f"{peak / 2**20:.0f} MiB",
                         "yes" if complete else f"NO: {stored} != {expected}",
                         f">= {TARGET:,}: {'met' if met else 'MISSED'}"])
            summary.append(f"Customer import, {count:,} rows into an empty {backend} database: "
                           f"{rate(achieved)} rows/s, peak RSS {peak / 2**20:.0f} MiB")
            print(f"  {backend}: {rate(achieved)} rows/s", flush=True)
    print(table(["database", "rows", "seconds", "rows/s", "peak RSS", "all stored", "target (rows/s)"], rows))
    return SuiteResult(summary=summary, ok=ok)
