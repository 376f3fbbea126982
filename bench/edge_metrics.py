"""What counting costs the verify edge: the same requests answered in-process with and without it.

Builds an embedded registry in a scratch folder (SQLite, local Bloom shards, one registered
number), then calls the edge as gunicorn would, alternating rounds of ``VerifyEdge.respond``
(the answer, uncounted) and ``VerifyEdge.__call__`` (the answer plus this process's counters and
latency histogram, registry/infra/metrics.py), for a registered and an absent number. Prints µs
per request for each and the difference, then the counting alone (the edge's wrapper around an
answer that costs nothing, against that answer): the price of /metrics on the hot path. Not in CI.

    .venv/bin/python -m bench.edge_metrics [ROUNDS]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import absent_number, synthetic_number

PER_ROUND = 2000


def build(folder: Path):
    from portal import create_app
    from tests.builders import make_institution, register

    app = create_app({"INSTANCE_DIR": str(folder), "SECRET_KEY": "bench", "BACKGROUND_INTERVAL": 0,
                      "RATELIMIT_VERIFY": "1000000000/minute", "BLOOM_CAPACITY": 100_000})
    reg = app.extensions["registry"]
    from registry.infra.migrate import upgrade

    upgrade(reg.engine)
    with reg.sessions() as session:
        inst = make_institution(session)
    register(reg, inst, [synthetic_number(1)])
    reg.refresh()
    assert reg.wait_until_trusted()
    return app, reg


def timed(call, environ) -> float:
    def start_response(status, headers):
        return None

    started = time.perf_counter()
    for _ in range(PER_ROUND):
        call(dict(environ), start_response)
    return (time.perf_counter() - started) / PER_ROUND * 1e6


def main(rounds: int = 15) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app, reg = build(Path(tmp))
        edge = app.wsgi_app
        while not hasattr(edge, "respond"):  # ProxyFix and the mounts wrap the edge
            edge = getattr(edge, "app", None) or edge.__closure__[0].cell_contents
        base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/verify", "REMOTE_ADDR": "127.0.0.1",
                "wsgi.url_scheme": "http", "SERVER_NAME": "bench", "SERVER_PORT": "80"}
        for label, number in (("registered", synthetic_number(1)), ("absent", absent_number(1))):
            environ = {**base, "QUERY_STRING": f"number={number}"}
            for _ in range(2):  # warm up both paths
                timed(edge.respond, environ), timed(edge, environ)
            plain, counted = [], []
            for _ in range(rounds):
                plain.append(timed(edge.respond, environ))
                counted.append(timed(edge, environ))
            p, c = min(plain), min(counted)
            print(f"{label:>10}: uncounted {p:7.2f} µs  counted {c:7.2f} µs  difference {c - p:+.2f} µs "
                  f"({c / p:.3f}×; best of {rounds} rounds of {PER_ROUND:,}, medians {statistics.median(plain):.2f} "
                  f"/ {statistics.median(counted):.2f})", flush=True)
        # the counting alone, without the answer's noise: the same edge around an answer that costs nothing
        answer = edge.respond
        edge.respond = lambda environ, start_response: (200, [b""])
        environ = {**base, "QUERY_STRING": "number=X"}
        bare = [timed(edge.respond, environ) for _ in range(rounds)]
        wrapped = [timed(edge, environ) for _ in range(rounds)]
        edge.respond = answer
        overhead = min(wrapped) - min(bare)
        print(f"  counting alone: {overhead:+.2f} µs per request (wrapped {min(wrapped):.2f} µs, "
              f"bare {min(bare):.2f} µs, best of {rounds})", flush=True)
        reg.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
