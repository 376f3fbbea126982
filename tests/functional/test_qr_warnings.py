"""The QR pages warn, before printing, on numbers a scan would not show as registered: numbers
this institution never registered and numbers it withdrew (issue 19)."""
from __future__ import annotations

import html
import re

from tests.builders import register
from tests.functional.test_institution_portal import portal_app, preg, signed_in  # noqa: F401 - fixtures


def _text(page: str) -> str:
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))


def test_qr_sheet_names_withdrawn_and_unregistered_numbers(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    register(preg, inst, ["Q-1", "Q-2"])
    preg.registration.withdraw(institution_id=inst.id, items=[(None, "Q-2", "作废")])

    page = client.get("/institution/qr/sheet?lang=zh&numbers=Q-1%0AQ-2%0AQ-3").get_data(as_text=True)
    assert page.count("<svg") == 3  # each still printable, once the uploader has read the warning
    text = _text(page)
    assert "打印前请核对" in text and "本机构尚未登记（1 个）： Q-3" in text and "已撤销（1 个）： Q-2" in text
    only = re.search(r'href="([^"]*)">只打印已登记且未撤销的编号', page).group(1)
    assert "Q-1" in html.unescape(only) and "Q-2" not in html.unescape(only)
    assert "打印前请核对" not in client.get(html.unescape(only)).get_data(as_text=True)

    english = _text(client.get("/institution/qr/sheet?lang=en&numbers=Q-1%0AQ-2%0AQ-3").get_data(as_text=True))
    assert "Not registered by this institution (1): Q-3" in english and "Withdrawn (1): Q-2" in english

    clean = client.get("/institution/qr/sheet?lang=zh&numbers=Q-1").get_data(as_text=True)
    assert "打印前请核对" not in clean and 'id="qr-warnings"' not in clean


def test_single_qr_warns_too(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    register(preg, inst, ["S-1", "S-2"])
    preg.registration.withdraw(institution_id=inst.id, items=[(None, "S-2", "作废")])
    assert 'id="qr-warning"' not in client.get("/institution/qr?number=S-1").get_data(as_text=True)
    assert "本机构尚未登记编号 S-9" in _text(client.get("/institution/qr?number=S-9&lang=zh").get_data(as_text=True))
    assert "S-2 is withdrawn" in _text(client.get("/institution/qr?number=S-2&lang=en").get_data(as_text=True))
