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

The file is streamed, so memory does not grow with it: a worker thread reads and validates the
next batch while the current one is written, and the customer ids and phones of the rows already
seen (a later row repeating one is rejected) are kept in temporary tables of the import's
connection. On SQLite each statement takes the whole batch as one JSON parameter; on PostgreSQL
the batch is copied (COPY) into a temporary staging table and stored by one
``INSERT … SELECT … ON CONFLICT (customer_id) DO UPDATE``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import datetime as dt
import functools
import json
import re
import zoneinfo
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Column, String, Text, bindparam, delete, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import ReturningInsert

from smsline.campaigns.service import suppress_opted_out
from smsline.config import Settings
from smsline.db.engine import create_oneshot_engine
from smsline.db.schema import consent_events, customer_tags, customers
from smsline.domain.msisdn import InvalidMsisdn, normalise_msisdn

REQUIRED_COLUMNS: Final = ("customer_id", "phone", "personal_code", "login")
OPTIONAL_COLUMNS: Final = ("name", "language", "timezone", "tags", "sms_enabled")
LANGUAGES: Final = ("en", "ru")
BATCH_SIZE: Final = 5000
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


class _Row(NamedTuple):
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


def _check_encoding(path: Path) -> bool:
    """Raise InvalidCustomerFile unless the file is UTF-8; whether it has NUL characters."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    nul = False
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
            nul = nul or b"\x00" in chunk
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise InvalidCustomerFile(
                f"{path.name} is not UTF-8 text (truncated character on line {line})"
            ) from exc
    return nul


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


RowParser = Callable[[int, list[str]], "_Row | RowError"]


def _required(value: str, column: str, limit: int, reasons: list[str]) -> str:
    """A required text column's value; what is wrong with it goes into ``reasons``."""
    if not value:
        reasons.append(f"{column} is empty")
    elif len(value) > limit:
        reasons.append(f"{column} is longer than {limit} characters")
    return value


def _row_parser(columns: list[str], defaults: _Defaults, *, nul: bool = True) -> RowParser:
    """A function that validates one record of a file with these (checked) columns.

    Everything that depends only on the header is worked out once, here, not once per row.
    ``nul``: whether the records may contain NUL characters, which no row may have (SQLite would
    cut the text short, PostgreSQL refuses it).
    """
    width = len(columns)
    index = {name: position for position, name in enumerate(columns)}
    at_id, at_phone, at_code, at_login = (index[name] for name in REQUIRED_COLUMNS)
    at_name, at_language, at_zone, at_tags, at_flag = (index.get(name) for name in OPTIONAL_COLUMNS)
    id_limit, code_limit, login_limit, name_limit = (
        _TEXT_LIMITS[name] for name in ("customer_id", "personal_code", "login", "name")
    )
    zones = _time_zones()
    region = defaults.region
    split_tags = _TAG_SEPARATORS.split

    def parse(line: int, record: list[str]) -> _Row | RowError:
        if len(record) != width:
            return RowError(line, f"has {len(record)} fields, the header has {width} (check the quoting)")
        values = [value.strip() for value in record]
        reasons: list[str] = []
        if nul and any("\x00" in value for value in values):
            reasons.append("contains a NUL character")

        customer_id = _required(values[at_id], "customer_id", id_limit, reasons)
        phone = values[at_phone]
        if not phone:
            reasons.append("phone is empty")
        else:
            try:
                phone = normalise_msisdn(phone, region)
            except InvalidMsisdn as exc:
                reasons.append(f"phone: {exc}")
        personal_code = _required(values[at_code], "personal_code", code_limit, reasons)
        login = _required(values[at_login], "login", login_limit, reasons)

        name = (values[at_name] or None) if at_name is not None else None
        if name is not None and len(name) > name_limit:
            reasons.append(f"name is longer than {name_limit} characters")

        language: str | None = None
        if at_language is not None and (raw_language := values[at_language]):
            language = raw_language.lower()
            if language not in LANGUAGES:
                reasons.append(f"language {raw_language!r} is not one of {', '.join(LANGUAGES)}")

        timezone: str | None = None
        if at_zone is not None and (raw_zone := values[at_zone]):
            timezone = zones.get(raw_zone.lower())
            if timezone is None:
                reasons.append(f"timezone {raw_zone!r} is not an IANA time zone (e.g. Europe/Moscow)")

        tags: tuple[str, ...] | None = None
        if at_tags is not None:
            raw_tags = values[at_tags]
            tags = tuple(dict.fromkeys(tag for tag in split_tags(raw_tags) if tag)) if raw_tags else ()
            too_long = [tag for tag in tags if len(tag) > _TAG_LIMIT]
            if too_long:
                reasons.append(f"tag {too_long[0]!r} is longer than {_TAG_LIMIT} characters")

        sms_enabled: bool | None = None
        if at_flag is not None and (raw_flag := values[at_flag]):
            flag = raw_flag.lower()
            if flag in _TRUE_WORDS:
                sms_enabled = True
            elif flag in _FALSE_WORDS:
                sms_enabled = False
            else:
                reasons.append(f"sms_enabled {raw_flag!r} is not one of true/false, yes/no, 1/0")

        if reasons:
            return RowError(line, "; ".join(reasons))
        return _Row(
            line, customer_id, phone, personal_code, login, name, language, timezone, tags, sms_enabled
        )

    return parse


