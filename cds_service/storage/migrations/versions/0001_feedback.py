"""The feedback table of the first release (created without Alembic then: kept as it is when present).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("cds_feedback"):
        return  # a first-release database: the table is already there, unchanged
    op.create_table(
        "cds_feedback",
        sa.Column("entry_key", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(100), nullable=False, index=True),
        sa.Column("card_uuid", sa.String(200), nullable=False, index=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("accepted_suggestions", sa.Text, nullable=True),
        sa.Column("override_reason_system", sa.String(500), nullable=True),
        sa.Column("override_reason_code", sa.String(200), nullable=True),
        sa.Column("override_comment", sa.Text, nullable=True),
        sa.Column("outcome_timestamp", sa.String(40), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cds_feedback")
