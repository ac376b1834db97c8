"""The card ledger (every card shown or held back, without PHI), snoozes by override reason, site settings.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_card_ledger",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("hook", sa.String(40), nullable=False),
        sa.Column("topic", sa.String(40), nullable=False),
        sa.Column("pathways", sa.String(100), nullable=True),
        sa.Column("indicator", sa.String(10), nullable=False),
        sa.Column("client", sa.String(300), nullable=True),
        sa.Column("ruleset_version", sa.String(20), nullable=False),
        sa.Column("held_back", sa.String(20), nullable=True),
        sa.Column("patient_hash", sa.String(64), nullable=True),
        sa.Column("evidence_digest", sa.String(64), nullable=False),
    )
    op.create_index("ix_cds_card_ledger_patient_topic", "cds_card_ledger", ["patient_hash", "topic"])
    op.create_table(
        "cds_snooze",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("patient_hash", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(40), nullable=False),
        sa.Column("reason_code", sa.String(200), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("evidence_digest", sa.String(64), nullable=True),
    )
    op.create_index("ix_cds_snooze_patient_topic", "cds_snooze", ["patient_hash", "topic"])
    op.create_table(
        "cds_site",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cds_site")
    op.drop_index("ix_cds_snooze_patient_topic", "cds_snooze")
    op.drop_table("cds_snooze")
    op.drop_index("ix_cds_card_ledger_patient_topic", "cds_card_ledger")
    op.drop_table("cds_card_ledger")
