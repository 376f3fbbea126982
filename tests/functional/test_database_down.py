"""When the database is down, negatives keep answering from the Bloom index; positives are 503."""
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from portal import create_app
from registry.infra.db import make_engine
from tests.builders import make_institution, register


@pytest.fixture
def pg_app(postgres_database, redis_url, postgres_server_url, tmp_path):
    from tests.conftest import _empty_tables

    engine = make_engine(postgres_database)
    _empty_tables(engine)
    engine.dispose()
    app = create_app({
        "DATABASE_URL": postgres_database, "REDIS_URL": redis_url, "INSTANCE_DIR": str(tmp_path),
        "SECRET_KEY": "t", "BACKGROUND_INTERVAL": 0, "BLOOM_CAPACITY": 100_000, "BLOOM_SHARDS": 2,
        "RATELIMIT_VERIFY": "100000/minute",
    })
    reg = app.extensions["registry"]
    from registry.institutions.authorities import seed_authorities

    with reg.sessions() as s:
        seed_authorities(s)
        s.commit()
    reg.wait_until_trusted()
    name = make_url(postgres_database).database
    admin = make_engine(postgres_server_url, isolation_level="AUTOCOMMIT")

    def take_down():
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})

    yield app, reg, take_down
    with admin.connect() as c:
        c.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    admin.dispose()
    reg.close()


def test_negatives_answer_and_positives_are_unavailable(pg_app):
    app, reg, take_down = pg_app
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, ["UP-1"])
    client = app.test_client()
    client.get("/api/v1/verify?number=WARMUP")
    take_down()
    negative = client.get("/api/v1/verify?number=NEVER-REGISTERED-1")
    assert negative.status_code == 200 and negative.get_json()["status"] == "not_found"
    positive = client.get("/api/v1/verify?number=UP-1")
    assert positive.status_code == 503
    assert positive.get_json()["error"]["code"] == "unavailable"
    page = client.get("/verify?number=UP-1")
    assert page.status_code == 503 and b"Traceback" not in page.data
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["parts"]["database"]["status"] == "down"


def test_positives_survive_a_dropped_connection(pg_app, postgres_server_url):
    """Verification keeps one connection per thread (no pool checkout, no ping); when the server
    dropped it, the lookup reconnects once instead of answering 503."""
    app, reg, _ = pg_app
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, ["RECONNECT-1"])
    client = app.test_client()
    assert client.get("/api/v1/verify?number=RECONNECT-1").get_json()["status"] == "found"
    name = make_url(reg.engine.url).database
    admin = make_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        dropped = c.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name}).scalar()
    admin.dispose()
    assert dropped >= 1
    again = client.get("/api/v1/verify?number=RECONNECT-1")
    assert again.status_code == 200 and again.get_json()["status"] == "found"
