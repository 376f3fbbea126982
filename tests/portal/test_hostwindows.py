"""Rate-limit counts shared by the processes of one host (portal/hostwindows.py)."""
import os
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from portal.hostwindows import PROBE, SLOTS, HostWindows, key_hash


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
