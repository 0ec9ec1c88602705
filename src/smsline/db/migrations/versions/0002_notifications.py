"""Notifications API: tokens, templates, notifications (idempotency and callbacks); customers by login.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_index("ix_customers_login", "customers", ["login"])

    op.create_table(
        "api_tokens",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("public_id", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(500), nullable=False),
        sa.Column("rate_limit", sa.Integer()),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("revoked_at", _time()),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("public_id", name="uq_api_tokens_public_id"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )

    op.create_table(
        "templates",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("text_en", sa.Text(), nullable=False),
        sa.Column("text_ru", sa.Text(), nullable=False),
        sa.Column("parameters", sa.String(1000), nullable=False),
        sa.Column("sample", sa.Text()),
        sa.Column("essential", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
        sa.UniqueConstraint("name", name="uq_templates_name"),
    )

    op.create_table(
        "notifications",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("token", _id(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("customer", _id()),
        sa.Column("template", sa.String(64)),
        sa.Column("message", _id()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("response_code", sa.SmallInteger(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("status_callback", sa.Text()),
        sa.Column("callback_state", sa.String(16)),
        sa.Column("callback_attempts", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("callback_next_at", _time()),
        sa.Column("callback_error", sa.String(200)),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.ForeignKeyConstraint(["token"], ["api_tokens.id"], name="fk_notifications_token_api_tokens"),
        sa.ForeignKeyConstraint(
            ["customer"], ["customers.id"], name="fk_notifications_customer_customers"
        ),
        sa.ForeignKeyConstraint(["message"], ["outbox.id"], name="fk_notifications_message_outbox"),
        sa.UniqueConstraint("token", "idempotency_key", name="uq_notifications_token_idempotency_key"),
    )
    op.create_index(
        "ix_notifications_callback_state_callback_next_at",
        "notifications",
        ["callback_state", "callback_next_at"],
    )
    op.create_index("ix_notifications_message", "notifications", ["message"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("templates")
    op.drop_table("api_tokens")
    op.drop_index("ix_customers_login", table_name="customers")
