"""Helpers shared by the benchmarks: free ports, servers, a synthetic registry."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from registry.infra.settings import ROOT
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def gunicorn(app: str, port: int, env: dict, workers: int = 4) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "gunicorn"), "--preload", "-w", str(workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning", app],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def synthetic_number(i: int) -> str:
    return f"BM{i // 1_000_000:03d}-{i % 1_000_000:06d}"


def absent_number(i: int) -> str:
    return f"ZZ{hashlib.md5(str(i).encode()).hexdigest()[:10].upper()}"
