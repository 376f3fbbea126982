"""Drill (k): a Redis failover that loses the newest bits (docs/faults.md).

A primary and a replica of the drill's own, behind one address (a forwarder standing for a
managed Redis endpoint or a virtual IP that follows the promotion). The replica is cut off from
the primary (its replication user disabled), a batch is registered on the primary alone, then the
primary is SIGKILLed, the replica promoted (``REPLICAOF NO ONE``) and the address pointed at it.
The registry must notice that the marker is behind the newest batch, answer from the database
meanwhile, rebuild, and never answer a registered number ``not_found``.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import redis

from bench.common import free_port
from tests.faults.conftest import Load, RedisServer, all_correct, wait_until

pytestmark = pytest.mark.slow

#: the Redis client's socket timeout (workflows/services.py) plus a margin for a busy machine
BOUND = 0.5 + 1.5
REPLICATION_USER = ("repl", "drill-replication-secret")


class Forwarder:
    """A TCP address in front of one Redis server; ``point_at`` switches it to another and closes
    every connection made so far (as an endpoint that follows a failover does)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def point_at(self, port: int) -> None:
        with self._lock:
            self.target = port
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._open = []

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.point_at(self.target)


def _replication(client: redis.Redis) -> dict:
    return client.info("replication")


class Pair:
    """The drill's Redis primary and replica, and the address in front (the drill's REDIS_URL)."""

    def __init__(self, root: Path) -> None:
        user, secret = REPLICATION_USER
        (root / "a").mkdir()
        (root / "b").mkdir()
        self.primary = RedisServer(root / "a", extra=("--user", user, "on", f">{secret}", "~*", "&*", "+@all"))
        self.primary.start()
        self.replica = RedisServer(root / "b", extra=("--replicaof", "127.0.0.1", str(self.primary.port),
                                                      "--masteruser", user, "--masterauth", secret))
        self.replica.start()
        self.forwarder = Forwarder(self.primary.port)
        self.on_primary = redis.Redis(port=self.primary.port, socket_timeout=2)
        self.on_replica = redis.Redis(port=self.replica.port, socket_timeout=2)
        self.url = f"redis://127.0.0.1:{self.forwarder.port}/0"

    def cut_off(self) -> None:
        """The replica stops receiving: its replication user disabled, its link killed."""
        wait_until(lambda: _replication(self.on_replica).get("master_link_status") == "up", 30, what="link up")
        self.on_primary.execute_command("ACL", "SETUSER", REPLICATION_USER[0], "off")
        self.on_primary.execute_command("CLIENT", "KILL", "USER", REPLICATION_USER[0])
        wait_until(lambda: _replication(self.on_replica).get("master_link_status") == "down", 10,
                   what="link down")

    def fail_over(self) -> None:
        """The primary killed (what the replica had not got is gone), the replica promoted, the
        address moved to it (every connection made so far closed)."""
        self.primary.stop()
        self.on_replica.execute_command("REPLICAOF", "NO", "ONE")
        self.forwarder.point_at(self.replica.port)

    def close(self) -> None:
        self.forwarder.close()
        self.on_primary.close()
        self.on_replica.close()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture
def redis_pair(drill, tmp_path):
    pair = Pair(tmp_path)
    drill.env["REDIS_URL"] = pair.url
    yield pair
    pair.close()


