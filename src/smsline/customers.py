"""Customer import from CSV (SPEC §6): ``customers import FILE.csv``.

Columns: ``customer_id,phone,personal_code,login`` are required; ``name,language,timezone,tags,
sms_enabled`` are optional, in any order. Customers are matched by ``customer_id``: new ones are
created, known ones updated. An empty optional cell means "not given": a new customer gets the
default and a known customer keeps the current value — so a blank ``sms_enabled`` never turns
notifications back on for someone who opted out. ``tags``, when the column is present, replaces
the customer's tags (an empty cell clears them). Portal passwords are never touched.

Rows are validated one by one; invalid rows are reported with their line number and reason and
never half-imported. Valid rows are written in batches, one transaction per batch, or — with
``all_or_nothing`` — all in one transaction that is rolled back if any row is invalid.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import datetime as dt
import functools
import re
import zoneinfo
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Column, Row, String, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import ReturningInsert

from smsline.campaigns.service import suppress_opted_out
from smsline.config import Settings
from smsline.db.engine import create_oneshot_engine
from smsline.db.schema import consent_events, customer_tags, customers
from smsline.domain.msisdn import InvalidMsisdn, normalise_msisdn

REQUIRED_COLUMNS: Final = ("customer_id", "phone", "personal_code", "login")
OPTIONAL_COLUMNS: Final = ("name", "language", "timezone", "tags", "sms_enabled")
LANGUAGES: Final = ("en", "ru")
BATCH_SIZE: Final = 1000
CONSENT_CHANNEL: Final = "import"

_TRUE_WORDS: Final = frozenset({"true", "yes", "1"})
_FALSE_WORDS: Final = frozenset({"false", "no", "0"})
_TAG_SEPARATORS: Final = re.compile(r"[;,\s]+")
_DRIVER_CLASS: Final = re.compile(r"<class '[\w.]+'>: ")


def _length(column: Column[Any]) -> int:
    assert isinstance(column.type, String)
    assert column.type.length is not None
    return column.type.length


_TEXT_LIMITS: Final = {
    name: _length(customers.c[name]) for name in ("customer_id", "personal_code", "login", "name")
}
_TAG_LIMIT: Final = _length(customer_tags.c.tag)
_ACTOR_LIMIT: Final = _length(consent_events.c.actor)

# Customer fields an import sets, in the order they are compared.
_FIELDS: Final = (
    "phone",
    "personal_code",
    "login",
    "name",
    "language",
    "timezone",
    "sms_enabled",
)


class InvalidCustomerFile(ValueError):
    """The file as a whole cannot be imported (unreadable, not UTF-8, bad header)."""


@dataclass
class RowError:
    """A rejected row: its physical line in the file (the header is line 1) and why."""

    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import did. ``imported`` is False when ``all_or_nothing`` rolled it all back."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)
    imported: bool = True


@dataclass(frozen=True)
class _Row:
    """A valid row. None means "not given" (absent column or empty cell)."""

    line: int
    customer_id: str
    phone: str
    personal_code: str
    login: str
    name: str | None
    language: str | None
    timezone: str | None
    tags: tuple[str, ...] | None
    sms_enabled: bool | None


@dataclass
class _Batch:
    rows: list[_Row]
    errors: list[RowError]
    rows_read: int


@dataclass(frozen=True)
class _Defaults:
    region: str
    language: str
    timezone: str


# --- reading and validating the file ---------------------------------------------------------


@functools.cache
def _time_zones() -> dict[str, str]:
    """Known IANA zone names, by their lower-case spelling."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def _check_encoding(path: Path) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk.count(b"\n", 0, exc.start)
                raise InvalidCustomerFile(
                    f"{path.name} is not UTF-8 text (invalid bytes on line {line})"
                ) from exc
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise InvalidCustomerFile(
                f"{path.name} is not UTF-8 text (truncated character on line {line})"
            ) from exc


def _check_header(path: Path, header: list[str] | None) -> list[str]:
    if header is None:
        raise InvalidCustomerFile(f"{path.name} is empty: expected a header line")
    columns = [name.strip().lower() for name in header]
    allowed = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    problems: list[str] = []
    unknown = [name for name in columns if name not in allowed]
    if unknown:
        problems.append("unknown column(s) " + ", ".join(repr(name) for name in unknown))
    repeated = sorted({name for name in columns if name and columns.count(name) > 1})
    if repeated:
        problems.append("repeated column(s) " + ", ".join(repr(name) for name in repeated))
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        problems.append("missing required column(s) " + ", ".join(missing))
    if problems:
        raise InvalidCustomerFile(
            f"{path.name}, header (line 1): {'; '.join(problems)}. "
            f"Required: {','.join(REQUIRED_COLUMNS)}; optional: {','.join(OPTIONAL_COLUMNS)}"
        )
    return columns


