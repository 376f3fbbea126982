"""The upload API on both stacks: token lifecycle, files, continuous registration gathered into
one daily batch, idempotency keys, withdrawals, errors and the per-token rate limit."""
from __future__ import annotations

import io
import re

import pytest

from registry.registration.models import Batch
from tests.functional.test_institution_portal import csrf_token, portal_app, preg, signed_in  # noqa: F401 - fixtures


def create_token(client, name: str = "LIMS") -> str:
    token = csrf_token(client, "/institution/tokens")
    page = client.post("/institution/tokens", data={"csrf_token": token, "name": name}).get_data(as_text=True)
    match = re.search(r'<p class="mono token">(rnr_[^<]+)</p>', page)
    assert match, page
    return match.group(1)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def lab(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    return client, inst, create_token(client)


def test_token_lifecycle(portal_app, preg, lab):
    client, inst, token = lab
    page = client.get("/institution/tokens").get_data(as_text=True)
    assert token not in page  # shown once
    assert token[:12] in page and "LIMS" in page
    ok = client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["A-1"]}, headers=bearer(token))
    assert ok.status_code == 200
    token_id = int(re.search(r"/institution/tokens/(\d+)/revoke", page).group(1))
    revoke = client.post(f"/institution/tokens/{token_id}/revoke",
                         data={"csrf_token": csrf_token(client, "/institution/tokens")})
    assert revoke.status_code == 303
    assert "已吊销" in client.get("/institution/tokens").get_data(as_text=True)
    refused = client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["A-2"]}, headers=bearer(token))
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "unauthorized"
    # another institution cannot revoke this institution's token
    other, _ = signed_in(portal_app, preg)
    assert other.post(f"/institution/tokens/{token_id}/revoke",
                      data={"csrf_token": csrf_token(other, "/institution/tokens")}).status_code == 404


def test_a_disabled_accounts_token_and_an_expired_token_answer_401(portal_app, preg, lab):
    """Issue 13 item 12: tokens die with their account and expire (the portal shows when)."""
    import datetime as dt

    from sqlalchemy import update

    from registry.accounts.models import Account, ApiToken

    client, inst, token = lab
    with preg.sessions() as session:
        stored = session.query(ApiToken).one()
        owner = session.query(Account).filter_by(institution_id=inst.id).one()
    assert stored.account_id == owner.id
    assert stored.expires_at == stored.created_at + dt.timedelta(days=365)
    assert "有效期至" in client.get("/institution/tokens").get_data(as_text=True)
    call = {"json": {"quarter": "2026Q3", "numbers": ["A-1"]}}
    assert client.post("/api/v1/numbers", headers=bearer(token), **call).status_code == 200
    second = create_token(client, "second")
    with preg.sessions() as session:
        session.execute(update(ApiToken).where(ApiToken.name == "second")
                        .values(expires_at=preg.clock() - dt.timedelta(seconds=1)))
        session.commit()
    expired = client.post("/api/v1/numbers", headers=bearer(second), **call)
    assert expired.status_code == 401 and expired.get_json()["error"]["code"] == "unauthorized"
    assert "expired" in expired.get_json()["error"]["message"]
    assert "已过期" in client.get("/institution/tokens").get_data(as_text=True)
    preg.accounts.set_active(owner.id, False, actor="root")
    refused = portal_app.test_client().post("/api/v1/numbers", headers=bearer(token), **call)
    assert refused.status_code == 401 and "expired" not in refused.get_json()["error"]["message"]
    preg.accounts.set_active(owner.id, True, actor="root")
    again = portal_app.test_client().post("/api/v1/numbers", headers=bearer(token), **call)
    assert again.status_code == 401  # revoked, not merely hidden while disabled


def test_tokens_are_stored_hashed(preg, lab):
    from registry.accounts.models import ApiToken

    _, _, token = lab
    with preg.sessions() as session:
        stored = session.query(ApiToken).one()
    assert token not in (stored.token_hash, stored.prefix) and len(stored.token_hash) == 64


def test_without_a_valid_token_401(portal_app):
    client = portal_app.test_client()
    for headers in ({}, bearer("rnr_nope"), {"Authorization": "Basic eDp5"}):
        response = client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["A"]}, headers=headers)
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"


