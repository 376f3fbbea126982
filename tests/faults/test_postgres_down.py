"""Drills (a) and (b): PostgreSQL stopped and started under load; workers (re)started during the
outage (docs/faults.md)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.conftest import Load, all_correct, wait_until

pytestmark = pytest.mark.slow

#: seconds within which every request must be answered while the database is down or restarting
#: (connections are refused at once; the bound leaves room for a busy 2-core machine)
BOUND = 5.0


def _registered(drill, prefix: str, count: int) -> tuple[str, list[str], list[str]]:
    uscc = drill.institution()
    numbers = [f"{prefix}-{i:05d}" for i in range(count)]
    done = drill.import_numbers(drill.number_file(f"{prefix}.txt", numbers), uscc)
    assert done.returncode == 0, done.stderr
    return uscc, numbers, [f"NEVER{prefix}-{i:05d}" for i in range(count)]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_stopped_and_started_under_load(drill, mode):
    """(a) gunicorn -w 2 under a verify loop while PostgreSQL stops (cleanly, or as a crash) and
    starts again: every request answered within the bound, 200 or 503, never a not_found for a
    registered number; afterwards every answer right again, with nothing done by hand."""
    _, registered, absent = _registered(drill, "PGA", 200)
    server = drill.gunicorn(workers=2)
    with Load(server, registered[:50], absent[:50]) as load:
        load.wait_answers("before", 40)
        load.phase = "stopping"
        drill.pg.stop(mode)
        load.phase = "down"
        load.wait_answers("down", 60)
        time.sleep(1.0)  # a few rounds of each worker's upkeep loop without the database
        load.phase = "restarting"
        drill.pg.start()
        load.phase = "after"
        wait_until(lambda: all_correct(server, registered[:20], absent[:20], rounds=1), 30,
                   what="all answers correct after the restart")
        load.wait_answers("after", 40)
    figures = load.check(bound=BOUND)
    down = load.in_phase("down")
    # negatives kept answering from the Bloom index while the database was down; positives were 503
    assert any(a[2] is False and a[3] == 200 for a in down), figures
    assert all(a[3] == 503 for a in down if a[2]), figures
    assert all_correct(server, registered, absent, rounds=1)
    integrity = drill.integrity()
    assert integrity["numbers"] == 200 and integrity["batches"] == 1
    assert integrity["empty_batches"] == integrity["orphans"] == integrity["duplicates"] == 0
    print(f"\ndrill (a, {mode}): {figures}")


@pytest.mark.parametrize("drill", ["redis", "local"], indirect=True)
def test_workers_restarted_during_the_outage_answer_negatives(drill):
    """(b) every gunicorn worker killed while PostgreSQL is down (the master starts new ones, as
    after a crash or max-requests), and a new gunicorn started during the outage: their Bloom
    index is trusted without the database (Redis with the recorded run_id, or local files), so
    negatives answer 200 not_found; registered numbers and named institutions are 503 — never a
    not_found; after the database is back, every answer is right."""
    uscc, registered, absent = _registered(drill, "PGB", 100)
    server = drill.gunicorn(workers=2)
    assert all_correct(server, registered[:10], absent[:10], rounds=2)  # each worker checked its marker
    drill.pg.stop("immediate")
    old = server.workers()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(server.workers() - old) == 2, 30, what="two new workers")
    cold = drill.gunicorn(workers=1)  # a whole new server, started during the outage
    try:
        for target in (server, cold):
            for number in absent[:30]:
                status, body, seconds = target.verify(number)
                assert status == 200 and body["status"] == "not_found", (number, status, body)
                assert seconds < BOUND
            for number in registered[:30]:
                status, body, seconds = target.verify(number)
                assert status == 503 and body["error"]["code"] == "unavailable", (number, status, body)
                assert seconds < BOUND
            status, body, _ = target.verify(absent[0], institution=uscc)
            assert status == 503 and body["error"]["code"] == "unavailable"
        assert server.workers() - old == server.workers()  # the answers came from the new workers
        drill.pg.start()
        for target in (server, cold):
            wait_until(lambda: all_correct(target, registered[:20], absent[:20], rounds=2), 30,
                       what="all answers correct after the database returned")
            status, body, _ = target.verify(registered[0], institution=uscc)
            assert status == 200 and body["status"] == "found" and body["institution_resolved"] is True
    finally:
        cold.stop()