def _parse_row(line: int, record: list[str], columns: list[str], defaults: _Defaults) -> _Row | RowError:
    return _row_parser(columns, defaults)(line, record)


def _read_batches(path: Path, defaults: _Defaults, batch_size: int) -> Generator[_Batch, None, None]:
    """Valid rows and rejected rows, a batch at a time; the last batch may be empty.

    Raises InvalidCustomerFile before the first batch when the file cannot be imported at all.
    Rows that repeat an earlier row's customer_id or phone are caught later, by _drop_repeats.
    """
    nul = _check_encoding(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            parse = _row_parser(_check_header(path, next(reader, None)), defaults, nul=nul)
            rows: list[_Row] = []
            errors: list[RowError] = []
            rows_read = 0
            last_line = reader.line_num
            for record in reader:
                line = last_line + 1
                last_line = reader.line_num
                if not any(value.strip() for value in record):
                    continue
                rows_read += 1
                parsed = parse(line, record)
                if type(parsed) is _Row:
                    rows.append(parsed)
                else:
                    assert isinstance(parsed, RowError)
                    errors.append(parsed)
                if len(rows) + len(errors) >= batch_size:
                    yield _Batch(rows, errors, rows_read)
                    rows, errors = [], []
            yield _Batch(rows, errors, rows_read)
        except csv.Error as exc:
            raise InvalidCustomerFile(f"{path.name}, line {reader.line_num}: {exc}") from exc


def _drop_repeats(
    rows: Sequence[_Row], earlier_ids: dict[str, int], earlier_phones: dict[str, int]
) -> tuple[list[_Row], list[RowError]]:
    """The rows whose customer_id and phone no earlier row of the file has, and the others.

    ``earlier_ids`` and ``earlier_phones`` give the line of the first row of the file, before
    this batch, that has one of the batch's customer ids or phones.
    """
    ids: dict[str, int] = {}
    phones: dict[str, int] = {}
    kept: list[_Row] = []
    repeats: list[RowError] = []
    for row in rows:
        if (first := earlier_ids.get(row.customer_id, ids.get(row.customer_id))) is not None:
            repeats.append(RowError(row.line, f"customer_id {row.customer_id!r} is also on line {first}"))
        elif (first := earlier_phones.get(row.phone, phones.get(row.phone))) is not None:
            repeats.append(RowError(row.line, f"phone {row.phone} is also on line {first}"))
        else:
            ids[row.customer_id] = phones[row.phone] = row.line
            kept.append(row)
    return kept, repeats


# --- deciding what a batch changes -------------------------------------------------------------

# What an import compares and writes, in this order: the customer's fields after customer_id.
_Fields = tuple[str, str, str, str | None, str, str, bool]
# A new or changed customer: (customer_id, *_Fields).
_Upsert = tuple[str, str, str, str, str | None, str, str, bool]
# A known customer as the database has it: (id, *_Fields).
_Known = tuple[int, str, str, str, str | None, str, str, bool]


@dataclass
class _Outcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass
class _Plan:
    """The writes a batch needs, decided from the rows and what the database holds."""

    outcome: _Outcome
    upserts: list[_Upsert]  # (customer_id, *fields) of new and changed customers
    ids: dict[str, int]  # the database id of every known customer of the batch
    replaced_tags: list[int]  # known customers whose tags are replaced
    new_tags: list[tuple[str, str]]  # (customer_id, tag)
    consent: list[tuple[str, bool]]  # (customer_id, sms_enabled) of every change

    @property
    def empty(self) -> bool:
        return not (self.upserts or self.replaced_tags or self.new_tags or self.consent)

    @property
    def opted_out(self) -> list[int]:
        """Known customers this batch turns SMS off for (a new customer is in no campaign yet)."""
        return [self.ids[c] for c, enabled in self.consent if not enabled and c in self.ids]


def _plan(
    rows: Sequence[_Row],
    existing: dict[str, _Known],
    owners: dict[str, str],
    current_tags: dict[int, set[str]],
    defaults: _Defaults,
) -> _Plan:
    """Created, updated, unchanged or rejected, row by row, and what to write for it."""
    outcome = _Outcome()
    plan = _Plan(outcome, [], {}, [], [], [])
    upserts, new_tags, consent = plan.upserts, plan.new_tags, plan.consent
    default_language, default_timezone = defaults.language, defaults.timezone
    for row in rows:
        (line, customer_id, phone, personal_code, login, name, language, timezone, tags, sms_enabled) = row
        owner = owners.get(phone)
        if owner is not None and owner != customer_id:
            outcome.errors.append(RowError(line, f"phone {phone} already belongs to customer {owner!r}"))
            continue
        current = existing.get(customer_id)
        if current is None:
            enabled = True if sms_enabled is None else sms_enabled
            upserts.append(
                (
                    customer_id,
                    phone,
                    personal_code,
                    login,
                    name,
                    language or default_language,
                    timezone or default_timezone,
                    enabled,
                )
            )
            if tags:
                new_tags.extend((customer_id, tag) for tag in tags)
            if not enabled:
                consent.append((customer_id, False))
            outcome.created += 1
            continue
        pk = current[0]
        plan.ids[customer_id] = pk
        fields: _Fields = (
            phone,
            personal_code,
            login,
            current[4] if name is None else name,
            current[5] if language is None else language,
            current[6] if timezone is None else timezone,
            current[7] if sms_enabled is None else sms_enabled,
        )
        fields_changed = fields != current[1:]
        tags_changed = tags is not None and set(tags) != current_tags.get(pk, set())
        if not fields_changed and not tags_changed:
            outcome.unchanged += 1
            continue
        if fields_changed:
            upserts.append((customer_id, *fields))
        if tags_changed and tags is not None:
            plan.replaced_tags.append(pk)
            new_tags.extend((customer_id, tag) for tag in tags)
        if fields[6] != current[7]:
            consent.append((customer_id, fields[6]))
        outcome.updated += 1
    return plan


# --- the rows of the file seen so far ------------------------------------------------------------
# A row that repeats the customer_id or phone of an earlier row is rejected with that row's line.
# What the earlier rows had is kept in two temporary tables of the import's own connection, not in
# memory, so that memory does not grow with the file.

_SEEN_IDS: Final = "smsline_import_ids"
_SEEN_PHONES: Final = "smsline_import_phones"


def _earlier_lines(seen: Iterable[Sequence[Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """(line by customer_id, line by phone) from rows of (0 for an id or 1 for a phone, key, line)."""
    lines: tuple[dict[str, int], dict[str, int]] = ({}, {})
    for kind, key, line in seen:
        lines[kind][key] = line
    return lines


# --- reading what the database has -----------------------------------------------------------

_KNOWN_COLUMNS: Final = (customers.c.customer_id, customers.c.id, *(customers.c[name] for name in _FIELDS))
_EXISTING: Final = select(*_KNOWN_COLUMNS).where(
    customers.c.customer_id.in_(bindparam("keys", expanding=True))
)
_OWNERS: Final = select(customers.c.phone, customers.c.customer_id).where(
    customers.c.phone.in_(bindparam("keys", expanding=True))
)
_TAGS: Final = select(customer_tags.c.customer, customer_tags.c.tag).where(
    customer_tags.c.customer.in_(bindparam("keys", expanding=True))
)


@dataclass
class _Found:
    existing: dict[str, _Known]
    owners: dict[str, str]
    current_tags: dict[int, set[str]]


def _tagged_known(rows: Sequence[_Row], existing: dict[str, _Known]) -> list[int]:
    return [
        existing[row.customer_id][0] for row in rows if row.tags is not None and row.customer_id in existing
    ]


def _found(known: Iterable[Sequence[Any]], owners: Iterable[Sequence[Any]]) -> _Found:
    existing: dict[str, _Known] = {
        row[0]: (row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8])) for row in known
    }
    return _Found(existing, {phone: customer_id for phone, customer_id in owners}, {})


def _add_tags(found: _Found, tags: Iterable[Sequence[Any]]) -> None:
    for customer, tag in tags:
        found.current_tags.setdefault(customer, set()).add(tag)


def _lookup(connection: Connection, rows: Sequence[_Row]) -> _Found:
    """The rows' known customers, the owners of their phones and the tags they may replace."""
    found = _found(
        connection.execute(_EXISTING, {"keys": [row.customer_id for row in rows]}),
        connection.execute(_OWNERS, {"keys": [row.phone for row in rows]}),
    )
    if tagged := _tagged_known(rows, found.existing):
        _add_tags(found, connection.execute(_TAGS, {"keys": tagged}))
    return found


# --- writing ---------------------------------------------------------------------------------

_UPSERT_COLUMNS: Final = ("customer_id", *_FIELDS)
_ON_CONFLICT: Final = "ON CONFLICT (customer_id) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name in (*_FIELDS, "updated_at")
)


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


def _write_core(connection: Connection, plan: _Plan, *, now: dt.datetime, actor: str, channel: str) -> None:
    """Store a plan through SQLAlchemy statements (one customer at a time: the HTTP API)."""
    ids = dict(plan.ids)
    if plan.upserts:
        result = connection.execute(
            _upsert_statement(connection.dialect.name),
            [
                {**dict(zip(_UPSERT_COLUMNS, values, strict=True)), "created_at": now, "updated_at": now}
                for values in plan.upserts
            ],
        )
        ids.update({customer_id: pk for pk, customer_id in result})
    if plan.replaced_tags:
        connection.execute(delete(customer_tags).where(customer_tags.c.customer.in_(plan.replaced_tags)))
    if plan.new_tags:
        connection.execute(
            insert(customer_tags),
            [{"customer": ids[customer_id], "tag": tag} for customer_id, tag in plan.new_tags],
        )
    if plan.consent:
        suppress_opted_out(connection, plan.opted_out)
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
                for customer_id, enabled in plan.consent
            ],
        )


