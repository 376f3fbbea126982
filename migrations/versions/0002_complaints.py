"""Complaints and their append-only trail of events.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

from registry.infra.base import UTCDateTime


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tracking_code", sa.String(length=32), nullable=False),
        sa.Column("number", sa.String(length=200), nullable=False),
        sa.Column("institution_text", sa.String(length=200), nullable=True),
        sa.Column("institution_id", sa.Integer(), nullable=True),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("complainant_name", sa.String(length=100), nullable=True),
        sa.Column("complainant_contact", sa.String(length=200), nullable=True),
        sa.Column("attachment_path", sa.String(length=255), nullable=True),
        sa.Column("attachment_type", sa.String(length=64), nullable=True),
        sa.Column("verdict_status", sa.String(length=16), nullable=True),
        sa.Column("verdict_json", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["authority_id"], ["authorities.id"], name=op.f("fk_complaints_authority_id_authorities")),
        sa.ForeignKeyConstraint(["institution_id"], ["institutions.id"], name=op.f("fk_complaints_institution_id_institutions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
        sa.UniqueConstraint("tracking_code", name=op.f("uq_complaints_tracking_code")),
    )
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_complaints_authority_id"), ["authority_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_complaints_institution_id"), ["institution_id"], unique=False)

    op.create_table(
        "complaint_events",
        sa.Column("id", BigId, nullable=False),
        sa.Column("complaint_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["complaint_id"], ["complaints.id"], name=op.f("fk_complaint_events_complaint_id_complaints")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_events")),
    )
    with op.batch_alter_table("complaint_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_complaint_events_complaint_id"), ["complaint_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("complaint_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_complaint_events_complaint_id"))
    op.drop_table("complaint_events")
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_complaints_institution_id"))
        batch_op.drop_index(batch_op.f("ix_complaints_authority_id"))
    op.drop_table("complaints")
