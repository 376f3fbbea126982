"""/docs/api: the API guide in Chinese and English, linked from the home page, with curl and Python
examples, the found-but-unresolved warning, the CORS policy; no script, nothing from another host."""
from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("lang, words", [
    ("zh", ["API 接口说明", "不是“核对一致”", "跨域调用（CORS）", "Idempotency-Key", "平台密钥",
            "只能说“截至某时未登记”", "必须通过接口（单个或批量查询）确认", "离线穷举"]),
    ("en", ["API documentation", "is not a match", "Cross-origin calls (CORS)", "Idempotency-Key", "platform key",
            "“not registered as of” a time", "must confirm through the API", "enumerate a guessable number space"]),
])
def test_the_guide_in_both_languages(client, lang, words):
    response = client.get(f"/docs/api?lang={lang}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for word in words:
        assert word in html, word
    assert 'id="unresolved-warning"' in html
    assert "curl -s" in html and "--data-urlencode" in html and "urllib.request" in html
    for endpoint in ("/api/v1/verify", "/api/v1/verify/bulk", "/api/v1/institutions/suggest", "/api/v1/batches",
                     "/api/v1/numbers", "/api/v1/withdrawals", "/api/v1/restorations", "/healthz", "/readyz",
                     "/api/v1/snapshot", "/api/v1/snapshot/deltas", "/api/v1/snapshot/key", "snapshot_client.py"):
        assert endpoint in html, endpoint
    assert 'href="/api/v1/openapi.json"' in html
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)  # no CDN, no other host
    if lang == "en":  # no Chinese left on the English page (but the language switch)
        assert not re.search(r"[\u4e00-\u9fff]", re.sub(r"<[^>]*lang=\"zh-CN\"[^>]*>[^<]*<", "", html))


def test_examples_use_the_public_base_url_not_the_host_header(app):
    html = app.test_client().get("/docs/api", headers={"Host": "evil.example"}).get_data(as_text=True)
    assert "evil.example" not in html
    assert app.config["PUBLIC_BASE_URL"].rstrip("/") + "/api/v1/verify' \\" in html


def test_the_home_page_links_the_guide(client):
    for lang, text in (("zh", "API 接口说明"), ("en", "API documentation")):
        html = client.get(f"/?lang={lang}").get_data(as_text=True)
        assert re.search(r'<a href="/docs/api">' + text + "</a>", html), lang
