"""In a real Chromium (issue 19, parts 2 and 5): no page needs sideways scrolling at 375 px, for the
public and signed in as each role; a .docx or a too-large file chosen on the complaint form is named
before anything is sent, and a large photo is compressed on the device. Screenshots at 375 and
1366 px, Chinese and English, go to SCREENS_DIR when it is set."""
from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.complaints.casework import Officer
from registry.complaints.models import Complaint
from registry.institutions.models import Authority
from tests.e2e.live import DESKTOP, PHONE, live_server, new_page
from tests.functional.regulator_helpers import (  # noqa: F401
    PASSWORD, complaint, institution, make_account, rapp, rreg,
)

pytestmark = pytest.mark.browser

SCREENS = os.environ.get("SCREENS_DIR")


@pytest.fixture
def server(rapp):
    with live_server(rapp, "e2e-phone") as url:
        yield url


def sign_in(page, server, username):
    page.goto(f"{server}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def scroll_width(page) -> int:
    return page.evaluate("document.scrollingElement.scrollWidth")


def shot(page, name: str) -> None:
    if SCREENS:
        Path(SCREENS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENS) / f"{name}.png"), full_page=True)


def noise_png(width: int, height: int) -> bytes:
    """A real PNG of random pixels (it does not compress): about width × height × 3 bytes."""
    raw = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def docx() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


@pytest.fixture
def world(rapp, rreg):
    lab = institution(rreg, province="15", name="山东手机版式检测有限公司")
    cases = [complaint(rreg, province="15", institution=lab, number=f"PHONE-LAYOUT-{n:04d}-WITH-A-RATHER-LONG-SUFFIX")
             for n in range(55)]
    case = cases[0]  # the builder hands back the tracking code (only its hash is stored)
    accounts = {
        "institution": make_account(rreg, "institution", institution=lab, username="phone-lab"),
        "regulator": make_account(rreg, "regulator", authority="15", username="phone-officer"),
        "admin": make_account(rreg, "admin", username="phone-admin"),
    }
    for n in range(55):
        make_account(rreg, "institution", institution=lab, username=f"phone-lab-{n:02d}")
    with rreg.sessions() as session:
        authority = session.scalar(select(Authority).where(Authority.code == "15"))
        officer = Officer(username="phone-officer", authority_id=authority.id, authority_code="15")
    rreg.casework.accept(officer, case.id)
    rreg.casework.request_info(officer, case.id, "Please upload a photo of the report's first page.")
    return {"lab": lab, "accounts": accounts, "case": case}


def routes_for(rapp, role: str, world) -> list[str]:
    """Every GET page of the role's blueprint that takes no argument, and the ones that do."""
    prefix = {"anonymous": None, "institution": "institution.", "regulator": "regulator.", "admin": "admin."}[role]
    case, lab = world["case"], world["lab"]
    if prefix is None:
        return ["/", "/verify?number=PHONE-LAYOUT-0001-WITH-A-RATHER-LONG-SUFFIX", "/verify?number=NOPE-1",
                "/complaints/new", "/complaints/track", "/privacy", "/login",
                f"/complaints/{case.tracking_code}", f"/complaints/{case.tracking_code}?lang=en",
                "/no-such-page"]
    urls = []
    for rule in rapp.url_map.iter_rules():
        if rule.endpoint.startswith(prefix) and "GET" in rule.methods and not rule.arguments \
                and not re.search(r"\.(csv|xlsx|png|svg|json)$|qr\.", rule.rule):
            urls.append(rule.rule)
    if role == "regulator":
        urls += [f"/regulator/complaints/{case.id}", f"/regulator/institutions/{lab.id}",
                 "/regulator/institutions?q=山东", "/regulator/complaints?status=all&page=2",
                 "/regulator/compliance?quarter=2026Q3"]
    urls.append("/account/password")
    return sorted(set(urls))


@pytest.mark.parametrize("role", ["anonymous", "institution", "regulator", "admin"])
def test_no_page_needs_sideways_scrolling_at_375px(server, rapp, world, browser, role):
    context, page = new_page(browser, PHONE)
    try:
        if role != "anonymous":
            sign_in(page, server, world["accounts"][role].username)
        wide = {}
        for lang in ("zh", "en"):
            for url in routes_for(rapp, role, world):
                page.goto(server + url + ("&" if "?" in url else "?") + f"lang={lang}")
                assert "/login" not in page.url or role == "anonymous", url
                width = scroll_width(page)
                if width > 375:
                    wide[f"{lang} {url}"] = width
        assert wide == {}
        assert page.problems == []
    finally:
        context.close()


def test_the_english_status_page_keeps_words_whole(server, world, browser):
    context, page = new_page(browser, PHONE, "en")
    try:
        page.goto(f"{server}/complaints/{world['case'].tracking_code}?lang=en")
        broken = page.evaluate("""() => {
            const out = [];
            for (const el of document.querySelectorAll('.complaint-status p, .complaint-status dd, .complaint-status li, .complaint-status h2')) {
                const s = getComputedStyle(el);
                if (s.wordBreak === 'break-all' || s.overflowWrap === 'anywhere' && !el.classList.contains('mono')) out.push(el.textContent.slice(0, 40));
            }
            return out;
        }""")
        assert broken == []
        # and no word is wider than its box (it would be cut or spill)
        spilled = page.evaluate("""() => [...document.querySelectorAll('.complaint-status dd, .complaint-status p, .complaint-status li')]
            .filter(el => el.scrollWidth > el.clientWidth + 1).map(el => el.textContent.slice(0, 40))""")
        assert spilled == []
        # a word broken across lines shows as a line box narrower than the word: compare each word's
        # rectangles — one word, one rectangle
        split = page.evaluate("""() => {
            const out = [];
            for (const dd of document.querySelectorAll('.complaint-status .facts dd:not(.mono)')) {
                const text = dd.firstChild;
                if (!text || text.nodeType !== 3) continue;
                const re = /[A-Za-z]{4,}/g; let m;
                while ((m = re.exec(text.data))) {
                    const r = document.createRange(); r.setStart(text, m.index); r.setEnd(text, m.index + m[0].length);
                    if (r.getClientRects().length > 1) out.push(m[0]);
                }
            }
            return out;
        }""")
        assert split == []
        assert scroll_width(page) <= 375
    finally:
        context.close()


