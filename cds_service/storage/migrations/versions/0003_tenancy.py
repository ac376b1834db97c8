"""Tenancy: a patient is (issuer, FHIR server, patient id).

Rows written before this revision hash the patient id alone (patient_key_version 1). They are kept: a
version-1 snooze still holds back the cards of the issuer whose override made it (its issuer is filled in
from the ledger here), never another EHR's patient with the same id. Feedback rows get the issuer that
sent them. Snoozes become one per card: replays had stacked them (the earliest of each card is kept).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cds_card_ledger") as batch:
        batch.add_column(sa.Column("patient_key_version", sa.Integer, nullable=True))
    op.execute("UPDATE cds_card_ledger SET patient_key_version = 1 WHERE patient_hash IS NOT NULL")
    with op.batch_alter_table("cds_snooze") as batch:
        batch.add_column(sa.Column("patient_key_version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("issuer", sa.String(300), nullable=True))
    op.execute(
        "UPDATE cds_snooze SET patient_key_version = 1, issuer = "
        "(SELECT client FROM cds_card_ledger l WHERE l.card_uuid = cds_snooze.card_uuid)"
    )
    op.execute("DELETE FROM cds_snooze WHERE id NOT IN (SELECT MIN(id) FROM cds_snooze GROUP BY card_uuid)")
    op.create_index("ux_cds_snooze_card", "cds_snooze", ["card_uuid"], unique=True)
    with op.batch_alter_table("cds_feedback") as batch:
        batch.add_column(sa.Column("issuer", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cds_feedback") as batch:
        batch.drop_column("issuer")
    op.drop_index("ux_cds_snooze_card", "cds_snooze")
    with op.batch_alter_table("cds_snooze") as batch:
        batch.drop_column("issuer")
        batch.drop_column("patient_key_version")
    with op.batch_alter_table("cds_card_ledger") as batch:
        batch.drop_column("patient_key_version")
