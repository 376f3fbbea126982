"""Annual statistics direct reporting: the filing workflow and its sealed trail, the
declared-vs-registered check, who sees what, and the CLI's exit codes — on both stacks."""
from __future__ import annotations


import pytest
from openpyxl import load_workbook

from registry.statistics.reports import DEFAULT_SECTIONS
from registry.statistics.service import StatisticsRefused
from tests.builders import register
from tests.functional.regulator_helpers import csrf, institution, officer_client, rapp, rreg, sign_in  # noqa: F401
from tests.regulator_builders import officer

GOOD = {
    "institution_type": "enterprise", "private": "1", "legal_form": "legal_entity", "province": "15", "city": "济南",
    "fields": ["environment", "water"], "revenue": "820.5", "staff": "31", "instruments": "170",
    "instrument_value": "1200", "lab_area": "900", "reports": "12", "cnas": "1", "national_center": "0",
    "specialised": "0", "sites": "济南市历下区经十路 1 号",
}


# the annual report's sections (the default set, all required), as an institution fills them
REPORT = {s.key: f"{s.title_zh}：本年度情况说明。" for s in DEFAULT_SECTIONS if s.applies == "all"}


def _answers(lab, **changes):
    return {**GOOD, "certificates": lab.certificates_text, **changes}


@pytest.fixture
def lab(rreg):
    inst = institution(rreg, province="15", name="山东统计检测公司")
    with rreg.sessions() as session:
        from registry.institutions.models import Certificate

        inst.certificates_text = "\n".join(session.scalars(
            __import__("sqlalchemy").select(Certificate.number).where(Certificate.institution_id == inst.id)))
    rreg.statistics.open_year(2026, actor="test")
    rreg.statistics.save(inst.id, 2026, {}, actor="lab", report=REPORT)  # the report's texts stay through later saves
    return inst


def _officer(rreg, code="15"):
    with rreg.sessions() as session:
        return officer(session, code)


def test_the_workflow_from_draft_to_approved_and_reopened_is_sealed(rreg, lab):
    service = rreg.statistics
    view = service.filing_for(lab.id, 2026, actor="lab")
    assert view.filing.status == "draft" and view.filing.reviewer.code == "15"
    service.save(lab.id, 2026, _answers(lab, revenue="很多", staff="3.5", institution_type="x"), actor="lab")
    with pytest.raises(StatisticsRefused) as refused:
        service.submit(lab.id, 2026, actor="lab")
    assert refused.value.code == "invalid"
    assert {k: e.code for k, e in refused.value.errors.items()} == {
        "revenue": "not_a_number", "staff": "not_whole", "institution_type": "unknown_choice"}
    assert service.filing_for(lab.id, 2026, actor="lab").filing.status == "draft"  # nothing changed
    service.save(lab.id, 2026, _answers(lab), actor="lab")
    assert service.submit(lab.id, 2026, actor="lab").filing.status == "submitted"
    reviewer = _officer(rreg)
    with pytest.raises(StatisticsRefused, match="comment_required"):
        service.return_filing(reviewer, view.filing.id, {})
    service.return_filing(reviewer, view.filing.id, {"revenue": "营业收入与财务报表不符"})
    returned = service.filing_for(lab.id, 2026, actor="lab").filing
    assert returned.status == "returned" and returned.comments == {"revenue": "营业收入与财务报表不符"}
    with pytest.raises(StatisticsRefused, match="wrong_state"):
        service.approve(reviewer, view.filing.id)
    service.save(lab.id, 2026, _answers(lab, revenue="790"), actor="lab")
    assert service.submit(lab.id, 2026, actor="lab").filing.status == "resubmitted"
    service.approve(reviewer, view.filing.id)
    with pytest.raises(StatisticsRefused, match="wrong_state"):
        service.save(lab.id, 2026, _answers(lab), actor="lab")  # approved: only a reopening changes it
    with pytest.raises(StatisticsRefused, match="reason_required"):
        service.reopen(reviewer, view.filing.id, " ")
    service.reopen(reviewer, view.filing.id, "证书清单需补充")
    final = service.own_view(lab.id, view.filing.id)
    assert final.filing.status == "reopened" and final.intact
    assert [e.action for e in final.events] == [
        "filing_opened", "filing_submitted", "filing_returned", "filing_resubmitted", "filing_approved",
        "filing_reopened"]
    with rreg.sessions() as session:
        assert rreg.statistics_trail.verify(session).ok
        # a change around the trail no longer matches the state its newest event sealed
        from registry.statistics.models import Filing

        session.get(Filing, view.filing.id).status = "approved"
        session.commit()
    assert not service.own_view(lab.id, view.filing.id).intact


