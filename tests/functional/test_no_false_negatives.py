"""No false negatives, ever (docs/architecture.md, "No false negatives", invariant 1), shown
across processes: a hypothesis state machine interleaving register / withdraw / verify / rebuild in two processes
sharing the store; gunicorn workers answering for numbers a CLI process just registered; and a
store that lost its bits (Redis flushed, a shard file replaced)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bench.common import free_port, wait_http
from tests.builders import make_institution, register

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Peer:
    """The other process."""

    def __init__(self, config: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.functional.registry_worker", json.dumps(config)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]

    def __call__(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "peer process died"
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


def _serialisable(stack: dict) -> dict:
    return {k: v for k, v in stack.items() if isinstance(v, (str, int, float, bool))}


NUMBERS = st.lists(st.from_regex(r"[A-Z]{2}[0-9]{1,4}", fullmatch=True), min_size=1, max_size=5)


def test_two_processes_interleaving(app, reg, stack):
    with reg.sessions() as s:
        labs = [make_institution(s).id, make_institution(s).id]
    peer = Peer(_serialisable(stack))

    class TwoProcesses(RuleBasedStateMachine):
        @initialize()
        def start(self):
            self.registered: dict[str, set[int]] = {}
            self.withdrawn: set[tuple[str, int]] = set()

        def _expect(self, number):
            owners = self.registered.get(number, set())
            if not owners:
                return {"not_found"}
            if len(owners) > 1:
                return {"ambiguous"}
            owner = next(iter(owners))
            return {"withdrawn"} if (number, owner) in self.withdrawn else {"found"}

        @rule(numbers=NUMBERS, lab=st.sampled_from([0, 1]), here=st.booleans())
        def register_numbers(self, numbers, lab, here):
            if here:
                register(reg, _Inst(labs[lab]), numbers)
            else:
                peer(op="register", institution_id=labs[lab], numbers=numbers)
            for n in numbers:
                self.registered.setdefault(n, set()).add(labs[lab])

        @rule(data=st.data(), here=st.booleans())
        def withdraw(self, data, here):
            if not self.registered:
                return
            number = data.draw(st.sampled_from(sorted(self.registered)))
            lab = next(iter(self.registered[number]))
            if here:
                reg.registration.withdraw(institution_id=lab, items=[(None, number, "void")])
            else:
                peer(op="withdraw", institution_id=lab, number=number)
            self.withdrawn.add((number, lab))

        @rule(here=st.booleans())
        def rebuild(self, here):
            if here:
                reg.bloom.rebuild()
            else:
                peer(op="rebuild")

        @invariant()
        def every_registered_number_is_found_in_both_processes(self):
            reg.refresh(auto_rebuild=False)
            for number in self.registered:
                expected = self._expect(number)
                assert reg.verifier.verify(number).status in expected, number
                assert peer(op="verify", number=number)["status"] in expected, number

    TwoProcesses.TestCase.settings = settings(
        max_examples=8, stateful_step_count=8, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    try:
        TwoProcesses.TestCase().runTest()
    finally:
        peer.close()


class _Inst:
    def __init__(self, iid):
        self.id = iid


def test_gunicorn_workers_find_numbers_a_cli_process_just_registered(app, reg, stack, tmp_path):
    with reg.sessions() as s:
        lab = make_institution(s)
    port = free_port()
    env = {**os.environ, **{k: str(v) for k, v in _serialisable(stack).items()},
           "BACKGROUND_INTERVAL": "1", "RATELIMIT_VERIFY": "1000000/minute"}
    env.pop("TESTING", None)
    access_log = tmp_path / "access.log"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-w", "3", "-b", f"127.0.0.1:{port}", "--access-logfile",
         str(access_log), "--access-logformat", "%(p)s %(s)s %(U)s?%(q)s", "wsgi:app"],
        cwd=ROOT, env=env, stderr=subprocess.DEVNULL,
    )
    def workers_seen(path: str) -> set[str]:
        if not access_log.exists():
            return set()
        return {line.split()[0] for line in access_log.read_text().splitlines() if path in line}

    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        # every worker up and answering before the import (the kernel hands connections out unevenly)
        deadline = time.monotonic() + 60
        while len(workers_seen("/healthz")) < 3 and time.monotonic() < deadline:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").close()
        numbers = [f"GW2026-{i:05d}" for i in range(40)]
        data = tmp_path / "numbers.txt"
        data.write_text("\n".join(numbers) + "\n")
        cli = subprocess.run(
            [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "import-numbers", str(data),
             "--institution", lab.uscc, "--quarter", "2026Q3"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert cli.returncode == 0, cli.stderr + cli.stdout
        # at once, through every worker: each number asked several times on fresh connections
        asked = 0
        for round_ in range(25):  # at least 4 rounds; more until every worker has answered
            for number in numbers:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/verify?number={number}") as r:
                    assert json.load(r)["status"] == "found", number
                asked += 1
            if round_ >= 3 and len(workers_seen("/api/v1/verify")) == 3:
                break
    finally:
        server.terminate()
        server.wait(timeout=30)
    pids = workers_seen("/api/v1/verify")
    assert len(pids) == 3, f"verify requests reached workers {pids}"
    # the query log is written in bulk off the request path, and none is lost on a clean shutdown
    from sqlalchemy import func, select

    from registry.verification.models import QueryLog

    with reg.sessions() as s:
        logged = s.scalar(select(func.count()).select_from(QueryLog).where(QueryLog.number.like("GW2026-%")))
    assert logged == asked


def test_lost_bits_still_find_every_number(app, reg, stack, client):
    with reg.sessions() as s:
        lab = make_institution(s)
    numbers = [f"LOST-{i}" for i in range(300)]
    register(reg, lab, numbers)
    if stack["STACK"] == "postgres-redis":
        reg.redis.flushdb()
    else:
        bloom_dir = Path(stack["INSTANCE_DIR"]) / "bloom"
        for shard in bloom_dir.glob("shard-*.bin"):
            replacement = shard.with_suffix(".replaced")
            replacement.write_bytes(b"\0" * shard.stat().st_size)
            os.replace(replacement, shard)
    for number in numbers:
        assert client.get(f"/api/v1/verify?number={number}").get_json()["status"] == "found", number
    ready = client.get("/readyz").get_json()
    assert "bloom" in ready["degraded"], ready
    # the rebuild starts by itself and the index is trusted again
    reg.refresh()
    deadline = time.monotonic() + 30
    while reg.bloom.status()["mode"] != "bloom" and time.monotonic() < deadline:
        time.sleep(0.1)
        reg.refresh()
    assert reg.bloom.status()["mode"] == "bloom"
    for number in numbers:
        assert client.get(f"/api/v1/verify?number={number}").get_json()["status"] == "found", number
