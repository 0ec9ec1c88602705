"""Mass texting: campaigns, their events and recipients; the outbox knows its campaign.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_ru", sa.Text()),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("start_at", _time()),
        sa.Column("tps", sa.Integer()),
        sa.Column("quiet_start", sa.SmallInteger(), nullable=False),
        sa.Column("quiet_end", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer()),
        sa.Column("total_ru", sa.Integer()),
        sa.Column("timezones", sa.Text()),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("started_at", _time()),
        sa.Column("finished_at", _time()),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
    )
    op.create_index("ix_campaigns_state", "campaigns", ["state"])

    op.create_table(
        "campaign_events",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("campaign", _id(), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(500)),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_events"),
        sa.ForeignKeyConstraint(
            ["campaign"], ["campaigns.id"], name="fk_campaign_events_campaign_campaigns", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_campaign_events_campaign_at", "campaign_events", ["campaign", "at"])

    op.create_table(
        "campaign_recipients",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("campaign", _id(), nullable=False),
        sa.Column("customer", _id(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_recipients"),
        sa.ForeignKeyConstraint(
            ["campaign"],
            ["campaigns.id"],
            name="fk_campaign_recipients_campaign_campaigns",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer"],
            ["customers.id"],
            name="fk_campaign_recipients_customer_customers",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("campaign", "customer", name="uq_campaign_recipients_campaign_customer"),
    )
    op.create_index(
        "ix_campaign_recipients_campaign_status_timezone_id",
        "campaign_recipients",
        ["campaign", "status", "timezone", "id"],
    )
    op.create_index("ix_campaign_recipients_customer_status", "campaign_recipients", ["customer", "status"])

    # SQLite cannot add a constraint to an existing table, only a column with an inline REFERENCES.
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column(
        "outbox",
        sa.Column("campaign", _id(), sa.ForeignKey("campaigns.id", name="fk_outbox_campaign_campaigns")),
        inline_references=sqlite,
    )
    op.create_index(
        "ix_outbox_campaign_status_submitted_at", "outbox", ["campaign", "status", "submitted_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_campaign_status_submitted_at", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("campaign")
    op.drop_table("campaign_recipients")
    op.drop_table("campaign_events")
    op.drop_table("campaigns")
