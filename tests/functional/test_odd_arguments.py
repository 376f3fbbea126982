"""Odd query arguments and ids answer 400 or 404, never a 500; no link follows url_for's own
arguments (issue 13, item 19)."""
from __future__ import annotations

import pytest

from tests.functional.regulator_helpers import rapp, rreg, sign_in  # noqa: F401 - fixtures
from tests.functional.test_institution_portal import portal_app, preg, signed_in  # noqa: F401 - fixtures

HUGE = "99999999999999999999999"

REGULATOR_URLS = [
    "/regulator/complaints?fmt=x",
    "/regulator/complaints?fmt=csv&_external=1&_scheme=javascript&_anchor=x&_method=POST",
    f"/regulator/complaints?institution={HUGE}",
    "/regulator/complaints?institution=-1",
    "/regulator/complaints?institution=abc",
    "/regulator/complaints?quarter=9999Q4",
    "/regulator/complaints.csv?institution=99999999999999999999",
    "/regulator/complaints/99999999999999999999",
    f"/regulator/complaints/{HUGE}/complainant",
    f"/regulator/complaints/{HUGE}/attachment",
    f"/regulator/complaints/{HUGE}/trail.csv",
    "/regulator/compliance?quarter=9999Q4",
    "/regulator/compliance?quarter=0000Q1",
    "/regulator/compliance?quarter=1899Q4",
    "/regulator/compliance?quarter=x",
    "/regulator/compliance/9999Q4.csv",
    "/regulator/compliance/0000Q1.xlsx",
    f"/regulator/institutions/{HUGE}",
    "/regulator/institutions?q=%25%5F",
    "/regulator/leads?min_clients=999999999999999999999999",
    "/regulator/?_external=1",
    "/regulator/compliance?lang=en&_external=1",
]


@pytest.mark.parametrize("url", REGULATOR_URLS)
def test_regulator_console(rapp, rreg, url):  # noqa: F811
    client = sign_in(rapp, rreg, "regulator", authority="00")
    response = client.get(url)
    assert response.status_code in (200, 400, 404), (url, response.status_code)
    body = response.get_data(as_text=True)
    assert "//localhost" not in body and "javascript:" not in body  # the request's host never makes a link


@pytest.mark.parametrize("url", [
    f"/institution/uploads/{HUGE}",
    f"/institution/batches/{HUGE}",
    f"/institution/batches/{HUGE}/rejected.csv",
    "/institution/?lang=en&_external=1&_scheme=ftp",
    "/institution/qr?number=A-1&_external=1",
])
def test_institution_portal(portal_app, preg, url):  # noqa: F811
    client, _ = signed_in(portal_app, preg)
    response = client.get(url)
    assert response.status_code in (200, 400, 404), (url, response.status_code)
    assert "//localhost" not in response.get_data(as_text=True) and "ftp:" not in response.get_data(as_text=True)


def test_language_switch_ignores_url_for_arguments(portal_app):  # noqa: F811
    client = portal_app.test_client()
    for url in ("/?_external=1", "/complaints/new?_external=1&_scheme=javascript", "/verify?number=A&_anchor=x"):
        page = client.get(url, headers={"Host": "evil.example"}).get_data(as_text=True)
        assert "evil.example" not in page and "javascript:" not in page and "#x" not in page


def test_qr_codes_follow_the_public_base_url_not_the_host(stack):
    from portal import create_app
    from tests.functional.test_institution_portal import signed_in as sign_in_lab

    app = create_app({**stack, "PUBLIC_BASE_URL": "https://verify.example.cn/"})
    reg = app.extensions["registry"]
    try:
        assert reg.wait_until_trusted()
        client, inst = sign_in_lab(app, reg)
        for name in ("session", "remember_token"):  # the same session, asked for as evil.example
            cookie = client.get_cookie(name)
            if cookie is not None:
                client.set_cookie(name, cookie.value, domain="evil.example")
        for url in ("/institution/qr?number=WT-1", "/institution/qr/sheet?numbers=WT-1"):
            page = client.get(url, environ_overrides={"HTTP_HOST": "evil.example"},
                              headers={"X-Forwarded-Host": "evil.example"})
            assert page.status_code == 200
            html = page.get_data(as_text=True)
            assert "evil.example" not in html
        html = client.get("/institution/qr?number=WT-1", environ_overrides={"HTTP_HOST": "evil.example"}).get_data(
            as_text=True)
        assert f"https://verify.example.cn/v/{inst.uscc}/WT-1" in html
        sheet = client.get("/institution/qr/sheet?numbers=A-1").get_data(as_text=True)
        assert "localhost" not in sheet
    finally:
        reg.close()


def test_public_base_url_setting():
    from registry.infra.settings import load_settings

    assert load_settings({})["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert load_settings({"PUBLIC_BASE_URL": "https://v.example.cn/"})["PUBLIC_BASE_URL"] == "https://v.example.cn"
    for bad in ("v.example.cn", "javascript:alert(1)", "https://", "https://x.cn/?a=1"):
        with pytest.raises(ValueError, match="PUBLIC_BASE_URL"):
            load_settings({"PUBLIC_BASE_URL": bad})
