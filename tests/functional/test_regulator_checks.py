"""Issue 19 part 3 for the regulator console: one action at a time (choose it, then its form),
a check page listing what will change before anything that cannot be undone, a confirmation
page naming the result; problems in an error summary linked to their fields."""
from __future__ import annotations

import re

from sqlalchemy import select

from registry.complaints.models import Complaint, ComplaintEvent
from tests.functional.regulator_helpers import (  # noqa: F401
    act, complaint, csrf, institution, officer_client, rapp, rreg,
)


def _events(reg, complaint_id):
    with reg.sessions() as s:
        return [e.kind for e in s.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == complaint_id))]


def test_reject_is_chosen_filled_in_checked_and_confirmed(rapp, rreg):
    case = complaint(rreg, province="15", number="CHK-0001")
    client = officer_client(rapp, rreg, "15")
    trail = client.get(f"/regulator/complaints/{case.id}").get_data(as_text=True)
    # the actions sit near the top of the page, before the complaint's facts, one link each
    assert trail.index('id="actions"') < trail.index('class="facts"')
    for action in ("accept", "reject", "transfer", "request-info", "note"):
        assert f'id="act-{action}"' in trail
    assert 'id="act-conclude"' not in trail  # not before acceptance
    assert "<textarea" not in trail  # no form on the trail itself

    form = client.get(f"/regulator/complaints/{case.id}/reject")
    assert form.status_code == 200 and 'id="do-reject"' in form.get_data(as_text=True)
    token = csrf(client, f"/regulator/complaints/{case.id}/reject")
    before = _events(rreg, case.id)

    # a missing reason: back to the form, the problem in a summary linked to the field and above it
    empty = client.post(f"/regulator/complaints/{case.id}/reject/check", data={"csrf_token": token, "note": "  "})
    assert empty.status_code == 303 and "/reject?key=" in empty.headers["Location"]
    page = client.get(empty.headers["Location"]).get_data(as_text=True)
    assert re.search(r'class="error-summary"[^>]*autofocus', page)
    assert '<a href="#note">请填写理由或说明。</a>' in page
    assert page.index('id="note-error"') < page.index('<textarea id="note"')

    checked = client.post(f"/regulator/complaints/{case.id}/reject/check",
                          data={"csrf_token": token, "note": "不属于资质认定管辖范围。"})
    assert checked.status_code == 303 and "/reject/check?key=" in checked.headers["Location"]
    check = client.get(checked.headers["Location"]).get_data(as_text=True)
    assert "不属于资质认定管辖范围。" in check and 'id="will-change"' in check and "不能撤回" in check
    key = re.search(r'name="key" value="([^"]+)"', check).group(1)
    assert _events(rreg, case.id) == before  # nothing happens until confirmed
    # "change" goes back to the form with the answers kept
    change = client.get(re.search(r'href="([^"]+)" id="change-answers"', check).group(1).replace("&amp;", "&"))
    assert "不属于资质认定管辖范围。" in change.get_data(as_text=True)

    done = client.post(f"/regulator/complaints/{case.id}/reject",
                       data={"csrf_token": token, "note": "不属于资质认定管辖范围。", "key": key})
    assert done.status_code == 303 and done.headers["Location"].endswith("/regulator/done")
    confirmation = client.get("/regulator/done").get_data(as_text=True)
    assert 'id="confirmation"' in confirmation and "已决定不予受理" in confirmation and "CHK-0001" in confirmation
    assert "The complaint was rejected" in client.get("/regulator/done?lang=en").get_data(as_text=True)
    with rreg.sessions() as s:
        assert s.get(Complaint, case.id).status == "rejected"


def test_transfer_and_conclusion_read_in_words_in_both_languages(rapp, rreg):
    case = complaint(rreg, province="15", number="CHK-0002")
    client = officer_client(rapp, rreg, "00")
    check_url = client.post(f"/regulator/complaints/{case.id}/transfer/check",
                            data={"csrf_token": csrf(client), "authority": "19", "note": "机构实际在广东。"}
                            ).headers["Location"]
    english = client.get(check_url + "&lang=en").get_data(as_text=True)
    assert "Guangdong Administration for Market Regulation" in english
    assert act(client, case.id, "transfer", authority="19", note="机构实际在广东。").status_code == 303
    assert "Guangdong" in client.get("/regulator/done?lang=en").get_data(as_text=True)
    act(client, case.id, "accept")
    act(client, case.id, "conclude", finding="not_registered", note="机构未登记。")
    zh = client.get(f"/regulator/complaints/{case.id}?lang=zh").get_data(as_text=True)
    en = client.get(f"/regulator/complaints/{case.id}?lang=en").get_data(as_text=True)
    assert "[not_registered]" not in zh and "[not_registered]" not in en
    assert "机构未登记该编号：机构未登记。" in zh
    assert "转办至 广东省市场监督管理局：机构实际在广东。" in zh
    assert "Transferred to Guangdong Administration for Market Regulation: 机构实际在广东。" in en


def test_an_action_that_is_not_possible_now_says_so(rapp, rreg):
    case = complaint(rreg, province="15")
    client = officer_client(rapp, rreg, "15")
    page = client.get(f"/regulator/complaints/{case.id}/conclude").get_data(as_text=True)
    assert 'id="not-possible"' in page and "<textarea" not in page
    assert client.get(f"/regulator/complaints/{case.id}/nonsense").status_code == 404
    assert "没有刚完成的操作" in client.get("/regulator/done").get_data(as_text=True)