def test_declared_reports_are_checked_against_the_numbers_registered_for_the_year(rreg, lab):
    for q in (1, 2, 3, 4):
        register(rreg, lab, [f"SD2026-Q{q}-{i:03d}" for i in range(q)], quarter=f"2026Q{q}")  # 10 numbers
    register(rreg, lab, ["SD2025-0001"], quarter="2025Q4")  # another year's: not counted
    service = rreg.statistics
    filing = service.filing_for(lab.id, 2026, actor="lab").filing
    service.save(lab.id, 2026, _answers(lab, reports="30"), actor="lab")
    view = service.submit(lab.id, 2026, actor="lab")
    assert view.registered == 10
    rules = {f.rule: f.figures for f in view.findings}
    assert rules["numbers_missing"]["declared"] == 30 and rules["numbers_missing"]["registered"] == 10
    assert "numbers_undeclared" not in rules
    service.return_filing(_officer(rreg), filing.id, {"reports": "与登记编号数不符"})
    service.save(lab.id, 2026, _answers(lab, reports="4"), actor="lab")
    view = service.submit(lab.id, 2026, actor="lab")
    assert [f.rule for f in view.findings if f.rule.startswith("numbers_")] == ["numbers_undeclared"]
    service.return_filing(_officer(rreg), filing.id, {"reports": "请核对"})
    service.save(lab.id, 2026, _answers(lab, reports="10", certificates=lab.certificates_text + "\n991500000001"),
                 actor="lab")
    view = service.submit(lab.id, 2026, actor="lab")
    assert {f.rule for f in view.findings} == {"certificate_not_own"}


def test_an_institution_sees_only_its_own_filing(rapp, rreg, lab):
    other = institution(rreg, province="15", name="另一家统计检测公司")
    own = sign_in(rapp, rreg, "institution", institution=lab)
    page = own.get("/institution/statistics/2026")
    assert page.status_code == 200 and "2026" in page.get_data(as_text=True)
    filing_id = rreg.statistics.filing_for(lab.id, 2026, actor="lab").filing.id
    assert own.get(f"/institution/statistics/filings/{filing_id}").status_code == 200
    stranger = sign_in(rapp, rreg, "institution", institution=other)
    assert stranger.get(f"/institution/statistics/filings/{filing_id}").status_code == 404
    assert "山东统计检测公司" not in stranger.get("/institution/statistics/2026").get_data(as_text=True)


