"""No internal code on the institution portal's and the regulator console's pages, in Chinese and
English: sources (file/api), actors (public/system), standings (late/on_time/missing), statuses
(received), categories (wrong_institution), findings ([not_registered]) and True/False are words
in the page's language; counts have thousands separators. Only the text a person reads is checked
(tags, attributes and URLs left out). Issue 19."""
from __future__ import annotations

import html
import io
import re

from registry.numbers.quarters import Quarter
from tests.builders import register
from tests.functional.regulator_helpers import (  # noqa: F401 - fixtures
    complaint, institution, rapp, rreg, sign_in)

# codes that are never words of a page, in either language
ALWAYS = ("on_time", "wrong_institution", "not_registered", "not_found", "True", "False")
# codes that are English words too: on a Chinese page they can only be codes
CHINESE_ONLY = ("file", "api", "public", "system", "late", "missing", "received", "zero", "portal", "cli")


def visible_text(page: str) -> str:
    # scripts, styles and <code> (an interface's own names, e.g. the upload API's fields) are not prose
    page = re.sub(r"<(script|style|code)\b.*?</\1>", " ", page, flags=re.S | re.I)
    page = re.sub(r"<!--.*?-->", " ", page, flags=re.S)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))


def codes_in(text: str, lang: str) -> list[str]:
    codes = ALWAYS + (CHINESE_ONLY if lang == "zh" else ())
    found = [c for c in codes if re.search(rf"(?<![\w./-]){re.escape(c)}(?![\w./-])", text)]
    return found


def assert_in_words(client, url: str) -> None:
    for lang in ("zh", "en"):
        joiner = "&" if "?" in url else "?"
        response = client.get(f"{url}{joiner}lang={lang}")
        assert response.status_code == 200, (url, response.status_code)
        text = visible_text(response.get_data(as_text=True))
        assert codes_in(text, lang) == [], (url, lang, codes_in(text, lang), text[:3000])


def test_portal_and_console_pages_show_words_not_codes(rapp, rreg):
    lab = institution(rreg, province="15", name="山东词语页面检测公司")
    batch = register(rreg, lab, [f"PW-{i}" for i in range(12_345)], quarter="2026Q3")
    late = register(rreg, lab, ["PW-API-1"], quarter="2026Q2", source="api")  # 2026Q2 is late by now
    stored = rreg.uploads.store(io.BytesIO(b"PW-1\nPW-NEW\nPW-NEW\n"), file_name="again.csv", institution_id=lab.id,
                                quarter=Quarter(2026, 3), uploaded_by="lab")
    assert rreg.upload_steps.check(stored.id).state == "ready"
    case = complaint(rreg, province="15", institution=lab, category="wrong_institution")

    lab_client = sign_in(rapp, rreg, "institution", institution=lab)
    for url in ("/institution/", "/institution/upload", "/institution/withdrawals", "/institution/restorations",
                "/institution/tokens", "/institution/qr", f"/institution/batches/{batch.batch_id}",
                f"/institution/batches/{late.batch_id}", f"/institution/uploads/{stored.id}"):
        assert_in_words(lab_client, url)
    overview = visible_text(lab_client.get("/institution/?lang=zh").get_data(as_text=True))
    assert "12,345" in overview  # a count with its thousands separator

    officer = sign_in(rapp, rreg, "regulator", authority="15")
    for url in ("/regulator/", "/regulator/complaints?status=all", f"/regulator/complaints/{case.id}",
                "/regulator/compliance?quarter=2026Q3", "/regulator/compliance?quarter=2026Q2",
                f"/regulator/institutions/{lab.id}", "/regulator/abnormal", "/regulator/leads"):
        assert_in_words(officer, url)


def test_the_check_helper_sees_codes_but_not_attributes():
    text = visible_text('<p class="state-late" data-x="on_time"><a href="/x?source=file">按时</a> late</p>')
    assert codes_in(text, "zh") == ["late"] and codes_in(text, "en") == []
    assert codes_in(visible_text("<td>True</td>"), "en") == ["True"]
