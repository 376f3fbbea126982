"""The annual report and the social responsibility report filed with the statistics: sections an
admin defines per year, texts and PDF attachments in the filing's workflow and sealed trail, who
may download a file, and the page's background save — on both stacks."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from fpdf import FPDF

from registry.statistics.reports import DEFAULT_SECTIONS, PdfRefused, check_pdf
from registry.statistics.service import StatisticsRefused
from tests.functional.regulator_helpers import csrf, institution, officer_client, rapp, rreg, sign_in  # noqa: F401
from tests.functional.test_statistics import GOOD, REPORT, _officer
from tests.regulator_builders import officer


def make_pdf(text: str = "integrity statement") -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text=text)
    return bytes(pdf.output())


@pytest.fixture
def lab(rreg):
    inst = institution(rreg, province="15", name="山东年报检测公司")
    rreg.statistics.open_year(2026, actor="test")
    with rreg.sessions() as session:
        from registry.institutions.models import Certificate
        from sqlalchemy import select

        inst.certificates_text = "\n".join(session.scalars(select(Certificate.number).where(
            Certificate.institution_id == inst.id)))
    return inst


def _answers(lab, **changes):
    return {**GOOD, "certificates": lab.certificates_text, **changes}


def _files(rapp) -> set[str]:
    folder = Path(rapp.config["FILES_DIR"]) / "statistics"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_required_sections_hold_a_submission_and_are_named(rreg, lab):
    service = rreg.statistics
    service.save(lab.id, 2026, _answers(lab), actor="lab", report={"basic_info": "基本情况"})
    with pytest.raises(StatisticsRefused) as refused:
        service.submit(lab.id, 2026, actor="lab")
    missing = {k for k, e in refused.value.errors.items() if e.code == "required"}
    assert missing == {k for k in REPORT if k != "basic_info"}
    # the social responsibility report applies only to an institution owning a 国家质检中心
    assert not any(s.report == "social" for s in service.filing_for(lab.id, 2026, actor="lab").sections)
    service.save(lab.id, 2026, _answers(lab, national_center="1"), actor="lab")
    view = service.filing_for(lab.id, 2026, actor="lab")
    assert view.national_center and {s.key for s in view.sections_of("social")} == {
        s.key for s in DEFAULT_SECTIONS if s.report == "social"}
    with pytest.raises(StatisticsRefused) as refused:
        service.submit(lab.id, 2026, actor="lab")
    assert "sr_commitment" in refused.value.errors and "basic_info" not in refused.value.errors
    assert service.filing_for(lab.id, 2026, actor="lab").filing.status == "draft"  # nothing changed
    service.save(lab.id, 2026, _answers(lab), actor="lab", report=REPORT)
    assert service.submit(lab.id, 2026, actor="lab").filing.status == "submitted"


def test_a_pdf_is_checked_by_its_content_kept_and_sealed(rapp, rreg, lab):
    service = rreg.statistics
    good = make_pdf()
    assert check_pdf(good) == 1
    for data, reason in ((b"", "empty"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "wrong_type"),
                         (b"%PDF-1.7\n garbage without an end", "broken"),
                         (b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n%%EOF\n", "broken"),
                         (good[: len(good) // 2] + b"\n%%EOF\n", "broken")):
        with pytest.raises(PdfRefused) as refused:
            service.add_attachment(lab.id, 2026, "integrity_statement", io.BytesIO(data), "x.pdf", actor="lab")
        assert refused.value.reason == reason, data[:20]
    service.max_attachment_bytes = len(good) - 1
    with pytest.raises(PdfRefused, match="too_large"):
        service.add_attachment(lab.id, 2026, "integrity_statement", io.BytesIO(good), "big.pdf", actor="lab")
    service.max_attachment_bytes = 20 * 1024 * 1024
    assert _files(rapp) == set()  # nothing refused is left on disk
    with pytest.raises(StatisticsRefused, match="unknown_section"):
        service.add_attachment(lab.id, 2026, "sr_commitment", io.BytesIO(good), "x.pdf", actor="lab")  # not a centre
    entry = service.add_attachment(lab.id, 2026, "integrity_statement", io.BytesIO(good), "../诚信承诺书", actor="lab")
    assert entry["name"] == "诚信承诺书.pdf" and entry["size"] == len(good) and _files(rapp) == {entry["id"] + ".pdf"}
    service.max_attachments = 1
    with pytest.raises(PdfRefused, match="too_many"):
        service.add_attachment(lab.id, 2026, "integrity_statement", io.BytesIO(good), "2.pdf", actor="lab")
    # a required section is answered by its text or a file
    report = {k: v for k, v in REPORT.items() if k != "integrity_statement"}
    service.save(lab.id, 2026, _answers(lab), actor="lab", report=report)
    view = service.submit(lab.id, 2026, actor="lab")
    assert view.filing.status == "submitted" and view.intact
    with pytest.raises(StatisticsRefused, match="wrong_state"):  # locked while under review
        service.remove_attachment(lab.id, 2026, entry["id"], actor="lab")
    own = service.own_view(lab.id, view.filing.id)
    assert [e.action for e in own.events] == ["filing_opened", "attachment_added", "filing_submitted"]
    # the file list is sealed with the filing: a row changed around the trail is seen
    with rreg.sessions() as session:
        from registry.statistics.models import Filing

        session.get(Filing, view.filing.id).attachments = []
        session.commit()
    assert not service.own_view(lab.id, view.filing.id).intact


def test_sections_are_commented_returned_and_locked_after_approval(rreg, lab):
    service = rreg.statistics
    service.save(lab.id, 2026, _answers(lab), actor="lab", report=REPORT)
    filing_id = service.submit(lab.id, 2026, actor="lab").filing.id
    reviewer = _officer(rreg)
    service.return_filing(reviewer, filing_id, {"proficiency_testing": "请列出能力验证的结果。"})
    view = service.filing_for(lab.id, 2026, actor="lab")
    assert view.filing.comments == {"proficiency_testing": "请列出能力验证的结果。"}
    entry = service.add_attachment(lab.id, 2026, "proficiency_testing", io.BytesIO(make_pdf("PT")), "pt.pdf",
                                   actor="lab")
    service.remove_attachment(lab.id, 2026, entry["id"], actor="lab")
    service.save(lab.id, 2026, _answers(lab), actor="lab", report={**REPORT, "proficiency_testing": "2026 年参加 3 次，均满意。"})
    assert service.submit(lab.id, 2026, actor="lab").filing.status == "resubmitted"
    service.approve(reviewer, filing_id)
    with pytest.raises(StatisticsRefused, match="wrong_state"):
        service.add_attachment(lab.id, 2026, "basic_info", io.BytesIO(make_pdf()), "late.pdf", actor="lab")
    final = service.own_view(lab.id, filing_id)
    assert final.report["proficiency_testing"] == "2026 年参加 3 次，均满意。" and final.intact
    assert [e.action for e in final.events][-5:] == ["filing_returned", "attachment_added", "attachment_removed",
                                                     "filing_resubmitted", "filing_approved"]


def test_the_filing_page_takes_texts_and_files_and_serves_them_only_to_who_may_see_them(rapp, rreg, lab):
    client = sign_in(rapp, rreg, "institution", institution=lab)
    page = client.get("/institution/statistics/2026").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and "诚信承诺" in page and "autosave.js" in page
    assert 'id="report-social"' not in page
    token = csrf(client, "/institution/statistics/2026")
    data = {**_answers(lab), "csrf_token": token, "step": "save",
            **{f"section_{k}": v for k, v in REPORT.items()},
            "file_integrity_statement": [(io.BytesIO(make_pdf()), "承诺书.pdf"), (io.BytesIO(b"MZ\x90\0"), "virus.exe")]}
    response = client.post("/institution/statistics/2026", data=data, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "virus.exe" in html and "只接受 PDF 文件" in html
    view = rreg.statistics.filing_for(lab.id, 2026, actor="lab")
    assert [a["name"] for a in view.filing.attachments] == ["承诺书.pdf"]  # the good one kept, the texts saved
    assert view.report["basic_info"] == REPORT["basic_info"]
    attachment = view.filing.attachments[0]["id"]
    url = f"/institution/statistics/filings/{view.filing.id}/attachments/{attachment}"
    with client.get(url) as download:
        body = download.get_data()
    assert download.status_code == 200 and body.startswith(b"%PDF-")
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Content-Type-Options"] == "nosniff" and download.mimetype == "application/pdf"
    other = url[:-1] + ("1" if url.endswith("0") else "0")  # another id (one in 16 ends with 0)
    with client.get(other) as missing:
        assert missing.status_code == 404
    assert client.get(f"/institution/statistics/filings/{view.filing.id}/attachments/..%2Fx").status_code == 404
    stranger = sign_in(rapp, rreg, "institution", institution=institution(rreg, province="15", name="另一家"))
    assert stranger.get(url).status_code == 404
    # submitted: the reviewer of its jurisdiction and SAMR download it, another province may not
    data = {**_answers(lab), "csrf_token": token, "step": "submit", **{f"section_{k}": v for k, v in REPORT.items()}}
    assert client.post("/institution/statistics/2026", data=data).status_code == 303
    review_url = f"/regulator/statistics/filings/{view.filing.id}/attachments/{attachment}"
    for code, status in (("15", 200), ("00", 200), ("19", 403)):
        with officer_client(rapp, rreg, code).get(review_url) as response:
            response.get_data()
        assert response.status_code == status, code
    shandong = officer_client(rapp, rreg, "15")
    review = shandong.get(f"/regulator/statistics/filings/{view.filing.id}").get_data(as_text=True)
    assert "承诺书.pdf" in review and 'name="comment_quality_management"' in review
    token = csrf(shandong, f"/regulator/statistics/filings/{view.filing.id}")
    assert shandong.post(f"/regulator/statistics/filings/{view.filing.id}/return",
                         data={"csrf_token": token, "comment_quality_management": "请补充内审情况"}).status_code == 303
    page = client.get("/institution/statistics/2026").get_data(as_text=True)
    assert 'id="comment-quality_management"' in page and "请补充内审情况" in page
    # a removal from the page
    token = csrf(client, "/institution/statistics/2026")
    data = {**_answers(lab), "csrf_token": token, "remove": attachment, **{f"section_{k}": v for k, v in REPORT.items()}}
    assert client.post("/institution/statistics/2026", data=data).status_code == 303
    assert rreg.statistics.filing_for(lab.id, 2026, actor="lab").filing.attachments is None
    assert _files(rapp) == set()


def test_the_draft_saves_in_the_background(rapp, rreg, lab):
    client = sign_in(rapp, rreg, "institution", institution=lab)
    token = csrf(client, "/institution/statistics/2026")
    response = client.post("/institution/statistics/2026/draft", data={"csrf_token": token, "revenue": "12",
                                                                       "section_basic_info": "正在写"})
    assert response.status_code == 200 and response.get_json()["saved"] is True
    assert len(response.get_json()["at"]) == 5  # HH:MM
    view = rreg.statistics.filing_for(lab.id, 2026, actor="lab")
    assert view.answers["revenue"] == "12" and view.report == {"basic_info": "正在写"}
    assert client.post("/institution/statistics/2026/draft", data={"revenue": "1"}).status_code == 400  # no CSRF token
    assert client.post("/institution/statistics/2031/draft", data={"csrf_token": token}).status_code == 404
    rreg.statistics.save(lab.id, 2026, _answers(lab), actor="lab", report=REPORT)
    rreg.statistics.submit(lab.id, 2026, actor="lab")
    locked = client.post("/institution/statistics/2026/draft", data={"csrf_token": token, "revenue": "1"})
    assert locked.status_code == 409 and locked.get_json()["saved"] is False
    assert rreg.statistics.filing_for(lab.id, 2026, actor="lab").answers["revenue"] == GOOD["revenue"]


# --- the admin's pages ---------------------------------------------------------------------------
def _admin_entries(rreg, action):
    with rreg.sessions() as session:
        from registry.accounts.models import AdminLogEntry
        from sqlalchemy import select

        return list(session.scalars(select(AdminLogEntry).where(AdminLogEntry.action == action)))


def test_the_admin_sets_the_calendar_sealed_in_the_admin_log(rapp, rreg, lab):
    admin = sign_in(rapp, rreg, "admin")
    page = admin.get("/admin/statistics")
    assert page.status_code == 200 and 'value="2027-01-31"' in page.get_data(as_text=True)
    token = csrf(admin, "/admin/statistics")
    dates = {"year": "2026", "opens_on": "2026-12-01", "file_by": "2027-02-05", "review_by": "2027-03-05",
             "check_by": "2027-04-15", "csrf_token": token}
    for bad, message in (({"file_by": "2027-05-01"}, "日期须依次为"), ({"check_by": "明年"}, "请按“2027-01-31”的格式")):
        response = admin.post("/admin/statistics", data={**dates, **bad})
        assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert admin.post("/admin/statistics", data={**dates, "year": "2019"}).status_code == 400  # not open
    assert _admin_entries(rreg, "stat_calendar") == []  # nothing changed
    assert admin.post("/admin/statistics", data=dates).status_code == 303
    year = rreg.statistics.years()[0]
    assert (year.file_by.isoformat(), year.review_by.isoformat(), year.check_by.isoformat()) == (
        "2027-02-05", "2027-03-05", "2027-04-15")
    [entry] = _admin_entries(rreg, "stat_calendar")
    assert entry.target == "statistics:2026" and "2027-02-05" in entry.detail
    with rreg.sessions() as session:
        assert rreg.admin_log.verify(session).ok
    assert "填报截止 2027-02-05" in sign_in(rapp, rreg, "institution", institution=lab).get(
        "/institution/statistics/2026").get_data(as_text=True)


def test_the_admin_defines_the_years_sections(rapp, rreg, lab):
    admin = sign_in(rapp, rreg, "admin")
    page = admin.get("/admin/statistics/2026/sections").get_data(as_text=True)
    assert 'value="integrity_statement"' in page and 'value="sr_commitment"' in page
    count = len(DEFAULT_SECTIONS) + 3
    token = csrf(admin, "/admin/statistics/2026/sections")
    rows = {"csrf_token": token, "rows": str(count)}
    for i, s in enumerate(DEFAULT_SECTIONS):
        if s.key == "complaints_handled":
            continue  # removed
        rows.update({f"key_{i}": s.key, f"report_{i}": s.report, f"title_zh_{i}": s.title_zh,
                     f"title_en_{i}": s.title_en, f"applies_{i}": s.applies, f"required_{i}": "1"})
    i = len(DEFAULT_SECTIONS)
    rows.update({f"key_{i}": "lab_safety", f"report_{i}": "annual", f"title_zh_{i}": "实验室安全",
                 f"title_en_{i}": "Laboratory safety", f"applies_{i}": "all"})  # optional
    for bad, message in (({f"key_{i}": "Lab Safety"}, "代码须以小写字母开头"), ({f"key_{i}": "revenue"}, "已被调查表字段使用"),
                         ({f"key_{i}": "basic_info"}, "代码重复"), ({f"title_en_{i}": ""}, "请填写中文和英文标题"),
                         ({f"applies_{i}": "everyone"}, "请从列出的选项中选择")):
        response = admin.post("/admin/statistics/2026/sections", data={**rows, **bad})
        assert response.status_code == 400 and message in response.get_data(as_text=True), bad
    assert admin.post("/admin/statistics/2026/sections", data={"csrf_token": token}).status_code == 400
    assert _admin_entries(rreg, "stat_sections") == []
    assert admin.post("/admin/statistics/2026/sections", data=rows).status_code == 303
    sections = {s.key: s for s in rreg.statistics.sections(2026)}
    assert "complaints_handled" not in sections and not sections["lab_safety"].required
    assert len(_admin_entries(rreg, "stat_sections")) == 1
    assert admin.get("/admin/statistics/2031/sections").status_code == 404
    page = sign_in(rapp, rreg, "institution", institution=lab).get("/institution/statistics/2026?lang=en")
    html = page.get_data(as_text=True)
    assert "Laboratory safety" in html and 'name="section_complaints_handled"' not in html
    # the reviewer may comment on the new section; a removed one is no longer a section
    service = rreg.statistics
    service.save(lab.id, 2026, _answers(lab), actor="lab", report=REPORT)
    filing_id = service.submit(lab.id, 2026, actor="lab").filing.id
    with pytest.raises(StatisticsRefused, match="unknown_field"):
        service.return_filing(_officer(rreg), filing_id, {"complaints_handled": "x"})
    service.return_filing(_officer(rreg), filing_id, {"lab_safety": "请说明危化品管理"})


def test_the_admin_maps_professional_fields_to_review_groups(rapp, rreg, lab):
    from registry.statistics.service import REVIEW_GROUPS

    service = rreg.statistics
    assert service.review_groups()["food"] == REVIEW_GROUPS["food"]
    admin = sign_in(rapp, rreg, "admin")
    page = admin.get("/admin/statistics/review-groups").get_data(as_text=True)
    assert 'name="group_food"' in page and 'name="group_metrology"' in page
    token = csrf(admin, "/admin/statistics/review-groups")
    assert admin.post("/admin/statistics/review-groups", data={"csrf_token": token, "group_food": "15"}).status_code == 400
    assert admin.post("/admin/statistics/review-groups", data={"csrf_token": token}).status_code == 400
    assert admin.post("/admin/statistics/review-groups",
                      data={"csrf_token": token, "group_food": "", "group_metrology": "43"}).status_code == 303
    groups = service.review_groups()
    assert groups["food"] is None and groups["metrology"] == "43" and groups["vehicle"] == REVIEW_GROUPS["vehicle"]
    [entry] = _admin_entries(rreg, "stat_review_groups")
    assert '"metrology": "43"' in entry.detail
    # a national-certificate holder in metrology may now choose review group 43, one in food no longer 43
    national = institution(rreg, province="00", name="国家计量检测中心")
    with rreg.sessions() as session:
        from registry.institutions.models import Institution

        inst = session.get(Institution, national.id)
        choices = {a.code for a in service.reviewer_choices(session, inst, ["metrology", "food"])}
    assert "43" in choices and "40" in choices