def test_redis_failover_that_lost_the_newest_bits(drill, redis_pair):
    pair = redis_pair
    on_primary, on_replica = pair.on_primary, pair.on_replica
    uscc = drill.institution()
    older = [f"RFO-A-{i:05d}" for i in range(300)]
    assert drill.import_numbers(drill.number_file("older.txt", older), uscc).returncode == 0
    server = drill.gunicorn(workers=2)
    assert all_correct(server, older[:20], [f"NEVERRFO-{i}" for i in range(20)], rounds=1)
    wait_until(lambda: _replication(on_replica).get("master_link_status") == "up"
               and on_replica.get("rnr:bloom:current") is not None
               and _replication(on_replica)["slave_repl_offset"] == _replication(on_primary)["master_repl_offset"],
               30, what="the replica in step with the primary")

    pair.cut_off()

    newer = [f"RFO-B-{i:05d}" for i in range(300)]
    assert drill.import_numbers(drill.number_file("newer.txt", newer), uscc).returncode == 0
    newest = drill.scalar("SELECT max(id) FROM batches")
    generation = _generation(on_primary)
    marker_key = f"rnr:bloom:g{generation}:marker"
    assert int(on_primary.get(marker_key)) == newest
    assert int(on_replica.get(marker_key)) < newest  # the replica missed the newest batch's bits
    assert all_correct(server, newer[:20], [], rounds=1)

    registered = older[:60] + newer[:60]
    absent = [f"NEVERRFO-{i:05d}" for i in range(120)]
    with Load(server, registered, absent) as load:
        load.wait_answers("before", 40)
        load.phase = "failover"
        pair.fail_over()
        load.wait_answers("failover", 40)
        load.phase = "after"
        # the workers see the marker behind the newest batch, answer from the database, rebuild
        wait_until(lambda: int(on_replica.get(f"rnr:bloom:g{_generation(on_replica)}:marker") or 0) >= newest
                   and _generation(on_replica) != generation, 30, what="a rebuilt generation on the new primary")
        wait_until(lambda: all_correct(server, newer[:30], absent[:30], rounds=1), 30, what="all answers right")
        load.wait_answers("after", 40)
    figures = load.check(bound=BOUND)
    log = server.log.read_text()
    assert f"behind newest batch {newest}" in log and "Bloom index rebuilt" in log, log[-3000:]
    assert all_correct(server, older + newer, absent, rounds=1)
    assert drill.integrity()["numbers"] == 600
    print(f"\ndrill (k): {figures}")


def _generation(client: redis.Redis) -> int:
    raw = client.get("rnr:bloom:current")
    return int(json.loads(raw)["generation"]) if raw else 0


def test_a_new_lookup_connection_to_another_server_is_refused(drill, redis_pair):
    """In one process: after the address moved to a server that lacks the newest bits, a thread's
    first lookup connection reaches that server before any marker check has run — its run_id is
    not the checked one, so the probe is refused and the database answers, never not_found."""
    from portal import create_app

    pair = redis_pair
    app = create_app({**_config(drill), "REDIS_URL": drill.env["REDIS_URL"]})
    reg = app.extensions["registry"]
    try:
        assert reg.wait_until_trusted()
        uscc = drill.institution()
        pair.cut_off()
        numbers = [f"RFN-{i:04d}" for i in range(50)]
        done = drill.import_numbers(drill.number_file("rfn.txt", numbers), uscc)
        assert done.returncode == 0, done.stderr
        reg.refresh(auto_rebuild=False)
        assert reg.verifier.verify(numbers[0]).status == "found"
        assert reg.bloom.status()["mode"] == "bloom"

        pair.fail_over()
        assert reg.bloom.status()["mode"] == "bloom"  # no check has run since: still trusted
        seen = []
        thread = threading.Thread(target=lambda: seen.append(reg.verifier.verify(numbers[1])))
        thread.start()
        thread.join(30)
        assert seen and seen[0].status == "found" and seen[0].source == "database", seen
        assert reg.bloom.status()["mode"] == "database"
        reg.refresh(auto_rebuild=False)
        assert reg.bloom.needs_rebuild and "behind newest batch" in reg.bloom.status()["reason"]
        reg.start_rebuild(wait=True)
        assert reg.bloom.status()["mode"] == "bloom"
        assert all(reg.verifier.verify(n).status == "found" for n in numbers)
    finally:
        reg.close()


def _config(drill) -> dict:
    keys = ("DATABASE_URL", "INSTANCE_DIR", "SECRET_KEY", "AUDIT_KEY", "BLOOM_CAPACITY", "BLOOM_SHARDS",
            "RATELIMIT_VERIFY")
    return {**{k: drill.env[k] for k in keys}, "BACKGROUND_INTERVAL": 0, "TESTING": True,
            "INSTANCE_DIR": str(Path(drill.env["INSTANCE_DIR"]).parent / "in-process")}