def test_a_wrong_or_too_large_attachment_is_named_before_sending(server, rapp, rreg, world, browser, tmp_path):
    context, page = new_page(browser, PHONE)
    try:
        sent = []
        page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
        page.goto(f"{server}/complaints/new?number=SD-PHONE-1&status=not_found")
        page.set_input_files("#attachment", files=[{"name": "检测报告.docx", "buffer": docx(),
                             "mimeType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}])
        message = page.locator("#attachment-check").inner_text()
        assert "“检测报告.docx”是Word 文档（.docx），不能作为附件。" in message
        assert "附件须为 JPEG、PNG 图片或 PDF 文件。" in message
        assert page.evaluate("document.getElementById('attachment').files.length") == 0  # taken out of the form
        assert page.get_attribute("#attachment", "aria-invalid") == "true"

        big_pdf = b"%PDF-1.7\n" + b"0" * (6 * 1024 * 1024)
        page.set_input_files("#attachment", files=[{"name": "扫描件.pdf", "buffer": big_pdf, "mimeType": "application/pdf"}])
        message = page.locator("#attachment-check").inner_text()
        assert "“扫描件.pdf”有 6.0 MB。" in message and "附件不能超过 5 MB。" in message
        assert page.evaluate("document.getElementById('attachment').files.length") == 0
        assert sent == []  # nothing left the browser
        shot(page, "attachment-precheck-zh-375")

        # a large photo is compressed on the device, then sent
        photo = noise_png(1700, 1200)
        assert len(photo) > 5 * 1024 * 1024
        page.set_input_files("#attachment", files=[{"name": "IMG_2041.png", "buffer": photo, "mimeType": "image/png"}])
        assert "附件不能超过 5 MB。" in page.locator("#attachment-check").inner_text()
        page.get_by_role("button", name="压缩照片").click()
        page.wait_for_selector("#attachment-check:not(:has(button))", timeout=60000)  # compressing done
        assert "attachment-ok" in page.get_attribute("#attachment-check", "class"), page.locator("#attachment-check").inner_text()
        assert "已压缩：“IMG_2041.jpg”" in page.locator("#attachment-check").inner_text()
        size, kind = page.evaluate("[document.getElementById('attachment').files[0].size, document.getElementById('attachment').files[0].type]")
        assert size <= 5 * 1024 * 1024 and kind == "image/jpeg"
        page.get_by_label("问题描述", exact=True).fill("报告首页的照片。")
        page.get_by_role("button", name="提交投诉").click()
        page.wait_for_url(re.compile(r"/complaints/[A-Z2-7]{4}-"))
        with rreg.sessions() as session:
            row = session.scalar(select(Complaint).where(Complaint.number == "SD-PHONE-1"))
        assert row.attachment_type == "image/jpeg"
        assert page.problems == []
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("size", ["375", "1366"])
def test_screens(server, rapp, world, browser, lang, size):
    """The pages of parts 2, 5 and 6 to look at: a complaint form with an attachment error, the
    status page (English on a phone), a paged admin list, the footer and the privacy page."""
    context, page = new_page(browser, PHONE if size == "375" else DESKTOP, lang)
    suffix = f"{lang}-{size}"
    try:
        page.goto(f"{server}/complaints/new?number=SD-SHOT-1&status=not_found&lang={lang}")
        page.set_input_files("#attachment", files=[{"name": "report.docx", "buffer": docx(), "mimeType": "application/msword"}])
        shot(page, f"form-precheck-{suffix}")
        # the server's answer to a .docx sent without the script's check, with a missing description
        page.route("**/static/attachment.js", lambda route: route.abort())
        page.goto(f"{server}/complaints/new?number=SD-SHOT-1&status=not_found&lang={lang}")
        page.set_input_files("#attachment", files=[{"name": "report.docx", "buffer": docx(), "mimeType": "application/msword"}])
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert scroll_width(page) <= int(size)
        shot(page, f"form-error-{suffix}")
        page.unroute("**/static/attachment.js")
        page.goto(f"{server}/complaints/{world['case'].tracking_code}?lang={lang}")
        assert scroll_width(page) <= int(size)
        shot(page, f"status-{suffix}")
        page.goto(f"{server}/privacy?lang={lang}")
        assert scroll_width(page) <= int(size)
        shot(page, f"privacy-{suffix}")
        sign_in(page, server, "phone-admin")
        page.goto(f"{server}/admin/?lang={lang}&page=2")
        assert scroll_width(page) <= int(size)
        shot(page, f"admin-accounts-{suffix}")
        page.goto(f"{server}/admin/?q=phone-lab-1&lang={lang}")
        shot(page, f"admin-search-{suffix}")
        context.clear_cookies()
        sign_in(page, server, "phone-officer")
        page.goto(f"{server}/regulator/complaints?status=all&lang={lang}")
        assert scroll_width(page) <= int(size)
        shot(page, f"queue-{suffix}")
    finally:
        context.close()
