"""Drop ix_report_numbers_institution_quarter: no query uses it, and every imported number paid
for it (about 1.2 µs of PostgreSQL CPU each, an eighth of the import, plus its disk at 亿 scale).
Per-institution, per-quarter figures come from the batches table. Should a listing of an
institution's numbers by quarter be wanted, build it back with CREATE INDEX CONCURRENTLY.

Revision ID: 0005
Revises: 0004
"""
from alembic import op


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_numbers", schema=None) as batch_op:
        batch_op.drop_index("ix_report_numbers_institution_quarter")


def downgrade() -> None:
    with op.batch_alter_table("report_numbers", schema=None) as batch_op:
        batch_op.create_index("ix_report_numbers_institution_quarter", ["institution_id", "quarter"], unique=False)
