"""/metrics on both stacks: who may scrape it, and figures that move as the registry is used —
in-process through the test client, and from a real gunicorn with several workers under load."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.common import free_port, wait_http
from registry.infra.settings import ROOT
from tests.builders import make_institution, register

OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}


def scrape(client, **kwargs) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(figures, name: str, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_app(stack):
    from portal import create_app

    app = create_app({**stack, "METRICS_TOKEN": "scrape-secret", "RATELIMIT_VERIFY": "6/minute"})
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted()
    yield app
    reg.close()


def test_only_allowed_networks_or_the_token_may_scrape(metrics_app):
    client = metrics_app.test_client()
    assert client.get("/metrics").status_code == 200  # 127.0.0.1, in the default METRICS_ALLOW
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics", environ_base=OUTSIDE).status_code == 403
    assert client.get("/metrics", environ_base=OUTSIDE, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", environ_base=OUTSIDE,
                      headers={"Authorization": "Bearer scrape-secret"}).status_code == 200
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "not an address"})
    assert refused.status_code == 403 and "rnr_" not in refused.get_data(as_text=True)


def test_behind_a_trusted_proxy_the_forwarded_address_decides(stack):
    from portal import create_app

    app = create_app({**stack, "TRUSTED_PROXIES": 1, "METRICS_ALLOW": ("10.0.0.0/8",)})
    try:
        client = app.test_client()
        # the proxy itself is on loopback; the client it forwards for is what counts
        assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        assert client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200
        assert client.get("/metrics").status_code == 403  # loopback is no longer in METRICS_ALLOW
    finally:
        app.extensions["registry"].close()


def test_figures_move_as_the_registry_is_used(metrics_app):
    from tests.regulator_builders import make_complaint

    reg = metrics_app.extensions["registry"]
    client = metrics_app.test_client()
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, ["MT-1", "MT-2", "MT-3"])
    with reg.sessions() as s:  # received 60 days ago, never decided: overdue
        make_complaint(s, created_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=60))
    before = scrape(client)
    for number in ("MT-1", "MT-2", "NOPE-1"):
        assert client.get(f"/api/v1/verify?number={number}").status_code == 200
    assert client.get("/api/v1/verify?number=").status_code == 400
    statuses = [client.get("/api/v1/verify?number=MT-3").status_code for _ in range(4)]
    assert statuses.count(429) >= 1  # 6/minute: the budget ran out
    assert client.get("/privacy").status_code == 200
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("rnr_verdicts_total", status="found") == 2 + statuses.count(200)
    assert grew("rnr_verdicts_total", status="not_found") == 1
    assert grew("rnr_http_requests_total", route="/api/v1/verify", status="200") == 3 + statuses.count(200)
    assert grew("rnr_http_requests_total", route="/api/v1/verify", status="400") == 1
    assert grew("rnr_rate_limit_refusals_total", route="/api/v1/verify") == statuses.count(429)
    assert grew("rnr_http_requests_total", route="/privacy", status="200") == 1
    assert grew("rnr_verify_duration_seconds_count") == 4 + len(statuses)
    assert grew("rnr_verify_duration_seconds_sum") > 0
    assert value(after, "rnr_bloom_mode", mode="trusted") == 1 and value(after, "rnr_bloom_mode", mode="database") == 0
    assert value(after, "rnr_query_log_buffer") >= 3 + statuses.count(200)
    assert value(after, "rnr_numbers_imported_total") == 3
    assert value(after, "rnr_complaint_deadlines", state="overdue") == 1
    assert ("rnr_queue_jobs", (("queue", "rnr-imports"), ("state", "started"))) in after
    reg.query_log.flush()
    assert value(scrape(client), "rnr_query_log_buffer") == 0


def test_a_scrape_during_a_load_on_gunicorn_sums_every_worker(app, reg, stack, tmp_path):
    """Three workers, a load running, scrapes in between: the verify counters grow, and once the
    load stops they add up exactly to the requests sent, whichever worker answered the scrape."""
    with reg.sessions() as s:
        lab = make_institution(s)
    numbers = [f"LOAD-{i}" for i in range(20)]
    register(reg, lab, numbers)
    port = free_port()
    env = {**os.environ, **{k: str(v) for k, v in stack.items() if isinstance(v, (str, int, float))},
           "BACKGROUND_INTERVAL": "0.3", "RATELIMIT_VERIFY": "1000000/minute",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "LOG_FORMAT": "json",
           # loopback is outside these networks: only the token lets the test's scrapes in
           "METRICS_ALLOW": "10.0.0.0/8", "METRICS_TOKEN": "scrape-secret"}
    env.pop("TESTING", None)
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "--preload", "-w", "3", "-b",
                               f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    sent, stop = [0], threading.Event()

    def load():
        while not stop.is_set():
            for number in numbers:
                with urllib.request.urlopen(f"{base}/api/v1/verify?number={number}") as r:
                    assert json.load(r)["status"] == "found"
                sent[0] += 1

    def scraped() -> dict:
        request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": "Bearer scrape-secret"})
        with urllib.request.urlopen(request) as r:
            return samples(r.read().decode())

    try:
        wait_http(f"{base}/healthz")
        worker = threading.Thread(target=load)
        worker.start()
        time.sleep(1.5)
        first = scraped()
        time.sleep(1.5)
        second = scraped()
        stop.set()
        worker.join()
        found = lambda f: value(f, "rnr_verdicts_total", status="found")  # noqa: E731
        assert 0 < found(first) < found(second) <= sent[0]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # each worker writes its figures every 0.3 s
            final = scraped()
            if found(final) == sent[0]:
                break
            time.sleep(0.3)
        assert found(final) == sent[0]
        assert value(final, "rnr_http_requests_total", route="/api/v1/verify", status="200") == sent[0]
        assert value(final, "rnr_verify_duration_seconds_count") == sent[0]
        assert value(final, "rnr_processes") >= 2
        with pytest.raises(urllib.error.HTTPError) as refused:  # an address outside METRICS_ALLOW, no token
            urllib.request.urlopen(f"{base}/metrics")
        refused.value.close()
        assert refused.value.code == 403
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    # LOG_FORMAT=json: the workers' log lines (each runs the daily retention chore at start) are JSON
    logged = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(entry["logger"] == "workflows.retention" for entry in logged), err.decode()[-2000:]
    assert all({"time", "level", "message", "request_id", "pid"} <= set(entry) for entry in logged)


def test_json_log_lines_carry_the_request_id(metrics_app):
    import io
    import logging

    from registry.infra.logs import JsonFormatter, request_id

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.request_id")
    logger.addHandler(handler)
    try:
        with metrics_app.test_request_context("/privacy", headers={"X-Request-ID": "proxy-id.42"}):
            metrics_app.preprocess_request()
            logger.warning("inside %s", "a request")
        with metrics_app.test_request_context("/privacy", headers={"X-Request-ID": "bad id {\"x\": 1}"}):
            metrics_app.preprocess_request()
            made = request_id.get()
            logger.warning("another")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["message"], first["request_id"], first["level"]) == ("inside a request", "proxy-id.42", "WARNING")
    assert second["request_id"] == made and len(made) == 16 and " " not in made  # not the header's text
