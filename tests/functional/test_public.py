"""The public verification pages: one page per verdict, languages, headers, suggestions, errors."""
from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

import pytest
from sqlalchemy import update

from tests.builders import make_institution, register
from tests.sql_counting import count_sql
from registry.registration.models import ReportNumber
from registry.numbers.quarters import SHANGHAI

NOW = dt.datetime(2026, 11, 23, 20, 15, 3, tzinfo=SHANGHAI)


@pytest.fixture
def app(stack):
    """The conftest app, with a fixed clock so the pending window is known: 2026Q4, due 2027-01-31."""
    from portal import create_app

    app = create_app({**stack, "CLOCK": lambda: NOW})
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted(), reg.bloom.status()
    yield app
    reg.close()


def institution(reg, **kw):
    with reg.sessions() as session:
        inst = make_institution(session, **kw)
        session.expunge(inst)
    reg.refresh()
    return inst


def page(client, url, **kw):
    response = client.get(url, **kw)
    return response, response.get_data(as_text=True)


def status_of(html: str) -> str:
    return re.search(r'data-status="(\w+)"', html).group(1)


# --- one page per verdict -------------------------------------------------------------------
def test_found_page_names_the_registrant_its_certificates_and_quarter(client, reg):
    lab = institution(reg, name="杭州质检中心", province="11")
    register(reg, lab, ["WT2026-0001"], quarter="2026Q3")
    with count_sql(reg) as sql:
        response, html = page(client, "/verify?number=wt2026-0001&institution=杭州质检中心")
    assert response.status_code == 200
    assert len(sql) <= 1
    assert status_of(html) == "found"
    assert "已登记" in html and "杭州质检中心" in html and lab.uscc in html
    assert "2026年第3季度" in html
    assert "有效" in html and "有效期至 2026-12-31" in html
    assert "浙江省市场监督管理局" in html  # its review authority
    assert 'id="pending"' not in html and 'id="abnormal"' not in html
    # the complaint button carries the number, the institution and the verdict
    assert "/complaints/new?number=WT2026-0001&amp;institution=%E6%9D%AD" in html
    assert "status=found" in html
    assert response.headers["Cache-Control"] == "no-store"


def test_withdrawn_page_says_the_report_is_void(client, reg):
    lab = institution(reg, name="宁波检测公司")
    register(reg, lab, ["NB-77"])
    with reg.sessions() as session:
        session.execute(update(ReportNumber).where(ReportNumber.number == "NB-77").values(
            withdrawn_at=dt.datetime(2026, 10, 5, 2, 0, tzinfo=dt.timezone.utc), withdraw_reason="报告作废重出"))
        session.commit()
    response, html = page(client, "/verify?number=NB-77")
    assert response.status_code == 200
    assert status_of(html) == "withdrawn"
    assert "已撤销" in html and "宁波检测公司" in html
    assert "2026-10-05 10:00" in html  # Beijing time
    assert "报告作废重出" in html
    assert "status=withdrawn" in html


def test_mismatch_page_names_only_the_institution_asked_about(client, reg):
    owner = institution(reg, name="真实登记机构")
    asked = institution(reg, name="报告上的机构")
    register(reg, owner, ["MM-1"])
    with count_sql(reg) as sql:
        response, html = page(client, "/verify?number=MM-1&institution=报告上的机构")
    assert len(sql) <= 1
    assert status_of(html) == "mismatch"
    assert "与所填机构不符" in html and "报告上的机构" in html
    assert "真实登记机构" not in html and owner.uscc not in html
    assert "2026-10-01 以后出具的报告可能尚未登记；机构须在 2027-01-31 前完成登记。" in html
    assert "status=mismatch" in html


def test_ambiguous_page_lists_the_candidates_with_links(client, reg):
    a = institution(reg, name="甲检测站")
    b = institution(reg, name="乙检测站")
    register(reg, a, ["2020-0001"])
    register(reg, b, ["2020-0001"])
    response, html = page(client, "/verify?number=2020-0001")
    assert status_of(html) == "ambiguous"
    assert "多家机构登记了此编号" in html
    assert "甲检测站" in html and "乙检测站" in html
    assert f"/verify?number=2020-0001&amp;institution={a.uscc}" in html
    assert 'id="pending"' not in html


def test_not_found_page_costs_no_sql_and_gives_the_pending_window(client, reg):
    lab = institution(reg, name="温州检测院")
    register(reg, lab, ["OTHER-1"])
    with count_sql(reg) as sql:
        response, html = page(client, f"/verify?number=NOPE-404&institution={lab.uscc}")
    assert response.status_code == 200
    assert sql == []
    assert status_of(html) == "not_found"
    assert "未查到登记" in html
    assert "温州检测院" in html and lab.uscc in html  # the one asked about, from the directory
    assert "2026-10-01 以后出具的报告可能尚未登记；机构须在 2027-01-31 前完成登记。" in html
    assert "status=not_found" in html


