"""The audit chain over HTTP and the CLI on both stacks (issue 13, items 9 and 11): a complaint row
changed around the chain, an event of a complaint deleted, and the chain's key in /readyz."""
from __future__ import annotations

import logging

from sqlalchemy import delete, select, update

from registry.complaints.models import Complaint, ComplaintEvent, ComplaintFinding
from tests.functional.regulator_helpers import (  # noqa: F401
    act, complaint, institution, officer_client, rapp, rreg,
)
from tests.functional.test_regulator import file_public_complaint


def concluded_public_complaint(rapp, rreg):
    institution(rreg, province="15", name="山东封存检测公司")
    public = rapp.test_client()
    status_url = file_public_complaint(public, institution="山东封存检测公司")
    with rreg.sessions() as s:
        row = s.scalar(select(Complaint).order_by(Complaint.id.desc()))
    shandong = officer_client(rapp, rreg, "15")
    assert act(shandong, row.id, "accept", note="").status_code == 303
    assert act(shandong, row.id, "conclude", finding="forged", note="机构确认未出具该报告。").status_code == 303
    return public, status_url, shandong, row.id


def test_a_finding_changed_in_the_database_is_not_shown_as_sealed(rapp, rreg):
    public, status_url, shandong, cid = concluded_public_complaint(rapp, rreg)
    page = public.get(status_url).get_data(as_text=True)
    assert "经核查，报告系伪造" in page and 'id="seal-bad"' not in page
    assert rapp.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0

    with rreg.sessions() as s:
        s.execute(update(ComplaintFinding).where(ComplaintFinding.complaint_id == cid).values(finding="unfounded"))
        s.commit()
    page = public.get(status_url).get_data(as_text=True)
    assert 'id="seal-bad"' in page and "经核查，投诉问题不成立" not in page
    assert 'id="seal-bad"' in shandong.get(f"/regulator/complaints/{cid}").get_data(as_text=True)
    result = rapp.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and f"BROKEN at complaint {cid}" in result.output


def test_a_status_or_contact_changed_in_the_database_breaks_the_seal(rapp, rreg):
    public, status_url, shandong, cid = concluded_public_complaint(rapp, rreg)
    with rreg.sessions() as s:
        s.execute(update(Complaint).where(Complaint.id == cid).values(status="accepted", complainant_contact="x"))
        s.commit()
    assert 'id="seal-bad"' in public.get(status_url).get_data(as_text=True)
    assert rapp.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 1


def test_deleting_one_event_shows_on_the_complaints_own_trail_page(rapp, rreg):
    cases = [complaint(rreg, province="15") for _ in range(3)]
    client = officer_client(rapp, rreg, "15")
    assert act(client, cases[0].id, "accept").status_code == 303   # cases[0]'s newest event comes last
    assert act(client, cases[1].id, "note", note="内部").status_code == 303
    with rreg.sessions() as s:
        newest = s.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == cases[0].id)
                           .order_by(ComplaintEvent.seq.desc())).first()
        assert newest.kind == "accepted"
        s.execute(delete(ComplaintEvent).where(ComplaintEvent.id == newest.id))
        s.execute(update(Complaint).where(Complaint.id == cases[0].id).values(status="received"))
        s.commit()
    page = client.get(f"/regulator/complaints/{cases[0].id}").get_data(as_text=True)
    assert 'id="seal-bad"' in page and "处理记录完整，未被篡改" not in page


def test_readiness_says_degraded_without_an_audit_key_on_postgresql(stack, caplog):
    from portal import create_app

    with caplog.at_level(logging.WARNING, logger="workflows.services"):
        app = create_app({**stack, "AUDIT_KEY": "", "AUDIT_KEYS": ""})
    try:
        body = app.test_client().get("/readyz").get_json()
        if stack["STACK"] == "postgres-redis":
            assert body["parts"]["audit"] == {"status": "degraded", "key": "derived_from_secret_key"}
            assert "audit" in body["degraded"] and body["status"] == "degraded"
            assert any("AUDIT_KEY" in r.getMessage() for r in caplog.records)
        else:  # the embedded SQLite mode keeps its key beside the database, as designed
            assert body["parts"]["audit"]["status"] == "ok" and "audit" not in body["degraded"]
    finally:
        app.extensions["registry"].close()
    app = create_app({**stack, "AUDIT_KEY": "", "AUDIT_KEYS": "k2:new-secret,k1:old-secret"})
    try:
        body = app.test_client().get("/readyz").get_json()
        assert body["parts"]["audit"] == {"status": "ok", "key": "configured"}
        assert app.extensions["registry"].audit_chain.key_id == "k2"
    finally:
        app.extensions["registry"].close()