def _required_text(values: dict[str, str], column: str, reasons: list[str]) -> str:
    value = values[column]
    if not value:
        reasons.append(f"{column} is empty")
    elif len(value) > _TEXT_LIMITS[column]:
        reasons.append(f"{column} is longer than {_TEXT_LIMITS[column]} characters")
    return value


def _parse_row(line: int, record: list[str], columns: list[str], defaults: _Defaults) -> _Row | RowError:
    if len(record) != len(columns):
        return RowError(line, f"has {len(record)} fields, the header has {len(columns)} (check the quoting)")
    values = {column: value.strip() for column, value in zip(columns, record, strict=True)}
    reasons: list[str] = []

    customer_id = _required_text(values, "customer_id", reasons)
    phone = ""
    if not values["phone"]:
        reasons.append("phone is empty")
    else:
        try:
            phone = normalise_msisdn(values["phone"], defaults.region)
        except InvalidMsisdn as exc:
            reasons.append(f"phone: {exc}")
    personal_code = _required_text(values, "personal_code", reasons)
    login = _required_text(values, "login", reasons)

    name: str | None = values.get("name") or None
    if name is not None and len(name) > _TEXT_LIMITS["name"]:
        reasons.append(f"name is longer than {_TEXT_LIMITS['name']} characters")

    language: str | None = values.get("language", "").lower() or None
    if language is not None and language not in LANGUAGES:
        reasons.append(f"language {values['language']!r} is not one of {', '.join(LANGUAGES)}")

    timezone: str | None = None
    if raw_zone := values.get("timezone"):
        timezone = _time_zones().get(raw_zone.lower())
        if timezone is None:
            reasons.append(f"timezone {raw_zone!r} is not an IANA time zone (e.g. Europe/Moscow)")

    tags: tuple[str, ...] | None = None
    if "tags" in values:
        tags = tuple(dict.fromkeys(tag for tag in _TAG_SEPARATORS.split(values["tags"]) if tag))
        too_long = [tag for tag in tags if len(tag) > _TAG_LIMIT]
        if too_long:
            reasons.append(f"tag {too_long[0]!r} is longer than {_TAG_LIMIT} characters")

    sms_enabled: bool | None = None
    if raw_flag := values.get("sms_enabled"):
        if raw_flag.lower() in _TRUE_WORDS:
            sms_enabled = True
        elif raw_flag.lower() in _FALSE_WORDS:
            sms_enabled = False
        else:
            reasons.append(f"sms_enabled {raw_flag!r} is not one of true/false, yes/no, 1/0")

    if reasons:
        return RowError(line, "; ".join(reasons))
    return _Row(
        line=line,
        customer_id=customer_id,
        phone=phone,
        personal_code=personal_code,
        login=login,
        name=name,
        language=language,
        timezone=timezone,
        tags=tags,
        sms_enabled=sms_enabled,
    )


def _read_batches(path: Path, defaults: _Defaults, batch_size: int) -> Generator[_Batch, None, None]:
    """Valid rows and rejected rows, a batch at a time; the last batch may be empty.

    Raises InvalidCustomerFile before the first batch when the file cannot be imported at all.
    """
    _check_encoding(path)
    seen_ids: dict[str, int] = {}
    seen_phones: dict[str, int] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            columns = _check_header(path, next(reader, None))
            batch = _Batch([], [], 0)
            rows_read = 0
            last_line = reader.line_num
            for record in reader:
                line = last_line + 1
                last_line = reader.line_num
                if not any(value.strip() for value in record):
                    continue
                rows_read += 1
                parsed = _parse_row(line, record, columns, defaults)
                if isinstance(parsed, _Row):
                    if (first := seen_ids.get(parsed.customer_id)) is not None:
                        parsed = RowError(line, f"customer_id {parsed.customer_id!r} is also on line {first}")
                    elif (first := seen_phones.get(parsed.phone)) is not None:
                        parsed = RowError(line, f"phone {parsed.phone} is also on line {first}")
                    else:
                        seen_ids[parsed.customer_id] = line
                        seen_phones[parsed.phone] = line
                if isinstance(parsed, _Row):
                    batch.rows.append(parsed)
                else:
                    batch.errors.append(parsed)
                if len(batch.rows) + len(batch.errors) >= batch_size:
                    batch.rows_read = rows_read
                    yield batch
                    batch = _Batch([], [], 0)
            batch.rows_read = rows_read
            yield batch
        except csv.Error as exc:
            raise InvalidCustomerFile(f"{path.name}, line {reader.line_num}: {exc}") from exc


