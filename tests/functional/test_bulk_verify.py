"""POST /api/v1/verify/bulk (docs/contract.md, "Bulk verification"): the same answers as single
verifications, one lookup statement for all possible hits, platform keys and their item quotas."""
from __future__ import annotations

import datetime as dt
import re
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from registry.verification.models import QueryLog
from tests.builders import make_institution, register
from tests.functional.test_institution_portal import portal_app, preg  # noqa: F401 - fixtures
from tests.functional.test_verify_api import labs  # noqa: F401 - fixture
from tests.sql_counting import count_sql

BULK = "/api/v1/verify/bulk"


@pytest.fixture
def key(reg):
    return reg.platforms.create(name="某招标平台", per_minute=100_000, per_day=1_000_000, days=30)[1]


def bulk(client, key, items, **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = client.post(BULK, json={"items": items} if items is not None else None, headers=headers, **kwargs)
    assert response.headers["Content-Type"].startswith("application/json")
    return response, response.get_json()


def single(client, item):
    params = {k: v for k, v in item.items() if k in ("number", "institution", "sha256")}
    return client.get("/api/v1/verify", query_string=params).get_json()


def without_time(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "checked_at"}


MIXED = [
    {"number": "wt2020—000123"},  # found
    {"number": "NOPE-0001"},  # not found
    {"number": "国环测〔2021〕第045号"},  # withdrawn
    {"number": "WT2020-000123", "institution": "杭州检测技术有限公司"},  # wrong institution
    {"number": "2020-0001"},  # ambiguous
    {"number": "BG-2020-Q4-0001", "institution": "杭州老检测站"},  # found by a former name
    {"number": "NOPE-0002", "institution": "不存在的实验室"},  # not found, institution unresolved
    {"number": "WT2020-000123", "sha256": "00" * 32},  # found, no fingerprint registered: document none_registered
]
INVALID = [{"number": ""}, {"number": 12345}, {"institution": "x"}, {"number": "\x00\x01"}, {"number": "x" * 500}]


def test_bulk_answers_equal_single_answers_item_by_item(client, reg, labs, key):
    items = MIXED + INVALID
    response, body = bulk(client, key, items)
    assert response.status_code == 200, body
    assert set(body) == {"results", "checked_at"} and body["checked_at"].endswith("+08:00")
    assert len(body["results"]) == len(items)
    statuses = [r.get("status") for r in body["results"][:len(MIXED)]]
    assert statuses == ["found", "not_found", "withdrawn", "mismatch", "ambiguous", "found", "not_found", "found"]
    for item, result in zip(MIXED, body["results"]):
        assert without_time(result) == without_time(single(client, item)), item
    for item, result in zip(INVALID, body["results"][len(MIXED):]):
        assert result["number"] == item.get("number")
        assert result["error"]["code"] == "invalid_number" and result["error"]["message"]
        assert set(result) == {"number", "error"}
    assert "X-RateLimit-Limit" in response.headers


def test_every_item_is_logged_as_bulk_with_the_platform(client, reg, labs, key):
    platform = reg.platforms.authenticate(key)
    bulk(client, key, MIXED[:3] + INVALID[:1])
    client.get("/api/v1/verify", query_string={"number": "NOPE-9"})
    reg.query_log.flush()
    with reg.sessions() as s:
        rows = s.execute(select(QueryLog.number, QueryLog.status, QueryLog.bulk, QueryLog.platform_id)
                         .order_by(QueryLog.id)).all()
    assert [tuple(r) for r in rows] == [
        ("WT2020-000123", "found", True, platform.id), ("NOPE-0001", "not_found", True, platform.id),
        ("国环测(2021)第045号", "withdrawn", True, platform.id), ("NOPE-9", "not_found", None, None)]
    [use] = [u for u in reg.platforms.list() if u.key.id == platform.id]
    assert use.items == 3 and use.not_found == 1 and use.days[0][1:] == (3, 1)


def test_one_lookup_statement_for_all_possible_hits_and_none_when_all_negative(client, reg, labs, key):
    client.post(BULK, json={"items": [{"number": "WARM-1"}]}, headers={"Authorization": f"Bearer {key}"})
    with count_sql(reg) as sql:
        response, _ = bulk(client, key, MIXED)
    assert response.status_code == 200
    on_numbers = [s for s in sql if "report_numbers" in s]
    assert len(on_numbers) == 1, sql
    assert [s for s in sql if "report_numbers" not in s and "query_log" not in s] == [
        s for s in sql if "platform_keys" in s]  # besides: the key's one lookup
    with count_sql(reg) as sql:
        response, body = bulk(client, key, [{"number": f"ABSENT-{i}"} for i in range(500)])
    assert response.status_code == 200 and {r["status"] for r in body["results"]} == {"not_found"}
    assert not [s for s in sql if "report_numbers" in s], sql


def test_a_bulk_request_needs_a_live_platform_key(client, reg, labs, key):
    assert bulk(client, None, MIXED)[0].status_code == 401
    for wrong in ("rnrp_not-a-key", "Basic x", key + "x"):
        response, body = bulk(client, wrong, MIXED)
        assert response.status_code == 401 and body["error"]["code"] == "unauthorized"
    response = client.post(BULK, json={"items": []}, headers={"Authorization": f"basic {key}"})
    assert response.status_code == 401
    other, other_key = reg.platforms.create(name="另一平台", per_minute=10, per_day=100, days=1)
    assert bulk(client, other_key, MIXED[:1])[0].status_code == 200
    reg.platforms.revoke(other.id)
    assert bulk(client, other_key, MIXED[:1])[0].status_code == 401
    _, expiring = reg.platforms.create(name="过期平台", per_minute=10, per_day=100, days=1)
    later = reg.platforms._clock() + dt.timedelta(days=2)
    reg.platforms._clock = lambda: later
    assert bulk(client, expiring, MIXED[:1])[0].status_code == 401
    # a session cookie is no key; the public verify limit is not what counts
    assert client.get(BULK).status_code == 405


def test_shapes_and_sizes(client, reg, labs, key):
    auth = {"Authorization": f"Bearer {key}"}
    for raw in (b"not json", b"[]", b'{"items": 3}', b'{"items": [3]}', b'{"numbers": []}',
                b'{"items": [{"number": "A", "institution": 5}]}', b"",
                b'{"items": [{"number": "A", "sha256": "00"}]}', b'{"items": [{"number": "A", "sha256": 7}]}',
                b'{"items": [{"number": "A", "sha256": "' + b"g" * 64 + b'"}]}'):
        response = client.post(BULK, data=raw, headers=auth, content_type="application/json")
        assert response.status_code == 400, raw
        assert response.get_json()["error"]["code"] == "invalid_request"
    response, body = bulk(client, key, [{"number": f"N-{i}"} for i in range(1001)])
    assert response.status_code == 413 and body["error"]["code"] == "payload_too_large"
    response = client.post(BULK, data=b'{"items": [' + b'{"number": "' + b"x" * (3 << 20) + b'"}]}',
                           headers=auth, content_type="application/json")
    assert response.status_code == 413
    response, body = bulk(client, key, [{"number": f"N-{i}"} for i in range(1000)])
    assert response.status_code == 200 and len(body["results"]) == 1000
    response, body = bulk(client, key, [])
    assert response.status_code == 200 and body["results"] == []
    # a document fingerprint (either case): its item answers "document"; a null one is no fingerprint
    fingerprinted = [{"number": "N-1", "sha256": "aB" * 32}, {"number": "N-2", "sha256": None}]
    response, body = bulk(client, key, fingerprinted)
    assert response.status_code == 200 and [r["status"] for r in body["results"]] == ["not_found"] * 2
    assert [r.get("document") for r in body["results"]] == ["none_registered", None]
    assert "document" not in body["results"][1]


def test_quota_counts_items_and_refuses_a_request_whole(client, reg, labs, app):
    _, key = reg.platforms.create(name="小平台", per_minute=10, per_day=25, days=1)
    response, _ = bulk(client, key, [{"number": f"Q-{i}"} for i in range(6)])
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "10" and response.headers["X-RateLimit-Remaining"] == "4"
    response, body = bulk(client, key, [{"number": f"Q-{i}"} for i in range(5)])  # 6 + 5 > 10: refused whole
    assert response.status_code == 429 and body["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-RateLimit-Limit"] == "10" and response.headers["X-RateLimit-Remaining"] == "4"
    response, _ = bulk(client, key, [{"number": f"Q-{i}"} for i in range(4)])  # exactly what is left
    assert response.status_code == 200 and response.headers["X-RateLimit-Remaining"] == "0"


def test_the_public_verify_limit_does_not_apply_to_keyed_bulk(stack, tmp_path):
    from portal import create_app

    app = create_app({**stack, "RATELIMIT_VERIFY": "2/minute"})
    reg = app.extensions["registry"]
    try:
        assert reg.wait_until_trusted()
        client = app.test_client()
        _, key = reg.platforms.create(name="平台", per_minute=1000, per_day=1000, days=1)
        for _ in range(5):
            response, _ = bulk(client, key, [{"number": "LIMIT-1"}] * 10)
            assert response.status_code == 200
        assert [client.get("/api/v1/verify?number=A-1").status_code for _ in range(3)] == [200, 200, 429]
    finally:
        reg.close()


def test_the_cli_prints_the_key_alone_on_its_last_line(runner, reg, client, labs):
    result = runner.invoke(args=["create-platform-key", "某电商平台", "--per-minute", "100", "--per-day", "1000",
                                 "--days", "7"])
    assert result.exit_code == 0, result.output
    key = result.output.rstrip("\n").splitlines()[-1]
    assert key.startswith("rnrp_") and " " not in key
    assert bulk(client, key, MIXED[:1])[0].status_code == 200
    refused = runner.invoke(args=["create-platform-key", "x", "--per-minute", "0", "--per-day", "10"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output


def test_the_quota_holds_across_two_servers_of_two_workers(stack, tmp_path):
    """Two gunicorn processes × two workers each, on the same database (and Redis, or the host's
    shared file): a key's 50 items per minute are 50 in all."""
    from bench.common import free_port, wait_http

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "INSTANCE_DIR": str(tmp_path / "instance"), "DATABASE_URL": stack["DATABASE_URL"],
           "REDIS_URL": stack["REDIS_URL"], "SECRET_KEY": "t", "BACKGROUND_INTERVAL": "0",
           "BLOOM_CAPACITY": "200000", "BLOOM_SHARDS": "4", "AUDIT_KEY": "test-audit-key"}
    flask = str(Path(sys.executable).parent / "flask")
    if stack["STACK"] == "sqlite-local":
        subprocess.run([flask, "--app", "wsgi", "init-db"], cwd=root, env=env, check=True, capture_output=True)
    out = subprocess.run([flask, "--app", "wsgi", "create-platform-key", "双进程平台", "--per-minute", "50",
                          "--per-day", "1000"], cwd=root, env=env, check=True, capture_output=True, text=True)
    key = out.stdout.strip().splitlines()[-1]
    servers, ports = [], []
    log = tmp_path / "access.log"
    try:
        for _ in range(2):
            port = free_port()
            ports.append(port)
            servers.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}",
                 "--access-logfile", str(log), "--access-logformat", "%(p)s %(s)s", "wsgi:app"],
                cwd=root, env=env, stderr=subprocess.DEVNULL))
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/healthz")
        body = orjson.dumps({"items": [{"number": f"P-{i}"} for i in range(5)]})

        def post(port):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{BULK}", data=body, method="POST", headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code

        statuses = [post(ports[i % 2]) for i in range(16)]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
    assert statuses == [200] * 10 + [429] * 6
    workers = {line.split()[0] for line in log.read_text().splitlines() if line.split()[1] in ("200", "429")}
    assert len(workers) >= 2, "the requests should have reached workers of both servers"


