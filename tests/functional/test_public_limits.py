"""Rate limits on the public pages and the API, and what happens when Redis is down."""
from __future__ import annotations

import pytest

from portal import create_app
from tests.builders import make_institution, register


def _app(config):
    app = create_app(config)
    app.extensions["registry"].wait_until_trusted(timeout=5)
    return app


@pytest.fixture
def limited_app(stack):
    app = _app({**stack, "RATELIMIT_VERIFY": "2/minute", "RATELIMIT_COMPLAINT": "1/hour"})
    yield app
    app.extensions["registry"].close()


def test_429_page_in_chinese_says_how_long_to_wait(limited_app):
    client = limited_app.test_client()
    for _ in range(2):
        assert client.get("/verify?number=RL-1").status_code == 200
    response = client.get("/verify?number=RL-1")
    html = response.get_data(as_text=True)
    assert response.status_code == 429
    assert "查询过于频繁，请稍后再试。" in html
    retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert f"请在 {retry} 秒后重试。" in html
    assert response.headers["X-RateLimit-Limit"] == "2"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Reset" in response.headers
    html = client.get("/verify?number=RL-1&lang=en").get_data(as_text=True)
    assert "Too many requests" in html and "Please try again in" in html


def test_429_json_on_the_api(limited_app):
    client = limited_app.test_client()
    for _ in range(2):
        ok = client.get("/api/v1/verify?number=RL-1")
        assert ok.status_code == 200 and ok.headers["X-RateLimit-Remaining"] in ("1", "0")
    response = client.get("/api/v1/verify?number=RL-1")
    assert response.status_code == 429
    body = response.get_json()
    assert body["error"]["code"] == "rate_limited" and body["error"]["message"]
    assert isinstance(body["retry_after"], int) and 1 <= body["retry_after"] <= 60
    assert response.headers["Retry-After"] == str(body["retry_after"])
    assert response.headers["X-RateLimit-Limit"] == "2"
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_health_endpoints_are_exempt(limited_app):
    client = limited_app.test_client()
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_complaint_submissions_are_limited(limited_app):
    import re

    client = limited_app.test_client()
    form = client.get("/complaints/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    first = client.post("/complaints", data={"csrf_token": token})
    assert first.status_code == 400  # counted, refused (nothing filled in)
    response = client.post("/complaints", data={"csrf_token": token})
    assert response.status_code == 429
    assert "X-RateLimit-Limit" in response.headers and "Retry-After" in response.headers
    html = response.get_data(as_text=True)
    assert "分钟后重试" in html  # an hour's limit is said in minutes


def test_clients_are_keyed_by_their_own_address_not_forwarded_for(limited_app):
    client = limited_app.test_client()
    for i in range(2):
        client.get("/verify?number=RL-2", headers={"X-Forwarded-For": f"10.0.0.{i}"})
    # TRUSTED_PROXIES is 0: a client's own X-Forwarded-For is not believed
    assert client.get("/verify?number=RL-2", headers={"X-Forwarded-For": "10.0.0.99"}).status_code == 429


def test_redis_down_verification_still_answers_and_limits_fall_back_to_memory(tmp_path, request):
    """REDIS_URL points at a closed port: answers come from the database, limits from memory."""
    from tests.conftest import database_url_for

    config = {
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "FILES_DIR": str(tmp_path / "instance" / "files"),
        "SECRET_KEY": "test-secret",
        "BLOOM_CAPACITY": 200_000,
        "BLOOM_SHARDS": 4,
        "TESTING": True,
        "BACKGROUND_INTERVAL": 0,
        "DATABASE_URL": database_url_for("sqlite", request, tmp_path),
        "REDIS_URL": "redis://127.0.0.1:6390/15",
        "RATELIMIT_VERIFY": "3/minute",
    }
    # numbers registered while everything was up (SQLite + local shards) ...
    healthy = _app({**config, "REDIS_URL": ""})
    with healthy.extensions["registry"].sessions() as session:
        lab = make_institution(session, name="离线检测中心")
        session.expunge(lab)
    healthy.extensions["registry"].refresh()
    register(healthy.extensions["registry"], lab, ["DOWN-1"])
    healthy.extensions["registry"].close()
    # ... then served by an app whose Redis is unreachable
    app = create_app(config)
    reg = app.extensions["registry"]
    try:
        reg.refresh()
        client = app.test_client()
        found = client.get("/api/v1/verify?number=DOWN-1")
        assert found.status_code == 200 and found.get_json()["status"] == "found"
        html = client.get("/verify?number=DOWN-1").get_data(as_text=True)
        assert 'data-status="found"' in html and "离线检测中心" in html
        missing = client.get("/verify?number=DOWN-404").get_data(as_text=True)
        assert 'data-status="not_found"' in missing  # from the database, never a guess
        limited = client.get("/verify?number=DOWN-1")
        assert limited.status_code == 429  # the fourth in a minute: the in-memory fallback counts
        assert "X-RateLimit-Limit" in limited.headers
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.get_json()
        assert body["status"] == "degraded" and "redis" in body["degraded"]
    finally:
        reg.close()


@pytest.mark.parametrize("path", ["/api/v1/verify?number=RL-9", "/verify?number=RL-9", "/v/{uscc}/RL-9"])
def test_a_refused_verification_looks_nothing_up_and_logs_nothing(limited_app, path):
    from tests.sql_counting import count_sql

    reg = limited_app.extensions["registry"]
    with reg.sessions() as session:
        lab = make_institution(session, name="限流检测中心")
        session.expunge(lab)
    register(reg, lab, ["RL-9"])
    path = path.format(uscc=lab.uscc)
    client = limited_app.test_client()
    for _ in range(2):
        assert client.get(path).status_code == 200
    logged = len(reg.query_log)
    with count_sql(reg) as statements:
        refused = client.get(path)
    assert refused.status_code == 429
    assert statements == []  # a registered number, yet the database was not asked
    assert len(reg.query_log) == logged


@pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)
def test_the_rate_limit_count_travels_with_the_bloom_probe(limited_app):
    """One Redis exchange per verification: the count rides with the probe."""
    reg = limited_app.extensions["registry"]
    client = limited_app.test_client()
    assert client.get("/api/v1/verify?number=RL-WARM").status_code == 200  # connected
    conn = reg.hot_redis.connection()
    writes = []
    send = conn.send_packed_command
    conn.send_packed_command = lambda *a, **k: (writes.append(a), send(*a, **k))[1]
    response = client.get("/api/v1/verify?number=RL-ABSENT")
    assert response.status_code == 200 and response.get_json()["status"] == "not_found"
    assert response.headers["X-RateLimit-Remaining"] == "0"  # the second of two: counted
    assert len(writes) == 1
    assert b"INCR" in writes[0][0][0] and b"BITFIELD_RO" in writes[0][0][0]