@dataclass(frozen=True)
class _Apply:
    """How a batch is applied: the import's settings, and whether to store what passed."""

    defaults: _Defaults
    actor: str
    channel: str
    write: bool
    strict: bool  # store nothing when any row fails

    def stores(self, plan: _Plan) -> bool:
        return self.write and not (self.strict and plan.outcome.errors) and not plan.empty


# --- SQLite: a batch in a few statements -------------------------------------------------------
# Each statement takes the whole batch as one JSON parameter (``json_each``) instead of being run
# once per row: SQLite then works through the batch without coming back to Python, which meanwhile
# reads the next batch; tags and consent events find their customer's id by customer_id (an index
# lookup) in the same statement.


def _json_values(count: int) -> str:
    return ", ".join(f"json_extract(value, '$[{index}]')" for index in range(count))


_SQLITE_STATEMENTS: Final = {
    "start_seen": [
        f"DROP TABLE IF EXISTS temp.{_SEEN_IDS}",
        f"DROP TABLE IF EXISTS temp.{_SEEN_PHONES}",
        f"CREATE TEMPORARY TABLE {_SEEN_IDS} (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID",
        f"CREATE TEMPORARY TABLE {_SEEN_PHONES} (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID",
    ],
    "end_seen": [f"DROP TABLE IF EXISTS temp.{_SEEN_IDS}", f"DROP TABLE IF EXISTS temp.{_SEEN_PHONES}"],
}
_SQLITE_EARLIER: Final = (
    f"SELECT 0, key, line FROM temp.{_SEEN_IDS} WHERE key IN (SELECT value FROM json_each(?1)) UNION ALL "
    f"SELECT 1, key, line FROM temp.{_SEEN_PHONES} WHERE key IN (SELECT value FROM json_each(?2))"
)
_SQLITE_SEEN: Final = tuple(
    f"INSERT INTO temp.{table} (key, line) SELECT {_json_values(2)} FROM json_each(?)"
    for table in (_SEEN_IDS, _SEEN_PHONES)
)
_SQLITE_EXISTING: Final = (
    f"SELECT customer_id, id, {', '.join(_FIELDS)} FROM customers "
    "WHERE customer_id IN (SELECT value FROM json_each(?))"
)
_SQLITE_OWNERS: Final = (
    "SELECT phone, customer_id FROM customers WHERE phone IN (SELECT value FROM json_each(?))"
)
_SQLITE_TAGS: Final = (
    "SELECT customer, tag FROM customer_tags WHERE customer IN (SELECT value FROM json_each(?))"
)
# "WHERE true" tells SQLite's parser that ON CONFLICT is not a join's ON.
_SQLITE_UPSERT: Final = (
    f"INSERT INTO customers ({', '.join(_UPSERT_COLUMNS)}, created_at, updated_at) "
    f"SELECT {_json_values(len(_UPSERT_COLUMNS))}, ?2, ?2 FROM json_each(?1) WHERE true {_ON_CONFLICT}"
)
_SQLITE_UNTAG: Final = "DELETE FROM customer_tags WHERE customer IN (SELECT value FROM json_each(?))"
_SQLITE_TAG: Final = (
    "INSERT INTO customer_tags (customer, tag) SELECT c.id, json_extract(j.value, '$[1]') "
    "FROM json_each(?) AS j JOIN customers AS c ON c.customer_id = json_extract(j.value, '$[0]') "
    "ORDER BY j.key"
)
_SQLITE_CONSENT: Final = (
    "INSERT INTO consent_events (customer, sms_enabled, channel, actor, at) "
    "SELECT c.id, json_extract(j.value, '$[1]'), ?2, ?3, ?4 "
    "FROM json_each(?1) AS j JOIN customers AS c ON c.customer_id = json_extract(j.value, '$[0]') "
    "ORDER BY j.key"
)