def test_not_found_without_institution(client, reg):
    response, html = page(client, "/verify?number=NOBODY-1")
    assert status_of(html) == "not_found"
    assert "没有任何机构登记过这个报告编号。" in html
    assert 'class="institution' not in html


def test_unresolved_institution_is_said_plainly(client, reg):
    lab = institution(reg, name="台州检测所")
    register(reg, lab, ["TZ-1"])
    response, html = page(client, "/verify?number=TZ-1&institution=不存在的机构")
    assert status_of(html) == "found"  # checked as if no institution were given
    assert "没有找到与“不存在的机构”对应的机构，已按未填写机构查询。" in html


def test_abnormal_institution_is_warned_about(client, reg):
    lab = institution(reg, name="异常的检测公司", abnormal=True, certificate_status="suspended")
    register(reg, lab, ["AB-1"])
    response, html = page(client, "/verify?number=AB-1")
    assert 'id="abnormal"' in html and "异常检验检测机构" in html
    assert "暂停" in html


def test_former_name_and_certificate_number_resolve(client, reg):
    lab = institution(reg, name="新名称检测中心", former_names=("旧名称检测站",))
    register(reg, lab, ["FN-1"])
    _, html = page(client, "/verify?number=FN-1&institution=旧名称检测站")
    assert status_of(html) == "found" and "新名称检测中心" in html and "旧名称检测站" in html
    cert = re.search(r'<span class="mono">(\d{12})</span>', html).group(1)
    _, html = page(client, f"/verify?number=FN-1&institution={cert}")
    assert status_of(html) == "found"


def test_qr_deep_link_with_percent_encoded_number(client, reg):
    lab = institution(reg, name="二维码检测中心")
    register(reg, lab, ["QR/2026/(A)-1"])
    response, html = page(client, f"/v/{lab.uscc.lower()}/{quote('QR/2026/(A)-1', safe='')}")
    assert response.status_code == 200
    assert status_of(html) == "found" and "二维码检测中心" in html


def test_invalid_or_missing_number_returns_to_the_form(client):
    response, html = page(client, "/verify?number=%3Cscript%3E")
    assert response.status_code == 400
    assert "报告编号含有不允许的字符" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    response, html = page(client, "/verify?number=")
    assert response.status_code == 400 and "请输入报告编号。" in html


def test_user_text_is_escaped_on_the_verdict_page(client, reg):
    _, html = page(client, "/verify?number=X-1&institution=%3Cscript%3Ealert(1)%3C/script%3E")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- languages -------------------------------------------------------------------------------
def test_chinese_by_default_english_by_switch_kept_in_a_cookie(client, reg):
    lab = institution(reg, name="双语检测中心")
    register(reg, lab, ["EN-1"])
    _, html = page(client, "/verify?number=EN-1")
    assert '<html lang="zh-CN">' in html and "已登记" in html
    assert 'href="/verify?number=EN-1&amp;lang=en"' in html  # the visible switch keeps the query

    response, html = page(client, "/verify?number=EN-1&lang=en")
    assert '<html lang="en">' in html
    assert "Registered" in html and "Valid" in html and "2026 Q3" in html and "Complain about this report" in html
    assert "lang=en" in response.headers["Set-Cookie"]
    _, html = page(client, "/")  # the cookie keeps English
    assert '<html lang="en">' in html and "Check an inspection/testing report number" in html
    _, html = page(client, "/verify?number=NONE-1&lang=en")
    assert "Reports issued since 2026-10-01 may not be registered yet; the institution must register them by 2027-01-31." in html
    _, html = page(client, "/?lang=zh")
    assert '<html lang="zh-CN">' in html


def test_every_verdict_headline_is_translated(client, reg):
    a = institution(reg, name="甲")
    b = institution(reg, name="乙")
    register(reg, a, ["T-1", "T-2"])
    register(reg, b, ["T-2"])
    expected = {
        "/verify?number=T-1": "Registered",
        "/verify?number=T-2": "Registered by several institutions",
        f"/verify?number=T-1&institution={b.uscc}": "Does not match the institution",
        "/verify?number=T-9": "Not registered",
        "/verify?number=T-1&institution=nobody": "No institution matches “nobody”",
    }
    for url, text in expected.items():
        _, html = page(client, url + "&lang=en")
        assert text in html, url
        assert not re.search(r"[\u4e00-\u9fff]", re.sub(r"<[^>]*lang=\"zh-CN\"[^>]*>[^<]*<|甲|乙", "", html)), url


