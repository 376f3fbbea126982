"""End to end in Debian's Chromium: an institution files its annual statistics on a phone with an
error, sees the message, writes its annual report's sections (saved in the background as it types)
and attaches a PDF, corrects and submits; the provincial reviewer returns it with a comment on
one field; the institution corrects and resubmits; the reviewer approves it and it appears in the
national tables. Screenshots at phone and desktop width go to tests/artifacts/."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.live import DESKTOP, PHONE, live_server, new_page
from tests.e2e.test_regulator_flow import sign_in
from tests.functional.regulator_helpers import institution, make_account, rapp, rreg  # noqa: F401
from tests.functional.test_statistics import REPORT
from tests.functional.test_statistics_reports import make_pdf

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture
def server(rapp, rreg):
    with live_server(rapp, "e2e-statistics") as url:
        yield url


def shot(page, name: str, stack: str, *, at: str | None = None):
    """The whole page, and (``at``: a selector scrolled into view) the screen a person sees there."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"statistics-{stack}-{name}.png"), full_page=True)
    if at:
        page.locator(at).scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"statistics-{stack}-{name}-screen.png"))


def fits(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


def fill_survey(page, revenue: str):
    page.select_option("#f-institution_type", "enterprise")
    page.select_option("#f-private", "1")
    page.select_option("#f-legal_form", "legal_entity")
    page.select_option("#f-province", "15")
    page.fill("#f-city", "济南")
    page.check("input[name=fields][value=environment]")
    page.fill("#f-revenue", revenue)
    page.fill("#f-staff", "28")
    page.fill("#f-instruments", "160")
    page.fill("#f-instrument_value", "980")
    page.fill("#f-lab_area", "850")
    page.fill("#f-reports", "0")
    page.select_option("#f-cnas", "1")
    page.select_option("#f-national_center", "0")
    page.select_option("#f-specialised", "0")
    page.fill("#f-sites", "济南市历下区经十路 100 号")


def fill_report(page):
    for key, text in REPORT.items():
        page.fill(f"#f-{key}", text)


def test_file_return_resubmit_approve_and_count(browser, server, rapp, rreg, stack):
    name = stack["STACK"]
    lab = institution(rreg, province="15", name="山东统计端到端检测有限公司")
    make_account(rreg, "institution", institution=lab, username="sd-lab")
    make_account(rreg, "regulator", authority="15", username="sd-reviewer")
    rreg.statistics.open_year(2026, actor="e2e")

    # the institution fills the form on a phone, with an error
    context, phone = new_page(browser, PHONE)
    sign_in(phone, server, "sd-lab")
    phone.goto(f"{server}/institution/statistics")
    phone.click("text=填报或查看")
    fill_survey(phone, revenue="七百万")
    fill_report(phone)
    phone.wait_for_function("() => document.getElementById('autosave-status').textContent.includes('已保存')")
    assert rreg.statistics.filing_for(lab.id, 2026, actor="e2e").report == REPORT  # saved as it was typed
    pdf = ARTIFACTS / f"statistics-{name}-integrity.pdf"
    ARTIFACTS.mkdir(exist_ok=True)
    pdf.write_bytes(make_pdf("Integrity statement 2026"))
    phone.set_input_files("#file-integrity_statement", str(pdf))
    phone.click("#submit-filing")
    phone.wait_for_selector("#error-summary")
    assert "请填写数字" in phone.inner_text("#error-summary")
    assert "请填写数字" in phone.inner_text("#field-revenue")
    assert phone.input_value("#f-staff") == "28"  # the other answers are kept
    assert fits(phone)
    shot(phone, "phone-1-error", name, at="#error-summary")
    phone.fill("#f-revenue", "700")
    assert "integrity.pdf" in phone.inner_text("#field-integrity_statement")  # kept with the draft
    assert fits(phone)
    shot(phone, "phone-1-report", name, at="#field-integrity_statement")
    phone.click("#submit-filing")
    phone.wait_for_load_state()
    assert phone.inner_text("#filing-status") == "已提交"

    # the provincial reviewer, at a desk, returns it with a comment on one field
    desk_context, desk = new_page(browser, DESKTOP)
    sign_in(desk, server, "sd-reviewer")
    desk.goto(f"{server}/regulator/statistics")
    shot(desk, "desktop-2-queue", name)
    desk.click("text=山东统计端到端检测有限公司")
    assert "integrity.pdf" in desk.inner_text("#section-integrity_statement")
    with desk.expect_download() as download:
        desk.click("#section-integrity_statement a")
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF-")
    desk.fill("#c-revenue", "营业收入与审计报告不符，请按审计报告填写。")
    desk.fill("#c-proficiency_testing", "请写明能力验证的结果。")
    shot(desk, "desktop-2-review", name, at="#report-annual")
    desk.click("#return-filing")
    desk.wait_for_load_state()
    assert desk.inner_text("#filing-status") == "已退回修改"

    # the institution sees the comment, corrects the field and resubmits
    phone.goto(f"{server}/institution/statistics/2026")
    assert "营业收入与审计报告不符" in phone.inner_text("#comment-revenue")
    shot(phone, "phone-3-returned", name, at="#field-revenue")
    assert "请写明能力验证的结果" in phone.inner_text("#comment-proficiency_testing")
    phone.fill("#f-revenue", "735.5")
    phone.fill("#f-proficiency_testing", "参加 CNAS 能力验证 3 次，结果均为满意。")
    phone.click("#submit-filing")
    phone.wait_for_load_state()
    assert phone.inner_text("#filing-status") == "已重新提交"

    # approved, and counted in the national tables
    desk.reload()
    desk.click("#approve-filing")
    desk.wait_for_load_state()
    assert desk.inner_text("#filing-status") == "已审核通过"
    shot(desk, "desktop-4-approved", name)
    desk.goto(f"{server}/regulator/statistics/tables?year=2026")
    assert "已计入 1 份" in desk.inner_text("#tables-count")
    assert "736" in desk.inner_text("#tables-total")
    shot(desk, "desktop-5-tables", name)
    phone.goto(f"{server}/institution/statistics")
    assert "已审核通过" in phone.inner_text("#statistics-years")
    shot(phone, "phone-5-approved", name)
    assert phone.problems == [] and desk.problems == []
    context.close()
    desk_context.close()


def test_the_admin_edits_the_calendar_sections_and_review_groups(browser, server, rapp, rreg, stack):
    name = stack["STACK"]
    make_account(rreg, "admin", username="stats-admin")
    rreg.statistics.open_year(2026, actor="e2e")
    for size, label in ((PHONE, "phone"), (DESKTOP, "desktop")):
        context, page = new_page(browser, size)
        sign_in(page, server, "stats-admin")
        page.goto(f"{server}/admin/statistics")
        page.fill("#file_by-2026", "2027-02-05")
        page.click("#year-2026 ~ .actions button[type=submit]")
        page.wait_for_load_state()
        assert "已保存 2026 年的日程" in page.inner_text("body")
        assert fits(page)
        shot(page, f"{label}-6-admin-calendar", name)
        page.goto(f"{server}/admin/statistics/2026/sections")
        page.fill("#title_zh_6", "诚信承诺书")
        page.click("#save-sections")
        page.wait_for_load_state()
        assert page.input_value("#title_zh_6") == "诚信承诺书"
        assert fits(page)
        shot(page, f"{label}-7-admin-sections", name, at="#row-6")
        page.goto(f"{server}/admin/statistics/review-groups")
        page.select_option("#group_metrology", "43")
        page.click("#save-groups")
        page.wait_for_load_state()
        assert fits(page)
        shot(page, f"{label}-8-admin-groups", name)
        assert page.problems == []
        context.close()
    assert rreg.statistics.review_groups()["metrology"] == "43"
    assert rreg.statistics.years()[0].file_by.isoformat() == "2027-02-05"
