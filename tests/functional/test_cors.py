"""The CORS policy (docs/contract.md, "CORS"): the single verify and suggestions from any origin
without credentials; bulk only from the origins registered on the platform key; the upload API
none (server to server)."""
from __future__ import annotations

import pytest

from portal import cors
from registry.accounts.tokens import TokenService
from tests.builders import make_institution

ORIGIN = {"Origin": "https://shop.example"}


def assert_public(response):
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    assert "X-RateLimit-Remaining" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("path", ["/api/v1/verify?number=A-1", "/api/v1/verify", "/api/v1/verify?number=<x>",
                                  "/api/v1/institutions/suggest?q=x", "/api/v1/openapi.json"])
def test_public_answers_may_be_read_from_any_origin_without_credentials(client, path):
    response = client.get(path, headers=ORIGIN)
    assert_public(response)
    assert client.head(path, headers=ORIGIN).headers["Access-Control-Allow-Origin"] == "*"


def test_refusals_of_the_verify_edge_are_readable_too(client):
    assert_public(client.post("/api/v1/verify?number=A-1", headers=ORIGIN))  # 405


@pytest.mark.parametrize("path", ["/api/v1/verify", "/api/v1/institutions/suggest"])
def test_preflight_of_the_public_routes(client, path):
    response = client.options(path, headers={**ORIGIN, "Access-Control-Request-Method": "GET"})
    assert response.status_code == 200
    assert_public(response)
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) >= {"GET", "OPTIONS"}
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_the_upload_api_answers_no_cors_at_all(app, client):
    reg = app.extensions["registry"]
    with reg.sessions() as s:
        inst = make_institution(s)
    _, token = TokenService(sessions=reg.sessions, clock=reg.clock).create(
        institution_id=inst.id, name="lims", created_by="t")
    for path in ("/api/v1/batches", "/api/v1/numbers", "/api/v1/withdrawals", "/api/v1/restorations"):
        preflight = client.options(path, headers={**ORIGIN, "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "authorization"})
        assert not any(name.startswith("Access-Control-") for name in preflight.headers.keys()), path
        answered = client.post(path, json={"numbers": ["A-1"]}, headers={**ORIGIN, "Authorization": f"Bearer {token}"})
        assert answered.status_code < 500
        assert not any(name.startswith("Access-Control-") for name in answered.headers.keys()), path


def test_pages_send_no_cors(client):
    assert "Access-Control-Allow-Origin" not in client.get("/", headers=ORIGIN).headers


# --- bulk: the origins registered on the platform key ----------------------------------------
KEY_ORIGINS = ("https://shop.example", "https://admin.shop.example")


def test_bulk_answer_echoes_a_registered_origin_only():
    headers = dict(cors.bulk_headers("https://shop.example", KEY_ORIGINS))
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in headers
    for other in ("https://evil.example", "https://shop.example.evil.example", "null", "", None):
        refused = dict(cors.bulk_headers(other, KEY_ORIGINS))
        assert refused == {"Vary": "Origin"}, other
    assert dict(cors.bulk_headers("https://shop.example", ())) == {"Vary": "Origin"}  # a key with no origins


def test_bulk_preflight_only_for_an_origin_some_key_registered():
    registered = set(KEY_ORIGINS).__contains__
    headers = dict(cors.bulk_preflight("https://admin.shop.example", registered))
    assert headers["Access-Control-Allow-Origin"] == "https://admin.shop.example"
    assert headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert set(headers["Access-Control-Allow-Headers"].split(", ")) == {"Authorization", "Content-Type"}
    assert "Access-Control-Allow-Credentials" not in headers
    assert dict(cors.bulk_preflight("https://evil.example", registered)) == {"Vary": "Origin"}
    assert dict(cors.bulk_preflight(None, registered)) == {"Vary": "Origin"}


def test_origin_allowed_needs_a_browser_origin():
    assert cors.origin_allowed("https://shop.example/", KEY_ORIGINS)
    assert not cors.origin_allowed(None, KEY_ORIGINS)
    assert not cors.origin_allowed("https://SHOP.example.evil", KEY_ORIGINS)


def test_bulk_in_the_app_follows_the_keys_origins(app, client):
    """Wired in the verify edge: answers and preflights for the key's origins only, never credentials."""
    if client.post("/api/v1/verify/bulk", json={"items": []}).status_code == 404:
        pytest.skip("POST /api/v1/verify/bulk is not on main yet (issue 17, the 'bulk' helper): this test runs once it is")
    _, key = app.extensions["registry"].platforms.create(name="shop", per_minute=100, per_day=1000,
                                                         origins=["https://shop.example"])
    body = {"json": {"items": [{"number": "A-1"}]}}
    auth = {"Authorization": f"Bearer {key}"}
    allowed = client.post("/api/v1/verify/bulk", headers={**auth, **ORIGIN}, **body)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Origin" in allowed.headers["Vary"] and "Access-Control-Allow-Credentials" not in allowed.headers
    for origin in ({"Origin": "https://evil.example"}, {}):
        answered = client.post("/api/v1/verify/bulk", headers={**auth, **origin}, **body)
        assert answered.status_code == 200 and "Access-Control-Allow-Origin" not in answered.headers
    refused = client.post("/api/v1/verify/bulk", headers=ORIGIN, **body)
    assert refused.status_code == 401 and "Access-Control-Allow-Origin" not in refused.headers
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    preflight = client.options("/api/v1/verify/bulk", headers={**ORIGIN, **ask})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    other = client.options("/api/v1/verify/bulk", headers={"Origin": "https://evil.example", **ask})
    assert "Access-Control-Allow-Origin" not in other.headers