def _sqlite_run(connection: Connection, name: str) -> None:
    for statement in _SQLITE_STATEMENTS[name]:
        connection.exec_driver_sql(statement)


def _sqlite_drop_repeats(connection: Connection, rows: Sequence[_Row]) -> tuple[list[_Row], list[RowError]]:
    ids = json.dumps([row.customer_id for row in rows])
    phones = json.dumps([row.phone for row in rows])
    kept, repeats = _drop_repeats(
        rows, *_earlier_lines(connection.exec_driver_sql(_SQLITE_EARLIER, (ids, phones)))
    )
    if kept:
        connection.exec_driver_sql(
            _SQLITE_SEEN[0], (json.dumps([(row.customer_id, row.line) for row in kept]),)
        )
        connection.exec_driver_sql(_SQLITE_SEEN[1], (json.dumps([(row.phone, row.line) for row in kept]),))
    return kept, repeats


def _sqlite_lookup(connection: Connection, rows: Sequence[_Row]) -> _Found:
    found = _found(
        connection.exec_driver_sql(_SQLITE_EXISTING, (json.dumps([row.customer_id for row in rows]),)),
        connection.exec_driver_sql(_SQLITE_OWNERS, (json.dumps([row.phone for row in rows]),)),
    )
    if tagged := _tagged_known(rows, found.existing):
        _add_tags(found, connection.exec_driver_sql(_SQLITE_TAGS, (json.dumps(tagged),)))
    return found


