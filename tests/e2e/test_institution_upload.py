"""End to end in Chromium: a lab manager signs in, uploads a real-looking XLSX, reads the
validation report, confirms, reads the receipt — on a desktop and at 375 px, in Chinese and
English. Screenshots go to tests/artifacts/."""
from __future__ import annotations

from pathlib import Path

import pytest

from registry.accounts.accounts import AccountService
from tests.e2e.live import live_server
from tests.builders import make_institution

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PASSWORD = "correct horse battery"




@pytest.fixture
def server(stack):
    from portal import create_app
    from tests.functional.test_institution_portal import fixed_clock

    app = create_app({**stack, "CLOCK": fixed_clock()})
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted()
    with live_server(app, "e2e-portal") as url:
        yield url, reg
    reg.close()


def make_xlsx(path: Path) -> Path:
    """What a lab exports: a title row, the 报告编号 header, numbers, a range and a bad row."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "2026年第三季度"
    sheet.append(["北京检测中心 2026 年第三季度出具报告编号清单"])
    sheet.append(["序号", "报告编号", "委托单位", "签发日期"])
    rows = [("WT2026-0101", "甲公司"), ("WT2026-0102", "乙公司"), ("WT2026-0103~WT2026-0110", "丙公司"),
            ("WT2026-0111！", "丁公司"), ("wt2026-0112", "戊公司")]
    for i, (number, client) in enumerate(rows, 1):
        sheet.append([i, number, client, "2026-08-01"])
    book.save(path)
    return path


def shot(page, name: str, stack: dict) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"institution-{name}-{stack['STACK']}.png"), full_page=True)


@pytest.mark.parametrize("viewport", [{"width": 1024, "height": 800}, {"width": 375, "height": 812}],
                         ids=["desktop", "phone"])
def test_lab_manager_uploads_an_xlsx_and_reads_the_receipt(browser, server, stack, tmp_path, viewport):
    base, reg = server
    with reg.sessions() as session:
        inst = make_institution(session, name="北京市朝阳区检验检测中心")
    AccountService(sessions=reg.sessions, clock=reg.clock).create(
        username="lab-manager", password=PASSWORD, role="institution", institution_uscc=inst.uscc)
    workbook = make_xlsx(tmp_path / "2026Q3报告编号.xlsx")
    tag = "phone" if viewport["width"] < 500 else "desktop"

    context = browser.new_context(viewport=viewport, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(f"{base}/institution/")
        assert page.url.startswith(f"{base}/login")
        page.fill("#username", "lab-manager")
        page.fill("#password", PASSWORD)
        shot(page, f"10-login-{tag}", stack)
        page.click("button[type=submit].primary")
        page.wait_for_url(f"{base}/institution/")
        assert page.locator("h1").inner_text() == "北京市朝阳区检验检测中心"
        shot(page, f"11-overview-{tag}", stack)

        page.click("nav a:has-text(\"上传编号\")")
        assert page.locator("#quarter").input_value() == "2026Q3"  # the quarter whose window is open
        page.set_input_files("#file", str(workbook))
        page.click("button:has-text(\"检查文件\")")
        page.wait_for_selector("text=检查结果：请确认")
        body = page.locator("main").inner_text()
        assert "11" in body and "WT2026-0111！" in body  # 11 valid numbers; the bad row with its reason
        assert "报告编号含有不允许的字符" in body
        shot(page, f"12-preview-{tag}", stack)
        # nothing registered before confirming
        assert reg.verifier.verify("WT2026-0101", inst.uscc).status == "not_found"

        page.click("button:has-text(\"确认登记 11 个编号\")")
        page.wait_for_selector("text=登记回执")
        receipt = page.locator("main").inner_text()
        assert "已按时登记" in receipt and "2026Q3报告编号.xlsx" in receipt
        assert page.locator("a", has_text="下载被拒绝的行").count() == 1
        shot(page, f"13-receipt-{tag}", stack)
        no_overflow = page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        assert no_overflow, "the receipt scrolls sideways"

        page.click("a.lang-switch")
        page.wait_for_load_state()
        assert page.locator("html").get_attribute("lang") == "en"
        shot(page, f"14-receipt-en-{tag}", stack)

        reg.refresh()
        assert reg.verifier.verify("WT2026-0105", inst.uscc).status == "found"
        page.goto(f"{base}/institution/?lang=zh")
        shot(page, f"15-overview-after-{tag}", stack)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        assert not errors, errors
    except Exception:
        shot(page, f"99-failure-{tag}", stack)
        raise
    finally:
        context.close()
