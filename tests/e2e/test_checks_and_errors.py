"""Issue 19 part 3 in Debian's Chromium: an error summary takes the focus and links to its field;
a complaint is rejected through the check-answers pattern (choose the action → its form → the
check page → confirm → the confirmation page naming the result)."""
from __future__ import annotations

import pytest

from tests.e2e.live import live_server
from tests.functional.regulator_helpers import complaint, make_account, rapp, rreg  # noqa: F401

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 812}


@pytest.fixture
def server(rapp, rreg):
    with live_server(rapp, "e2e-checks") as url:
        yield url


def _page(browser, viewport=PHONE):
    page = browser.new_context(viewport=viewport, locale="zh-CN").new_page()
    page.problems = []
    page.on("pageerror", lambda exc: page.problems.append(str(exc)))
    return page


def _sign_in(page, server, username):
    page.goto(f"{server}/login")
    page.fill("#username", username)
    page.fill("#password", "correct horse battery")
    page.click("button[type=submit]")
    page.wait_for_selector(".portal-nav")


def test_the_error_summary_takes_focus_and_links_to_the_field(browser, server):
    page = _page(browser)
    page.goto(f"{server}/complaints/new")
    page.click("button[type=submit]")
    page.wait_for_selector(".error-summary")
    assert page.evaluate("document.activeElement.classList.contains('error-summary')")
    links = page.locator(".error-summary a")
    assert links.count() >= 3  # number, category, description
    # each message sits above its field
    assert page.evaluate("""() => {
        const err = document.getElementById('description-error'), box = document.getElementById('description');
        return err.getBoundingClientRect().bottom <= box.getBoundingClientRect().top; }""")
    page.locator(".error-summary a[href='#description']").click()
    assert page.evaluate("location.hash") == "#description"
    assert not page.problems


def test_rejecting_a_complaint_goes_through_check_and_confirmation(browser, server, rreg):
    case = complaint(rreg, province="15", number="E2E-CHK-1")
    make_account(rreg, "regulator", authority="15", username="sd-checker")
    page = _page(browser)
    _sign_in(page, server, "sd-checker")
    page.goto(f"{server}/regulator/complaints/{case.id}")
    # on a phone the actions are within the first screen
    assert page.locator("#act-reject").bounding_box()["y"] < PHONE["height"]
    page.click("#act-reject")
    page.click("#do-reject")  # no reason: the summary takes focus
    page.wait_for_selector(".error-summary")
    assert page.evaluate("document.activeElement.classList.contains('error-summary')")
    page.fill("#note", "不属于资质认定管辖范围。")
    page.click("#do-reject")
    page.wait_for_selector("#will-change")
    assert "不属于资质认定管辖范围。" in page.inner_text("#check-note")
    page.click("#confirm-action")
    page.wait_for_selector("#confirmation")
    assert "已决定不予受理" in page.inner_text("#confirmation") and "E2E-CHK-1" in page.inner_text("#confirmation")
    page.click("#back-to-trail")
    page.wait_for_selector("#complaint-status:has-text('不予受理')")
    assert not page.problems
