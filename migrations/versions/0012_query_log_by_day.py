"""The query log partitioned by day on PostgreSQL; an index for the platforms' use per day.

PostgreSQL: ``query_log`` becomes ``PARTITION BY RANGE (at)`` with one partition per UTC day
(``query_log_YYYYMMDD``) and a default partition as a safety net; the existing rows move into
the partitions of their days, ids continue from the same sequence. The primary key goes (no
reader looks a row up by id; each index slows the COPY of the flush). Old days are then dropped
whole by the retention chore (registry/verification/querylog.py, ``QUERY_LOG_DAYS``).

Both backends: ``ix_query_log_platform_id_at`` on the rows of bulk requests only.

Revision ID: 0012
Revises: 0011
"""
import datetime as dt

from alembic import op
import sqlalchemy as sa

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COLUMNS = "id, at, number, institution_text, institution_id, status, client, bulk, platform_id"
DAYS_AHEAD = 7
# the columns of the log as 0001 and 0011 made them; ids go on from the same sequence
COLUMN_DDL = """
    id BIGINT NOT NULL DEFAULT nextval('query_log_id_seq'),
    at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    number VARCHAR(200) NOT NULL,
    institution_text TEXT,
    institution_id INTEGER,
    status VARCHAR(16) NOT NULL,
    client VARCHAR(64) NOT NULL,
    bulk BOOLEAN,
    platform_id INTEGER"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("query_log", schema=None) as batch_op:
            batch_op.create_index("ix_query_log_platform_id_at", ["platform_id", "at"], unique=False,
                                  sqlite_where=sa.text("platform_id IS NOT NULL"))
        return
    bind = op.get_bind()
    op.execute("ALTER TABLE query_log RENAME TO query_log_unpartitioned")
    op.execute("ALTER INDEX ix_query_log_number_at RENAME TO ix_query_log_unpartitioned_number_at")
    op.execute("ALTER TABLE query_log_unpartitioned RENAME CONSTRAINT pk_query_log TO pk_query_log_unpartitioned")
    op.execute("ALTER SEQUENCE query_log_id_seq OWNED BY NONE")
    op.execute(f"CREATE TABLE query_log ({COLUMN_DDL}) PARTITION BY RANGE (at)")
    op.execute("ALTER SEQUENCE query_log_id_seq OWNED BY query_log.id")
    op.execute("CREATE TABLE query_log_default PARTITION OF query_log DEFAULT")
    today = dt.datetime.now(dt.timezone.utc).date()
    days = set(bind.execute(sa.text("SELECT DISTINCT CAST(at AS date) FROM query_log_unpartitioned")).scalars())
    days |= {today + dt.timedelta(days=n) for n in range(-1, DAYS_AHEAD + 1)}
    for day in sorted(days):
        op.execute(f"CREATE TABLE query_log_{day:%Y%m%d} PARTITION OF query_log "
                   f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(days=1)).isoformat()}')")
    op.execute(f"INSERT INTO query_log ({COLUMNS}) SELECT {COLUMNS} FROM query_log_unpartitioned")
    op.execute("DROP TABLE query_log_unpartitioned")
    # indexes after the rows: built once per partition instead of row by row
    op.execute("CREATE INDEX ix_query_log_number_at ON query_log (number, at)")
    op.execute("CREATE INDEX ix_query_log_platform_id_at ON query_log (platform_id, at) WHERE platform_id IS NOT NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("query_log", schema=None) as batch_op:
            batch_op.drop_index("ix_query_log_platform_id_at", sqlite_where=sa.text("platform_id IS NOT NULL"))
        return
    op.execute("ALTER TABLE query_log RENAME TO query_log_partitioned")
    op.execute("ALTER INDEX ix_query_log_number_at RENAME TO ix_query_log_partitioned_number_at")
    op.execute("ALTER SEQUENCE query_log_id_seq OWNED BY NONE")
    op.execute(f"CREATE TABLE query_log ({COLUMN_DDL}, CONSTRAINT pk_query_log PRIMARY KEY (id))")
    op.execute("ALTER SEQUENCE query_log_id_seq OWNED BY query_log.id")
    op.execute(f"INSERT INTO query_log ({COLUMNS}) SELECT {COLUMNS} FROM query_log_partitioned")
    op.execute("DROP TABLE query_log_partitioned")  # its partitions and indexes with it
    op.execute("CREATE INDEX ix_query_log_number_at ON query_log (number, at)")