def _sqlite_write(connection: Connection, plan: _Plan, *, now: dt.datetime, actor: str, channel: str) -> None:
    to_text = customers.c.updated_at.type.bind_processor(connection.dialect)
    stamp = to_text(now) if to_text is not None else now  # the column's own text form
    if plan.upserts:
        connection.exec_driver_sql(_SQLITE_UPSERT, (json.dumps(plan.upserts), stamp))
    if plan.replaced_tags:
        connection.exec_driver_sql(_SQLITE_UNTAG, (json.dumps(plan.replaced_tags),))
    if plan.new_tags:
        connection.exec_driver_sql(_SQLITE_TAG, (json.dumps(plan.new_tags),))
    if plan.consent:
        suppress_opted_out(connection, plan.opted_out)
        connection.exec_driver_sql(_SQLITE_CONSENT, (json.dumps(plan.consent), channel, actor, stamp))


def _sqlite_apply_batch(connection: Connection, rows: Sequence[_Row], how: _Apply) -> _Outcome:
    kept, repeats = _sqlite_drop_repeats(connection, rows)
    found = _sqlite_lookup(connection, kept)
    plan = _plan(kept, found.existing, found.owners, found.current_tags, how.defaults)
    plan.outcome.errors[:0] = repeats
    if how.stores(plan):
        _sqlite_write(connection, plan, now=dt.datetime.now(dt.UTC), actor=how.actor, channel=how.channel)
    return plan.outcome


