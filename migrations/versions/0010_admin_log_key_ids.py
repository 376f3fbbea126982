"""The admin log on the audit key ring: each ``admin_log`` entry records the id of the key that
sealed it (``key_id``; the admin log uses a subkey of that ``AUDIT_KEYS`` key), so keys can be
rotated and old entries still verify with the old key kept in the ring.

Entries sealed before this revision keep ``key_id`` NULL and their old seal (which named no key);
they verify against every configured key (registry/accounts/adminlog.py), as version 1 events of
the complaint chain do. The migration cannot fill their ids itself: it does not see the keys.

Downgrade drops the column; entries sealed after this revision then no longer verify on the older
version (their seal includes the key id).

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admin_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("admin_log", schema=None) as batch_op:
        batch_op.drop_column("key_id")
