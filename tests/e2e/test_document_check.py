"""In a real Chromium: the verdict page's document check and its own check of the transparency
log (issue 16). A number registered through the CLI with its report file's fingerprint; on the
page, the real file → "文件一致" (match), another file → "文件不一致" (mismatch) with the complaint
form prefilled — and neither file ever leaves the browser (only GET requests, no body). The log:
"已验证收录于透明日志" only after the browser checked signature, commitment and inclusion proof;
a proof with one hash altered fails, an entry not yet integrated is pending, a browser without
Ed25519 is told so. Phone and desktop; screenshots go to SCREENS_DIR when it is set (e.g.
tests/artifacts)."""
from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from tests.builders import register
from tests.e2e.live import DESKTOP, PHONE, new_page
from tests.e2e.test_browser import lab
from tests.e2e.test_verdict_checks import fits, server, shot  # noqa: F401 - server is a fixture

pytestmark = pytest.mark.browser

REPORT = b"%PDF-1.7\n% the test report FP2026-0001 as issued\n" + bytes(range(256)) * 40
OTHER = REPORT.replace(b"as issued", b"as altered")


@pytest.fixture
def world(runner, reg, tmp_path):
    """FP2026-0001 registered through the CLI with the report's fingerprint, integrated into the
    log with six numbers of another institution; FP2026-0002 registered after the last integration
    (pending)."""
    registrant = lab(reg, name="苏州市计量测试院", province="10")
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(f"报告编号,文件摘要\nFP2026-0001,{hashlib.sha256(REPORT).hexdigest()}\n", encoding="utf-8")
    result = runner.invoke(args=["import-numbers", str(numbers), "--institution", registrant.uscc,
                                 "--quarter", "2026Q3"])
    assert result.exit_code == 0, result.output
    register(reg, lab(reg), [f"OTHER-{i}" for i in range(6)])  # a tree of 7: proofs of three hashes
    reg.tlog.integrate()
    register(reg, registrant, ["FP2026-0002"])
    (tmp_path / "report.pdf").write_bytes(REPORT)
    (tmp_path / "other.pdf").write_bytes(OTHER)
    return registrant, tmp_path


def log_state(page) -> str:
    status = page.locator("#log-status")
    page.wait_for_function("() => document.getElementById('log-status').dataset.state !== 'checking'", timeout=10_000)
    return status.get_attribute("data-state")


@pytest.mark.parametrize("stack", ["postgres-redis"], indirect=True)
@pytest.mark.parametrize("viewport, name", [(PHONE, "phone"), (DESKTOP, "desktop")])
def test_the_document_and_the_log_checked_in_the_browser(server, reg, world, browser, viewport, name):
    registrant, files = world
    context, page = new_page(browser, viewport)
    sent = []
    page.on("request", lambda r: sent.append((r.method, r.url, r.post_data_buffer)))
    try:
        page.goto(server + f"/verify?number=FP2026-0001&institution={registrant.uscc}")
        assert log_state(page) == "included"
        assert "已验证收录于透明日志" in page.locator("#log-status").inner_text()
        assert "文件不会离开您的设备" in page.locator("#document-check").inner_text()
        fits(page)
        shot(page, f"document-{name}-1-verdict")

        page.set_input_files("#document-file", str(files / "report.pdf"))
        page.wait_for_url(re.compile(r"sha256=[0-9a-f]{64}"))
        result = page.locator("#document-result")
        assert result.get_attribute("data-document") == "match"
        assert "文件一致" in result.inner_text() and registrant.name in result.inner_text()
        assert hashlib.sha256(REPORT).hexdigest() in result.inner_text()
        assert log_state(page) == "included"
        fits(page)
        shot(page, f"document-{name}-2-match")

        page.set_input_files("#document-file", str(files / "other.pdf"))
        page.wait_for_url(re.compile(r"sha256=" + hashlib.sha256(OTHER).hexdigest()))
        result = page.locator("#document-result")
        assert result.get_attribute("data-document") == "mismatch"
        assert "文件不一致" in result.inner_text()
        fits(page)
        shot(page, f"document-{name}-3-mismatch")
        page.locator("#document-complaint").click()
        page.wait_for_url(re.compile(r"/complaints/new\?"))
        assert page.locator("#number").input_value() == "FP2026-0001"
        assert page.locator('input[name="category"][value="altered"]').is_checked()
        description = page.get_by_label("问题描述", exact=True).input_value()
        assert "不一致" in description and hashlib.sha256(OTHER).hexdigest() in description
        shot(page, f"document-{name}-4-complaint")

        # the files never left the device: only GETs, no request body, no file bytes anywhere
        assert all(method == "GET" and not body for method, _url, body in sent), sent
        assert page.problems == []
    finally:
        context.close()


@pytest.mark.parametrize("stack", ["sqlite-local"], indirect=True)
def test_a_forged_proof_fails_and_pending_and_unsupported_say_so(server, reg, world, browser):
    registrant, _ = world
    url = server + f"/verify?number=FP2026-0001&institution={registrant.uscc}"
    context, page = new_page(browser, DESKTOP, lang="en")

    def forge(route):
        response = route.fetch()
        evidence = response.json()
        entry = evidence["entries"][0]
        hashed = bytearray(base64.b64decode(entry["inclusion"][1]))  # one bit of one hash of the proof
        hashed[0] ^= 1
        entry["inclusion"][1] = base64.b64encode(bytes(hashed)).decode()
        route.fulfill(response=response, body=json.dumps(evidence))

    try:
        page.goto(url + "&lang=en")
        assert log_state(page) == "included"
        assert "Included in the transparency log" in page.locator("#log-status").inner_text()
        page.route(re.compile(r".*/verify/log\?ticket=.*"), forge)
        page.goto(url)
        assert log_state(page) == "failed"
        assert "Check failed" in page.locator("#log-status").inner_text()
        shot(page, "document-desktop-5-forged-proof")
        page.unroute(re.compile(r".*/verify/log\?ticket=.*"))

        page.goto(server + f"/verify?number=FP2026-0002&institution={registrant.uscc}")
        assert log_state(page) == "pending"
        assert "Pending" in page.locator("#log-status").inner_text()
        shot(page, "document-desktop-6-pending")
        assert page.problems == []
    finally:
        context.close()

    # a browser whose Web Crypto has no Ed25519 is told so, never shown a tick
    context, page = new_page(browser, PHONE)
    try:
        page.add_init_script("""
            const importKey = crypto.subtle.importKey.bind(crypto.subtle);
            crypto.subtle.importKey = (format, key, algorithm, ...rest) =>
              (algorithm && algorithm.name === 'Ed25519')
                ? Promise.reject(new DOMException('no Ed25519', 'NotSupportedError'))
                : importKey(format, key, algorithm, ...rest);
        """)
        page.goto(url)
        assert log_state(page) == "unsupported"
        assert "不能核对 Ed25519 签名" in page.locator("#log-status").inner_text()
        shot(page, "document-phone-7-unsupported")
    finally:
        context.close()
