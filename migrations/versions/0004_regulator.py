"""Regulator console: audit chain columns on complaint events, abnormal history, findings.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

from registry.infra.base import UTCDateTime


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("complaint_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_complaint_events_seq"), ["seq"])

    op.create_table(
        "abnormal_marks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("abnormal", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["authority_id"], ["authorities.id"], name=op.f("fk_abnormal_marks_authority_id_authorities")),
        sa.ForeignKeyConstraint(["institution_id"], ["institutions.id"], name=op.f("fk_abnormal_marks_institution_id_institutions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_abnormal_marks")),
    )
    with op.batch_alter_table("abnormal_marks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_abnormal_marks_institution_id"), ["institution_id"], unique=False)

    op.create_table(
        "complaint_findings",
        sa.Column("complaint_id", sa.Integer(), nullable=False),
        sa.Column("finding", sa.String(length=32), nullable=False),
        sa.Column("concluded_at", UTCDateTime(), nullable=False),
        sa.Column("concluded_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["complaint_id"], ["complaints.id"], name=op.f("fk_complaint_findings_complaint_id_complaints")),
        sa.PrimaryKeyConstraint("complaint_id", name=op.f("pk_complaint_findings")),
    )
    with op.batch_alter_table("complaint_findings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_complaint_findings_finding"), ["finding"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("complaint_findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_complaint_findings_finding"))
    op.drop_table("complaint_findings")
    with op.batch_alter_table("abnormal_marks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_abnormal_marks_institution_id"))
    op.drop_table("abnormal_marks")
    with op.batch_alter_table("complaint_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_complaint_events_seq"), type_="unique")
        batch_op.drop_column("mac")
        batch_op.drop_column("seq")
