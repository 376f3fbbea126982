"""Rate-limit counts shared by the processes of one host (portal/hostwindows.py)."""
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from portal.hostwindows import PROBE, SIZE, SLOTS, CountsFileError, HostWindows, key_hash


def test_counts_add_up_across_forked_processes(tmp_path):
    windows = HostWindows(tmp_path / "counts.bin")
    key = key_hash("client-a")
    windows.hit([(key, 60)])  # the parent has opened and used the file before forking
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            try:
                for _ in range(50):
                    windows.hit([(key, 60)])
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    assert windows.read(key)[0] == 1 + 3 * 50  # no hit lost to a lock shared through the fork


def test_a_window_ends_and_starts_afresh(tmp_path):
    windows = HostWindows(tmp_path / "counts.bin")
    key = key_hash("client-b")
    assert windows.hit([(key, 0.2)])[0][0] == 1
    assert windows.hit([(key, 0.2)])[0][0] == 2
    time.sleep(0.25)
    assert windows.hit([(key, 0.2)])[0][0] == 1


def test_a_full_neighbourhood_gives_up_the_window_ending_soonest(tmp_path):
    windows = HostWindows(tmp_path / "counts.bin")
    keys = [k * SLOTS + 7 for k in range(1, PROBE + 2)]  # all start at slot 7
    for i, key in enumerate(keys[:PROBE]):
        windows.hit([(key, 100 + i)])
    windows.hit([(keys[PROBE], 500)])
    assert windows.read(keys[0])[0] == 0  # the soonest-ending window made room
    assert all(windows.read(k)[0] == 1 for k in keys[1:])


def test_the_hostfile_storage_serves_the_limits_library(tmp_path):
    storage = storage_from_string(f"hostfile://{tmp_path / 'pages.bin'}")
    limiter = FixedWindowRateLimiter(storage)
    limit = parse("3/minute")
    assert [limiter.hit(limit, "complaints", "10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert limiter.hit(limit, "complaints", "10.0.0.2")
    stats = limiter.get_window_stats(limit, "complaints", "10.0.0.1")
    assert stats.remaining == 0 and stats.reset_time > time.time()
    storage.reset()
    assert limiter.hit(limit, "complaints", "10.0.0.1")


def test_a_counts_file_that_cannot_be_created_is_named_in_one_line(tmp_path, monkeypatch):
    def full_disk(fd, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "ftruncate", full_disk)
    path = tmp_path / "counts.bin"
    with pytest.raises(CountsFileError) as caught:
        HostWindows(path)
    assert str(caught.value) == (f"{path}: the rate-limit counts file ({SIZE:,} bytes) could not be created: "
                                 "No space left on device (is the disk full?)")


def test_the_app_does_not_start_on_a_full_disk_and_says_why_in_one_line(tmp_path):
    """The embedded app maps instance/ratelimit-pages.bin and ratelimit-verify.bin at start-up;
    a process that may write only 64 KB (RLIMIT_FSIZE, as a full disk) stops with one line
    naming the file and exit status 4 (gunicorn's "app failed to load"), no traceback."""
    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    instance = tmp_path / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "REQUIRE_", "REDIS_", "DATABASE_"))}
    env.update(INSTANCE_DIR=str(instance), SECRET_KEY="x", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "bloom", "check"],
                          cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
                          timeout=120, preexec_fn=limited)
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {instance / 'ratelimit-pages.bin'}: the rate-limit counts file ({SIZE:,} bytes) could not be "
        "created: File too large (is the disk full?)"], done.stderr