def test_the_form_shows_each_fields_problem_and_keeps_the_answers(rapp, rreg, lab):
    client = sign_in(rapp, rreg, "institution", institution=lab)
    token = csrf(client, "/institution/statistics/2026")
    data = {**_answers(lab, revenue="abc", staff=""), "csrf_token": token, "step": "submit",
            **{f"section_{k}": v for k, v in REPORT.items()}}
    response = client.post("/institution/statistics/2026", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "请填写数字" in html and "请填写此项" in html and 'value="abc"' in html
    response = client.post("/institution/statistics/2026?lang=en", data=data)
    assert "Enter a number" in response.get_data(as_text=True)
    data.update(revenue="800", staff="30")
    assert client.post("/institution/statistics/2026", data=data).status_code == 303
    assert "已提交" in client.get("/institution/statistics/2026?lang=zh").get_data(as_text=True)


def test_a_reviewer_sees_only_its_jurisdiction(rapp, rreg, lab):
    service = rreg.statistics
    service.save(lab.id, 2026, _answers(lab), actor="lab")
    filing_id = service.submit(lab.id, 2026, actor="lab").filing.id
    guangdong = officer_client(rapp, rreg, "19")
    assert guangdong.get(f"/regulator/statistics/filings/{filing_id}").status_code == 403
    token = csrf(guangdong, "/regulator/statistics")
    assert guangdong.post(f"/regulator/statistics/filings/{filing_id}/approve",
                          data={"csrf_token": token}).status_code == 403
    assert "山东统计检测公司" not in guangdong.get("/regulator/statistics").get_data(as_text=True)
    shandong = officer_client(rapp, rreg, "15")
    queue = shandong.get("/regulator/statistics?sort=findings&desc=1").get_data(as_text=True)
    assert "山东统计检测公司" in queue
    assert "<td>山东</td>" in queue and "<td>15</td>" not in queue  # provinces by name, not by code
    token = csrf(shandong, f"/regulator/statistics/filings/{filing_id}")
    response = shandong.post(f"/regulator/statistics/filings/{filing_id}/return",
                             data={"csrf_token": token, "comment_staff": "人数与社保记录不符"})
    assert response.status_code == 303
    assert service.own_view(lab.id, filing_id).filing.comments == {"staff": "人数与社保记录不符"}
    export = shandong.get("/regulator/statistics.csv?year=2026")
    assert export.status_code == 200 and "山东统计检测公司" in export.get_data(as_text=True)
    samr = officer_client(rapp, rreg, "00")
    assert samr.get(f"/regulator/statistics/filings/{filing_id}").status_code == 200


def test_approved_filings_make_the_tables(rapp, rreg, lab):
    service = rreg.statistics
    service.save(lab.id, 2026, _answers(lab, revenue="1500"), actor="lab")
    filing_id = service.submit(lab.id, 2026, actor="lab").filing.id
    assert service.tables(2026).approved == 0
    service.approve(_officer(rreg), filing_id)
    tables = service.tables(2026)
    assert tables.approved == 1 and tables.total.this_year.revenue == 1500
    assert [r.key for r in tables.by["size"]] == ["large"]
    assert {r.key for r in tables.by["field"]} == {"environment", "water"}
    page = officer_client(rapp, rreg, "15").get("/regulator/statistics/tables?year=2026").get_data(as_text=True)
    assert "已计入 1 份" in page and "规模以上" in page


def test_cli_exit_codes(rapp, rreg, lab, tmp_path):
    runner = rapp.test_cli_runner()
    assert runner.invoke(args=["statistics", "open", "2026"]).exit_code == 2  # already open
    result = runner.invoke(args=["statistics", "open", "2025"])
    assert result.exit_code == 0 and "2025" in result.output
    assert runner.invoke(args=["statistics", "open", "twenty"]).exit_code == 2
    assert runner.invoke(args=["statistics", "open", "1800"]).exit_code == 2
    remind = runner.invoke(args=["statistics", "remind", "2026"])
    assert remind.exit_code == 0 and lab.uscc in remind.output
    assert all(len(line.split("\t")) == 3 for line in remind.output.splitlines())
    out = tmp_path / "tables.xlsx"
    result = runner.invoke(args=["statistics", "export", "2026", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_workbook(out).active.max_row >= 2
    assert runner.invoke(args=["statistics", "export", "2026", "--out", str(tmp_path / "no" / "t.xlsx")]).exit_code == 2
    assert runner.invoke(args=["statistics", "export", "2031", "--out", str(out)]).exit_code == 2
    assert runner.invoke(args=["statistics", "export", "x", "--out", str(out)]).exit_code == 2


def test_demo_data_shows_every_case(rapp, rreg):
    """Three years of demo filings: approved, returned, resubmitted, awaiting review, late, missing, and
    declared reports that disagree with the numbers registered in both directions."""
    result = rapp.test_cli_runner().invoke(args=["demo-data", "--institutions", "20", "--numbers-per-quarter", "5"])
    assert result.exit_code == 0 and "demo statistics:" in result.output, result.output
    years = [y.year for y in rreg.statistics.years()]
    assert years == [2025, 2024, 2023]  # the clock: 2026-10-15, before the 2026 filing opens in December
    with rreg.sessions() as session:
        samr = officer(session, "00")
    rows = rreg.statistics.queue(samr, 2024)
    assert {"approved", "returned", "resubmitted", "submitted", "not_started"} <= {r.status for r in rows}
    assert any(r.late for r in rows) and any(r.missing for r in rows)
    rules = {f.rule for r in rows if r.filing_id for f in rreg.statistics.view(samr, r.filing_id).findings}
    assert {"numbers_missing", "numbers_undeclared", "late_filing", "certificate_not_own"} <= rules
    assert rreg.statistics.tables(2024).approved == sum(r.status == "approved" for r in rows)


def test_a_draft_saved_as_it_is_typed_stays_intact_and_a_change_around_the_trail_does_not(rreg, lab):
    """Autosave keeps a draft's answers moving between transitions: the seal then holds what the
    institution cannot change (status, reviewer, the reviewer's comments), and that is checked."""
    service = rreg.statistics
    view = service.filing_for(lab.id, 2026, actor="lab")
    service.save(lab.id, 2026, _answers(lab, revenue="700"), actor="lab")
    service.save(lab.id, 2026, _answers(lab, revenue="710"), actor="lab", report=REPORT)
    assert service.own_view(lab.id, view.filing.id).intact  # edited twice since it was opened
    service.submit(lab.id, 2026, actor="lab")
    service.return_filing(_officer(rreg), view.filing.id, {"revenue": "请核对"})
    service.save(lab.id, 2026, _answers(lab, revenue="720"), actor="lab")
    assert service.own_view(lab.id, view.filing.id).intact  # returned and corrected, not yet resubmitted
    from registry.statistics.models import Filing

    with rreg.sessions() as session:  # the reviewer's comment quietly removed
        session.get(Filing, view.filing.id).comments = {}
        session.commit()
    assert not service.own_view(lab.id, view.filing.id).intact
