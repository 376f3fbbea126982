"""Audit chain version 2: each complaint event also seals its place in its complaint's trail
(``cseq``), the digest of its complaint's content after it (``state``), the id of the key that
sealed it (``key_id``) and the seal's version (``chain_version``); complaints get the salt their
personal fields are hashed with in the chain (``personal_salt``).

Events sealed before this revision keep their version 1 seals (``chain_version`` stays NULL) and
verify as before; their ``cseq`` is filled here from their order, so a gap in a complaint's trail
shows on its own page from now on. Existing complaints get a fresh random salt.

Revision ID: 0008
Revises: 0007
"""
import secrets

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("complaint_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cseq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("state", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("chain_version", sa.SmallInteger(), nullable=True))
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("personal_salt", sa.String(length=32), nullable=True))

    conn = op.get_bind()
    conn.execute(sa.text(
        "UPDATE complaint_events SET cseq = (SELECT count(*) FROM complaint_events AS e2 "
        "WHERE e2.complaint_id = complaint_events.complaint_id AND e2.seq IS NOT NULL "
        "AND e2.seq <= complaint_events.seq) WHERE seq IS NOT NULL"))
    ids = conn.execute(sa.text("SELECT id FROM complaints WHERE personal_salt IS NULL")).scalars().all()
    for start in range(0, len(ids), 1000):
        conn.execute(sa.text("UPDATE complaints SET personal_salt = :salt WHERE id = :id"),
                     [{"id": i, "salt": secrets.token_hex(16)} for i in ids[start:start + 1000]])


def downgrade() -> None:
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.drop_column("personal_salt")
    with op.batch_alter_table("complaint_events", schema=None) as batch_op:
        batch_op.drop_column("chain_version")
        batch_op.drop_column("key_id")
        batch_op.drop_column("state")
        batch_op.drop_column("cseq")
