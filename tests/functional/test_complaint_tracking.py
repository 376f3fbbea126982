"""查询投诉进度: the home page links to a form that takes a tracking code; a wrong code answers on
the same page with the form kept, a right one goes to the status page; CSRF and a limit on misses."""
from __future__ import annotations

import re

import pytest

from tests.functional.test_complaints import seed, stored, submit


@pytest.fixture
def app(stack):
    from portal import create_app

    app = create_app({**stack, "WTF_CSRF_ENABLED": True, "RATELIMIT_COMPLAINT": "100/hour",
                      "RATELIMIT_TRACK": "4/minute"})
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted(), reg.bloom.status()
    seed(reg)
    yield app
    reg.close()


def token(client) -> str:
    html = client.get("/complaints/track").get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def track(client, code: str, **extra):
    return client.post("/complaints/track", data={"csrf_token": token(client), "code": code, **extra})


@pytest.fixture
def code(client, reg) -> str:
    response = submit(client)
    assert response.status_code == 303 and len(stored(reg)) == 1
    return response.headers["Location"].rsplit("/", 1)[1]  # the code, shown to the complainant once


def test_the_home_page_links_to_the_tracking_form(client):
    html = client.get("/").get_data(as_text=True)
    assert '<a href="/complaints/track">查询投诉进度</a>' in html
    response = client.get("/complaints/track")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "<h1 id=\"track-title\">查询投诉进度</h1>" in html
    assert '<label for="code">查询码</label>' in html and 'method="post"' in html
    assert 'name="csrf_token"' in html


@pytest.mark.parametrize("typed", [None, "lower", "dashless", "spaced"])
def test_a_right_code_goes_to_its_status_page(client, code, typed):
    text = {None: code, "lower": code.lower(), "dashless": code.replace("-", ""),
            "spaced": " " + code.replace("-", " ") + " "}[typed]
    response = track(client, text)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/complaints/{code}")
    assert code in client.get(response.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize("typed, status, message", [
    ("", 400, "请输入查询码。"),
    ("ABCD-1234", 400, "查询码为 16 位字母和数字"),
    ("AAAA-BBBB-CCCC-DDDD", 404, "没有这个查询码对应的投诉，请核对后重试。"),
    ("<script>x</script>", 400, "查询码为 16 位字母和数字"),
])
def test_a_wrong_code_answers_on_the_same_page_with_the_form_kept(client, typed, status, message):
    response = track(client, typed)
    html = response.get_data(as_text=True)
    assert response.status_code == status
    assert message in html and 'id="track-problem"' in html and 'id="code-error"' in html
    assert '<form method="post" action="/complaints/track"' in html  # not a dead end
    assert 'aria-invalid="true"' in html and "autofocus" in html
    if typed:
        assert "<script>x" not in html
        assert re.search(r'<input[^>]+id="code"[^>]+value="([^"]*)"', html).group(1) == typed.replace(
            "<", "&lt;").replace(">", "&gt;")


def test_english(client, code):
    html = client.get("/complaints/track?lang=en").get_data(as_text=True)
    assert "Track a complaint" in html and "Tracking code" in html
    html = track(client, "AAAA-BBBB-CCCC-DDDD").get_data(as_text=True)
    assert "There is no complaint with this tracking code; please check it and try again." in html


def test_a_missing_csrf_token_is_refused(client, code):
    response = client.post("/complaints/track", data={"code": code})
    assert response.status_code == 400 and "表单已过期或无效" in response.get_data(as_text=True)


def test_only_misses_count_towards_the_limit(client, code):
    for _ in range(6):  # hits never count
        assert track(client, code).status_code == 303
    for _ in range(4):
        assert track(client, "AAAA-BBBB-CCCC-DDDD").status_code == 404
    refused = track(client, "AAAA-BBBB-CCCC-DDDE")
    assert refused.status_code == 429
    assert client.get("/complaints/track").status_code == 200  # the form itself is not limited