def test_file_batch_returns_the_receipt(portal_app, preg, lab):
    client, inst, token = lab
    data = "报告编号\nAPI-0001~API-0003\n§\n".encode()
    response = client.post("/api/v1/batches", headers=bearer(token), content_type="multipart/form-data",
                           data={"quarter": "2026Q3", "file": (io.BytesIO(data), "lims.csv")})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["accepted"] == 3 and body["rejected"] == 1 and body["late"] is False
    assert body["source"] == "api" and body["file_name"] == "lims.csv" and len(body["sha256"]) == 64
    assert body["problems"][0]["value"] == "§"
    again = client.post("/api/v1/batches", headers=bearer(token), content_type="multipart/form-data",
                        data={"quarter": "2026Q3", "file": (io.BytesIO(data), "lims.csv")})
    assert again.status_code == 200 and again.get_json()["repeated"] is True
    assert again.get_json()["batch_id"] == body["batch_id"]
    assert client.get(f"/api/v1/verify?number=API-0002&institution={inst.uscc}").get_json()["status"] == "found"


def test_file_batch_errors(portal_app, lab):
    client, _, token = lab
    post = lambda **data: client.post("/api/v1/batches", headers=bearer(token), data=data,  # noqa: E731
                                      content_type="multipart/form-data")
    assert post(quarter="2026Q3").get_json()["error"]["code"] == "invalid_request"
    assert post(quarter="nope", file=(io.BytesIO(b"A\n"), "a.txt")).status_code == 400
    assert post(quarter="2027Q2", file=(io.BytesIO(b"A\n"), "a.txt")).status_code == 400
    bad = post(quarter="2026Q3", file=(io.BytesIO("报告编号\n§\n".encode()), "a.csv"))
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_file"
    assert bad.get_json()["problems"][0]["code"] == "bad_character"
    refused = post(quarter="2026Q3", file=(io.BytesIO(b"PK\x03\x04 not a workbook"), "a.xlsx"))
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "invalid_file"


def test_continuous_registration_gathers_one_batch_per_day(portal_app, preg, lab):
    client, inst, token = lab
    first = client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["C-1", "C-2", "C-1"]},
                        headers=bearer(token)).get_json()
    second = client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["C-2", "C-3", "§"]},
                         headers=bearer(token)).get_json()
    assert (first["accepted"], first["duplicates"]) == (2, 1)
    assert (second["accepted"], second["duplicates"], second["rejected"]) == (1, 1, 1)
    assert first["batch"]["batch_id"] == second["batch"]["batch_id"]
    other_quarter = client.post("/api/v1/numbers", json={"quarter": "2026Q4", "numbers": ["D-1"]},
                                headers=bearer(token)).get_json()
    assert other_quarter["batch"]["batch_id"] != first["batch"]["batch_id"]
    with preg.sessions() as session:
        batch = session.get(Batch, first["batch"]["batch_id"])
        assert (batch.source, batch.accepted, batch.duplicates, batch.rejected) == ("api", 3, 2, 1)
        assert session.query(Batch).filter(Batch.institution_id == inst.id).count() == 2
    preg.refresh()
    assert client.get(f"/api/v1/verify?number=C-3&institution={inst.uscc}").get_json()["status"] == "found"


def test_a_new_day_starts_a_new_batch(portal_app, preg, lab):
    import datetime as dt

    from tests.functional.test_institution_portal import NOW

    client, _, token = lab
    first = client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["E-1"]}, headers=bearer(token))
    preg.registration._clock = lambda: (NOW + dt.timedelta(days=1)).astimezone(dt.timezone.utc)
    second = client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["E-2"]}, headers=bearer(token))
    assert first.get_json()["batch"]["batch_id"] != second.get_json()["batch"]["batch_id"]


