"""The printable verification receipt (portal/receipt.py): a PDF of what the registry answered,
with the transparency log's checkpoint and inclusion proof and a QR code back to the verdict; its
first page rendered to an image (tests/artifacts/receipt-*.png) for a person to look at."""
from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from portal.receipt import FONT_CANDIDATES, FontMissing, find_font
from registry.verification.models import QueryLog
from tests.builders import register
from tests.functional.test_public import app, institution, page  # noqa: F401 - the fixed-clock app

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
FONT_INSTALLED = any(Path(path).is_file() for path, _ in FONT_CANDIDATES)
# CI installs fonts-noto-cjk with Chromium (.ci/run) and must run these; a laptop without it skips them
pytestmark = pytest.mark.skipif(not FONT_INSTALLED and os.environ.get("REQUIRE_BROWSER") != "1",
                                reason="no Noto Sans CJK font (apt-get install fonts-noto-cjk)")


def pdf_text(data: bytes) -> tuple[str, "pdfium.PdfDocument"]:
    doc = pdfium.PdfDocument(data)
    return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc))), doc


def squash(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def lab(reg):
    lab = institution(reg, name="杭州检测技术有限公司", province="11")
    register(reg, lab, ["RC-2026-0001"])
    reg.tlog.integrate()
    return lab


def test_a_found_number_prints_its_verdict_checkpoint_and_inclusion_proof(client, reg, lab, stack):
    response = client.get("/verify/receipt.pdf?number=RC-2026-0001&institution=杭州检测技术有限公司")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert "X-Frame-Options" in response.headers
    data = response.get_data()
    assert data.startswith(b"%PDF-")
    text, doc = pdf_text(data)
    flat = squash(text)
    for expected in ("检验检测报告编号查询凭证", "已登记", "Registered", "RC-2026-0001", "杭州检测技术有限公司",
                     lab.uscc, "2026Q3", "查询时间", "透明日志", "Inclusionproof"):
        assert expected in flat, expected

    # the checkpoint and proof on paper are the ones the API gives for the same number
    api = client.get("/api/v1/verify?number=RC-2026-0001&institution=杭州检测技术有限公司&proof=1").get_json()
    [entry] = api["log"]["entries"]
    root = api["log"]["checkpoint"].splitlines()[2]
    assert squash(root) in flat
    assert squash(entry["entry"]) in flat
    for hashed in entry["inclusion"]:
        assert hashed in flat
    if not entry["inclusion"]:  # a one-entry tree: the root is the entry's own leaf hash
        assert base64.b64encode(hashlib.sha256(b"\0" + entry["entry"].encode()).digest()).decode() == root

    # the first page, as an image, for a person to look at
    ARTIFACTS.mkdir(exist_ok=True)
    image = doc[0].render(scale=1.5).to_pil()
    out = ARTIFACTS / f"receipt-found-{stack['STACK']}.png"
    image.save(out)
    assert image.size[0] > 800 and out.stat().st_size > 20_000  # text and a QR code, not a blank page
    assert image.convert("L").getextrema()[0] == 0  # black ink (the QR code) on the page


def test_a_receipt_is_a_verification_on_the_budget_and_in_the_log(client, reg, lab, stack):
    from sqlalchemy import func, select

    client.get("/verify/receipt.pdf?number=NOPE-404")
    reg.query_log.flush()
    with reg.sessions() as s:
        assert s.scalar(select(func.count()).select_from(QueryLog).where(QueryLog.number == "NOPE-404")) == 1
    text, _ = pdf_text(client.get("/verify/receipt.pdf?number=NOPE-404").get_data())
    assert "未查到登记" in squash(text) and "Notregistered" in squash(text)
    assert "无收录证明" in squash(text)


def test_a_withdrawn_number_says_so_on_paper(client, reg, lab):
    reg.registration.withdraw(institution_id=lab.id, items=[(1, "RC-2026-0001", "作废")])
    text, _ = pdf_text(client.get("/verify/receipt.pdf?number=RC-2026-0001").get_data())
    flat = squash(text)
    assert "已撤销" in flat and "撤销时间" in flat


def test_a_mismatch_never_names_the_registrant(client, reg, lab):
    institution(reg, name="宁波市环境监测中心")
    text, _ = pdf_text(client.get("/verify/receipt.pdf?number=RC-2026-0001&institution=宁波市环境监测中心").get_data())
    flat = squash(text)
    assert "与所填机构不符" in flat
    assert "杭州检测技术有限公司" not in flat and lab.uscc not in flat


@pytest.mark.parametrize("url", ["/verify/receipt.pdf", "/verify/receipt.pdf?number=", "/verify/receipt.pdf?number=坏/编号<>"])
def test_bad_input_is_the_search_page_with_a_message_not_a_pdf(client, url):
    response, html = page(client, url)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert 'class="error"' in html or "error" in html


def test_the_verdict_page_links_to_its_receipt(client, reg, lab):
    _, html = page(client, "/verify?number=RC-2026-0001")
    assert 'id="receipt"' in html and "/verify/receipt.pdf?number=RC-2026-0001" in html


def test_without_a_font_the_receipt_is_refused_clearly(tmp_path):
    with pytest.raises(FontMissing, match="RECEIPT_FONT"):
        find_font(str(tmp_path / "nope.ttc"))
    installed = [path for path, _ in FONT_CANDIDATES if Path(path).is_file()]
    assert installed, "fonts-noto-cjk is installed where the browser tests run (.ci/run)"
    assert find_font(f"{installed[0]}:2") == (installed[0], 2)
