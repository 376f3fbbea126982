"""Migrations run up and down on scratch databases of their own."""
import uuid
from contextlib import contextmanager

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from registry.infra.db import make_engine
from registry.infra.migrate import downgrade, upgrade
from registry.schema import metadata

TABLES = {t.name for t in metadata.sorted_tables}


def _roundtrip(engine):
    upgrade(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    downgrade(engine, "base")
    assert not (TABLES & set(inspect(engine).get_table_names()))
    upgrade(engine)
    assert TABLES <= set(inspect(engine).get_table_names())


def test_sqlite_up_down(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    _roundtrip(engine)
    engine.dispose()


@contextmanager
def scratch_postgres(server_url):
    """An engine on a PostgreSQL database of its own, dropped afterwards."""
    name = f"rnr_mig_{uuid.uuid4().hex[:8]}"
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(server_url).set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_postgres_up_down_and_partitions(postgres_server_url):
    with scratch_postgres(postgres_server_url) as engine:
        _roundtrip(engine)
        with engine.connect() as conn:
            parts = conn.execute(text(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'report_numbers'::regclass")).scalar_one()
            plan = conn.execute(text(
                "EXPLAIN SELECT * FROM report_numbers WHERE number = 'WT2020-000123'")).scalars().all()
        assert parts == 16
        # a lookup by number prunes to one partition
        assert sum("report_numbers_p" in line for line in plan) == 1


def test_models_match_migrations(tmp_path):
    """Autogenerate finds nothing to do: the models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(f"sqlite:///{tmp_path / 'cmp.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_tracking_codes_become_hashes(tmp_path):
    """0009: existing tracking codes are replaced by their SHA-256; downgrade cannot restore them."""
    import hashlib

    from registry.institutions.authorities import seed_authorities
    from sqlalchemy.orm import Session

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0008")
    with Session(engine) as session:
        seed_authorities(session)
        session.commit()
    with engine.begin() as conn:
        authority = conn.execute(text("SELECT id FROM authorities ORDER BY id LIMIT 1")).scalar()
        for i, code in enumerate(("AAAABBBBCCCCDDDD", "EEEEFFFFGGGGHHHH")):
            conn.execute(text(
                "INSERT INTO complaints (tracking_code, number, authority_id, category, description, status,"
                " created_at, updated_at) VALUES (:code, :number, :authority, 'other', 'x', 'received',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"), {"code": code, "number": f"N-{i}",
                                                                   "authority": authority})
    upgrade(engine)
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT number, tracking_hash FROM complaints")).all())
        assert "tracking_code" not in {c["name"] for c in inspect(conn).get_columns("complaints")}
    assert stored == {"N-0": hashlib.sha256(b"AAAABBBBCCCCDDDD").hexdigest(),
                      "N-1": hashlib.sha256(b"EEEEFFFFGGGGHHHH").hexdigest()}
    downgrade(engine, "0008")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT tracking_code FROM complaints")).scalars().all() == [None, None]
    engine.dispose()


def test_admin_log_entries_get_a_nullable_key_id(tmp_path):
    """0010: admin_log gains key_id; entries sealed before it keep NULL (verified against the ring)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0009")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO admin_log (seq, at, actor, action, target, detail, mac) VALUES "
                          "(1, '2026-01-01 00:00:00', 'root', 'create', 'lab', NULL, :mac)"), {"mac": "a" * 64})
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT key_id FROM admin_log")).scalars().all() == [None]
    downgrade(engine, "0009")
    with engine.connect() as conn:
        assert "key_id" not in {c["name"] for c in inspect(conn).get_columns("admin_log")}
        assert conn.execute(text("SELECT count(*) FROM admin_log")).scalar_one() == 1
    engine.dispose()


def test_postgres_query_log_becomes_daily_partitions_keeping_its_rows(postgres_server_url):
    """0012: the rows of the unpartitioned log land in their days' partitions, ids go on from the
    same sequence; the downgrade puts them back in one table."""
    with scratch_postgres(postgres_server_url) as engine:
        upgrade(engine, "0011")
        with engine.begin() as conn:
            for i, at in enumerate(("2025-03-01 10:00", "2025-03-01 23:59:59", "2025-07-09 00:00")):
                conn.execute(text("INSERT INTO query_log (at, number, status, client) VALUES (:at, :n, 'found', 'c')"),
                             {"at": at, "n": f"M{i}"})
        upgrade(engine)
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT number, id, tableoid::regclass::text FROM query_log ORDER BY id")).all()
            assert [(n, part) for n, _, part in rows] == [("M0", "query_log_20250301"), ("M1", "query_log_20250301"),
                                                          ("M2", "query_log_20250709")]
            new_id = conn.execute(text("INSERT INTO query_log (at, number, status, client) VALUES "
                                       "(now() at time zone 'utc', 'M3', 'found', 'c') RETURNING id")).scalar_one()
            assert new_id == rows[-1][1] + 1
            assert conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'query_log'")).scalar() == "p"
        downgrade(engine, "0011")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT number FROM query_log ORDER BY id")).scalars().all() == ["M0", "M1", "M2", "M3"]
            assert conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'query_log'")).scalar() == "r"


PENDING = "INSERT INTO tlog_pending (action, number, institution_id, batch_id, quarter, at, salt, sha256{more}) " \
          "VALUES (:action, :number, 1, 7, '2026Q3', '2026-08-01 00:00:00', :salt, :sha256{values})"


def _pending_spans_migration(engine):
    """0020: rows pending before it stay (count 1); a span and the rows after it come back, a row
    per entry in the same order, when downgrading."""
    upgrade(engine, "0019")
    with engine.begin() as conn:
        conn.execute(text(PENDING.format(more="", values="")),
                     {"action": "register", "number": "OLD-1", "salt": b"\x01" * 16, "sha256": None})
    upgrade(engine)
    digest = "ab" * 32
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count, numbers FROM tlog_pending")).all() == [(1, None)]
        conn.execute(text(PENDING.format(more=", count, numbers, salts, sha256s", values=", 3, :n, :s, :d")),
                     {"action": "register", "number": None, "salt": None, "sha256": None, "n": "A\nB\nC",
                      "s": b"\x0a" * 16 + b"\x0b" * 16 + b"\x0c" * 16, "d": f"\n{digest}\n"})
        conn.execute(text(PENDING.format(more="", values="")),
                     {"action": "withdraw", "number": "B", "salt": b"\x0b" * 16, "sha256": digest})
    downgrade(engine, "0019")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT action, number, salt, sha256 FROM tlog_pending ORDER BY id")).all()
    assert [tuple(row[:2]) + (bytes(row[2]), row[3]) for row in rows] == [
        ("register", "OLD-1", b"\x01" * 16, None), ("register", "A", b"\x0a" * 16, None),
        ("register", "B", b"\x0b" * 16, digest), ("register", "C", b"\x0c" * 16, None),
        ("withdraw", "B", b"\x0b" * 16, digest)]
    upgrade(engine)


def test_pending_spans_sqlite(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    _pending_spans_migration(engine)
    engine.dispose()


def test_pending_spans_postgres(postgres_server_url):
    with scratch_postgres(postgres_server_url) as engine:
        _pending_spans_migration(engine)
        with engine.connect() as conn:  # the packed columns out of line, uncompressed
            storage = dict(conn.execute(text(
                "SELECT attname, attstorage FROM pg_attribute WHERE attrelid = 'tlog_pending'::regclass "
                "AND attname IN ('numbers', 'salts', 'sha256s')")).all())
        assert storage == {"numbers": "e", "salts": "e", "sha256s": "e"}
