"""Settings come from the environment in one function; the factory builds an app from them."""
from pathlib import Path

import pytest

from portal import create_app
from registry.infra.settings import finish_settings, load_settings


def test_embedded_defaults():
    s = finish_settings(load_settings({"INSTANCE_DIR": "/tmp/rnr-settings-test"}))
    assert s["DATABASE_URL"] == "sqlite:////tmp/rnr-settings-test/registry.db"
    assert s["REDIS_URL"] == ""
    assert s["FILES_DIR"] == "/tmp/rnr-settings-test/files"
    assert s["RATELIMIT_VERIFY"] == "30/minute;500/day"
    assert s["RATELIMIT_COMPLAINT"] == "5/hour"
    assert s["BLOOM_ERROR_RATE"] == 0.001
    assert s["TRUSTED_PROXIES"] == 0
    assert len(s["SECRET_KEY"]) >= 32
    # the generated key is kept, so every process of the instance agrees on it
    assert finish_settings(load_settings({"INSTANCE_DIR": "/tmp/rnr-settings-test"}))["SECRET_KEY"] == s["SECRET_KEY"]


def test_environment_overrides_with_types():
    s = load_settings({"DATABASE_URL": "postgresql+psycopg://x@h/db", "REDIS_URL": "redis://h:6379/0",
                       "BLOOM_CAPACITY": "5000", "BLOOM_ERROR_RATE": "0.0001", "TRUSTED_PROXIES": "2"})
    assert (s["BLOOM_CAPACITY"], s["BLOOM_ERROR_RATE"], s["TRUSTED_PROXIES"]) == (5000, 0.0001, 2)
    assert s["REDIS_URL"] == "redis://h:6379/0"
    seed = "A" * 43 + "="  # 32 bytes in base64: the snapshot's signing key as a seed
    assert load_settings({"SNAPSHOT_SIGNING_KEY": seed})["SNAPSHOT_SIGNING_KEY"] == seed


def test_read_replicas_are_a_list_of_postgresql_urls():
    assert load_settings({})["DATABASE_REPLICA_URLS"] == []
    assert load_settings({})["REPLICA_MAX_LAG_SECONDS"] == 2.0
    s = load_settings({"DATABASE_REPLICA_URLS": " postgresql+psycopg://r@a/db, ,postgresql+psycopg://r@b/db ",
                       "REPLICA_MAX_LAG_SECONDS": "0.5"})
    assert s["DATABASE_REPLICA_URLS"] == ["postgresql+psycopg://r@a/db", "postgresql+psycopg://r@b/db"]
    assert s["REPLICA_MAX_LAG_SECONDS"] == 0.5


def test_redis_sentinels_are_host_port_pairs_and_need_the_master_name(tmp_path):
    from portal import _ratelimit_storage

    s = load_settings({"REDIS_SENTINELS": " s1:26379, ,10.0.0.2:26380 ", "REDIS_SENTINEL_MASTER": "rnr",
                       "REDIS_URL": "redis://:secret@rnr/4", "INSTANCE_DIR": str(tmp_path)})
    assert s["REDIS_SENTINELS"] == [("s1", 26379), ("10.0.0.2", 26380)]
    assert finish_settings(s)["REDIS_URL"] == "redis://:secret@rnr/4"
    storage = _ratelimit_storage(s)
    assert storage["RATELIMIT_STORAGE_URI"] == "redis+sentinel://s1:26379,10.0.0.2:26380/rnr"
    assert storage["RATELIMIT_STORAGE_OPTIONS"]["db"] == 4 and storage["RATELIMIT_STORAGE_OPTIONS"]["password"] == "secret"
    # without REDIS_URL: database 0, no password
    bare = finish_settings(load_settings({"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "rnr",
                                          "INSTANCE_DIR": str(tmp_path)}))
    assert bare["REDIS_URL"] == "redis://rnr/0"
    with pytest.raises(ValueError, match="REDIS_SENTINEL_MASTER"):
        finish_settings(load_settings({"REDIS_SENTINELS": "s1:26379", "INSTANCE_DIR": str(tmp_path)}))