def test_idempotency_key_replays_the_first_answer(portal_app, preg, lab):
    client, _, token = lab
    headers = {**bearer(token), "Idempotency-Key": "lims-call-42"}
    body = {"quarter": "2026Q3", "numbers": ["K-1", "K-2"]}
    first = client.post("/api/v1/numbers", json=body, headers=headers)
    second = client.post("/api/v1/numbers", json=body, headers=headers)
    assert first.get_json() == second.get_json() and first.get_json()["accepted"] == 2
    assert second.headers["Idempotent-Replayed"] == "true"
    with preg.sessions() as session:
        assert session.get(Batch, first.get_json()["batch"]["batch_id"]).duplicates == 0
    changed = client.post("/api/v1/numbers", json={**body, "numbers": ["K-3"]}, headers=headers)
    assert changed.status_code == 400 and changed.get_json()["error"]["code"] == "invalid_request"


def test_numbers_errors(portal_app, lab):
    client, _, token = lab
    post = lambda payload: client.post("/api/v1/numbers", json=payload, headers=bearer(token))  # noqa: E731
    assert post({"numbers": ["A"]}).get_json()["error"]["code"] == "invalid_request"
    assert post({"quarter": "2026Q3", "numbers": []}).status_code == 400
    assert post({"quarter": "2026Q3", "numbers": ["§", 5]}).get_json()["error"]["code"] == "invalid_number"
    too_many = post({"quarter": "2026Q3", "numbers": [f"N-{i}" for i in range(10_001)]})
    assert too_many.status_code == 413 and too_many.get_json()["error"]["code"] == "payload_too_large"
    assert client.post("/api/v1/numbers", data="not json", headers=bearer(token)).status_code == 400


def test_withdrawals_verify_as_withdrawn(portal_app, preg, lab):
    client, inst, token = lab
    client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["W-1", "W-2", "W-3"]}, headers=bearer(token))
    response = client.post("/api/v1/withdrawals", json={"numbers": ["W-1", "W-9"], "reason": "作废"},
                           headers=bearer(token))
    body = response.get_json()
    assert (body["withdrawn"], body["rejected"]) == (1, 1) and body["problems"][0]["code"] == "not_registered"
    items = client.post("/api/v1/withdrawals", json={"items": [{"number": "W-2", "reason": "重出"},
                                                                {"number": "W-3"}]}, headers=bearer(token)).get_json()
    assert items["withdrawn"] == 1 and items["problems"][0]["code"] == "reason_missing"
    file = client.post("/api/v1/withdrawals", headers=bearer(token), content_type="multipart/form-data",
                       data={"file": (io.BytesIO("报告编号,撤销原因\nW-3,作废\n".encode()), "w.csv")}).get_json()
    assert file["withdrawn"] == 1
    for number in ("W-1", "W-2", "W-3"):
        verdict = client.get(f"/api/v1/verify?number={number}&institution={inst.uscc}").get_json()
        assert verdict["status"] == "withdrawn"
    assert client.post("/api/v1/withdrawals", json=[], headers=bearer(token)).status_code == 400


def test_an_institution_registers_only_for_itself(portal_app, preg, lab):
    client, inst, token = lab
    _, other = signed_in(portal_app, preg)
    client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["X-1"]}, headers=bearer(token))
    preg.refresh()  # the directory learns of the second institution
    assert client.get(f"/api/v1/verify?number=X-1&institution={other.uscc}").get_json()["status"] == "mismatch"


def test_rate_limited_per_token(stack, preg):
    from portal import create_app
    from tests.functional.test_institution_portal import fixed_clock

    app = create_app({**stack, "CLOCK": fixed_clock(), "RATELIMIT_UPLOAD_API": "2/minute"})
    try:
        client, _ = signed_in(app, app.extensions["registry"])
        first, second = create_token(client, "one"), create_token(client, "two")
        call = lambda t: client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["R-1"]},  # noqa: E731
                                     headers=bearer(t))
        assert [call(first).status_code for _ in range(3)] == [200, 200, 429]
        limited = call(first)
        assert limited.get_json()["error"]["code"] == "rate_limited" and "Retry-After" in limited.headers
        assert call(second).status_code == 200  # each token has its own allowance
    finally:
        app.extensions["registry"].close()


def test_api_needs_no_csrf_but_ignores_session_cookies(portal_app, preg, lab):
    client, _, _ = lab  # signed in through the browser session, but with no token
    response = client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["S-1"]})
    assert response.status_code == 401
