"""Transparency log: a registration chunk waits for the integrator as one pending row (a span)
instead of one row per number (docs/transparency.md, "How entries get into the log").

``tlog_pending`` gains ``count`` (entries in the row; 1 for the rows written so far and for
withdrawals and restores), ``numbers`` (newline-joined, in the order the entries are appended),
``salts`` (16 bytes per number, concatenated) and ``sha256s`` (newline-joined document
fingerprints, an empty line for a number without one; NULL when none of the span has one);
``number`` and ``salt`` become nullable (set only on single-entry rows). Rows already pending stay
as they are: the integrator reads both kinds, in id order. On PostgreSQL the packed columns are
stored EXTERNAL (out of line, uncompressed: no compression CPU on the import path, and salts do
not compress). Downgrading expands every span back into one row per entry, in order.

Revision ID: 0020
Revises: 0019
"""
from alembic import op
import sqlalchemy as sa


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

PACKED = ("numbers", "salts", "sha256s")


def upgrade() -> None:
    with op.batch_alter_table("tlog_pending", schema=None) as batch_op:
        batch_op.add_column(sa.Column("count", sa.Integer(), server_default=sa.text("1"), nullable=False))
        batch_op.add_column(sa.Column("numbers", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("salts", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("sha256s", sa.Text(), nullable=True))
        batch_op.alter_column("number", existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column("salt", existing_type=sa.LargeBinary(length=16), nullable=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tlog_pending " + ", ".join(f"ALTER COLUMN {c} SET STORAGE EXTERNAL" for c in PACKED))


def downgrade() -> None:
    bind = op.get_bind()
    columns = "action, number, institution_id, batch_id, quarter, at, salt, sha256"
    spans = bind.execute(sa.text(f"SELECT id, {columns}, count, numbers, salts, sha256s FROM tlog_pending "
                                 "WHERE numbers IS NOT NULL ORDER BY id")).all()
    if spans:
        # every row from the first span on is written again, expanded, in the same order (new ids
        # follow the old ones, so the order stays the integrator's)
        first = spans[0].id
        rows = bind.execute(sa.text(f"SELECT id, {columns}, count, numbers, salts, sha256s FROM tlog_pending "
                                    "WHERE id >= :first ORDER BY id"), {"first": first}).all()
        bind.execute(sa.text("DELETE FROM tlog_pending WHERE id >= :first"), {"first": first})
        insert = sa.text(f"INSERT INTO tlog_pending ({columns}) VALUES "
                         "(:action, :number, :institution_id, :batch_id, :quarter, :at, :salt, :sha256)")
        for row in rows:
            base = {"action": row.action, "institution_id": row.institution_id, "batch_id": row.batch_id,
                    "quarter": row.quarter, "at": row.at}
            if row.numbers is None:
                bind.execute(insert, {**base, "number": row.number, "salt": row.salt, "sha256": row.sha256})
                continue
            numbers = row.numbers.split("\n")
            salts = bytes(row.salts)
            digests = row.sha256s.split("\n") if row.sha256s is not None else [""] * len(numbers)
            bind.execute(insert, [{**base, "number": number, "salt": salts[16 * i:16 * i + 16],
                                   "sha256": digests[i] or None} for i, number in enumerate(numbers)])
    with op.batch_alter_table("tlog_pending", schema=None) as batch_op:
        batch_op.alter_column("salt", existing_type=sa.LargeBinary(length=16), nullable=False)
        batch_op.alter_column("number", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("sha256s")
        batch_op.drop_column("salts")
        batch_op.drop_column("numbers")
        batch_op.drop_column("count")
