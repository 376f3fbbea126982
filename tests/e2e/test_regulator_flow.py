"""End to end in Debian's Chromium: a complaint filed on the public page reaches the right
province's queue, is accepted, a question is asked and answered, it is concluded, and the
complainant's status page follows. Screenshots go to tests/artifacts/ for a person to look at."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.live import live_server
from tests.functional.regulator_helpers import PASSWORD, institution, make_account, rapp, rreg  # noqa: F401

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1100, "height": 900}




@pytest.fixture
def server(rapp, rreg):
    with live_server(rapp, "e2e-regulator") as url:
        yield url


def new_page(browser, viewport):
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    page = context.new_page()
    page.problems = []
    page.on("console", lambda msg: page.problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.problems.append(str(exc)))
    return page


def shot(page, name: str, stack: str):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"regulator-{stack}-{name}.png"), full_page=True)


def fits(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_complaint_from_public_page_to_conclusion(browser, server, rapp, rreg, stack):
    name = stack["STACK"]
    institution(rreg, province="15", name="山东端到端检测有限公司")
    officer = make_account(rreg, "regulator", authority="15", username="sd-officer")
    make_account(rreg, "regulator", authority="19", username="gd-officer")

    # the public files a complaint on a phone
    public = new_page(browser, PHONE)
    public.goto(f"{server}/complaints/new?number=SD-E2E-0001&institution=山东端到端检测有限公司&status=not_found")
    public.fill("#description", "在招标文件中看到这份报告，查询结果为未登记。")
    public.fill("#name", "王五")
    public.fill("#contact", "13700137000")
    public.click("button[type=submit]")
    public.wait_for_selector("#tracking-code")
    status_url = public.url
    assert "已收到" in public.inner_text(".status-line")
    shot(public, "1-public-submitted", name)

    # another province does not see it
    other = new_page(browser, DESKTOP)
    sign_in(other, server, "gd-officer")
    other.goto(f"{server}/regulator/complaints")
    assert "SD-E2E-0001" not in other.content()

    # Shandong's officer finds it in the queue and accepts it
    desk = new_page(browser, DESKTOP)
    sign_in(desk, server, officer.username)
    desk.goto(f"{server}/regulator/complaints")
    desk.wait_for_selector("text=SD-E2E-0001")
    shot(desk, "2-queue", name)
    desk.click("text=SD-E2E-0001")
    desk.wait_for_selector("#events")
    assert "王五" not in desk.content()
    assert desk.is_visible("#seal-ok")
    shot(desk, "3-trail-received", name)
    # one action at a time: choose it, fill its form, check what will change, confirm
    desk.click("#act-accept")
    desk.click("#do-accept")
    desk.wait_for_selector("#will-change")
    desk.click("#confirm-action")
    desk.wait_for_selector("#confirmation:has-text('投诉已受理')")
    desk.click("#back-to-trail")
    desk.wait_for_selector("#complaint-status:has-text('已受理')")

    # asks a question, which shows on the complainant's page
    desk.click("#act-request-info")
    desk.fill("#note", "请补充报告首页照片和购买渠道。")
    desk.click("#do-request-info")
    desk.wait_for_selector("text=正在等待投诉人回答")
    public.goto(status_url)
    assert "请补充报告首页照片和购买渠道。" in public.inner_text("#question")
    assert "审核部门已受理" in public.inner_text(".timeline")
    shot(public, "4-public-question", name)
    assert fits(public)
    public.fill("#answer", "照片已寄送，购买渠道为某电商平台。")
    public.click("#answer-form button[type=submit]")
    public.wait_for_selector("text=您的补充说明已提交")
    assert not public.is_visible("#answer-form")

    # the officer sees the answer, looks at the personal data (logged) and concludes
    desk.reload()
    assert "照片已寄送" in desk.inner_text("#events")
    desk.click("text=查看投诉人信息")
    assert "王五" in desk.inner_text("#personal-data")
    desk.go_back()
    desk.reload()
    assert "查看投诉人信息" in desk.inner_text("#events")
    desk.click("#act-conclude")
    desk.check("#finding-forged")
    desk.fill("#note", "经核查，机构未出具该编号的报告，报告系伪造。")
    desk.click("#do-conclude")
    assert "报告系伪造" in desk.inner_text("#check-finding")
    desk.click("#confirm-action")
    desk.wait_for_selector("#confirmation:has-text('投诉已办结')")
    desk.click("#back-to-trail")
    desk.wait_for_selector("#complaint-status:has-text('已办结')")
    shot(desk, "5-trail-concluded", name)

    # the complainant's page follows
    public.goto(status_url)
    assert "已办结" in public.inner_text(".status-line")
    assert "报告系伪造" in public.inner_text("#finding")
    assert "王五" not in public.content() and "经核查，机构未出具" not in public.content()
    shot(public, "6-public-concluded", name)

    # the console on a phone: dashboard with charts, queue, trail
    phone = new_page(browser, PHONE)
    sign_in(phone, server, officer.username)
    for path, label in (("/regulator/", "7-phone-dashboard"), ("/regulator/complaints?status=all", "8-phone-queue"),
                        ("/regulator/compliance?quarter=2026Q3", "9-phone-compliance")):
        phone.goto(server + path)
        assert fits(phone), path
        shot(phone, label, name)
    phone.goto(server + "/regulator/complaints?status=all")
    phone.click("text=SD-E2E-0001")
    phone.wait_for_selector("#events")
    assert fits(phone)
    shot(phone, "10-phone-trail", name)
    phone.goto(server + "/regulator/?lang=en")
    shot(phone, "11-phone-dashboard-en", name)

    for p in (public, other, desk, phone):
        assert not p.problems, p.problems  # CSP violations and script errors show up here
    assert rapp.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def sign_in(page, server, username):
    page.goto(f"{server}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
