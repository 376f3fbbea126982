"""In a real Chromium: an institution the page cannot match never gets the success style (a wrong,
a misspelled, a made-up institution; a QR link with a bad USCC); an abnormal institution's verdict
is a warning; the complaint tracking form keeps the form on a wrong code and goes to the status
page on a right one. Pages fit a phone. Screenshots go to SCREENS_DIR when it is set."""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.complaints.casework import Officer
from registry.compliance.abnormal import AbnormalService
from registry.institutions.authorities import seed_authorities
from registry.institutions.models import Authority
from tests.builders import register
from tests.e2e.live import DESKTOP, PHONE, live_server, new_page
from tests.e2e.test_browser import accessibility_problems, lab

pytestmark = pytest.mark.browser

SCREENS = os.environ.get("SCREENS_DIR")

# the colours of the success banner (site.css --ok-bg, --ok)
SUCCESS_COLOURS = {"rgb(232, 244, 236)", "rgb(23, 105, 46)"}


@pytest.fixture
def server(app, reg):
    with reg.sessions() as session:
        seed_authorities(session)
        session.commit()
    with live_server(app) as url:
        yield url


@pytest.fixture
def world(reg):
    registrant = lab(reg, name="杭州市质量技术监督检测院", province="11", former_names=("杭州质检所",))
    register(reg, registrant, ["HZ2026-000123"])
    abnormal = lab(reg, name="温州某某检测有限公司", province="11")
    register(reg, abnormal, ["WZ2026-0042"])
    with reg.sessions() as session:
        authority = session.scalar(select(Authority).where(Authority.code == "11"))
        officer = Officer(username="zj-officer", authority_id=authority.id, authority_code="11")
    listed = dt.datetime(2026, 9, 14, 2, 30, tzinfo=dt.timezone.utc)
    AbnormalService(sessions=reg.sessions, clock=lambda: listed).mark(officer, abnormal.id, "虚假报告")
    reg.refresh()
    return registrant, abnormal


def fits(page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, (page.url, overflow)
    assert accessibility_problems(page) == [], page.url


def shot(page, name: str) -> None:
    if SCREENS:
        Path(SCREENS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENS) / f"{name}.png"), full_page=True)


def banner_colours(page) -> set[str]:
    return set(page.locator(".verdict .banner").evaluate(
        "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).borderTopColor,"
        " getComputedStyle(b.querySelector('h1')).color, getComputedStyle(b.querySelector('.badge')).backgroundColor]"))


@pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)
def test_an_unmatched_institution_never_looks_like_a_success(server, reg, world, browser):
    registrant, _ = world
    context, page = new_page(browser, PHONE)
    try:
        urls = {
            "wrong": "/verify?number=HZ2026-000123&institution=宁波市检测中心",
            "misspelled": "/verify?number=HZ2026-000123&institution=杭州市质量技朮监督检测院",
            "no-suffix": "/verify?number=HZ2026-000123&institution=杭州市质量技术监督",
            "made-up": "/verify?number=HZ2026-000123&institution=不存在的检测实验室",
            "deep-link": "/v/NOTAUSCC/HZ2026-000123",
        }
        for name, url in urls.items():
            page.goto(server + url)
            verdict = page.locator("section.verdict")
            assert verdict.get_attribute("data-status") == "found", name  # the number's status
            assert verdict.get_attribute("data-state") == "unchecked", name
            assert "verdict-found" not in verdict.get_attribute("class"), name
            assert page.get_by_role("heading", level=1).inner_text() == "无法核对出具机构", name
            assert page.locator(".badge").inner_text() != "✓", name
            assert not banner_colours(page) & SUCCESS_COLOURS, name
            assert page.locator("#registrant .registrant-name").inner_text() == registrant.name, name
            assert f"请核对报告上印制的机构是否为 {registrant.name}" in page.locator("#registrant").inner_text()
            fits(page)
        # "did you mean" for the misspelled name leads to the right check
        page.goto(server + urls["misspelled"])
        page.locator("#near-names").get_by_role("link", name=registrant.name).click()
        page.wait_for_url(re.compile(r"institution=" + registrant.uscc))
        assert page.locator("section.verdict").get_attribute("data-state") == "found"
        assert page.get_by_role("heading", level=1).inner_text() == "已登记"
        assert banner_colours(page) & SUCCESS_COLOURS  # the control: a match is green
        assert page.problems == []
    finally:
        context.close()


@pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)
def test_an_abnormal_institution_is_a_warning(server, reg, world, browser):
    _, abnormal = world
    context, page = new_page(browser, DESKTOP)
    try:
        page.goto(server + "/verify?number=WZ2026-0042")
        verdict = page.locator("section.verdict")
        assert verdict.get_attribute("data-state") == "abnormal"
        assert not banner_colours(page) & SUCCESS_COLOURS
        assert page.get_by_role("heading", level=1).inner_text() == "已登记，但出具机构已列入异常名录"
        note = page.locator("#abnormal").inner_text()
        assert "2026-09-14" in note and "浙江省市场监督管理局" in note
        assert "虚假报告" not in page.locator("main").inner_text()
        fits(page)
    finally:
        context.close()


@pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)
def test_tracking_a_complaint(server, reg, world, browser):
    registrant, _ = world
    context, page = new_page(browser, PHONE)
    try:
        # a complaint first, for its code
        page.goto(server + f"/complaints/new?number=NONE-9&institution={registrant.uscc}&status=not_found")
        page.get_by_label("问题描述", exact=True).fill("查不到这个编号。")
        page.get_by_role("button", name="提交投诉").click()
        page.wait_for_url(re.compile(r"/complaints/[A-Z2-7]{4}-"))
        code = page.locator("#tracking-code").inner_text()

        page.goto(server + "/")
        page.locator("#track-link").get_by_role("link", name="查询投诉进度").click()  # the home page's own link (the footer has one too)
        page.wait_for_url(re.compile(r"/complaints/track$"))
        fits(page)
        page.get_by_label("查询码", exact=True).fill("AAAA-BBBB-CCCC-DDDD")
        page.get_by_role("button", name="查询进度").click()
        page.wait_for_load_state()
        assert page.url.endswith("/complaints/track")
        assert "没有这个查询码对应的投诉" in page.locator("#track-problem").inner_text()
        assert page.get_by_label("查询码", exact=True).input_value() == "AAAA-BBBB-CCCC-DDDD"  # kept, to correct
        assert page.evaluate("document.activeElement.id") == "code"
        fits(page)
        page.get_by_label("查询码", exact=True).fill(code.replace("-", "").lower())
        page.get_by_role("button", name="查询进度").click()
        page.wait_for_url(re.compile(re.escape(code) + "$"))
        assert page.locator("#tracking-code").inner_text() == code
        assert page.problems == []
    finally:
        context.close()


@pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)
@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("size", ["375", "1366"])
def test_screens(server, reg, world, browser, lang, size):
    """The pages a person should look at, at phone and desktop width, in both languages."""
    context, page = new_page(browser, PHONE if size == "375" else DESKTOP, lang)
    try:
        for name, url in [
            ("unmatched", "/verify?number=HZ2026-000123&institution=杭州市质量技术监督"),
            ("unmatched-qr", "/v/NOTAUSCC/HZ2026-000123"),
            ("abnormal", "/verify?number=WZ2026-0042"),
            ("track", "/complaints/track"),
        ]:
            page.goto(server + url + ("&" if "?" in url else "?") + f"lang={lang}")
            fits(page)
            shot(page, f"{name}-{lang}-{size}")
        page.get_by_label("查询码" if lang == "zh" else "Tracking code", exact=True).fill("WRONG")
        page.get_by_role("button", name="查询进度" if lang == "zh" else "Track").click()
        page.wait_for_load_state()
        fits(page)
        shot(page, f"track-wrong-{lang}-{size}")
        assert page.problems == []
    finally:
        context.close()
