"""Who runs the site (issue 19, part 6): every page's footer names the operator, a contact, a help
line and the filing numbers from the settings; /privacy says what is collected, why, who sees it
and how long it is kept; with nothing configured the site says plainly that it is a demo."""
from __future__ import annotations

import pytest

from registry.infra.settings import DEMO_OPERATOR, DEMO_OPERATOR_EN, is_demo_site, load_settings

DEMO = "演示站点，非官方服务"
DEMO_EN = "Demo site, not an official service"
PAGES = ["/", "/complaints/new", "/complaints/track", "/privacy", "/login", "/verify?number=X-1"]


def test_the_embedded_default_is_a_demo():
    settings = load_settings({})
    assert settings["SITE_OPERATOR"] == DEMO_OPERATOR == DEMO
    assert settings["SITE_OPERATOR_EN"] == DEMO_OPERATOR_EN == DEMO_EN
    assert settings["SITE_CONTACT"] == settings["SITE_HELPLINE"] == settings["SITE_ICP"] == settings["SITE_PSB"] == ""
    assert is_demo_site(settings)


def test_settings_are_read_and_english_falls_back_to_chinese():
    settings = load_settings({"SITE_OPERATOR": "  某省市场监督管理局 ", "SITE_CONTACT": "nrr@example.gov.cn",
                              "SITE_HELPLINE": "12315", "SITE_HELPLINE_EN": "12315 (weekdays 9:00–17:00)",
                              "SITE_ICP": "京ICP备00000000号"})
    assert settings["SITE_OPERATOR"] == "某省市场监督管理局"
    assert settings["SITE_OPERATOR_EN"] == "某省市场监督管理局"  # no English given: the Chinese, never the demo's
    assert settings["SITE_CONTACT_EN"] == "nrr@example.gov.cn"
    assert settings["SITE_HELPLINE_EN"] == "12315 (weekdays 9:00–17:00)"
    assert settings["SITE_ICP"] == "京ICP备00000000号" and settings["SITE_PSB"] == ""
    assert not is_demo_site(settings)


@pytest.mark.parametrize("url", PAGES)
def test_every_page_says_it_is_a_demo_by_default(client, url):
    html = client.get(url).get_data(as_text=True)
    assert 'id="demo-notice"' in html and DEMO in html and DEMO_EN in html, url
    assert 'id="site-operator"' in html and 'href="/privacy"' in html, url
    assert "演示站点，未备案" in html


@pytest.fixture
def operated(stack):
    from portal import create_app

    app = create_app({**stack, "SITE_OPERATOR": "国家认证认可监督管理委员会（示例）",
                      "SITE_OPERATOR_EN": "Certification and Accreditation Administration (example)",
                      "SITE_CONTACT": "北京市海淀区马甸东路9号", "SITE_CONTACT_EN": "9 Madian East Road, Haidian, Beijing",
                      "SITE_HELPLINE": "12315", "SITE_ICP": "京ICP备09062530号", "SITE_PSB": "京公网安备11010802021391号"})
    yield app
    app.extensions["registry"].close()


def test_the_footer_and_privacy_page_name_the_configured_operator(operated):
    client = operated.test_client()
    for url in ("/", "/privacy", "/complaints/new"):
        html = client.get(url).get_data(as_text=True)
        assert 'id="demo-notice"' not in html and DEMO not in html, url
        for text in ("国家认证认可监督管理委员会（示例）", "北京市海淀区马甸东路9号", "12315", "京ICP备09062530号",
                     "京公网安备11010802021391号"):
            assert text in html, (url, text)
    html = client.get("/privacy?lang=en").get_data(as_text=True)
    assert "This site is run by Certification and Accreditation Administration (example)." in html
    assert "9 Madian East Road, Haidian, Beijing" in html and "京ICP备09062530号" in html
    assert "Operated by" in html and "Help line" in html


def test_the_privacy_notice_says_what_why_who_and_how_long(client):
    response = client.get("/privacy")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "本站是演示站点，不是官方服务" in html
    # verify queries: what (numbers, institution text, keyed hash rotated every 30 days), who, how long
    assert "您查询的报告编号和填写的出具机构文字" in html and "密钥散列值" in html and "每 30 天自动更换" in html
    # complaints: the personal data, who sees it, every view logged; how long, from the settings
    assert "姓名、联系方式和附件" in html and "国家市场监督管理总局" in html and "记入该投诉的处理记录" in html
    assert "查询记录保存 180 天" in html and "投诉办结或不予受理 1095 天后，删除您的姓名和联系方式" in html
    # backups: how long, and that a restore applies the erasures again
    assert "每份备份最多保存 35 天" in html and "从备份恢复后，系统立即重新执行上述删除" in html
    english = client.get("/privacy?lang=en").get_data(as_text=True)
    assert "a keyed hash of your network address" in english and "every 30 days" in english
    assert "Check records are kept for 180 days" in english and "1095 days after a complaint" in english
    assert "each backup is deleted after at most 35 days" in english and "applied again at once" in english
    assert "演示站点" not in english.replace(DEMO, "")  # the bilingual demo notice aside, no Chinese text left