# --- writing to the database -----------------------------------------------------------------


@dataclass
class _Outcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


def _upsert_statement(dialect: str) -> ReturningInsert[tuple[int, str]]:
    """INSERT … ON CONFLICT (customer_id) DO UPDATE, returning (id, customer_id)."""
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(customers)
    elif dialect == "sqlite":
        stmt = sqlite.insert(customers)
    else:
        raise ValueError(f"unsupported database dialect {dialect!r}")
    updated = {name: stmt.excluded[name] for name in (*_FIELDS, "updated_at")}
    upsert = stmt.on_conflict_do_update(index_elements=[customers.c.customer_id], set_=updated)
    return upsert.returning(customers.c.id, customers.c.customer_id)


def _apply_batch(
    connection: Connection,
    rows: Sequence[_Row],
    *,
    defaults: _Defaults,
    actor: str,
    write: bool,
    strict: bool,
    channel: str = CONSENT_CHANNEL,
) -> _Outcome:
    """Check ``rows`` against the database and, when ``write``, store the ones that pass.

    With ``strict`` nothing is stored when any row fails.
    """
    outcome = _Outcome()
    existing: dict[str, Row[Any]] = {
        row.customer_id: row
        for row in connection.execute(
            select(
                customers.c.id,
                customers.c.customer_id,
                *(customers.c[name] for name in _FIELDS),
            ).where(customers.c.customer_id.in_([row.customer_id for row in rows]))
        )
    }
    owners: dict[str, str] = {
        phone: customer_id
        for phone, customer_id in connection.execute(
            select(customers.c.phone, customers.c.customer_id).where(
                customers.c.phone.in_([row.phone for row in rows])
            )
        )
    }
    tagged_ids = [
        existing[row.customer_id].id for row in rows if row.tags is not None and row.customer_id in existing
    ]
    current_tags: dict[int, set[str]] = {}
    if tagged_ids:
        for customer, tag in connection.execute(
            select(customer_tags.c.customer, customer_tags.c.tag).where(
                customer_tags.c.customer.in_(tagged_ids)
            )
        ):
            current_tags.setdefault(customer, set()).add(tag)

    now = dt.datetime.now(dt.UTC)
    upserts: list[dict[str, Any]] = []
    new_tags: dict[str, tuple[str, ...]] = {}
    replaced_tags: list[int] = []
    consent: dict[str, bool] = {}
    for row in rows:
        owner = owners.get(row.phone)
        if owner is not None and owner != row.customer_id:
            outcome.errors.append(
                RowError(row.line, f"phone {row.phone} already belongs to customer {owner!r}")
            )
            continue
        current = existing.get(row.customer_id)
        if current is None:
            values: dict[str, Any] = {
                "customer_id": row.customer_id,
                "phone": row.phone,
                "personal_code": row.personal_code,
                "login": row.login,
                "name": row.name,
                "language": row.language or defaults.language,
                "timezone": row.timezone or defaults.timezone,
                "sms_enabled": True if row.sms_enabled is None else row.sms_enabled,
                "created_at": now,
                "updated_at": now,
            }
            upserts.append(values)
            if row.tags:
                new_tags[row.customer_id] = row.tags
            if not values["sms_enabled"]:
                consent[row.customer_id] = False
            outcome.created += 1
            continue
        given = {
            "phone": row.phone,
            "personal_code": row.personal_code,
            "login": row.login,
            "name": row.name,
            "language": row.language,
            "timezone": row.timezone,
            "sms_enabled": row.sms_enabled,
        }
        values = {name: current._mapping[name] if given[name] is None else given[name] for name in _FIELDS}
        fields_changed = any(values[name] != current._mapping[name] for name in _FIELDS)
        tags_changed = row.tags is not None and set(row.tags) != current_tags.get(current.id, set())
        if not fields_changed and not tags_changed:
            outcome.unchanged += 1
            continue
        if fields_changed:
            upserts.append(
                {
                    "customer_id": row.customer_id,
                    **values,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        if tags_changed and row.tags is not None:
            replaced_tags.append(current.id)
            new_tags[row.customer_id] = row.tags
        if values["sms_enabled"] != current.sms_enabled:
            consent[row.customer_id] = values["sms_enabled"]
        outcome.updated += 1

    if not write or (strict and outcome.errors):
        return outcome

    ids = {customer_id: row.id for customer_id, row in existing.items()}
    if upserts:
        result = connection.execute(_upsert_statement(connection.dialect.name), upserts)
        ids.update({customer_id: pk for pk, customer_id in result})
    if replaced_tags:
        connection.execute(delete(customer_tags).where(customer_tags.c.customer.in_(replaced_tags)))
    if new_tags:
        connection.execute(
            insert(customer_tags),
            [
                {"customer": ids[customer_id], "tag": tag}
                for customer_id, tags in new_tags.items()
                for tag in tags
            ],
        )
    if consent:
        suppress_opted_out(connection, [ids[c] for c, enabled in consent.items() if not enabled])
        connection.execute(
            insert(consent_events),
            [
                {
                    "customer": ids[customer_id],
                    "sms_enabled": enabled,
                    "channel": channel,
                    "actor": actor,
                    "at": now,
                }
                for customer_id, enabled in consent.items()
            ],
        )
    return outcome


async def import_customers(
    engine: AsyncEngine,
    path: Path,
    *,
    all_or_nothing: bool = False,
    default_region: str = "RU",
    default_language: str = "en",
    default_timezone: str = "Europe/Moscow",
    actor: str = "import",
    channel: str = CONSENT_CHANNEL,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the customers of the CSV file at ``path``; see the module documentation.

    ``progress`` is called with the number of data rows read so far. Raises
    InvalidCustomerFile, before writing anything, when the file cannot be imported at all.
    """
    if default_language not in LANGUAGES:
        raise ValueError(f"default language {default_language!r} is not one of {LANGUAGES}")
    if default_timezone.lower() not in _time_zones():
        raise ValueError(f"default time zone {default_timezone!r} is not an IANA time zone")
    defaults = _Defaults(default_region, default_language, default_timezone)
    actor = actor[:_ACTOR_LIMIT]
    report = ImportReport()
    batches = _read_batches(path, defaults, BATCH_SIZE)

    def read_batch() -> _Batch | None:
        return next(batches, None)

    async def next_batch() -> _Batch | None:
        return await asyncio.to_thread(read_batch)

    def count(outcome: _Outcome) -> None:
        report.created += outcome.created
        report.updated += outcome.updated
        report.unchanged += outcome.unchanged
        report.rejected.extend(outcome.errors)

    try:
        async with engine.connect() as connection:
            if all_or_nothing:
                async with connection.begin() as transaction:
                    while (batch := await next_batch()) is not None:
                        report.rejected.extend(batch.errors)
                        if batch.rows:
                            count(
                                await connection.run_sync(
                                    functools.partial(
                                        _apply_batch,
                                        rows=batch.rows,
                                        defaults=defaults,
                                        actor=actor,
                                        write=not report.rejected,
                                        strict=True,
                                        channel=channel,
                                    )
                                )
                            )
                        if progress is not None:
                            progress(batch.rows_read)
                    if report.rejected:
                        await transaction.rollback()
                        report.created = report.updated = report.unchanged = 0
                        report.imported = False
            else:
                while (batch := await next_batch()) is not None:
                    report.rejected.extend(batch.errors)
                    if batch.rows:
                        async with connection.begin():
                            count(
                                await connection.run_sync(
                                    functools.partial(
                                        _apply_batch,
                                        rows=batch.rows,
                                        defaults=defaults,
                                        actor=actor,
                                        write=True,
                                        strict=False,
                                        channel=channel,
                                    )
                                )
                            )
                    if progress is not None:
                        progress(batch.rows_read)
    finally:
        batches.close()
    report.rejected.sort(key=lambda error: error.line)
    return report


# --- one customer at a time (the HTTP API) -------------------------------------------------


class InvalidCustomer(ValueError):
    """A customer that breaks the import rules; the message says which field and why."""


def apply_customer(
    connection: Connection,
    values: dict[str, str],
    *,
    default_region: str,
    default_language: str,
    default_timezone: str,
    actor: str,
    channel: str,
) -> str:
    """Create or update one customer by the same rules as a row of the import: ``values`` maps
    column names (required and optional, as in the CSV) to their text. Returns "created",
    "updated" or "unchanged"; raises InvalidCustomer without writing anything."""
    defaults = _Defaults(default_region, default_language, default_timezone)
    columns = list(values)
    unknown = [name for name in columns if name not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)]
    if unknown:
        raise InvalidCustomer(f"unknown field(s) {', '.join(unknown)}")
    missing = [name for name in REQUIRED_COLUMNS if name not in values]
    if missing:
        raise InvalidCustomer("; ".join(f"{name} is empty" for name in missing))
    parsed = _parse_row(1, [values[name] for name in columns], columns, defaults)
    if isinstance(parsed, RowError):
        raise InvalidCustomer(parsed.reason)
    outcome = _apply_batch(
        connection, [parsed], defaults=defaults, actor=actor[:_ACTOR_LIMIT], write=True, strict=True,
        channel=channel,
    )
    if outcome.errors:
        raise InvalidCustomer(outcome.errors[0].reason)
    return "created" if outcome.created else "updated" if outcome.updated else "unchanged"


# --- the CLI verb ----------------------------------------------------------------------------


def _count_lines(path: Path) -> int:
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


async def _has_customers(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        found = await connection.scalar(select(customers.c.id).limit(1))
    return found is not None


def _print_report(console: Console, report: ImportReport, path: Path) -> None:
    summary = Table(title=f"Customers from {path.name}", title_justify="left")
    for heading in ("created", "updated", "unchanged", "rejected"):
        summary.add_column(heading, justify="right")
    summary.add_row(
        str(report.created),
        str(report.updated),
        str(report.unchanged),
        f"[red]{len(report.rejected)}[/]" if report.rejected else "0",
    )
    console.print(summary)
    if report.rejected:
        rejected = Table(title="Rejected rows", title_justify="left")
        rejected.add_column("line", justify="right")
        rejected.add_column("reason", overflow="fold")
        for error in report.rejected:
            rejected.add_row(str(error.line), error.reason)
        console.print(rejected)
    if not report.imported:
        console.print(
            f"[bold red]Nothing was imported[/] (--all-or-nothing): {len(report.rejected)} row(s) rejected."
        )


async def _import_with_progress(
    engine: AsyncEngine, settings: Settings, path: Path, console: Console, *, all_or_nothing: bool
) -> ImportReport:
    total = max(await asyncio.to_thread(_count_lines, path) - 1, 0)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"Importing {path.name}", total=total)
        report = await import_customers(
            engine,
            path,
            all_or_nothing=all_or_nothing,
            default_region=settings.default_region,
            default_language=settings.default_language,
            default_timezone=settings.default_timezone,
            actor=f"import:{path.name}",
            progress=lambda rows: bar.update(task, completed=rows),
        )
        bar.update(task, completed=total)
    return report


async def _import_command(
    settings: Settings, path: Path, console: Console, *, all_or_nothing: bool, if_empty: bool
) -> int:
    engine = create_oneshot_engine(settings.database_url)
    try:
        if if_empty and await _has_customers(engine):
            console.print(f"Skipped the import of {path.name}: there are customers already (--if-empty).")
            return 0
        report = await _import_with_progress(engine, settings, path, console, all_or_nothing=all_or_nothing)
    except InvalidCustomerFile as exc:
        console.print(f"[bold red]Cannot import[/] {exc}")
        return 1
    except DBAPIError as exc:
        detail = _DRIVER_CLASS.sub("", str(exc.orig if exc.orig is not None else exc)).strip()
        console.print(
            f"[bold red]Database error[/]: {detail}\n"
            "Is the schema up to date? Run `smsline db upgrade` first."
        )
        return 1
    finally:
        await engine.dispose()
    _print_report(console, report, path)
    return 0 if not report.rejected else 1


def import_command(settings: Settings, path: Path, *, all_or_nothing: bool, if_empty: bool) -> int:
    """``smsline customers import``: import, show progress and a summary; the exit code.

    0 when every row was imported (or the import was skipped by ``if_empty``), 1 otherwise.
    """
    return asyncio.run(
        _import_command(settings, path, Console(), all_or_nothing=all_or_nothing, if_empty=if_empty)
    )
