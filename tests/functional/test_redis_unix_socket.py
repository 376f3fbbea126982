"""A Redis on the host's own socket (``REDIS_URL=unix:///path/redis.sock?db=N``), as a one-host
deployment connects to it: every Redis user — the Bloom index, the verify edge's exchange, the
pages' limits (the limits library calls the scheme ``redis+unix://``) — works through it."""
import shutil
import subprocess
import time

import pytest

from tests.builders import make_institution, register


@pytest.fixture
def unix_redis(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server")
    socket = tmp_path / "redis.sock"
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not socket.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    yield f"unix://{socket}?db=3"
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)
def test_a_redis_on_a_unix_socket_serves_every_use(stack, unix_redis):
    import redis

    from portal import create_app

    app = create_app({**stack, "REDIS_URL": unix_redis, "RATELIMIT_VERIFY": "5/minute"})
    reg = app.extensions["registry"]
    try:
        assert reg.wait_until_trusted(), reg.bloom.status()
        with reg.sessions() as s:
            lab = make_institution(s, name="上海市产品质量检验所", province="09")
        register(reg, lab, ["SOCK-0001"])
        client = app.test_client()
        found = client.get("/api/v1/verify", query_string={"number": "SOCK-0001"})
        assert found.status_code == 200 and found.json["status"] == "found"
        assert found.headers["X-RateLimit-Remaining"] == "4"
        absent = client.get("/api/v1/verify", query_string={"number": "SOCK-0002"})
        assert absent.json["status"] == "not_found" and absent.headers["X-RateLimit-Remaining"] == "3"
        page = client.get("/verify", query_string={"number": "SOCK-0001"})  # the same budget
        assert page.status_code == 200 and page.headers["X-RateLimit-Remaining"] == "2"
        for _ in range(2):
            client.get("/api/v1/verify", query_string={"number": "SOCK-0001"})
        refused = client.get("/api/v1/verify", query_string={"number": "SOCK-0001"})
        assert refused.status_code == 429 and "Retry-After" in refused.headers
        # the bits and the counts are in that Redis, not elsewhere
        keys = redis.Redis.from_url(unix_redis).keys("*")
        assert any(b"bloom" in k for k in keys) and any(b"verify" in k for k in keys), keys
    finally:
        reg.close()
