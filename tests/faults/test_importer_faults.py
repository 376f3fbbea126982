"""Drills (d), (e), (f): an importer killed with SIGKILL mid-import, a disk that fills during an
import (RLIMIT_FSIZE), and two imports of the same file at once (docs/faults.md)."""
from __future__ import annotations

import signal
import time

import pytest

from tests.faults.conftest import wait_until

pytestmark = pytest.mark.slow

BIG = 1_000_000  # the per-file cap: 0.8 s after its first write an import of it is still writing (300 k no longer was)


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
    assert importer.poll() is None and _writing_transaction(drill), \
        "the import committed before it could be killed: make the file bigger"
    importer.send_signal(signal.SIGKILL)
    importer.wait(timeout=30)
    importer.stdout.close()
    importer.stderr.close()
    _nothing_then_whole_again(drill, path, uscc)


def _nothing_then_whole_again(drill, path, uscc) -> None:
    """Nothing of the failed import remains; the same command again registers every number once,
    and ``bloom check`` finds them all."""
    _assert_whole(drill, batches=0, numbers=0)
    again = drill.import_numbers(path, uscc)
    assert again.returncode == 0, again.stderr
    _assert_whole(drill, batches=1, numbers=BIG)
    check = drill.flask("bloom", "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_redis_refusing_writes_mid_import_rolls_it_back(drill):
    """(m) an import at a capacity where its bits are sparse (300 M: one bit per ~600 bytes of each
    shard), so they go as ``BITFIELD`` writes spilled while the rows load: once the first has
    reached Redis, Redis refuses every write (``maxmemory`` below its use: ``OOM``). The command
    fails in one ``error:`` line, exit 2, nothing of the batch remains; with writes allowed again the same command
    registers every number and ``bloom check`` finds them all."""
    import redis

    drill.env.update({"BLOOM_CAPACITY": "300000000", "BLOOM_SHARDS": "0"})
    uscc = drill.institution()
    numbers = [f"OOM-{i:07d}" for i in range(BIG)]
    path = drill.number_file("oom.txt", numbers)
    client = redis.Redis.from_url(drill.env["REDIS_URL"], socket_timeout=5)
    try:
        assert drill.flask("bloom", "check").returncode == 0  # the generation exists before the import
        importer = drill.flask_popen("import-numbers", str(path), "--institution", uscc, "--quarter", "2026Q3")
        wait_until(lambda: client.info("commandstats").get("cmdstat_bitfield", {}).get("calls", 0) > 0
                   or importer.poll() is not None, 120, interval=0.01, what="the importer's first BITFIELD")
        client.config_set("maxmemory", 1)
        try:
            assert importer.poll() is None, "the import ended before Redis refused writes: make the file bigger"
            out, err = importer.communicate(timeout=180)
        finally:
            client.config_set("maxmemory", 0)
        assert importer.returncode == 2, out + err
        assert "Traceback" not in err, err
        assert f"error: oom.txt: Bloom store write failed: command not allowed when used memory > 'maxmemory'.; " \
               "nothing registered" in err.splitlines(), err
        _nothing_then_whole_again(drill, path, uscc)
    finally:
        client.flushdb()  # 540 MB of shards
        client.close()


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
    full = drill.flask(*args, file_size=16 * 1024)
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


@pytest.mark.parametrize("command", ["withdraw-numbers", "withdraw-numbers --dry-run", "restore-numbers",
                                     "import-certificates"])
def test_disk_fills_under_the_other_file_commands(drill, command):
    """(e) continued: ``withdraw-numbers`` (also ``--dry-run``), ``restore-numbers`` and
    ``import-certificates`` whose ``--rejected-csv`` meets a full disk (RLIMIT_FSIZE 16 KB): what
    they changed stands, one ``error:`` line naming the file, no traceback, exit 1 (rows rejected),
    no half-written CSV left."""
    uscc = drill.institution()
    registered = [f"WDR-{i:05d}" for i in range(200)]
    assert drill.import_numbers(drill.number_file("wdr.txt", registered), uscc).returncode == 0
    name, *flags = command.split()
    if name == "import-certificates":
        good = f"certificate_number,institution_name,uscc,issued_on,expires_on,status\n" \
               f"201012345679,江苏某检测有限公司,{uscc},2020-12-01,2026-11-30,valid\n"
        path = drill.tmp / "certs.csv"
        path.write_text(good + "".join(f"bad-{i},某机构{i},{uscc},2020-12-01,2026-11-30,valid\n" for i in range(3000)))
        args = (name, str(path))
    else:
        if name == "restore-numbers":
            assert drill.flask("withdraw-numbers", str(_withdrawal_file(drill, registered[:100], [])),
                               "--institution", uscc).returncode == 0
        path = _withdrawal_file(drill, registered[:100], [f"NOT-{i:05d}" for i in range(3000)])
        args = (name, str(path), "--institution", uscc, *flags)
    rejected = drill.tmp / "out" / "rejected.csv"
    rejected.parent.mkdir()
    certificates = drill.scalar("SELECT count(*) FROM certificates")
    full = drill.flask(*args, "--rejected-csv", str(rejected), file_size=16 * 1024)
    assert full.returncode == 1, full.stdout + full.stderr
    assert "Traceback" not in full.stderr, full.stderr
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {rejected}: the rejected rows could not be written (File too large); "
                      + {"withdraw-numbers": "the other rows are withdrawn", "restore-numbers": "the other rows are restored",
                         "import-certificates": "the other rows are imported"}[name]
                      if not flags else f"error: {rejected}: the rejected rows could not be written (File too large); "
                                        "dry run, nothing changed"], full.stderr
    assert list(rejected.parent.iterdir()) == []  # nothing half-written
    withdrawn = drill.scalar("SELECT count(*) FROM report_numbers WHERE withdrawn_at IS NOT NULL")
    if name == "import-certificates":
        assert drill.scalar("SELECT count(*) FROM certificates") == certificates + 1
    else:
        assert withdrawn == {"withdraw-numbers": 0 if flags else 100, "restore-numbers": 0}[name]
    _assert_whole(drill, batches=1, numbers=len(registered))


def _withdrawal_file(drill, numbers: list[str], unknown: list[str]):
    path = drill.tmp / f"withdraw-{len(numbers)}-{len(unknown)}.csv"
    path.write_text("报告编号,撤销原因\n" + "".join(f"{n},报告作废\n" for n in numbers + unknown))
    return path
