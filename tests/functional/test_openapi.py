"""The OpenAPI 3.1 document (docs/openapi.json, served at /api/v1/openapi.json) is valid, and real
answers of the running app, on both stacks, match it: every status of the single verify, the
suggestions, the upload API (file, numbers, idempotent replay, withdrawals, restorations, 401),
health, readiness, 429s with their headers, and bulk verify once it exists."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_spec_validator import validate
from werkzeug.wrappers import Request, Response

from registry.accounts.tokens import TokenService
from tests.builders import make_institution, register
from tests.functional.test_institution_portal import fixed_clock, portal_app, preg  # noqa: F401 - fixtures

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def spec():
    return OpenAPI.from_file_path(str(DOCUMENT))


def check(spec, response, status: int):
    """Assert the status, then validate the real answer (status, headers, body) against the document."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    sent = response.request  # its body was read by the app: the operation is found by method and path
    request = Request.from_values(path=sent.path, query_string=sent.query_string.decode("latin-1"), method=sent.method)
    spec.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
    return response


def test_the_document_is_valid_openapi_3_1():
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_public_and_integration_route_is_described(portal_app):
    """A new /api/ route (or health route) cannot escape the document."""
    paths = set(json.loads(DOCUMENT.read_text(encoding="utf-8"))["paths"])
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule) for rule in portal_app.url_map.iter_rules()
              if rule.rule.startswith(("/api/", "/log/")) or rule.endpoint.startswith("health.")}
    routes.add("/api/v1/verify")  # the verify edge, in front of Flask
    assert routes <= paths, routes - paths
    for path, item in json.loads(DOCUMENT.read_text(encoding="utf-8"))["paths"].items():
        for method, operation in item.items():
            assert operation.get("responses"), (method, path)
            for status, response in operation["responses"].items():
                if "content" in response and "examples" in response["content"].get("application/json", {}):
                    assert response["content"]["application/json"]["examples"], (method, path, status)


