"""The history of withdrawals and restores (number_events), and when an upload's files were
deleted (uploads.files_deleted_at, after UPLOAD_FILES_DAYS).

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

from registry.infra.base import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "number_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["institution_id"], ["institutions.id"],
                                name=op.f("fk_number_events_institution_id_institutions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_events")),
    )
    with op.batch_alter_table("number_events", schema=None) as batch_op:
        batch_op.create_index("ix_number_events_number_institution", ["number", "institution_id"], unique=False)
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("files_deleted_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_column("files_deleted_at")
    with op.batch_alter_table("number_events", schema=None) as batch_op:
        batch_op.drop_index("ix_number_events_number_institution")
    op.drop_table("number_events")
