"""The per-thread Redis connection of the verify hot path (registry/infra/redisdirect.py)."""
import os
import threading

import pytest
import redis

from registry.infra.redisdirect import DirectRedis, Packed


@pytest.fixture
def direct(redis_client):
    d = DirectRedis(redis_client)
    yield d
    d.drop()


def test_call_and_pipeline_talk_to_the_clients_database(direct, redis_client):
    redis_client.set("k", "v")
    assert direct.call("GET", "k") == b"v"
    assert direct.exchange([("INCR", "n"), ("EXPIRE", "n", 60, "NX"), ("PTTL", "n")])[0] == 1
    assert 0 < redis_client.pttl("n") <= 60_000


def test_a_packed_command_goes_as_it_is_among_the_others(direct, redis_client):
    redis_client.set("p", "v")
    packed = Packed(b"*2\r\n$3\r\nGET\r\n$1\r\np\r\n")
    assert direct.exchange([("SET", "q", "w"), packed, ("GET", "q")]) == [b"OK", b"v", b"w"]


def test_an_error_reply_stays_in_its_place_and_the_next_call_is_clean(direct, redis_client):
    redis_client.set("s", "text")
    replies = direct.exchange([("INCR", "s"), ("GET", "s"), ("INCR", "n3")])
    assert isinstance(replies[0], redis.ResponseError) and replies[1:] == [b"text", 1]
    with pytest.raises(redis.ResponseError):
        direct.call("INCR", "s")
    assert direct.call("GET", "s") == b"text"  # the error's reply did not leak into the next call


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


def test_on_connect_sees_each_new_connection_and_may_refuse_it(direct):
    seen = []

    def refuse(conn):
        seen.append(conn)
        raise redis.ConnectionError("not this server")

    direct.on_connect = refuse
    with pytest.raises(redis.ConnectionError):
        direct.call("PING")
    with pytest.raises(redis.ConnectionError):
        direct.call("PING")  # a refused connection is not kept: the next call connects and asks again
    assert len(seen) == 2
    direct.on_connect = seen.append
    assert direct.call("PING") in (b"PONG", True, "PONG")
    assert direct.call("PING") in (b"PONG", True, "PONG")
    assert len(seen) == 3  # asked once per connection, not per call


class _AddressedOnConnect(redis.Connection):
    """Like redis-py's Sentinel-managed connection: it learns its server's address in connect()."""

    def __init__(self, *, address: tuple[str, int], **kwargs):
        super().__init__(**kwargs)
        self.address = address

    def connect(self):
        self.host, self.port = self.address
        super().connect()


def test_a_connection_that_learns_its_server_in_connect_reaches_that_server(redis_client):
    """Each new connection is connected explicitly, as redis-py's pool connects them: a Sentinel-
    managed connection asks the Sentinels for the primary in connect(), which the lazy connect of
    a first send skips — it then reached the default localhost:6379, and an import's Bloom writes
    went to that server (the Sentinel drill's false negative)."""
    kwargs = redis_client.connection_pool.connection_kwargs
    address = (kwargs.get("host", "localhost"), kwargs.get("port", 6379))
    unusable = {**kwargs, "host": "127.0.0.1", "port": 1}  # nothing listens there
    client = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=_AddressedOnConnect,
                                                              address=address, **unusable))
    direct = DirectRedis(client)
    redis_client.set("addressed", "here")
    try:
        assert direct.call("GET", "addressed") == b"here"
    finally:
        direct.drop()
        client.close()