# --- PostgreSQL: COPY into a staging table, then one INSERT … SELECT … ON CONFLICT -------------
# The statements go straight to asyncpg (inside the transaction SQLAlchemy opened); a batch's keys
# go as one array parameter rather than thousands of them.

_STAGING: Final = "smsline_customers_import"
_PG_START_SEEN: Final = (
    f"DROP TABLE IF EXISTS pg_temp.{_SEEN_IDS}",
    f"DROP TABLE IF EXISTS pg_temp.{_SEEN_PHONES}",
    f"CREATE TEMPORARY TABLE {_SEEN_IDS} (key text PRIMARY KEY, line integer NOT NULL)",
    f"CREATE TEMPORARY TABLE {_SEEN_PHONES} (key text PRIMARY KEY, line integer NOT NULL)",
)
_PG_END_SEEN: Final = _PG_START_SEEN[:2]
# Through SQLAlchemy, as the first statement of a batch: it opens the transaction.
_PG_EARLIER: Final = text(
    f"SELECT 0, key, line FROM pg_temp.{_SEEN_IDS} WHERE key = ANY(:ids) UNION ALL "
    f"SELECT 1, key, line FROM pg_temp.{_SEEN_PHONES} WHERE key = ANY(:phones)"
).bindparams(
    bindparam("ids", type_=postgresql.ARRAY(Text)), bindparam("phones", type_=postgresql.ARRAY(Text))
)
_PG_SEEN: Final = (
    f"WITH ids AS (INSERT INTO pg_temp.{_SEEN_IDS} (key, line) SELECT * FROM unnest($1::text[], $3::int[])) "
    f"INSERT INTO pg_temp.{_SEEN_PHONES} (key, line) SELECT * FROM unnest($2::text[], $3::int[])"
)
_PG_EXISTING: Final = (
    f"SELECT customer_id, id, {', '.join(_FIELDS)} FROM customers WHERE customer_id = ANY($1::text[])"
)
_PG_OWNERS: Final = "SELECT phone, customer_id FROM customers WHERE phone = ANY($1::text[])"
_PG_TAGS: Final = "SELECT customer, tag FROM customer_tags WHERE customer = ANY($1::bigint[])"
_PG_STAGE: Final = (
    f"CREATE TEMPORARY TABLE {_STAGING} (customer_id text, phone text, personal_code text, login text, "
    "name text, language text, timezone text, sms_enabled boolean) ON COMMIT DROP"
)
_PG_UPSERT: Final = (
    f"INSERT INTO customers ({', '.join(_UPSERT_COLUMNS)}, created_at, updated_at) "
    f"SELECT {', '.join(_UPSERT_COLUMNS)}, $1, $1 FROM {_STAGING} {_ON_CONFLICT} RETURNING id, customer_id"
)
_PG_UNTAG: Final = "DELETE FROM customer_tags WHERE customer = ANY($1::bigint[])"


