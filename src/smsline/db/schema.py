"""The database schema (SQLAlchemy Core). Alembic migrations create exactly these tables.

Times are stored as timezone-aware UTC datetimes. Identifiers are BIGINT on PostgreSQL and
INTEGER (rowid aliases) on SQLite.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    # On SQLite the value goes in and out as the text SQLAlchemy's DATETIME uses
    # ("2026-01-02 03:04:05.000006"); doing that in one step instead of two is a measurable
    # share of the database thread's time.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def to_text(value: dt.datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            if value.utcoffset():
                value = value.astimezone(dt.UTC)
            return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"

        return to_text

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def from_text(value: str | None) -> dt.datetime | None:
            if value is None:
                return None
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)

        return from_text


Id = BigInteger().with_variant(Integer(), "sqlite")
Time = UtcDateTime()

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

customers = Table(
    "customers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("customer_id", String(64), nullable=False, unique=True),
    Column("phone", String(20), nullable=False, unique=True),
    Column("personal_code", String(64), nullable=False),
    Column("login", String(128), nullable=False),
    Column("name", String(200)),
    Column("language", String(2), nullable=False, server_default="en"),
    Column("timezone", String(64), nullable=False, server_default="Europe/Moscow"),
    Column("sms_enabled", Boolean, nullable=False, server_default="1"),
    Column("password_hash", String(255)),
    Column("password_expires_at", Time),
    Column("password_must_change", Boolean, nullable=False, server_default="0"),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    Index(None, "login"),  # the portal verifies by login
)

customer_tags = Table(
    "customer_tags",
    metadata,
    Column("customer", Id, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(64), primary_key=True),
    Index(None, "tag"),
)

consent_events = Table(
    "consent_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("customer", Id, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("sms_enabled", Boolean, nullable=False),
    Column("channel", String(16), nullable=False),  # sms | operator | api | import
    Column("actor", String(128), nullable=False),
    Column("inbound", Id, ForeignKey("inbound_messages.id")),
    Column("at", Time, nullable=False),
    Index(None, "customer", "at"),
)

# Every SMS that came in (after reassembly), with what became of it.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", Time, nullable=False),
    Column("smsc", String(64), nullable=False),
    Column("source", String(24), nullable=False),  # E.164 when parseable, else as received
    Column("destination", String(24), nullable=False),
    Column("text", Text, nullable=False),
    Column("data_coding", SmallInteger, nullable=False),
    Column("parts", SmallInteger, nullable=False, server_default="1"),
    Column("status", String(16), nullable=False),  # request | ignored | rate_limited
    Column("reason", String(200)),
    Column("dedupe_key", String(64), nullable=False),
    Index(None, "dedupe_key"),
    Index(None, "received_at"),
)

# Parts of a concatenated inbound SMS, kept (durably, before deliver_sm_resp) until all arrive.
inbound_parts = Table(
    "inbound_parts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", Time, nullable=False),
    Column("smsc", String(64), nullable=False),
    Column("group_key", String(128), nullable=False),
    Column("seq", SmallInteger, nullable=False),
    Column("total", SmallInteger, nullable=False),
    Column("source", String(24), nullable=False),
    Column("destination", String(24), nullable=False),
    Column("data_coding", SmallInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    # Set when the message is complete; the parts stay a while to recognise redelivered parts.
    Column("inbound", Id, ForeignKey("inbound_messages.id")),
    UniqueConstraint("group_key", "seq"),
    Index(None, "received_at"),
)

requests = Table(
    "requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("inbound", Id, ForeignKey("inbound_messages.id"), nullable=False, unique=True),
    Column("msisdn", String(24), nullable=False),
    Column("command", String(16), nullable=False),  # info | sms_stop | sms_start
    Column("customer", Id, ForeignKey("customers.id")),
    # received -> acknowledged -> done | failed
    Column("status", String(16), nullable=False),
    Column("received_at", Time, nullable=False),
    Column("acknowledged_at", Time),
    Column("processed_at", Time),
    Column("error", String(200)),
    Index(None, "msisdn", "received_at"),
    Index(None, "status"),
)

# The outbox: every SMS smsline sends, from queued to its final status.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # ack | result | credentials | notification | ...
    Column("priority", SmallInteger, nullable=False),  # lower goes first
    Column("status", String(16), nullable=False),
    Column("customer", Id, ForeignKey("customers.id")),
    Column("request", Id, ForeignKey("requests.id")),
    Column("sender", String(24), nullable=False),
    Column("destination", String(24), nullable=False),
    Column("language", String(2), nullable=False, server_default="en"),
    # What history shows. For credential SMS this is the masked text; the clear text exists
    # only in memory while the message is being submitted.
    Column("text", Text, nullable=False),
    Column("encoding", String(8), nullable=False),
    Column("segments", SmallInteger, nullable=False),
    Column("attempts", SmallInteger, nullable=False, server_default="0"),
    Column("smsc", String(64)),
    Column("error", String(200)),
    Column("not_before", Time),
    Column("claimed_by", String(64)),
    Column("claimed_until", Time),
    Column("queued_at", Time, nullable=False),
    Column("sending_at", Time),
    Column("submitted_at", Time),
    Column("done_at", Time),
    # The campaign a mass-texting SMS belongs to; NULL for every other SMS.
    Column("campaign", Id, ForeignKey("campaigns.id")),
    Index(None, "status", "priority", "id"),
    # Campaign progress: counts by status and the recent submit rate.
    Index(None, "campaign", "status", "submitted_at"),
)

# One row per submitted segment: the SMSC's message id and that part's receipt status.
outbox_segments = Table(
    "outbox_segments",
    metadata,
    Column("message", Id, ForeignKey("outbox.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", SmallInteger, primary_key=True),
    Column("smsc", String(64), nullable=False),
    Column("smsc_message_id", String(72), nullable=False),  # canonical form, for matching
    Column("status", String(16), nullable=False),
    Column("submitted_at", Time, nullable=False),
    Column("done_at", Time),
    Index(None, "smsc_message_id", "smsc"),
)

receipts = Table(
    "receipts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", Time, nullable=False),
    Column("smsc", String(64), nullable=False),
    Column("smsc_message_id", String(72), nullable=False),  # canonical form
    Column("message", Id, ForeignKey("outbox.id")),  # NULL while unmatched
    Column("seq", SmallInteger),
    Column("stat", String(16)),
    Column("err", String(16)),
    Column("status", String(16)),
    Column("submit_date", String(16)),
    Column("done_date", String(16)),
    Column("dedupe_key", String(64), nullable=False),  # a redelivered receipt is found by its message id
    Index(None, "smsc_message_id", "smsc"),
    # Only the receipts still waiting for their message (few): the housekeeping's sweep for
    # receipts that overtook their submit_sm_resp reads this instead of the whole table.
    Index(
        "ix_receipts_unmatched",
        "received_at",
        sqlite_where=text("message IS NULL"),
        postgresql_where=text("message IS NULL"),
    ),
)

# API tokens of the systems that call smsline. Only a hash of each token is kept.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("public_id", String(16), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(500), nullable=False),  # space-separated
    Column("rate_limit", Integer),  # requests per second; NULL: the configured default
    Column("created_at", Time, nullable=False),
    Column("revoked_at", Time),
)

# Notification templates: an English and a Russian text with declared parameters.
templates = Table(
    "templates",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("text_en", Text, nullable=False),
    Column("text_ru", Text, nullable=False),
    Column("parameters", String(1000), nullable=False),  # space-separated
    Column("sample", Text),  # JSON object of sample values
    Column("essential", Boolean, nullable=False, server_default="0"),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    Column("updated_by", String(128), nullable=False),
)

# Notifications asked for through the API: one row per (token, idempotency key), holding the
# first answer (replayed for a repeated key) and the state of the status callback.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token", Id, ForeignKey("api_tokens.id"), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("customer", Id, ForeignKey("customers.id")),
    Column("template", String(64)),
    Column("message", Id, ForeignKey("outbox.id")),
    Column("status", String(16), nullable=False),  # queued | suppressed
    Column("reason", String(32)),
    Column("response_code", SmallInteger, nullable=False),
    Column("response", Text, nullable=False),  # JSON
    Column("status_callback", Text),
    Column("callback_state", String(16)),  # pending | done | failed; NULL: no callback
    Column("callback_attempts", SmallInteger, nullable=False, server_default="0"),
    Column("callback_next_at", Time),
    Column("callback_error", String(200)),
    Column("created_at", Time, nullable=False),
    UniqueConstraint("token", "idempotency_key"),
    Index(None, "callback_state", "callback_next_at"),
    Index(None, "message"),
)

# Mass texting (SPEC §4). A campaign's audience is expanded into campaign_recipients inside the
# database when the campaign is created; the runner feeds recipients into the outbox in batches.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("text_ru", Text),  # for customers whose language is ru; NULL: they get `text`
    Column("audience", Text, nullable=False),  # JSON: how the audience was chosen
    Column("start_at", Time),
    Column("tps", Integer),  # SMS per second at most; NULL: as fast as the binds allow
    Column("quiet_start", SmallInteger, nullable=False),  # minute of the day the window opens
    Column("quiet_end", SmallInteger, nullable=False),  # and closes; equal: always open
    # draft | scheduled | running | paused | completed | cancelled
    Column("state", String(16), nullable=False),
    Column("total", Integer),  # recipients; NULL until the audience is expanded
    Column("total_ru", Integer),  # of them, customers whose language is ru
    Column("timezones", Text),  # JSON list of the recipients' distinct time zones
    Column("created_at", Time, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("started_at", Time),
    Column("finished_at", Time),
    Column("updated_at", Time, nullable=False),
    Index(None, "state"),
)

# Who did what to a campaign, and when.
campaign_events = Table(
    "campaign_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("campaign", Id, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("at", Time, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("detail", String(500)),
    Index(None, "campaign", "at"),
)

# One row per customer of a campaign's audience (duplicates collapse on the unique key).
campaign_recipients = Table(
    "campaign_recipients",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("campaign", Id, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("customer", Id, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("timezone", String(64), nullable=False),  # copied from the customer at expansion
    Column("status", String(16), nullable=False),  # pending | queued | suppressed | cancelled
    Column("reason", String(32)),
    UniqueConstraint("campaign", "customer"),
    Index(None, "campaign", "status", "timezone", "id"),
    Index(None, "customer", "status"),
)
