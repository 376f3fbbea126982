"""Platform keys for bulk verification, and the query log's bulk flag and platform.

``platform_keys`` holds one row per key issued to a platform (only its SHA-256), with its quotas
in items per minute and per day and the browser origins allowed to call bulk; ``query_log``
gains two nullable columns, ``bulk`` and ``platform_id`` (no foreign key: the log grows like
``report_numbers``), set on the records of bulk requests.

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

from registry.infra.base import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("per_minute", sa.Integer(), nullable=False),
        sa.Column("per_day", sa.Integer(), nullable=False),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("query_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bulk", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("platform_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("query_log", schema=None) as batch_op:
        batch_op.drop_column("platform_id")
        batch_op.drop_column("bulk")
    op.drop_table("platform_keys")
