"""When the database is down, negatives keep answering from the Bloom index; positives are 503 —
also in a worker started during the outage (docs/architecture.md, "No false negatives", 6)."""
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from portal import create_app
from registry.infra.db import make_engine
from tests.builders import make_institution, register


def _config(database_url: str, redis_url: str, tmp_path) -> dict:
    return {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "INSTANCE_DIR": str(tmp_path),
        "SECRET_KEY": "t", "BACKGROUND_INTERVAL": 0, "BLOOM_CAPACITY": 100_000, "BLOOM_SHARDS": 2,
        "RATELIMIT_VERIFY": "100000/minute",
    }


@pytest.fixture(params=["redis", "local"])
def bloom_store(request):
    return request.getfixturevalue("redis_url") if request.param == "redis" else ""


@pytest.fixture
def pg_app(postgres_database, bloom_store, postgres_server_url, tmp_path):
    from tests.conftest import _empty_tables

    engine = make_engine(postgres_database)
    _empty_tables(engine)
    engine.dispose()
    app = create_app(_config(postgres_database, bloom_store, tmp_path))
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


def test_worker_started_during_the_outage_answers_negatives(pg_app, postgres_database, bloom_store, tmp_path,
                                                           postgres_server_url):
    """A worker (re)started while the database is down (gunicorn's max-requests, a crash) trusts
    its index without the database where the store cannot have lost writes — shard files on the
    host, or the Redis whose run_id a database-backed check recorded — and so answers negatives.
    Positives, and anything needing the institution directory, are 503 until the database is back."""
    app, reg, take_down = pg_app
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, ["OUT-1", "OUT-2"])
    reg.refresh()  # the running worker's database-backed marker check
    take_down()

    restarted = create_app(_config(postgres_database, bloom_store, tmp_path))
    try:
        client = restarted.test_client()
        negative = client.get("/api/v1/verify?number=NEVER-REGISTERED-2")
        assert negative.status_code == 200
        assert negative.get_json()["status"] == "not_found" and negative.get_json()["institution"] is None
        for number in ("OUT-1", "OUT-2"):
            positive = client.get(f"/api/v1/verify?number={number}")
            assert positive.status_code == 503 and positive.get_json()["error"]["code"] == "unavailable"
        # resolving an institution needs the directory, which never loaded: 503, not a wrong verdict
        named = client.get(f"/api/v1/verify?number=NEVER-REGISTERED-3&institution={lab.uscc}")
        assert named.status_code == 503 and named.get_json()["error"]["code"] == "unavailable"
        page = client.get(f"/verify?number=NEVER-REGISTERED-3&institution={lab.uscc}")
        assert page.status_code == 503 and b"Traceback" not in page.data
        page = client.get("/verify?number=NEVER-REGISTERED-4")
        assert page.status_code == 200
        ready = client.get("/readyz").get_json()
        assert ready["parts"]["bloom"]["mode"] == "bloom" and ready["parts"]["directory"]["status"] == "degraded"

        _bring_back(postgres_server_url, postgres_database)
        restarted.extensions["registry"].refresh()  # the next round of its upkeep loop
        assert client.get("/api/v1/verify?number=OUT-1").get_json()["status"] == "found"
        named = client.get(f"/api/v1/verify?number=NEVER-REGISTERED-3&institution={lab.uscc}")
        assert named.status_code == 200 and named.get_json()["institution_resolved"] is True
    finally:
        restarted.extensions["registry"].close()


@pytest.mark.parametrize("bloom_store", ["redis"], indirect=True)
def test_worker_started_during_the_outage_distrusts_a_restarted_redis(pg_app, postgres_database, bloom_store,
                                                                      tmp_path):
    """The run_id recorded by the last database-backed check is not this Redis's (it restarted, or
    was restored from an older snapshot): every verification needs the database, so 503."""
    import json

    import redis

    app, reg, take_down = pg_app
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, ["OUT-3"])
    reg.refresh()
    client_redis = redis.Redis.from_url(bloom_store)
    for key in client_redis.scan_iter("rnr:bloom:g*:checked"):
        record = json.loads(client_redis.get(key))
        client_redis.set(key, json.dumps(record | {"run_id": "f" * 40}))
    client_redis.close()
    take_down()
    restarted = create_app(_config(postgres_database, bloom_store, tmp_path))
    try:
        client = restarted.test_client()
        for number in ("NEVER-REGISTERED-5", "OUT-3"):
            answer = client.get(f"/api/v1/verify?number={number}")
            assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "unavailable"
    finally:
        restarted.extensions["registry"].close()


def _bring_back(server_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    admin.dispose()
