"""Receipts: no index on the random dedupe keys (redeliveries are found by message id); a partial
index on the receipts still waiting for their message.

Revision ID: 0004
Revises: 0003
Create Date: 2025-03-15 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNMATCHED = sa.text("message IS NULL")


def upgrade() -> None:
    op.drop_index("ix_receipts_dedupe_key", table_name="receipts")
    op.create_index(
        "ix_receipts_unmatched",
        "receipts",
        ["received_at"],
        sqlite_where=UNMATCHED,
        postgresql_where=UNMATCHED,
    )


def downgrade() -> None:
    op.drop_index("ix_receipts_unmatched", table_name="receipts")
    op.create_index("ix_receipts_dedupe_key", "receipts", ["dedupe_key"])
