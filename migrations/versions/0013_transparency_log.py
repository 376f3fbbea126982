"""The transparency log (docs/transparency.md): a salt per registration, pending entries, the
integrated entries, the tree's hash tiles, signed checkpoints and the verifier keys.

Registrations made before this revision get a salt and a pending ``register`` entry each (oldest
first), and a ``withdraw`` entry when they are withdrawn now, so the first integration logs the
register as it stands.

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa

from registry.infra.base import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

PG_SALT = "substring(sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())) from 1 for 16)"


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "tlog_pending",
        sa.Column("id", big_id, nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("quarter", sa.String(length=6), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tlog_pending")),
    )
    op.create_table(
        "tlog_entries",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("quarter", sa.String(length=6), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=16), nullable=False),
        sa.Column("commitment", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_tlog_entries")),
    )
    op.create_index("ix_tlog_entries_number_institution", "tlog_entries", ["number", "institution_id"])
    op.create_index("ix_tlog_entries_institution_leaf", "tlog_entries", ["institution_id", "leaf_index"])
    op.create_table(
        "tlog_tiles",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "index", name=op.f("pk_tlog_tiles")),
    )
    op.create_table(
        "tlog_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_tlog_checkpoints")),
    )
    op.create_table(
        "tlog_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=300), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tlog_keys")),
        sa.UniqueConstraint("text", name=op.f("uq_tlog_keys_text")),
    )
    with op.batch_alter_table("report_numbers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("salt", sa.LargeBinary(length=16), nullable=True))
    salt = PG_SALT if op.get_bind().dialect.name == "postgresql" else "randomblob(16)"
    op.execute(f"UPDATE report_numbers SET salt = {salt} WHERE salt IS NULL")
    op.execute("INSERT INTO tlog_pending (action, number, institution_id, batch_id, quarter, at, salt) "
               "SELECT 'register', number, institution_id, batch_id, quarter, registered_at, salt "
               "FROM report_numbers ORDER BY registered_at, batch_id, number, institution_id")
    op.execute("INSERT INTO tlog_pending (action, number, institution_id, batch_id, quarter, at, salt) "
               "SELECT 'withdraw', number, institution_id, batch_id, quarter, withdrawn_at, salt "
               "FROM report_numbers WHERE withdrawn_at IS NOT NULL ORDER BY withdrawn_at, number, institution_id")


def downgrade() -> None:
    with op.batch_alter_table("report_numbers", schema=None) as batch_op:
        batch_op.drop_column("salt")
    op.drop_table("tlog_keys")
    op.drop_table("tlog_checkpoints")
    op.drop_table("tlog_tiles")
    op.drop_index("ix_tlog_entries_institution_leaf", table_name="tlog_entries")
    op.drop_index("ix_tlog_entries_number_institution", table_name="tlog_entries")
    op.drop_table("tlog_entries")
    op.drop_table("tlog_pending")