def test_the_embedded_limits_are_shared_by_every_worker_of_the_host(tmp_path):
    """Without Redis, 5/minute means 5 for the host, not 5 per gunicorn worker: the verify budget
    and the limits Flask-Limiter keeps (here the institution suggestions) alike."""
    import os
    import subprocess
    import time
    import sys
    import urllib.error
    import urllib.request
    from pathlib import Path

    from bench.common import free_port, wait_http

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "INSTANCE_DIR": str(tmp_path / "instance"), "DATABASE_URL": "", "REDIS_URL": "",
           "SECRET_KEY": "t", "RATELIMIT_VERIFY": "5/minute", "RATELIMIT_SUGGEST": "4/minute",
           "BACKGROUND_INTERVAL": "0"}
    subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "init-db"], cwd=root, env=env,
                   check=True, capture_output=True)
    port = free_port()
    log = tmp_path / "access.log"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--preload", "-w", "3", "-b", f"127.0.0.1:{port}",
         "--access-logfile", str(log), "--access-logformat", "%(p)s %(s)s", "wsgi:app"],
        cwd=root, env=env, stderr=subprocess.DEVNULL)
    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        # every worker forked and waiting before the counted requests (answered by the first one
        # alone, they proved nothing about sharing, and the test said so only by chance)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
        deadline = time.monotonic() + 30
        while len(children.read_text().split()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        verified = [status(f"/api/v1/verify?number=HOST-{i}") for i in range(12)]
        suggested = [status(f"/api/v1/institutions/suggest?q=lab{i}") for i in range(10)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert verified == [200] * 5 + [429] * 7
    assert suggested == [200] * 4 + [429] * 6
    workers = {line.split()[0] for line in log.read_text().splitlines() if line.split()[1] in ("200", "429")}
    assert len(workers) >= 2, "the requests should have reached more than one worker"