def test_the_console_issues_lists_and_revokes_platform_keys(portal_app, preg):
    """/admin/platforms: issue (the key shown once), list with use and not-found rate, revoke."""
    from tests.functional.test_institution_portal import csrf_token, login, make_account

    admin = make_account(preg, "admin")
    browser = portal_app.test_client()
    assert login(browser, admin.username).status_code == 302
    token = csrf_token(browser, "/admin/platforms")
    refused = browser.post("/admin/platforms", data={"csrf_token": token, "name": "某电商平台", "per_minute": "0",
                                                     "per_day": "5", "days": "365"})
    assert refused.status_code == 400 and "配额须为正整数。" in refused.get_data(as_text=True)
    page = browser.post("/admin/platforms", data={"csrf_token": token, "name": "某电商平台", "per_minute": "100",
                                                  "per_day": "1000", "days": "30",
                                                  "origins": "https://shop.example\nhttps://b.example"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    key = re.search(r'<code class="secret">(rnrp_[^<]+)</code>', html).group(1)
    api = portal_app.test_client()
    response, body = bulk(api, key, [{"number": "NOT-THERE-1"}, {"number": "NOT-THERE-2"}])
    assert response.status_code == 200
    preg.query_log.flush()
    listing = browser.get("/admin/platforms").get_data(as_text=True)
    assert key not in listing  # shown once
    row = listing.split('data-platform="', 1)[1].split("</tr>", 1)[0]
    assert "某电商平台" in row and "100 / 1000" in row and "：2" in row and "100.0%" in row
    [use] = preg.platforms.list()
    assert use.key.origins == ["https://shop.example", "https://b.example"]
    revoke = browser.post(f"/admin/platforms/{use.key.id}/revoke", data={"csrf_token": token})
    assert revoke.status_code == 303
    assert bulk(api, key, [{"number": "NOT-THERE-1"}])[0].status_code == 401
    assert "已吊销" in browser.get("/admin/platforms").get_data(as_text=True)
    english = browser.get("/admin/platforms?lang=en").get_data(as_text=True)
    assert "Platform keys (bulk verification)" in english and "Not-found rate" in english


def test_cors_on_bulk_only_for_the_origins_on_the_key(client, reg, labs):
    """docs/contract.md, "CORS": the key's origins echoed, others get no Allow-Origin; a preflight
    for an origin some live key registered; never credentials."""
    _, key = reg.platforms.create(name="商城", per_minute=100, per_day=1000, origins=["https://shop.example"])
    auth = {"Authorization": f"Bearer {key}"}
    ok = client.post(BULK, json={"items": [{"number": "A-1"}]}, headers={**auth, "Origin": "https://shop.example"})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert ok.headers["Vary"] == "Origin" and "Access-Control-Allow-Credentials" not in ok.headers
    other = client.post(BULK, json={"items": [{"number": "A-1"}]}, headers={**auth, "Origin": "https://evil.example"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    anonymous = client.post(BULK, json={"items": []}, headers={"Origin": "https://shop.example"})
    assert anonymous.status_code == 401 and "Access-Control-Allow-Origin" not in anonymous.headers
    preflight = client.options(BULK, headers={"Origin": "https://shop.example",
                                              "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert "Access-Control-Allow-Origin" not in client.options(BULK, headers={"Origin": "https://evil.example"}).headers
