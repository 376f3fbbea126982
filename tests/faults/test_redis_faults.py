"""Drill (c): Redis stopped, restarted empty, and hung (SIGSTOP, then SIGCONT) under a verify
load (docs/faults.md)."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest
import redis

from tests.faults.conftest import Load, all_correct, wait_until

pytestmark = pytest.mark.slow

#: the Redis client's socket timeout (workflows/services.py) plus a margin for a busy machine
BOUND = 0.5 + 1.0


def _bloom_parts(server, asks: int = 6) -> list[dict]:
    """The Bloom part of /readyz as several answers (fresh connections: both workers, likely) see it."""
    parts = []
    for _ in range(asks):
        try:
            with urllib.request.urlopen(f"{server.base}/readyz", timeout=10) as r:
                parts.append(json.load(r)["parts"]["bloom"])
        except urllib.error.HTTPError as exc:
            parts.append(json.load(exc)["parts"]["bloom"])
    return parts


def test_redis_stopped_restarted_empty_and_hung(drill):
    uscc = drill.institution()
    registered = [f"RDC-{i:05d}" for i in range(300)]
    done = drill.import_numbers(drill.number_file("rdc.txt", registered), uscc)
    assert done.returncode == 0, done.stderr
    absent = [f"NEVERRDC-{i:05d}" for i in range(300)]
    server = drill.gunicorn(workers=2)
    client = redis.Redis.from_url(drill.env["REDIS_URL"], socket_timeout=2)
    try:
        with Load(server, registered[:60], absent[:60]) as load:
            load.wait_answers("before", 40)

            load.phase = "stopped"
            drill.redis.stop()
            time.sleep(2.0)
            load.wait_answers("stopped", 20)

            load.phase = "restarted-empty"
            drill.redis.start()
            assert client.get("rnr:bloom:current") is None  # nothing survived
            # the workers notice the lost store, go to database mode and rebuild it by themselves
            wait_until(lambda: client.get("rnr:bloom:current") is not None, 30, what="a rebuilt generation")
            wait_until(lambda: all(p["mode"] == "bloom" and not p["rebuilding"] for p in _bloom_parts(server)), 30,
                       what="every worker trusting the rebuilt index")
            assert all_correct(server, registered[:30], absent[:30], rounds=1)

            load.phase = "hung"
            drill.redis.pause()
            time.sleep(3.0)
            load.wait_answers("hung", 20)
            load.phase = "resumed"
            drill.redis.resume()
            wait_until(lambda: all(p["mode"] == "bloom" for p in _bloom_parts(server)), 30,
                       what="the index trusted again after the pause")
            load.wait_answers("resumed", 40)
        figures = load.check(bound=BOUND)
    finally:
        client.close()
    log = server.log.read_text()
    assert "bloom: database mode" in log and "Bloom index rebuilt" in log
    for phase in ("stopped", "restarted-empty", "hung"):
        assert figures.get(phase, {}).get("answers", 0) >= 10, figures
    # the database answered while Redis could not: still right, and never a 503 with it up
    assert all(f["503"] == 0 for f in figures.values()), figures
    assert all_correct(server, registered, absent, rounds=1)
    integrity = drill.integrity()
    assert integrity["numbers"] == 300 and integrity["batches"] == 1
    print(f"\ndrill (c): {figures}")