def test_served_with_caching_headers(portal_app, spec):
    client = portal_app.test_client()
    response = check(spec, client.get("/api/v1/openapi.json"), 200)
    assert response.get_json() == json.loads(DOCUMENT.read_text(encoding="utf-8"))
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    again = client.get("/api/v1/openapi.json", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""


@pytest.fixture
def world(portal_app, preg):
    with preg.sessions() as s:
        a = make_institution(s, name="上海市产品质量检验所", province="09")
        b = make_institution(s, name="广州市环境监测有限公司", province="19")
        ids = a.id, b.id
    register(preg, a, ["WT2020-000123", "2020-0001", "WT2020-000777"])
    register(preg, b, ["2020-0001"])
    preg.registration.withdraw(institution_id=ids[0], items=[(1, "WT2020-000777", "作废")])
    preg.refresh()
    _, token = TokenService(sessions=preg.sessions, clock=preg.clock).create(
        institution_id=ids[0], name="lims", created_by="t")
    return {"a": preg.directory.get(ids[0]), "b": preg.directory.get(ids[1]), "token": token}


@pytest.mark.parametrize("params, status, verdict", [
    ({"number": "wt2020—000123"}, 200, "found"),
    ({"number": "WT2026-999999"}, 200, "not_found"),
    ({"number": "WT2020-000777"}, 200, "withdrawn"),
    ({"number": "2020-0001"}, 200, "ambiguous"),
    ({"number": "WT2020-000123", "institution": "nobody we know"}, 200, "found"),
    ({"number": "<script>"}, 400, "invalid_number"),
    ({}, 400, "invalid_number"),
])
def test_single_verify_answers_match_the_document(portal_app, world, spec, params, status, verdict):
    response = check(spec, portal_app.test_client().get("/api/v1/verify", query_string=params), status)
    body = response.get_json()
    assert (body["status"] if status == 200 else body["error"]["code"]) == verdict
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_mismatch_matches_the_document(portal_app, world, spec):
    response = portal_app.test_client().get("/api/v1/verify", query_string={
        "number": "WT2020-000123", "institution": world["b"].uscc})
    assert check(spec, response, 200).get_json()["status"] == "mismatch"


def test_transparency_log_answers_match_the_document(portal_app, world, spec, preg):
    client = portal_app.test_client()
    check(spec, client.get("/log/checkpoint"), 404)
    preg.tlog.integrate()
    assert check(spec, client.get("/log/checkpoint"), 200).headers["Content-Type"] == "text/plain; charset=utf-8"
    check(spec, client.get("/log/key"), 200)
    check(spec, client.get("/log/proof?index=0&size=5"), 200)
    check(spec, client.get("/log/proof?index=5&size=5"), 400)
    check(spec, client.get("/log/proof?index=0&size=6"), 404)
    check(spec, client.get("/log/consistency?from=2&to=5"), 200)
    check(spec, client.get("/log/consistency?from=0&to=5"), 400)
    check(spec, client.get("/log/entries?start=0&end=5"), 200)
    check(spec, client.get("/log/entries?start=0&end=9"), 404)
    for number in ("WT2020-000123", "WT2020-000777", "2020-0001", "WT2026-999999"):
        body = check(spec, client.get("/api/v1/verify", query_string={"number": number, "proof": 1}), 200).get_json()
        assert "log" in body
    register(preg, preg.directory.get(world["a"].id), ["WT2020-000999"])
    pending = check(spec, client.get("/api/v1/verify?number=WT2020-000999&proof=1"), 200).get_json()
    assert pending["log"]["entries"][0]["pending"] is True
    check(spec, client.get("/api/v1/verify?number=WT2020-000999&proof=2"), 400)
    preg.tlog.integrate()
    headers = {"Authorization": f"Bearer {world['token']}"}
    mine = check(spec, client.get("/api/v1/log/mine?since=0", headers=headers), 200).get_json()
    assert {e["number"] for e in mine["entries"]} >= {"WT2020-000123", "WT2020-000999"}
    check(spec, client.get("/api/v1/log/mine?since=x", headers=headers), 400)
    check(spec, client.get("/api/v1/log/mine"), 401)


def test_suggestions_match_the_document(portal_app, world, spec):
    response = check(spec, portal_app.test_client().get("/api/v1/institutions/suggest?q=上海"), 200)
    assert response.get_json()["suggestions"][0]["uscc"] == world["a"].uscc


def test_health_and_readiness_match_the_document(portal_app, spec):
    client = portal_app.test_client()
    check(spec, client.get("/healthz"), 200)
    check(spec, client.get("/readyz"), 200)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_upload_api_answers_match_the_document(portal_app, world, spec):
    client, auth = portal_app.test_client(), bearer(world["token"])
    file = {"quarter": "2026Q3", "file": (io.BytesIO("报告编号\nUP-0001\nUP-0002\nUP-00%3\n".encode()), "q3.csv")}
    created = check(spec, client.post("/api/v1/batches", data=file, headers=auth), 201)
    assert created.get_json()["accepted"] == 2 and created.get_json()["problems"]
    again = {"quarter": "2026Q3", "file": (io.BytesIO("报告编号\nUP-0001\nUP-0002\nUP-00%3\n".encode()), "q3.csv")}
    assert check(spec, client.post("/api/v1/batches", data=again, headers=auth), 200).get_json()["repeated"] is True
    empty = {"quarter": "2026Q3", "file": (io.BytesIO("报告编号\n<bad>\n".encode()), "bad.csv")}
    assert check(spec, client.post("/api/v1/batches", data=empty, headers=auth), 422).get_json()["problems"]
    check(spec, client.post("/api/v1/batches", data={"quarter": "2099Q1", "file": (io.BytesIO(b"X-1\n"), "x.txt")},
                            headers=auth), 400)

    numbers = {"quarter": "2026Q3", "numbers": ["API-0001", "API-0002", ""]}
    keyed = {**auth, "Idempotency-Key": "lims-0001"}
    first = check(spec, client.post("/api/v1/numbers", json=numbers, headers=keyed), 200)
    replay = check(spec, client.post("/api/v1/numbers", json=numbers, headers=keyed), 200)
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.get_json() == first.get_json()
    check(spec, client.post("/api/v1/numbers", json={**numbers, "numbers": ["X-9"]}, headers=keyed), 400)
    check(spec, client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": [""]}, headers=auth), 400)
    check(spec, client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["N"] * 10_001},
                            headers=auth), 413)

    withdrawn = check(spec, client.post("/api/v1/withdrawals", json={
        "numbers": ["API-0001", "NEVER-1"], "reason": "报告作废"}, headers=auth), 200)
    assert withdrawn.get_json()["withdrawn"] == 1 and withdrawn.get_json()["problems"][0]["code"] == "not_registered"
    check(spec, client.post("/api/v1/withdrawals", json={"items": [{"number": "API-0002"}]}, headers=auth), 200)
    by_file = {"file": (io.BytesIO("报告编号,撤销原因\nAPI-0002,重出\n".encode()), "w.csv")}
    assert check(spec, client.post("/api/v1/withdrawals", data=by_file, headers=auth), 200).get_json()["withdrawn"] == 1
    restored = check(spec, client.post("/api/v1/restorations", json={"numbers": ["API-0001", "API-0001"]},
                                       headers=auth), 200)
    assert restored.get_json()["restored"] == 1
    check(spec, client.post("/api/v1/restorations", json={"numbers": "API-0001"}, headers=auth), 400)

    for path in ("/api/v1/batches", "/api/v1/numbers", "/api/v1/withdrawals", "/api/v1/restorations"):
        refused = check(spec, client.post(path, json=numbers), 401)
        assert refused.get_json()["error"]["code"] == "unauthorized"
        assert "Access-Control-Allow-Origin" not in refused.headers  # server to server: no CORS
    assert "Access-Control-Allow-Origin" not in first.headers


