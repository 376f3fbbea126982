"""Drills (d), (e), (f): an importer killed with SIGKILL mid-import, a disk that fills during an
import (RLIMIT_FSIZE), and two imports of the same file at once (docs/faults.md)."""
from __future__ import annotations

import resource
import signal
import subprocess
import time

import pytest

from tests.faults.conftest import wait_until

pytestmark = pytest.mark.slow

BIG = 100_000


def _assert_whole(drill, *, batches: int, numbers: int) -> None:
    integrity = drill.integrity()
    assert integrity == {"batches": batches, "numbers": numbers, "empty_batches": 0, "orphans": 0,
                         "duplicates": 0}, integrity


def _writing_transaction(drill) -> bool:
    """A backend of this drill's database holds a transaction that has written something."""
    name = drill.database_url.rsplit("/", 1)[1]
    return bool(drill.pg_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :n AND backend_xid IS NOT NULL", n=name))


@pytest.mark.parametrize("delay", [0.0, 0.8])
def test_importer_killed_mid_import(drill, delay):
    """(d) ``flask import-numbers`` killed with SIGKILL once its transaction has begun writing
    (at once, and a little later): no batch without its numbers, no numbers without a batch; the
    same import run again succeeds and registers every number once; the index has them all."""
    uscc = drill.institution()
    numbers = [f"KIL-{i:07d}" for i in range(BIG)]
    path = drill.number_file("kill.txt", numbers)
    importer = drill.flask_popen("import-numbers", str(path), "--institution", uscc, "--quarter", "2026Q3")
    wait_until(lambda: _writing_transaction(drill) or importer.poll() is not None, 120, interval=0.02,
               what="the importer writing")
    time.sleep(delay)
    assert importer.poll() is None, "the import finished before it could be killed: make the file bigger"
    importer.send_signal(signal.SIGKILL)
    importer.wait(timeout=30)
    importer.stdout.close()
    importer.stderr.close()
    _assert_whole(drill, batches=0, numbers=0)
    again = drill.import_numbers(path, uscc)
    assert again.returncode == 0, again.stderr
    _assert_whole(drill, batches=1, numbers=BIG)
    check = drill.flask("bloom", "check")
    assert check.returncode == 0, check.stdout + check.stderr


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_same_file_imported_twice_at_once(drill):
    """(f) two ``import-numbers`` processes of the same file at the same moment: one batch, every
    number once; the other process gets the earlier receipt (or waits for it); both exit 0."""
    uscc = drill.institution()
    numbers = [f"TWO-{i:06d}" for i in range(30_000)]
    path = drill.number_file("twice.txt", numbers)
    args = ("import-numbers", str(path), "--institution", uscc, "--quarter", "2026Q3")
    first, second = drill.flask_popen(*args), drill.flask_popen(*args)
    outcomes = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=180)
        outcomes.append((proc.returncode, out, err))
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    assert all("Traceback" not in err for _, _, err in outcomes), outcomes
    _assert_whole(drill, batches=1, numbers=len(numbers))
    outs = sorted(out for _, out, _ in outcomes)
    assert "registered 30,000" in outs[1] and "already registered as batch" in outs[0], outs


def test_disk_fills_during_an_import(drill):
    """(e) the importing process may write only 16 KB more (RLIMIT_FSIZE), so the disk is full
    when it writes its rejected-rows CSV, after the batch committed: the batch stands whole, the
    command says so in one line (no traceback) with the exit status of rejected rows (1), and no
    half-written CSV is left. Run again with room, it gives the earlier receipt (exit 0)."""
    uscc = drill.institution()
    good = [f"FUL-{i:06d}" for i in range(20_000)]
    rows = good + [f"bad value {i} with spaces ~~" for i in range(5_000)]
    path = drill.number_file("full.txt", rows)
    rejected = drill.tmp / "out" / "rejected.csv"
    rejected.parent.mkdir()
    assert drill.flask("bloom", "check").returncode == 0  # the instance's own files exist already
    args = ("import-numbers", str(path), "--institution", uscc, "--quarter", "2026Q3", "--rejected-csv", str(rejected))
    full = drill.flask(*args, preexec_fn=_limit_file_size(16 * 1024))
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    assert f"error: {rejected}: the rejected rows could not be written (File too large); batch" in full.stderr
    assert list(rejected.parent.iterdir()) == []  # nothing half-written
    _assert_whole(drill, batches=1, numbers=len(good))
    again = drill.flask(*args)
    assert again.returncode == 0 and "already registered as batch" in again.stdout, again.stdout + again.stderr
    _assert_whole(drill, batches=1, numbers=len(good))
    check = drill.flask("bloom", "check")
    assert check.returncode == 0, check.stdout + check.stderr
