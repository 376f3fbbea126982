"""Drill (l): a Redis failover that Sentinel carries out, followed through ``REDIS_SENTINELS``.

A primary, a replica and a Sentinel of the drill's own (``redis-server --sentinel``, free ports;
never the shared Redis on 6379). The registry is given the Sentinel and the master's name, not an
address. Under a verify load the primary is SIGKILLed after the replica acknowledged everything
(``WAIT``); the Sentinel promotes the replica, the web workers, the rate limiter and the CLI
reconnect through the Sentinel to it, and: no registered number is answered ``not_found``, the
verify rate-limit counts go on from where they were acknowledged (not from zero), and a batch
registered after the promotion is found.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from tests.faults.conftest import Load, RedisServer, all_correct, wait_until

pytestmark = pytest.mark.slow

MASTER = "rnr"
#: Sentinel's down-after (1 s) and its election, plus the client's timeouts, on a busy machine
BOUND = 0.5 + 1.5


class SentinelServer(RedisServer):
    """``redis-server sentinel.conf --sentinel`` on a free port, monitoring ``primary`` as ``rnr``
    (quorum 1, down after 1 s). The config file is its own: Sentinel rewrites it."""

    def __init__(self, root: Path, primary: RedisServer) -> None:
        super().__init__(root)
        self.config = root / "sentinel.conf"
        self.config.write_text(
            f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
            f"sentinel parallel-syncs {MASTER} 1\n")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", str(self.config), "--sentinel", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.root), "--daemonize", "no", "--logfile", str(self.root / "sentinel.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            wait_until(lambda: _pings(client), 20, interval=0.05, what="the Sentinel up")
        finally:
            client.close()


class SentinelSetup:
    """The drill's primary, replica and one Sentinel monitoring them."""

    def __init__(self, root: Path) -> None:
        for name in ("a", "b", "s"):
            (root / name).mkdir()
        self.primary = RedisServer(root / "a")
        self.primary.start()
        self.replica = RedisServer(root / "b", extra=("--replicaof", "127.0.0.1", str(self.primary.port)))
        self.replica.start()
        self.on_primary = redis.Redis(port=self.primary.port, socket_timeout=2)
        self.on_replica = redis.Redis(port=self.replica.port, socket_timeout=2)
        wait_until(lambda: self.on_replica.info("replication").get("master_link_status") == "up", 30,
                   what="the replica linked")
        self.sentinel = SentinelServer(root / "s", self.primary)
        self.sentinel.start()
        self.on_sentinel = redis.Redis(port=self.sentinel.port, socket_timeout=2)
        wait_until(lambda: self.on_sentinel.sentinel_slaves(MASTER), 30, what="the Sentinel sees the replica")

    def master_port(self) -> int:
        return int(self.on_sentinel.sentinel_get_master_addr_by_name(MASTER)[1])

    def close(self) -> None:
        for client in (self.on_primary, self.on_replica, self.on_sentinel):
            client.close()
        for server in (self.sentinel, self.replica, self.primary):
            server.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


def _verify_counts(client: redis.Redis) -> int:
    """The sum of every verify rate-limit count on ``client``'s server."""
    return sum(int(client.get(key) or 0) for key in client.scan_iter("rnr:rl:verify*"))


@pytest.fixture
def sentinel_setup(drill, tmp_path):
    setup = SentinelSetup(tmp_path)
    drill.env.update({"REDIS_URL": "", "REDIS_SENTINELS": f"127.0.0.1:{setup.sentinel.port}",
                      "REDIS_SENTINEL_MASTER": MASTER,
                      # a day's window: no count expires during the drill, so a lower count is a loss
                      "RATELIMIT_VERIFY": "10000000/day"})
    yield setup
    setup.close()


def test_sentinel_failover_is_followed(drill, sentinel_setup):
    setup = sentinel_setup
    uscc = drill.institution()
    older = [f"RSN-A-{i:05d}" for i in range(300)]
    done = drill.import_numbers(drill.number_file("older.txt", older), uscc)
    assert done.returncode == 0, done.stderr
    assert setup.on_primary.get("rnr:bloom:current") is not None  # the CLI wrote to the Sentinel's master
    server = drill.gunicorn(workers=2)
    assert all_correct(server, older[:20], [f"NEVERRSN-{i}" for i in range(20)], rounds=1)

    registered = older[:100]
    absent = [f"NEVERRSN-{i:05d}" for i in range(100)]
    with Load(server, registered, absent) as load:
        load.wait_answers("before", 60)
        assert _verify_counts(setup.on_primary) > 0
        load.phase = "failover"
        # what the primary acknowledged, then held by the replica too, then the primary gone
        acknowledged = _verify_counts(setup.on_primary)
        assert setup.on_primary.execute_command("WAIT", 1, 5000) == 1
        old_port = setup.primary.port
        setup.primary.stop()
        wait_until(lambda: setup.master_port() == setup.replica.port, 60, what="the Sentinel promoted the replica")
        promoted = _verify_counts(setup.on_replica)
        assert promoted >= acknowledged  # nothing acknowledged was lost
        load.phase = "after"
        load.wait_answers("after", 60, timeout=60)
        # the workers count on the promoted replica again (not on their hosts)
        wait_until(lambda: _verify_counts(setup.on_replica) > promoted, 30, what="counts going on")
    figures = load.check(bound=BOUND)
    assert setup.master_port() != old_port
    assert all_correct(server, older, absent, rounds=1)

    newer = [f"RSN-B-{i:05d}" for i in range(300)]
    done = drill.import_numbers(drill.number_file("newer.txt", newer), uscc)
    assert done.returncode == 0, done.stderr
    assert all_correct(server, newer, absent[:20], rounds=1)
    assert drill.integrity()["numbers"] == 600
    print(f"\ndrill (l): {figures}; verify counts acknowledged {acknowledged}, on the promoted replica "
          f"{promoted}, at the end {_verify_counts(setup.on_replica)}")

