"""Drill (j): possible hits answered by a real streaming replica made to lag on purpose
(``pg_wal_replay_pause()``): no false negative, staleness bounded by REPLICA_MAX_LAG_SECONDS
(docs/faults.md, registry/verification/replicas.py)."""
from __future__ import annotations

import hashlib
import time

import pytest
from sqlalchemy import text

from registry.infra.db import make_engine
from registry.numbers.quarters import Quarter
from tests.faults.conftest import new_cluster, remove_cluster, wait_until

pytestmark = pytest.mark.slow

MAX_LAG = 2.0


@pytest.fixture(scope="module")
def pg_pair():
    """A primary and its streaming replica of this module's own, on free ports; both stopped and
    deleted at the end."""
    primary = new_cluster()
    replica = None
    try:
        primary.init()
        primary.start()
        database = primary.new_database()
        replica = new_cluster()
        replica.init_replica_of(primary)
        replica.start()
        yield primary, replica, database
    finally:
        if replica is not None:
            remove_cluster(replica)
        remove_cluster(primary)


class Sql:
    """Autocommit statements on one server."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url, isolation_level="AUTOCOMMIT")

    def __call__(self, sql: str, **params):
        with self.engine.connect() as c:
            return c.execute(text(sql), params).scalar()

    def close(self) -> None:
        self.engine.dispose()


def test_lagging_replica_never_answers_a_false_negative_and_staleness_is_bounded(pg_pair, redis_server, tmp_path):
    from portal import create_app
    from tests.builders import make_institution

    primary, replica, database = pg_pair
    name = database.rsplit("/", 1)[1]
    replica_url = replica.url(name)
    on_replica = Sql(replica_url)
    on_primary = Sql(database)
    wait_until(lambda: _reachable(on_replica), 30, what="the database replayed on the replica")
    app = create_app({
        "DATABASE_URL": database, "DATABASE_REPLICA_URLS": replica_url, "REPLICA_MAX_LAG_SECONDS": MAX_LAG,
        "REDIS_URL": redis_server.new_url(), "INSTANCE_DIR": str(tmp_path / "instance"), "SECRET_KEY": "replica-drill",
        "AUDIT_KEY": "replica-drill-audit", "BLOOM_CAPACITY": 100_000, "BLOOM_SHARDS": 2, "BACKGROUND_INTERVAL": 0,
        "RATELIMIT_VERIFY": "1000000/minute", "TESTING": True,
    })
    reg = app.extensions["registry"]
    reg.redis.flushdb()
    client = app.test_client()
    try:
        assert reg.wait_until_trusted()
        with reg.sessions() as session:
            lab = make_institution(session)
            lab_id, lab_uscc = lab.id, lab.uscc
        verifier = reg.verifier

        def register(numbers: list[str]) -> None:
            reg.registration.register(institution_id=lab_id, quarter=Quarter.parse("2026Q3"), numbers=numbers,
                                      sha256=hashlib.sha256(repr(numbers).encode()).hexdigest(), source="api")
            reg.refresh(auto_rebuild=False)

        older = [f"REPA-{i:04d}" for i in range(50)]
        register(older)
        wait_until(lambda: on_replica("SELECT count(*) FROM report_numbers") == 50, 30, what="the batch replayed")
        wait_until(lambda: verifier.verify(older[1]).replica, 10, what="the replica in use")
        first = [verifier.verify(n) for n in older]
        assert all(v.status == "found" and v.replica for v in first)  # hits answered by the replica
        # a hit on the replica costs one statement; sampling the positions, two per refresh_every
        started, before = time.monotonic(), verifier.lookups
        assert all(verifier.verify(n).status == "found" for n in older * 4)
        refreshes = int((time.monotonic() - started) / verifier._replicas.refresh_every) + 1
        assert verifier.lookups - before <= 200 + 2 * refreshes, (verifier.lookups - before, refreshes)
        assert verifier.verify("NEVERREPA-0001").status == "not_found"

        # the replica stops replaying: from now on it misses every commit of the primary
        on_replica("SELECT pg_wal_replay_pause()")
        wait_until(lambda: on_replica("SELECT pg_get_wal_replay_pause_state()") == "paused", 10,
                   what="replay paused")
        time.sleep(verifier._replicas.refresh_every)
        assert verifier.verify(older[1]).replica  # still fresh: it had every commit until the pause

        # a withdrawal the replica has not replayed: "found" from it, for at most MAX_LAG seconds
        reg.registration.withdraw(institution_id=lab_id, items=[(None, older[0], "void")])
        withdrawn_at = time.monotonic()
        answers = []
        while time.monotonic() - withdrawn_at < MAX_LAG + 1.0:
            asked = time.monotonic() - withdrawn_at  # the replica, if any, was chosen after this
            v = verifier.verify(older[0])
            answers.append((asked, v.status, v.replica))
            time.sleep(0.02)
        stale = [a for a in answers if a[1] == "found"]
        assert stale and all(a[2] for a in stale), answers[:5]  # the replica did answer, stale
        # exact bounds, no slack: the replica held no commit after its sample's moment, which came
        # before the withdrawal; so it was chosen within MAX_LAG of the withdrawal's end, never later
        assert max(a[0] for a in stale) <= MAX_LAG, stale[-3:]
        assert all(a[1] == "withdrawn" and not a[2] for a in answers if a[0] > MAX_LAG), answers[-5:]
        assert {a[1] for a in answers} == {"found", "withdrawn"}
        assert not any(r["in_use"] for r in verifier.replica_status())

        # registrations committed while the replica lags: in the Bloom index, not on the replica
        newer = [f"REPB-{i:04d}" for i in range(50)]
        register(newer)
        assert on_replica("SELECT count(*) FROM report_numbers WHERE number LIKE 'REPB-%'") == 0
        assert all(verifier.verify(n).status == "found" for n in newer)
        assert all(verifier.verify(n, lab_uscc).status == "found" for n in newer)
        for n in newer[:5]:
            body = client.get(f"/api/v1/verify?number={n}").get_json()
            assert body["status"] == "found", body
        queries = [verifier.prepare(n) for n in newer + older[:3] + ["NEVERREPB-0001"]]
        bulk = verifier.answer_many(queries, [reg.bloom.lookup(q.number) for q in queries])
        assert [v.status for v in bulk] == ["found"] * 50 + ["withdrawn", "found", "found", "not_found"]

        # a replica fresh again, yet behind the newest batch: its misses still go to the primary
        verifier._replicas.max_lag = 3600.0  # make the paused replica count as fresh, on purpose
        try:
            verdicts = [verifier.verify(n) for n in newer]
            assert all(v.status == "found" and not v.replica for v in verdicts)
            assert verifier.verify(older[2]).replica  # its hits it still answers
            queries = [verifier.prepare(n) for n in newer[:10] + older[2:4]]
            bulk = verifier.answer_many(queries, [reg.bloom.lookup(q.number) for q in queries])
            assert [(v.status, v.replica) for v in bulk] == [("found", False)] * 10 + [("found", True)] * 2
        finally:
            verifier._replicas.max_lag = MAX_LAG

        # replay resumes: the replica catches up and answers again, the withdrawal included
        on_replica("SELECT pg_wal_replay_resume()")
        primary_lsn = on_primary("SELECT pg_current_wal_lsn()::text")
        wait_until(lambda: on_replica(f"SELECT pg_last_wal_replay_lsn() >= '{primary_lsn}'::pg_lsn"), 30,
                   what="the replica caught up")
        wait_until(lambda: verifier.verify(newer[3]).replica, 10, what="the replica in use again")
        assert verifier.verify(newer[4]).status == "found"
        assert (lambda v: (v.status, v.replica))(verifier.verify(older[0])) == ("withdrawn", True)

        # the replica stops: the primary answers every hit, nothing fails
        replica.stop("immediate")
        assert all(verifier.verify(n).status == "found" for n in newer + older[1:])
        assert not verifier.verify(newer[5]).replica
        assert any(r["problem"] for r in verifier.replica_status())
        assert client.get(f"/api/v1/verify?number={newer[6]}").get_json()["status"] == "found"
    finally:
        reg.close()
        on_replica.close()
        on_primary.close()


def _reachable(sql: Sql) -> bool:
    try:
        return sql("SELECT count(*) FROM report_numbers") is not None
    except Exception:  # noqa: BLE001 - the database may not have been replayed yet
        return False
