"""Tracking codes stored as hashes: ``complaints.tracking_hash`` (SHA-256 of the normalised code)
replaces ``complaints.tracking_code``. A tracking code is the complainant's bearer secret; the
public status page and the tracking form find a complaint by the hash of the code typed, and
officers see the complaint's reference (``TS-<year>-<id>``) instead. (SQLite rebuilds the table
to drop the column; registry/infra/migrate.py runs migrations with its foreign keys off, then
checks them.)

Downgrade cannot bring the codes back (only their hashes were kept): it restores a nullable
``tracking_code`` column, empty, and drops the hashes, so complainants' codes no longer open their
status pages on the older version.

Revision ID: 0009
Revises: 0008
"""
import hashlib

from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_complaints = sa.table("complaints", sa.column("id", sa.Integer()), sa.column("tracking_code", sa.String(32)),
                       sa.column("tracking_hash", sa.String(64)))


def upgrade() -> None:
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tracking_hash", sa.String(length=64), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(_complaints.c.id, _complaints.c.tracking_code)).all()
    update = (sa.update(_complaints).where(_complaints.c.id == sa.bindparam("cid"))
              .values(tracking_hash=sa.bindparam("digest")))
    for start in range(0, len(rows), 10_000):
        connection.execute(update, [{"cid": cid, "digest": hashlib.sha256(code.encode("ascii")).hexdigest()}
                                    for cid, code in rows[start:start + 10_000]])
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.alter_column("tracking_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_complaints_tracking_hash"), ["tracking_hash"])
        batch_op.drop_constraint(batch_op.f("uq_complaints_tracking_code"), type_="unique")
        batch_op.drop_column("tracking_code")


def downgrade() -> None:
    # the codes cannot be restored from their hashes: the column comes back nullable and empty
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tracking_code", sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_complaints_tracking_code"), ["tracking_code"])
        batch_op.drop_constraint(batch_op.f("uq_complaints_tracking_hash"), type_="unique")
        batch_op.drop_column("tracking_hash")
