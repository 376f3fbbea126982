"""The per-thread Redis connection of the verify hot path (registry/redisdirect.py)."""
import os
import threading

import pytest
import redis

from registry.infra.redisdirect import DirectRedis


@pytest.fixture
def direct(redis_client):
    d = DirectRedis(redis_client)
    yield d
    d.drop()


def test_call_and_pipeline_talk_to_the_clients_database(direct, redis_client):
    redis_client.set("k", "v")
    assert direct.call("GET", "k") == b"v"
    assert direct.pipeline([("INCR", "n"), ("EXPIRE", "n", 60, "NX"), ("PTTL", "n")])[0] == 1
    assert 0 < redis_client.pttl("n") <= 60_000


def test_an_error_reply_drops_the_connection_and_the_next_call_is_clean(direct, redis_client):
    redis_client.set("s", "text")
    with pytest.raises(redis.ResponseError):
        direct.pipeline([("INCR", "s"), ("GET", "s")])  # the second reply must not leak into the next call
    assert direct.call("GET", "s") == b"text"


def test_a_killed_connection_raises_once_then_reconnects(direct, redis_client):
    direct.call("CLIENT", "SETNAME", "direct-under-test")
    ids = [c["id"] for c in redis_client.client_list() if c.get("name") == "direct-under-test"]
    redis_client.client_kill_filter(_id=ids[0])
    with pytest.raises(redis.ConnectionError):
        direct.call("PING")
    assert direct.call("PING") in (b"PONG", True, "PONG")


def test_each_thread_has_its_own_connection(direct):
    seen = []

    def name():
        seen.append(direct.call("CLIENT", "ID"))

    threads = [threading.Thread(target=name) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    name()
    assert len(set(seen)) == 4


def test_a_forked_child_connects_afresh(direct):
    parent = direct.call("CLIENT", "ID")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, str(direct.call("CLIENT", "ID")).encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    child = int(os.read(read, 64))
    assert child != parent
    assert direct.call("CLIENT", "ID") == parent  # the parent's connection was left alone


def _count_writes(direct):
    """Count the writes on this thread's connection (one write = one exchange)."""
    direct.call("PING")  # connected: the handshake's writes are not counted
    conn = direct._connection()
    writes = []
    send = conn.send_packed_command

    def counting(*args, **kwargs):
        writes.append(args)
        return send(*args, **kwargs)

    conn.send_packed_command = counting
    return writes


def test_deferred_commands_travel_with_the_next_exchange(direct, redis_client):
    redis_client.set("k", "v")
    writes = _count_writes(direct)
    deferred = direct.defer([("INCR", "hits"), ("PTTL", "hits")])
    assert not deferred.settled
    assert direct.call("GET", "k") == b"v"
    assert len(writes) == 1 and deferred.settled
    assert deferred.replies() == [1, -1]
    assert len(writes) == 1  # already carried: no exchange of its own


def test_deferred_commands_go_on_their_own_when_asked_first(direct):
    writes = _count_writes(direct)
    deferred = direct.defer([("INCR", "alone")])
    assert writes == []
    assert deferred.replies() == [1]
    assert len(writes) == 1
    assert direct.call("GET", "alone") == b"1"  # nothing left over for the next call


def test_an_error_reply_belongs_to_its_own_command(direct, redis_client):
    redis_client.set("s", "text")
    deferred = direct.defer([("INCR", "s")])
    assert direct.call("GET", "s") == b"text"
    with pytest.raises(redis.ResponseError):
        deferred.replies()
    ok = direct.defer([("INCR", "n2")])
    with pytest.raises(redis.ResponseError):
        direct.call("INCR", "s")
    assert ok.replies() == [1]


def test_a_failed_exchange_fails_the_commands_that_travelled_with_it(direct, redis_client):
    direct.call("CLIENT", "SETNAME", "direct-riders")
    ids = [c["id"] for c in redis_client.client_list() if c.get("name") == "direct-riders"]
    redis_client.client_kill_filter(_id=ids[0])
    deferred = direct.defer([("INCR", "lost")])
    with pytest.raises(redis.ConnectionError):
        direct.call("PING")
    with pytest.raises(redis.ConnectionError):
        deferred.replies()
    assert direct.call("PING") in (b"PONG", True, "PONG")
    assert redis_client.get("lost") is None  # sent on a dead socket: never counted, never resent


def test_deferred_commands_wait_on_their_own_thread(direct):
    deferred = direct.defer([("INCR", "mine")])
    other = threading.Thread(target=lambda: direct.call("PING"))
    other.start()
    other.join()
    assert not deferred.settled  # another thread's exchange does not carry them
    assert deferred.replies() == [1]
