"""Hostile text through the upload API is cleaned, never a 500 (issue 13, item 2)."""
from __future__ import annotations

from registry.registration.models import ReportNumber
from tests.functional.test_institution_portal import portal_app, preg  # noqa: F401 - fixtures
from tests.functional.test_upload_api import bearer, lab  # noqa: F401 - fixtures


def test_a_nul_in_a_withdrawal_reason(portal_app, preg, lab):  # noqa: F811
    client, inst, token = lab
    assert client.post("/api/v1/numbers", json={"quarter": "2026Q3", "numbers": ["N-1", "N-2"]},
                       headers=bearer(token)).status_code == 200
    response = client.post("/api/v1/withdrawals", json={"numbers": ["N-1"], "reason": "作\x00废\x1b"},
                           headers=bearer(token))
    assert response.status_code == 200 and response.get_json()["withdrawn"] == 1
    response = client.post("/api/v1/withdrawals", json={"items": [{"number": "N-2", "reason": "\x00"}]},
                           headers=bearer(token))
    assert response.status_code == 200 and response.get_json()["problems"][0]["code"] == "reason_missing"
    with preg.sessions() as session:
        reasons = [r.withdraw_reason for r in session.query(ReportNumber).filter(ReportNumber.withdrawn_at.isnot(None))]
    assert reasons == ["作废"]
