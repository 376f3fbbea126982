"""Document fingerprints (issue 16): the SHA-256 of the issued report file an institution may
register with its number (``report_numbers.sha256``, 64 lowercase hex, nullable: most
registrations carry none, and a NULL costs a bit of the row's null bitmap), and the same on the
transparency log's pending entries (``tlog_pending.sha256``), whose commitment includes it.

Revision ID: 0019
Revises: 0018
"""
from alembic import op
import sqlalchemy as sa


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_numbers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("tlog_pending", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tlog_pending", schema=None) as batch_op:
        batch_op.drop_column("sha256")
    with op.batch_alter_table("report_numbers", schema=None) as batch_op:
        batch_op.drop_column("sha256")