@dataclass
class _Staging:
    """Whether the current transaction has created the staging table (it drops on commit)."""

    created: bool = False


async def _asyncpg(connection: AsyncConnection) -> Any:
    """The asyncpg connection under ``connection``, once a statement has opened its transaction."""
    pg = (await connection.get_raw_connection()).driver_connection
    assert pg is not None
    assert pg.is_in_transaction()
    return pg


async def _postgresql_drop_repeats(
    connection: AsyncConnection, rows: Sequence[_Row]
) -> tuple[Any, list[_Row], list[RowError]]:
    """(the asyncpg connection, kept rows, repeats)."""
    earlier = await connection.execute(
        _PG_EARLIER, {"ids": [row.customer_id for row in rows], "phones": [row.phone for row in rows]}
    )
    kept, repeats = _drop_repeats(rows, *_earlier_lines(earlier))
    pg = await _asyncpg(connection)
    if kept:
        await pg.execute(
            _PG_SEEN,
            [row.customer_id for row in kept],
            [row.phone for row in kept],
            [row.line for row in kept],
        )
    return pg, kept, repeats


async def _postgresql_lookup(pg: Any, rows: Sequence[_Row]) -> _Found:
    found = _found(
        await pg.fetch(_PG_EXISTING, [row.customer_id for row in rows]),
        await pg.fetch(_PG_OWNERS, [row.phone for row in rows]),
    )
    if tagged := _tagged_known(rows, found.existing):
        _add_tags(found, await pg.fetch(_PG_TAGS, tagged))
    return found


async def _postgresql_write(
    pg: Any, plan: _Plan, staging: _Staging, *, now: dt.datetime, actor: str, channel: str
) -> None:
    ids = dict(plan.ids)
    if plan.upserts:
        if staging.created:
            await pg.execute(f"TRUNCATE {_STAGING}")
        else:
            await pg.execute(_PG_STAGE)
            staging.created = True
        await pg.copy_records_to_table(_STAGING, records=plan.upserts, columns=_UPSERT_COLUMNS)
        ids.update({customer_id: pk for pk, customer_id in await pg.fetch(_PG_UPSERT, now)})
    if plan.replaced_tags:
        await pg.execute(_PG_UNTAG, plan.replaced_tags)
    if plan.new_tags:
        await pg.copy_records_to_table(
            customer_tags.name,
            records=[(ids[customer_id], tag) for customer_id, tag in plan.new_tags],
            columns=("customer", "tag"),
        )
    if plan.consent:
        await pg.copy_records_to_table(
            consent_events.name,
            records=[
                (ids[customer_id], enabled, channel, actor, now) for customer_id, enabled in plan.consent
            ],
            columns=("customer", "sms_enabled", "channel", "actor", "at"),
        )


async def _postgresql_apply_batch(
    connection: AsyncConnection, rows: Sequence[_Row], how: _Apply, staging: _Staging
) -> _Outcome:
    try:
        pg, kept, repeats = await _postgresql_drop_repeats(connection, rows)
        found = await _postgresql_lookup(pg, kept)
        plan = _plan(kept, found.existing, found.owners, found.current_tags, how.defaults)
        plan.outcome.errors[:0] = repeats
        if how.stores(plan):
            now = dt.datetime.now(dt.UTC)
            await _postgresql_write(pg, plan, staging, now=now, actor=how.actor, channel=how.channel)
            if opted_out := plan.opted_out:
                await connection.run_sync(suppress_opted_out, opted_out)
    except asyncpg.PostgresError as exc:  # as SQLAlchemy reports what goes wrong in a statement
        raise DBAPIError(None, None, exc) from exc
    return plan.outcome


