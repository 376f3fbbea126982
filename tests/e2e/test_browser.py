"""End to end in a real Chromium (Debian's) against a real server: search, complain, languages, phone.

Screenshots go to tests/artifacts/ (gitignored) for a person to look at.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from registry.institutions.authorities import seed_authorities
from tests.e2e.live import live_server
from tests.builders import make_institution, register

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
PHONE = {"width": 375, "height": 812}




@pytest.fixture
def server(app, reg):
    """The app on a free loopback port, served by werkzeug in a thread."""
    with reg.sessions() as session:
        seed_authorities(session)
        session.commit()
    with live_server(app) as url:
        yield url


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1024, "height": 800}, locale="zh-CN")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems = problems
    yield page
    context.close()


# A small accessibility check run in the page: every form control has a label, and text meets
# WCAG AA contrast (4.5:1, or 3:1 for large text) against its effective background.
A11Y_CHECK = """() => {
  const problems = [];
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const control of document.querySelectorAll("input:not([type=hidden]), textarea, select")) {
    if (control.closest("[aria-hidden=true]")) continue;
    if (!control.labels.length && !control.getAttribute("aria-label")) problems.push("no label: " + control.name);
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el.offsetParent || el.closest("[aria-hidden=true], .skip-link")) continue;
    const style = getComputedStyle(el);
    const fg = lum(rgb(style.color).slice(0, 3)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) problems.push(`contrast ${ratio.toFixed(2)} < ${needed}: ${node.textContent.trim().slice(0, 30)}`);
  }
  return problems;
}"""


def accessibility_problems(page) -> list[str]:
    return page.evaluate(A11Y_CHECK)


def shot(page, name: str, request) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stack = request.node.callspec.params.get("stack", "")
    path = ARTIFACTS / f"{name}-{stack}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def lab(reg, **kw):
    with reg.sessions() as session:
        inst = make_institution(session, **kw)
        session.expunge(inst)
    reg.refresh()
    return inst


def test_search_found_and_not_found(server, reg, page, request):
    inst = lab(reg, name="杭州市质量技术监督检测院", province="11", former_names=("杭州质检所",))
    register(reg, inst, ["HZ2026-000123"])

    page.goto(server + "/")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    page.get_by_label("报告编号", exact=True).fill("hz2026-000123")
    page.get_by_label("出具机构", exact=True).type("杭州质检", delay=20)
    # suggestions arrive through the JSON endpoint into a native datalist
    page.locator("#institution-suggestions option").first.wait_for(state="attached")
    assert page.locator("#institution-suggestions option").first.get_attribute("value") == "杭州市质量技术监督检测院"
    shot(page, "01-search", request)
    page.get_by_label("出具机构", exact=True).fill("杭州市质量技术监督检测院")
    page.get_by_role("button", name="查询").click()
    page.wait_for_url(re.compile(r"/verify\?"))
    assert page.locator("[data-status]").get_attribute("data-status") == "found"
    assert page.get_by_role("heading", level=1).inner_text() == "已登记"
    assert "有效" in page.locator(".certificates").inner_text()
    shot(page, "02-found", request)

    page.goto(server + "/")
    page.get_by_label("报告编号", exact=True).fill("HZ2026-999999")
    page.get_by_role("button", name="查询").click()
    assert page.locator("[data-status]").get_attribute("data-status") == "not_found"
    assert "可能尚未登记" in page.locator("#pending").inner_text()
    shot(page, "03-not-found", request)
    assert page.problems == []  # no CSP violation, no script error


def test_complaint_from_the_verdict_page_to_its_status(server, reg, page, request, tmp_path):
    inst = lab(reg, name="宁波检验检测有限公司", province="11")
    register(reg, inst, ["NB-1"])
    page.goto(server + f"/verify?number=NB-2&institution={inst.uscc}")
    assert page.locator("[data-status]").get_attribute("data-status") == "not_found"
    page.get_by_role("link", name="投诉此报告").click()
    page.wait_for_url(re.compile(r"/complaints/new\?"))
    assert page.get_by_label("报告编号", exact=True).input_value() == "NB-2"
    assert page.get_by_label("查不到该报告编号", exact=True).is_checked()
    page.get_by_label("问题描述", exact=True).fill("电商页面上的报告 <script>alert(1)</script> 查不到编号。")
    page.get_by_label("姓名（选填）", exact=True).fill("李四")
    page.get_by_label("联系方式（选填，手机号或电子邮箱）", exact=True).fill("13900001111")
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    page.get_by_label(re.compile("附件")).set_input_files(str(photo))
    shot(page, "04-complaint-form", request)
    page.get_by_role("button", name="提交投诉").click()
    page.wait_for_url(re.compile(r"/complaints/[A-Z2-7]{4}-"))
    code = page.locator("#tracking-code").inner_text()
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", code)
    body = page.locator("main").inner_text()
    assert "您的投诉已提交" in body and "浙江省市场监督管理局" in body
    assert "李四" not in body and "13900001111" not in body
    assert accessibility_problems(page) == []
    shot(page, "05-complaint-status", request)
    # the code alone brings the page back, in any case and without dashes
    page.goto(server + "/complaints/" + code.replace("-", "").lower())
    assert page.locator("#tracking-code").inner_text() == code
    assert page.problems == []


def test_switch_language(server, reg, page, request):
    inst = lab(reg, name="双语检测中心")
    register(reg, inst, ["EN-1"])
    page.goto(server + "/verify?number=EN-1")
    page.get_by_role("link", name="English").click()
    page.wait_for_url(re.compile(r"lang=en"))
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Registered"
    assert accessibility_problems(page) == []
    shot(page, "06-found-en", request)
    page.goto(server + "/")  # the choice is kept
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_label("Report number", exact=True).is_visible()
    page.get_by_role("link", name="中文").click()
    assert page.locator("html").get_attribute("lang") == "zh-CN"


def test_phone_sized_viewport(server, reg, browser, request):
    inst = lab(reg, name="深圳市计量质量检测研究院（国家电子计算机质量检验检测中心）", province="19", abnormal=True)
    register(reg, inst, ["SZ-2026-00000000001"])
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  locale="zh-CN")
    page = context.new_page()
    try:
        for name, url in [
            ("07-phone-search", "/"),
            ("08-phone-found", "/verify?number=SZ-2026-00000000001"),
            ("09-phone-mismatch", f"/verify?number=NONE-1&institution={inst.uscc}"),
            ("10-phone-complaint", "/complaints/new?number=SZ-2026-00000000001&status=found"),
            ("11-phone-404", "/no-such-page"),
            ("12-phone-mismatch-en", f"/verify?number=SZ-2026-00000000001&institution=nobody&lang=en"),
        ]:
            page.goto(server + url)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, (url, overflow)
            assert accessibility_problems(page) == [], url
            shot(page, name, request)
        # keyboard order on the search page: skip link, brand, language, number, institution, button
        page.goto(server + "/?lang=zh")
        order = []
        for _ in range(6):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id || document.activeElement.className || "
                                       "document.activeElement.tagName"))
        assert order == ["skip-link", "brand", "lang-switch", "number", "institution", "button primary"], order
    finally:
        context.close()
