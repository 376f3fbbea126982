"""Access matrix over every /regulator/ route: anonymous, institution user, admin, a regulator of
another province, the handling province's regulator and SAMR."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from registry.complaints.models import ComplaintEvent
from registry.complaints.service import store_attachment
from tests.functional.regulator_helpers import csrf, complaint, institution, officer_client, rapp, rreg, sign_in  # noqa: F401

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def world(rapp, rreg):
    lab = institution(rreg, province="15", name="山东矩阵检测公司")
    stored = store_attachment(io.BytesIO(PNG), Path(rapp.config["FILES_DIR"]))
    case = complaint(rreg, province="15", institution=lab, number="MATRIX-0001",
                     attachment=(stored.path, stored.content_type))
    answered = store_attachment(io.BytesIO(PNG), Path(rapp.config["FILES_DIR"]))  # sent with an answer
    with rreg.sessions() as session:
        event = ComplaintEvent(complaint_id=case.id, kind="attachment_added", actor="public", public=False,
                               note=answered.path)
        session.add(event)
        session.commit()
        event_id = event.id
    rreg.statistics.open_year(2026, actor="t")
    rreg.statistics.filing_for(lab.id, 2026, actor="t")
    answers = {"institution_type": "enterprise", "private": "1", "legal_form": "legal_entity", "province": "15",
               "city": "济南", "fields": ["food"], "revenue": "500", "staff": "20", "instruments": "90",
               "instrument_value": "600", "lab_area": "500", "reports": "0", "cnas": "0", "national_center": "0",
               "specialised": "0", "certificates": "X", "sites": "济南"}
    from tests.functional.test_statistics import REPORT

    rreg.statistics.save(lab.id, 2026, answers, actor="t", report=REPORT)
    from tests.functional.test_statistics_reports import make_pdf

    attachment = rreg.statistics.add_attachment(lab.id, 2026, "integrity_statement", io.BytesIO(make_pdf()), "a.pdf",
                                                actor="t")
    filing = rreg.statistics.submit(lab.id, 2026, actor="t").filing
    with rreg.sessions() as session:
        from tests.regulator_builders import officer

        proposer = officer(session, "15", "matrix-proposer")
    sanction = rreg.sanctions.propose(proposer, lab.id, measure="warning", ground="late_filing", reason="t")
    platform, _key = rreg.platforms.create(name="矩阵平台", per_minute=10, per_day=100)
    requests = {}  # two account requests of the lab, verified: one to approve, one to refuse
    with rreg.sessions() as session:
        certificate = session.get(type(lab), lab.id).certificates[0].number
    for decision in ("approve", "refuse"):
        row, token = rreg.onboarding.request(uscc=lab.uscc, certificate=certificate, username=f"matrix-{decision}",
                                             email=f"{decision}@lab.example.cn")
        requests[decision] = rreg.onboarding.verify(token).id
    return {"lab": lab, "case": case, "event_id": event_id, "platform_id": platform.id, "filing_id": filing.id,
            "sanction_id": sanction.id, "requests": requests, "attachment_id": attachment["id"]}


def regulator_rules(app):
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("regulator.")]
    assert len(rules) >= 17, [r.rule for r in rules]
    return rules


def urls_for_rule(app, rule, world) -> list[str]:
    from flask import url_for

    from portal.regulator import ACTIONS

    values = {"complaint_id": world["case"].id, "institution_id": world["lab"].id, "quarter": "2026Q3",
              "event_id": world["event_id"], "platform_id": world["platform_id"], "filing_id": world["filing_id"],
              "sanction_id": world["sanction_id"], "attachment_id": world["attachment_id"]}
    variants = [{}]
    if "fmt" in rule.arguments:
        variants = [{"fmt": f} for f in ("csv", "xlsx")]
    if "action" in rule.arguments:
        variants = [{"action": a} for a in sorted(ACTIONS)]
    if "decision" in rule.arguments:  # a measure's decision steps
        variants = [{"decision": d} for d in ("confirm", "drop", "lift")]
    if "step" in rule.arguments:  # a statistics filing's review steps, in the order of the work
        variants = [{"step": s} for s in ("return", "approve", "reopen")]
    if "request_id" in rule.arguments:  # an account request approved, another refused
        variants = [{"decision": d, "request_id": world["requests"][d]} for d in ("approve", "refuse")]
    with app.test_request_context():
        return [url_for(rule.endpoint, **{k: values[k] for k in rule.arguments if k in values}, **v)
                for v in variants]


# Routes only SAMR (the national authority) may use: platform keys are issued nationally.
NATIONAL_ONLY = {"regulator.platforms", "regulator.revoke_platform"}


def calls(app, world):
    for rule in regulator_rules(app):
        for url in urls_for_rule(app, rule, world):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                scoped = bool({"complaint_id", "institution_id", "filing_id", "sanction_id", "request_id"} & set(rule.arguments))
                yield rule, method, url, scoped or rule.endpoint in NATIONAL_ONLY


def expected_success(rule, method) -> int:
    """GET answers 200; a POST redirects (303), except issuing a platform key: 200 with the key shown
    once; and a certificate list sent without its file: 400, the page saying why."""
    if rule.endpoint == "regulator.onboarding_bulk":
        return 400
    return 200 if method == "GET" or rule.endpoint == "regulator.platforms" else 303


def request(client, method, url):
    if method == "GET":
        response = client.get(url)
    else:
        response = client.post(url, data={"csrf_token": csrf(client), "note": "矩阵测试", "reason": "矩阵测试",
                                          "abnormal": "1", "name": "矩阵平台", "per_minute": "10",
                                          "per_day": "100", "days": "30"})
    response.get_data()
    response.close()
    return response


def test_the_blueprint_is_guarded_for_regulators_only(rapp):
    assert rapp.blueprints["regulator"].guarded_roles == frozenset({"regulator"})


def test_anonymous_is_sent_to_sign_in(rapp, world):
    client = rapp.test_client()
    for rule, method, url, _ in calls(rapp, world):
        response = request(client, method, url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url)


@pytest.mark.parametrize("role", ["institution", "admin"])
def test_other_roles_are_forbidden(rapp, rreg, world, role):
    client = sign_in(rapp, rreg, role, institution=world["lab"] if role == "institution" else None)
    for rule, method, url, _ in calls(rapp, world):
        assert request(client, method, url).status_code == 403, (role, method, url)


def test_another_provinces_regulator(rapp, rreg, world):
    client = officer_client(rapp, rreg, "19")
    for rule, method, url, scoped in calls(rapp, world):
        status = request(client, method, url).status_code
        if scoped:
            assert status == 403, (method, url)
        else:
            assert status in (200, 303, expected_success(rule, method)), (method, url, status)
    # its own lists do not show the other province's complaint or institution
    for url in ("/regulator/complaints?status=all", "/regulator/complaints.csv?status=all", "/regulator/",
                "/regulator/compliance?quarter=2026Q3", "/regulator/institutions?q=山东矩阵",
                "/regulator/statistics", "/regulator/statistics.csv"):
        body = client.get(url).get_data(as_text=True)
        assert "MATRIX-0001" not in body and "山东矩阵检测公司" not in body, url


@pytest.mark.parametrize("code", ["15", "00"])
def test_the_handling_province_and_samr(rapp, rreg, world, code):
    client = officer_client(rapp, rreg, code)
    for rule, method, url, _ in calls(rapp, world):
        status = request(client, method, url).status_code
        if rule.endpoint in NATIONAL_ONLY and code != "00":  # a province never issues platform keys
            assert status == 403, (method, url, status)
        else:
            assert status == expected_success(rule, method), (method, url, status)
    assert "MATRIX-0001" in client.get("/regulator/complaints").get_data(as_text=True)
    assert "山东矩阵检测公司" in client.get("/regulator/compliance?quarter=2026Q3").get_data(as_text=True)
    assert "山东矩阵检测公司" in client.get("/regulator/statistics").get_data(as_text=True)


def test_a_regulator_account_without_an_authority_is_forbidden(rapp, rreg, world):
    client = sign_in(rapp, rreg, "regulator")
    assert client.get("/regulator/").status_code == 403