def test_rq_worker_settings_follow_the_sentinels(monkeypatch):
    """``rq worker -c workflows.rq_settings``: RQ's own SENTINEL setting, from the registry's."""
    import importlib

    from rq.cli.helpers import get_redis_from_config

    import workflows.rq_settings

    monkeypatch.setenv("REDIS_SENTINELS", "127.0.0.1:26379")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "rnr")
    monkeypatch.setenv("REDIS_URL", "redis://:secret@rnr/2")
    settings = vars(importlib.reload(workflows.rq_settings))
    client = get_redis_from_config(settings)
    assert client.connection_pool.service_name == "rnr"
    assert client.connection_pool.connection_kwargs["db"] == 2
    monkeypatch.delenv("REDIS_SENTINELS")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6399/5")
    settings = vars(importlib.reload(workflows.rq_settings))
    assert settings["SENTINEL"] is None and settings["REDIS_URL"] == "redis://127.0.0.1:6399/5"


@pytest.mark.parametrize("env", [{"BLOOM_CAPACITY": "lots"}, {"BLOOM_ERROR_RATE": "0"}, {"TRUSTED_PROXIES": "x"},
                                 {"QUERY_LOG_DAYS": "0"}, {"COMPLAINT_CONTACT_DAYS": "three years"},
                                 {"DATABASE_REPLICA_URLS": "sqlite:///replica.db"},
                                 {"REPLICA_MAX_LAG_SECONDS": "0"}, {"REPLICA_MAX_LAG_SECONDS": "soon"},
                                 {"SNAPSHOT_SIGNING_KEY": "not-a-key"}, {"SNAPSHOT_SIGNING_KEY": "AAAA"},
                                 {"REDIS_SENTINELS": "s1"}, {"REDIS_SENTINELS": "s1:port"}])
def test_bad_settings_are_named(env):
    with pytest.raises(ValueError, match=next(iter(env))):
        load_settings(env)


def test_factory_uses_given_config(stack):
    app = create_app(stack)
    try:
        assert app.config["DATABASE_URL"] == stack["DATABASE_URL"]
        assert set(app.blueprints) >= {"public", "api", "health"}
        # without Redis, limits are counted once per host (a file every worker maps), not per worker
        assert app.config["RATELIMIT_STORAGE_URI"] == (
            stack["REDIS_URL"] or f"hostfile://{Path(app.config['INSTANCE_DIR']) / 'ratelimit-pages.bin'}")
    finally:
        app.extensions["registry"].close()


def test_wsgi_is_one_line():
    source = (Path(__file__).resolve().parents[2] / "wsgi.py").read_text().strip().splitlines()
    assert [line for line in source if line.strip()] == ["from portal import create_app", "app = create_app()"]


def test_registry_is_flask_free():
    root = Path(__file__).resolve().parents[2] / "registry"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import flask" not in text and "from flask" not in text and "from portal" not in text, path


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    body = client.get("/readyz").get_json()
    assert body["status"] == "ok", body
    assert {"database", "bloom", "directory"} <= set(body["parts"])


def test_readiness_is_503_when_database_is_down(tmp_path):
    app = create_app({"INSTANCE_DIR": str(tmp_path), "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
                      "REDIS_URL": "", "SECRET_KEY": "x", "BACKGROUND_INTERVAL": 0})
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["parts"]["database"]["status"] == "down"
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        app.extensions["registry"].close()


def test_readiness_names_the_failing_part_not_where_the_database_is(tmp_path):
    app = create_app({"INSTANCE_DIR": str(tmp_path), "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/hidden_db",
                      "REDIS_URL": "", "SECRET_KEY": "x", "BACKGROUND_INTERVAL": 0})
    try:
        app.extensions["registry"].refresh()
        body = app.test_client().get("/readyz").get_data(as_text=True)
        assert "database" in body and "OperationalError" in body
        for secret in ("127.0.0.1", "port 1", "hidden_db", "nobody", "psycopg"):
            assert secret not in body
    finally:
        app.extensions["registry"].close()


def test_day_counts_are_whole_days_and_the_replica_lag_may_be_a_fraction():
    from registry.infra.settings import load_settings

    settings = load_settings({"QUERY_LOG_DAYS": "30", "COMPLAINT_CONTACT_DAYS": "400", "BACKUP_KEEP_DAYS": "7",
                                          "REPLICA_MAX_LAG_SECONDS": "0.5"})
    assert (settings["QUERY_LOG_DAYS"], settings["COMPLAINT_CONTACT_DAYS"], settings["BACKUP_KEEP_DAYS"]) == (30, 400, 7)
    assert all(type(settings[name]) is int for name in ("QUERY_LOG_DAYS", "COMPLAINT_CONTACT_DAYS", "BACKUP_KEEP_DAYS"))
    assert settings["REPLICA_MAX_LAG_SECONDS"] == 0.5
