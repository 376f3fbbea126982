"""Migrations run up and down on scratch databases of their own."""
import uuid

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


def test_postgres_up_down_and_partitions(postgres_server_url):
    name = f"rnr_mig_{uuid.uuid4().hex[:8]}"
    admin = make_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        _roundtrip(engine)
        with engine.connect() as conn:
            parts = conn.execute(text(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'report_numbers'::regclass")).scalar_one()
            plan = conn.execute(text(
                "EXPLAIN SELECT * FROM report_numbers WHERE number = 'WT2020-000123'")).scalars().all()
        assert parts == 16
        # a lookup by number prunes to one partition
        assert sum("report_numbers_p" in line for line in plan) == 1
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