@pytest.fixture
def limited_app(stack):
    from portal import create_app

    app = create_app({**stack, "CLOCK": fixed_clock(), "RATELIMIT_VERIFY": "2/minute",
                      "RATELIMIT_SUGGEST": "1/minute", "RATELIMIT_UPLOAD_API": "1/minute",
                      "RATELIMIT_SNAPSHOT": "1/hour", "RATELIMIT_SNAPSHOT_DELTAS": "3/hour"})
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted()
    yield app
    reg.close()


def test_429s_match_the_document(limited_app, spec):
    reg = limited_app.extensions["registry"]
    with reg.sessions() as s:
        inst = make_institution(s)
    _, token = TokenService(sessions=reg.sessions, clock=reg.clock).create(
        institution_id=inst.id, name="lims", created_by="t")
    client = limited_app.test_client()
    for _ in range(2):
        check(spec, client.get("/api/v1/verify?number=A-1"), 200)
    refused = check(spec, client.get("/api/v1/verify?number=A-1"), 429)
    assert refused.get_json()["retry_after"] >= 1 and int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    check(spec, client.get("/api/v1/institutions/suggest?q=x"), 200)
    check(spec, client.get("/api/v1/institutions/suggest?q=x"), 429)
    call = {"json": {"quarter": "2026Q3", "numbers": ["Q-1"]}, "headers": bearer(token)}
    check(spec, client.post("/api/v1/numbers", **call), 200)
    limited = check(spec, client.post("/api/v1/numbers", **call), 429)
    assert limited.get_json()["error"]["code"] == "rate_limited"


