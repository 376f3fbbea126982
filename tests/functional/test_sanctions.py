"""Measures with the institution heard: proposed by one officer, the institution's statement, a
second officer's decision, the public verdict page, the verify JSON's unchanged ``abnormal`` key,
lifting, and the sealed admin log — on both stacks."""
from __future__ import annotations

from sqlalchemy import select

from registry.accounts.models import AdminLogEntry
from registry.complaints.casework import InvalidAction, NotAllowed
from tests.builders import register
from tests.functional.regulator_helpers import csrf, institution, officer_client, rapp, rreg, sign_in  # noqa: F401
from tests.regulator_builders import officer


def _officer(rreg, code, username):
    with rreg.sessions() as session:
        return officer(session, code, username)


def _refused(call, code):
    try:
        call()
    except InvalidAction as exc:
        assert exc.code == code
    else:
        raise AssertionError(f"not refused: {code}")


def test_a_measure_is_heard_decided_by_a_second_officer_public_and_lifted(rapp, rreg):
    lab = institution(rreg, province="15", name="山东处理措施检测公司")
    register(rreg, lab, ["SN-2026-0001"])
    service = rreg.sanctions
    first, second = _officer(rreg, "15", "first"), _officer(rreg, "15", "second")
    s = service.propose(first, lab.id, measure="abnormal", ground="missing_filing", reason="2025 年度统计报表未报送",
                        year=2025)
    assert s.status == "proposed" and s.hearing_due > service.today()
    _refused(lambda: service.decide(second, s.id, confirm=True, reason="x"), "hearing_open")
    try:
        service.decide(_officer(rreg, "19", "gd"), s.id, confirm=True, reason="x")
    except NotAllowed:
        pass
    else:
        raise AssertionError("another province decided")

    # the institution sees it and states its case in its portal
    own = sign_in(rapp, rreg, "institution", institution=lab)
    page = own.get("/institution/sanctions").get_data(as_text=True)
    assert "列入异常检验检测机构名录" in page and "2025 年度统计报表未报送" in page
    other = sign_in(rapp, rreg, "institution", institution=institution(rreg, province="15"))
    assert "2025 年度统计报表未报送" not in other.get("/institution/sanctions").get_data(as_text=True)
    assert other.post(f"/institution/sanctions/{s.id}/statement",
                      data={"csrf_token": csrf(other, "/institution/sanctions"), "statement": "x"}).status_code == 404
    response = own.post(f"/institution/sanctions/{s.id}/statement",
                        data={"csrf_token": csrf(own, "/institution/sanctions"), "statement": "系统故障，已于 2 月补报。"})
    assert response.status_code == 303
    _refused(lambda: service.state_case(lab.id, s.id, "再说一次", actor="lab"), "wrong_state")  # once

    _refused(lambda: service.decide(first, s.id, confirm=True, reason="x"), "second_officer")
    client = rapp.test_client()
    assert client.get("/api/v1/verify?number=SN-2026-0001").get_json()["institution"]["abnormal"] is False
    service.decide(second, s.id, confirm=True, reason="陈述理由不成立")
    rreg.refresh()  # the directory follows the abnormal flag (as after any listing)
    body = client.get("/api/v1/verify?number=SN-2026-0001").get_json()
    assert body["institution"]["abnormal"] is True  # the same key, meaning what it always meant
    verdict = client.get("/verify?number=SN-2026-0001").get_data(as_text=True)
    assert 'id="measures"' in verdict and service.today().isoformat() in verdict

    service.lift(second, s.id, "已整改")
    rreg.refresh()
    assert client.get("/api/v1/verify?number=SN-2026-0001").get_json()["institution"]["abnormal"] is False
    assert "已于" in client.get("/verify?number=SN-2026-0001").get_data(as_text=True)
    with rreg.sessions() as session:
        actions = list(session.scalars(select(AdminLogEntry.action).where(AdminLogEntry.target == f"sanction:{s.id}")
                                       .order_by(AdminLogEntry.seq)))
        assert actions == ["sanction_proposed", "sanction_case_stated", "sanction_confirmed", "sanction_lifted"]
        assert rreg.admin_log.verify(session).ok


def test_the_console_proposes_and_refuses_clearly(rapp, rreg):
    lab = institution(rreg, province="15", name="山东控制台检测公司")
    desk = officer_client(rapp, rreg, "15")
    token = csrf(desk, "/regulator/sanctions")
    bad = desk.post("/regulator/sanctions", data={"csrf_token": token, "uscc": "NOPE", "measure": "warning",
                                                  "ground": "late_filing", "reason": "x"})
    assert bad.status_code == 303 and "找不到该机构" in desk.get(bad.headers["Location"]).get_data(as_text=True)
    made = desk.post("/regulator/sanctions", data={"csrf_token": token, "uscc": lab.uscc, "measure": "public_notice",
                                                   "ground": "false_filing", "reason": "报告份数与登记编号严重不符",
                                                   "year": "2025"})
    assert made.status_code == 303
    detail = desk.get(made.headers["Location"])
    assert detail.status_code == 200 and "报告份数与登记编号严重不符" in detail.get_data(as_text=True)
    sanction_id = int(made.headers["Location"].rsplit("/", 1)[1])
    guangdong = officer_client(rapp, rreg, "19")
    assert guangdong.get(f"/regulator/sanctions/{sanction_id}").status_code == 403
    assert "山东控制台检测公司" not in guangdong.get("/regulator/sanctions").get_data(as_text=True)
    refused = guangdong.post("/regulator/sanctions", data={"csrf_token": csrf(guangdong, "/regulator/sanctions"),
                                                          "uscc": lab.uscc, "measure": "warning",
                                                          "ground": "late_filing", "reason": "x"})
    assert refused.status_code == 403
