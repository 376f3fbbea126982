"""A batch's document fingerprints: ``batches.documents``, how many of the numbers the batch
registered came with the SHA-256 of their report file (a fingerprint is stored only with the
registration it comes with, so a number registered before keeps its own, or none). The receipt
shows it; batches made before this count 0. A constant default: on PostgreSQL adding the column
rewrites nothing.

Revision ID: 0021
Revises: 0020
"""
from alembic import op
import sqlalchemy as sa


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("documents", sa.Integer(), server_default=sa.text("0"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("documents")