async def _start_seen(connection: AsyncConnection, dialect: str) -> None:
    async with connection.begin():
        if dialect == "postgresql":
            for statement in _PG_START_SEEN:
                await connection.exec_driver_sql(statement)
        else:
            await connection.run_sync(_sqlite_run, "start_seen")


async def _end_seen(connection: AsyncConnection, dialect: str) -> None:
    async with connection.begin():
        if dialect == "postgresql":
            for statement in _PG_END_SEEN:
                await connection.exec_driver_sql(statement)
        else:
            await connection.run_sync(_sqlite_run, "end_seen")


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
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import the customers of the CSV file at ``path``; see the module documentation.

    ``progress`` is called with the number of data rows read so far. Raises
    InvalidCustomerFile, before writing anything, when the file cannot be imported at all.
    The file is read ``batch_size`` rows at a time, so memory does not grow with it.
    """
    if default_language not in LANGUAGES:
        raise ValueError(f"default language {default_language!r} is not one of {LANGUAGES}")
    if default_timezone.lower() not in _time_zones():
        raise ValueError(f"default time zone {default_timezone!r} is not an IANA time zone")
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database dialect {dialect!r}")
    defaults = _Defaults(default_region, default_language, default_timezone)
    actor = actor[:_ACTOR_LIMIT]
    report = ImportReport()
    batches = _read_batches(path, defaults, batch_size)

    def read_batch() -> _Batch | None:
        return next(batches, None)

    # The next batch is read and validated on a worker thread while the current one is written.
    # (Shielded: cancelling the import lets the thread finish its batch before the file closes.)
    reading: asyncio.Future[_Batch | None] | None = None

    async def next_batch() -> _Batch | None:
        nonlocal reading
        if reading is None:
            reading = asyncio.ensure_future(asyncio.to_thread(read_batch))
        batch = await asyncio.shield(reading)
        reading = asyncio.ensure_future(asyncio.to_thread(read_batch)) if batch is not None else None
        return batch

    async def apply(
        connection: AsyncConnection, rows: list[_Row], staging: _Staging, *, strict: bool
    ) -> None:
        how = _Apply(defaults, actor, channel, write=not (strict and report.rejected), strict=strict)
        if dialect == "postgresql":
            outcome = await _postgresql_apply_batch(connection, rows, how, staging)
        else:
            outcome = await connection.run_sync(_sqlite_apply_batch, rows, how)
        report.created += outcome.created
        report.updated += outcome.updated
        report.unchanged += outcome.unchanged
        report.rejected.extend(outcome.errors)

    try:
        batch = await next_batch()  # a file that cannot be imported at all fails here
        async with engine.connect() as connection:
            await _start_seen(connection, dialect)
            if all_or_nothing:
                async with connection.begin() as transaction:
                    staging = _Staging()
                    while batch is not None:
                        report.rejected.extend(batch.errors)
                        if batch.rows:
                            await apply(connection, batch.rows, staging, strict=True)
                        if progress is not None:
                            progress(batch.rows_read)
                        batch = await next_batch()
                    if report.rejected:
                        await transaction.rollback()
                        report.created = report.updated = report.unchanged = 0
                        report.imported = False
            else:
                while batch is not None:
                    report.rejected.extend(batch.errors)
                    if batch.rows:
                        async with connection.begin():
                            await apply(connection, batch.rows, _Staging(), strict=False)
                    if progress is not None:
                        progress(batch.rows_read)
                    batch = await next_batch()
            # (After a failure the temporary tables go with the connection, or are replaced
            # by the next import on it.)
            await _end_seen(connection, dialect)
    finally:
        if reading is not None:
            with contextlib.suppress(Exception):
                await reading
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
    found = _lookup(connection, [parsed])
    plan = _plan([parsed], found.existing, found.owners, found.current_tags, defaults)
    if plan.outcome.errors:
        raise InvalidCustomer(plan.outcome.errors[0].reason)
    _write_core(connection, plan, now=dt.datetime.now(dt.UTC), actor=actor[:_ACTOR_LIMIT], channel=channel)
    outcome = plan.outcome
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