def test_snapshot_answers_match_the_document(limited_app, spec):
    """The offline snapshot, its deltas, its key: every status, and each download counted on the key."""
    reg = limited_app.extensions["registry"]
    with reg.sessions() as s:
        inst = make_institution(s)
    register(reg, inst, ["SNAP-OPENAPI-1"])
    client = limited_app.test_client()
    key = check(spec, client.get("/api/v1/snapshot/key"), 200).get_json()
    assert key["key_id"] == reg.snapshots.signer.key_id and key["public_key_pem"].startswith("-----BEGIN PUBLIC KEY")
    check(spec, client.get("/api/v1/snapshot"), 401)
    _, platform_key = reg.platforms.create(name="shop", per_minute=10, per_day=100)
    auth = bearer(platform_key)
    snapshot = check(spec, client.get("/api/v1/snapshot", headers=auth), 200)
    assert snapshot.data.startswith(b"RNRSNAP1") and snapshot.headers["Content-Length"] == str(len(snapshot.data))
    since = snapshot.headers["X-Snapshot-Delta"]
    check(spec, client.get("/api/v1/snapshot", headers=auth), 429)  # 1 an hour here
    assert check(spec, client.get(f"/api/v1/snapshot/deltas?since={since}", headers=auth), 200).data.startswith(b"RNRSNAP1")
    check(spec, client.get("/api/v1/snapshot/deltas?since=yesterday", headers=auth), 400)
    outdated = check(spec, client.get("/api/v1/snapshot/deltas?since=1.0", headers=auth), 410)
    assert outdated.get_json()["error"]["code"] == "snapshot_outdated"
    check(spec, client.get(f"/api/v1/snapshot/deltas?since={since}", headers=auth), 429)  # 3 an hour here
    _, other = reg.platforms.create(name="other", per_minute=10, per_day=100)
    check(spec, client.get("/api/v1/snapshot", headers=bearer(other)), 200)  # counted per key


def _bulk_route_exists(app) -> bool:
    response = app.test_client().post("/api/v1/verify/bulk", json={"items": []})
    return response.status_code != 404


def test_bulk_answers_match_the_document(portal_app, world, spec):
    if not _bulk_route_exists(portal_app):
        pytest.skip("POST /api/v1/verify/bulk is not on main yet (issue 17, the 'bulk' helper): this test runs once it is")
    client = portal_app.test_client()
    check(spec, client.post("/api/v1/verify/bulk", json={"items": [{"number": "A-1"}]}), 401)
    _, key = portal_app.extensions["registry"].platforms.create(name="shop", per_minute=1005, per_day=5000)
    auth = {"Authorization": f"Bearer {key}"}
    items = [{"number": "WT2020-000123"}, {"number": "WT2026-999999"}, {"number": "WT2020-000777"},
             {"number": "2020-0001"}, {"number": "WT2020-000123", "institution": world["b"].uscc},
             {"number": "<bad>"}, {"institution": "x"}]
    answered = check(spec, client.post("/api/v1/verify/bulk", json={"items": items}, headers=auth), 200).get_json()
    assert [r.get("status") or r["error"]["code"] for r in answered["results"]] == [
        "found", "not_found", "withdrawn", "ambiguous", "mismatch", "invalid_number", "invalid_number"]
    check(spec, client.post("/api/v1/verify/bulk", json={"numbers": ["A-1"]}, headers=auth), 400)
    check(spec, client.post("/api/v1/verify/bulk", data=b"not json", headers=auth), 400)
    check(spec, client.post("/api/v1/verify/bulk", json={"items": [{"number": "A-1"}] * 1001}, headers=auth), 413)
    refused = check(spec, client.post("/api/v1/verify/bulk", json={"items": [{"number": "A-1"}] * 1000},
                                      headers=auth), 429)  # 7 used of 1,005 a minute: 1,000 more is refused whole
    assert int(refused.headers["Retry-After"]) >= 1 and refused.get_json()["retry_after"] >= 1


def test_the_validation_catches_an_answer_that_strays_from_the_document(portal_app, spec):
    """The check above is not vacuous: a verdict missing a key, or a wrong status, is refused."""
    from openapi_core.templating.responses.exceptions import ResponseNotFound
    from openapi_core.validation.response.exceptions import InvalidData

    client = portal_app.test_client()
    real = client.get("/api/v1/verify?number=A-1")
    body = real.get_json()
    del body["candidates"]
    with pytest.raises(InvalidData):
        spec.validate_response(WerkzeugOpenAPIRequest(Request.from_values(path="/api/v1/verify", query_string="number=A-1")),
                               WerkzeugOpenAPIResponse(Response(json.dumps(body), status=200, mimetype="application/json")))
    with pytest.raises(ResponseNotFound):
        spec.validate_response(WerkzeugOpenAPIRequest(Request.from_values(path="/healthz")),
                               WerkzeugOpenAPIResponse(Response("{}", status=418, mimetype="application/json")))
