"""The initial schema: customers, consent, inbound messages and requests, outbox, receipts.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("personal_code", sa.String(64), nullable=False),
        sa.Column("login", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("language", sa.String(2), nullable=False, server_default="en"),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="Europe/Moscow"),
        sa.Column("sms_enabled", sa.Boolean(), nullable=False, server_default="1"),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("password_expires_at", _time()),
        sa.Column("password_must_change", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
        sa.UniqueConstraint("customer_id", name="uq_customers_customer_id"),
        sa.UniqueConstraint("phone", name="uq_customers_phone"),
    )

    op.create_table(
        "customer_tags",
        sa.Column("customer", _id(), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("customer", "tag", name="pk_customer_tags"),
        sa.ForeignKeyConstraint(
            ["customer"],
            ["customers.id"],
            name="fk_customer_tags_customer_customers",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_customer_tags_tag", "customer_tags", ["tag"])

    op.create_table(
        "inbound_messages",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("smsc", sa.String(64), nullable=False),
        sa.Column("source", sa.String(24), nullable=False),
        sa.Column("destination", sa.String(24), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=False),
        sa.Column("parts", sa.SmallInteger(), nullable=False, server_default="1"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200)),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_messages"),
    )
    op.create_index("ix_inbound_messages_dedupe_key", "inbound_messages", ["dedupe_key"])
    op.create_index("ix_inbound_messages_received_at", "inbound_messages", ["received_at"])

    op.create_table(
        "consent_events",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("customer", _id(), nullable=False),
        sa.Column("sms_enabled", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("inbound", _id()),
        sa.Column("at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_events"),
        sa.ForeignKeyConstraint(
            ["customer"],
            ["customers.id"],
            name="fk_consent_events_customer_customers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inbound"],
            ["inbound_messages.id"],
            name="fk_consent_events_inbound_inbound_messages",
        ),
    )
    op.create_index("ix_consent_events_customer_at", "consent_events", ["customer", "at"])

    op.create_table(
        "inbound_parts",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("smsc", sa.String(64), nullable=False),
        sa.Column("group_key", sa.String(128), nullable=False),
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("total", sa.SmallInteger(), nullable=False),
        sa.Column("source", sa.String(24), nullable=False),
        sa.Column("destination", sa.String(24), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("inbound", _id()),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_parts"),
        sa.UniqueConstraint("group_key", "seq", name="uq_inbound_parts_group_key_seq"),
        sa.ForeignKeyConstraint(
            ["inbound"], ["inbound_messages.id"], name="fk_inbound_parts_inbound_inbound_messages"
        ),
    )
    op.create_index("ix_inbound_parts_received_at", "inbound_parts", ["received_at"])

    op.create_table(
        "requests",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("inbound", _id(), nullable=False),
        sa.Column("msisdn", sa.String(24), nullable=False),
        sa.Column("command", sa.String(16), nullable=False),
        sa.Column("customer", _id()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("acknowledged_at", _time()),
        sa.Column("processed_at", _time()),
        sa.Column("error", sa.String(200)),
        sa.PrimaryKeyConstraint("id", name="pk_requests"),
        sa.UniqueConstraint("inbound", name="uq_requests_inbound"),
        sa.ForeignKeyConstraint(
            ["inbound"], ["inbound_messages.id"], name="fk_requests_inbound_inbound_messages"
        ),
        sa.ForeignKeyConstraint(["customer"], ["customers.id"], name="fk_requests_customer_customers"),
    )
    op.create_index("ix_requests_msisdn_received_at", "requests", ["msisdn", "received_at"])
    op.create_index("ix_requests_status", "requests", ["status"])

    op.create_table(
        "outbox",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("customer", _id()),
        sa.Column("request", _id()),
        sa.Column("sender", sa.String(24), nullable=False),
        sa.Column("destination", sa.String(24), nullable=False),
        sa.Column("language", sa.String(2), nullable=False, server_default="en"),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("encoding", sa.String(8), nullable=False),
        sa.Column("segments", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("smsc", sa.String(64)),
        sa.Column("error", sa.String(200)),
        sa.Column("not_before", _time()),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", _time()),
        sa.Column("queued_at", _time(), nullable=False),
        sa.Column("sending_at", _time()),
        sa.Column("submitted_at", _time()),
        sa.Column("done_at", _time()),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.ForeignKeyConstraint(["customer"], ["customers.id"], name="fk_outbox_customer_customers"),
        sa.ForeignKeyConstraint(["request"], ["requests.id"], name="fk_outbox_request_requests"),
    )
    op.create_index("ix_outbox_status_priority_id", "outbox", ["status", "priority", "id"])

    op.create_table(
        "outbox_segments",
        sa.Column("message", _id(), nullable=False),
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("smsc", sa.String(64), nullable=False),
        sa.Column("smsc_message_id", sa.String(72), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("submitted_at", _time(), nullable=False),
        sa.Column("done_at", _time()),
        sa.PrimaryKeyConstraint("message", "seq", name="pk_outbox_segments"),
        sa.ForeignKeyConstraint(
            ["message"],
            ["outbox.id"],
            name="fk_outbox_segments_message_outbox",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_outbox_segments_smsc_message_id_smsc", "outbox_segments", ["smsc_message_id", "smsc"])

    op.create_table(
        "receipts",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("smsc", sa.String(64), nullable=False),
        sa.Column("smsc_message_id", sa.String(72), nullable=False),
        sa.Column("message", _id()),
        sa.Column("seq", sa.SmallInteger()),
        sa.Column("stat", sa.String(16)),
        sa.Column("err", sa.String(16)),
        sa.Column("status", sa.String(16)),
        sa.Column("submit_date", sa.String(16)),
        sa.Column("done_date", sa.String(16)),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_receipts"),
        sa.ForeignKeyConstraint(["message"], ["outbox.id"], name="fk_receipts_message_outbox"),
    )
    op.create_index("ix_receipts_smsc_message_id_smsc", "receipts", ["smsc_message_id", "smsc"])
    op.create_index("ix_receipts_dedupe_key", "receipts", ["dedupe_key"])


def downgrade() -> None:
    for table in (
        "receipts",
        "outbox_segments",
        "outbox",
        "requests",
        "inbound_parts",
        "consent_events",
        "inbound_messages",
        "customer_tags",
        "customers",
    ):
        op.drop_table(table)