def test_translations_compiled_catalogue_matches_the_po_file():
    """The committed .mo is what the .po says (a fresh clone needs no compile step)."""
    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    from registry.infra.settings import ROOT

    folder = ROOT / "translations" / "en" / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as fh:
        catalogue = read_po(fh)
    assert [(m.id, errors) for m, errors in catalogue.check()] == []  # placeholders agree
    po = {m.id: m.string for m in catalogue if m.id}
    with open(folder / "messages.mo", "rb") as fh:
        mo = {m.id: m.string for m in read_mo(fh) if m.id}
    assert {k: v for k, v in po.items() if v} == {k: v for k, v in mo.items() if v}


def test_each_message_stands_once_in_the_catalogue():
    """Entries appended on both sides of a merge leave a message twice: gettext's msgfmt refuses that."""
    import collections

    from registry.infra.settings import TRANSLATIONS_DIR

    text = (TRANSLATIONS_DIR / "en" / "LC_MESSAGES" / "messages.po").read_text(encoding="utf-8")
    entries = re.findall(r'^msgid ((?:".*"\n)+)', text + "\n", re.M)
    twice = [ident for ident, n in collections.Counter(entries).items() if n > 1 and ident != '""\n']
    assert twice == []


# --- headers, suggestions, errors ---------------------------------------------------------------
SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@pytest.mark.parametrize("url", ["/", "/verify?number=H-1", "/static/site.css", "/static/suggest.js",
                                 "/no-such-page", "/api/v1/verify?number=H-1", "/complaints/new", "/healthz"])
def test_security_headers_on_every_response(client, url):
    with client.get(url) as response:
        headers = response.headers
    for name, value in SECURITY.items():
        assert headers[name] == value, (url, name)
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp


def test_pages_have_no_inline_script_or_style(client, reg):
    lab = institution(reg, name="内联检查中心")
    register(reg, lab, ["IN-1"])
    for url in ["/", "/verify?number=IN-1", "/complaints/new", "/nothing-here"]:
        html = client.get(url).get_data(as_text=True)
        assert "<style" not in html and " style=" not in html, url
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag, (url, tag)
        assert "http://" not in html and "https://" not in html, url  # no CDN, no external font


def test_suggestions_from_the_directory(client, reg):
    lab = institution(reg, name="联想检测技术有限公司", former_names=("联想旧名检测站",))
    institution(reg, name="无关机构")
    with count_sql(reg) as sql:
        body = client.get("/api/v1/institutions/suggest?q=联想").get_json()
    assert sql == []
    assert body["suggestions"] == [{"name": "联想检测技术有限公司", "uscc": lab.uscc, "former_names": ["联想旧名检测站"]}]
    assert client.get("/api/v1/institutions/suggest?q=旧名检测").get_json()["suggestions"][0]["uscc"] == lab.uscc
    response = client.get(f"/api/v1/institutions/suggest?q={lab.uscc[:8].lower()}")
    assert response.get_json()["suggestions"][0]["uscc"] == lab.uscc
    assert "X-RateLimit-Limit" in response.headers
    assert client.get("/api/v1/institutions/suggest?q=x").get_json() == {"suggestions": []}


def test_error_pages_are_friendly_in_both_languages(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret trace detail")

    client = app.test_client()
    for url, status, zh, en in [
        ("/no-such-page", 404, "页面不存在。", "There is no such page."),
        ("/boom", 500, "服务器内部错误", "Something went wrong on our side"),
    ]:
        response = client.get(url + "?lang=zh")
        html = response.get_data(as_text=True)
        assert response.status_code == status and zh in html and "Traceback" not in html
        assert "secret trace detail" not in html
        html = client.get(url + "?lang=en").get_data(as_text=True)
        assert en in html and '<html lang="en">' in html
    response = client.get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


PUBLIC_SOURCES = {
    "python": ["portal/public.py", "portal/complaints.py", "portal/forms.py", "portal/errors.py", "portal/i18n.py",
               "portal/site.py"],
    "jinja2": ["templates/base.html", "templates/index.html", "templates/verdict.html", "templates/error.html",
               "templates/complaint_form.html", "templates/complaint_status.html", "templates/complaint_track.html",
               "templates/privacy.html", "templates/api_docs.html"],
}


def test_every_message_of_the_public_pages_has_an_english_translation():
    """Extract the public pages' messages as `pybabel extract` would: none lacks its English."""
    from babel.messages.extract import extract_from_file
    from babel.messages.pofile import read_po

    from registry.infra.settings import ROOT

    with open(ROOT / "translations" / "en" / "LC_MESSAGES" / "messages.po", "rb") as fh:
        translated = {m.id for m in read_po(fh) if m.id and m.string}
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}
    found = set()
    for method, files in PUBLIC_SOURCES.items():
        for name in files:
            for _line, message, _comments, _context in extract_from_file(method, ROOT / name, keywords=keywords):
                found.add(message if isinstance(message, str) else message[0])
    assert len(found) > 100
    assert found <= translated, sorted(found - translated)
