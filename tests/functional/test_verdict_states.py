"""The verdict page never shows success for an institution it could not match, warns about an
abnormal institution with its listing, and offers near names ("您是不是要找…") from the directory."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from registry.complaints.casework import Officer
from registry.compliance.abnormal import AbnormalService
from registry.institutions.models import Authority
from tests.builders import register
from tests.functional.test_public import app, institution, page  # noqa: F401 - the fixed-clock app
from tests.sql_counting import count_sql

LISTED_AT = dt.datetime(2026, 9, 14, 2, 30, tzinfo=dt.timezone.utc)  # 2026-09-14 10:30 in Beijing


def state_of(html: str) -> tuple[str, str]:
    m = re.search(r'class="verdict verdict-(\w+)" data-status="(\w+)" data-state="(\w+)"', html)
    assert m and m.group(1) == m.group(3), html[:2000]
    return m.group(2), m.group(3)


def list_as_abnormal(reg, inst, *, authority_code: str = "11", at: dt.datetime = LISTED_AT) -> None:
    with reg.sessions() as session:
        authority = session.scalar(select(Authority).where(Authority.code == authority_code))
        officer = Officer(username="officer", authority_id=authority.id, authority_code=authority.code)
    AbnormalService(sessions=reg.sessions, clock=lambda: at).mark(officer, inst.id, "内部核查记录：不对外公开的细节")
    reg.refresh()


@pytest.fixture
def registrant(reg):
    lab = institution(reg, name="杭州检测技术有限公司", former_names=("杭州老检测站",), province="11")
    institution(reg, name="宁波市环境监测中心")
    register(reg, lab, ["UC-1"])
    return lab


# --- institution given but not matched -------------------------------------------------------
@pytest.mark.parametrize("typed", [
    "杭州检测技术",          # the name as printed, without the suffix the register has
    "杭州检测技朮有限公司",   # one character wrong
    "不存在的实验室",         # made up
    "91330000MA00000000",    # a USCC nobody has
])
def test_an_unmatched_institution_is_never_a_success(client, reg, registrant, typed):
    with count_sql(reg) as sql:
        response, html = page(client, "/verify", query_string={"number": "UC-1", "institution": typed})
    assert response.status_code == 200 and len(sql) <= 1
    assert state_of(html) == ("found", "unchecked")  # the number's status stays, the page's state is neutral
    assert "verdict-found" not in html and "✓" not in html
    assert "<h1 id=\"verdict-title\">无法核对出具机构</h1>" in html
    assert f"没有找到与“{typed}”对应的机构" in html
    registrant_box = html.split('id="registrant"', 1)[1].split("</div>", 1)[0]
    assert '<p class="registrant-name">杭州检测技术有限公司</p>' in registrant_box
    assert "请核对报告上印制的机构是否为 <strong>杭州检测技术有限公司</strong>" in registrant_box
    assert "status=found" in html and 'class="button primary"' in html  # complaining is the main action


def test_near_names_are_offered_including_former_names(client, reg, registrant):
    _, html = page(client, "/verify", query_string={"number": "UC-1", "institution": "杭州检测技术"})
    near = html.split('id="near-names"', 1)[1].split("</section>", 1)[0]
    assert "您是不是要找…" in near
    assert "杭州检测技术有限公司" in near and "曾用名：杭州老检测站" in near
    assert f"/verify?number=UC-1&amp;institution={registrant.uscc}" in near
    assert "宁波市环境监测中心" not in near
    # by a former name, misspelled
    _, html = page(client, "/verify", query_string={"number": "UC-1", "institution": "杭州老检测所"})
    assert "杭州检测技术有限公司" in html.split('id="near-names"', 1)[1]
    # nothing near a made-up name: no empty heading
    _, html = page(client, "/verify", query_string={"number": "UC-1", "institution": "不存在的实验室"})
    assert 'id="near-names"' not in html


def test_a_qr_link_with_a_wrong_uscc_is_not_a_success(client, reg, registrant):
    response, html = page(client, "/v/NOTAUSCC/UC-1")
    assert response.status_code == 200
    assert state_of(html) == ("found", "unchecked")
    assert "没有找到与“NOTAUSCC”对应的机构" in html and "杭州检测技术有限公司" in html
    _, html = page(client, f"/v/{registrant.uscc}/UC-1")
    assert state_of(html) == ("found", "found")


def test_an_unmatched_institution_on_a_shared_number_lists_the_candidates(client, reg):
    a = institution(reg, name="甲地检测站")
    b = institution(reg, name="乙地检测站")
    register(reg, a, ["SH-1"])
    register(reg, b, ["SH-1"])
    _, html = page(client, "/verify", query_string={"number": "SH-1", "institution": "丙地检测所"})
    assert state_of(html) == ("ambiguous", "unchecked")
    box = html.split('id="registrant"', 1)[1].split("</div>", 1)[0]
    assert "甲地检测站" in box and "乙地检测站" in box
    assert f"institution={a.uscc}" in box and f"institution={b.uscc}" in box


@pytest.mark.parametrize("number, status", [("NOPE-1", "not_found"), ("WD-1", "withdrawn")])
def test_negative_verdicts_stay_negative_with_an_unmatched_institution(client, reg, registrant, number, status):
    if status == "withdrawn":
        register(reg, registrant, [number])
        reg.registration.withdraw(institution_id=registrant.id, items=[(None, number, "作废")])
        reg.refresh()
    _, html = page(client, "/verify", query_string={"number": number, "institution": "杭州检测技术"})
    assert state_of(html) == (status, status)
    assert 'class="note note-warn" id="unresolved"' in html
    assert "杭州检测技术有限公司" in html.split('id="near-names"', 1)[1]


def test_the_json_contract_is_unchanged(client, reg, registrant):
    body = client.get("/api/v1/verify", query_string={"number": "UC-1", "institution": "杭州检测技术"}).get_json()
    assert body["status"] == "found" and body["institution_resolved"] is False
    assert body["institution"]["name"] == "杭州检测技术有限公司"
    assert set(body["institution"]) == {"name", "uscc", "abnormal", "certificates"}


def test_english(client, reg, registrant):
    _, html = page(client, "/verify", query_string={"number": "UC-1", "institution": "杭州检测技术", "lang": "en"})
    assert "The issuing institution could not be checked" in html
    assert "Did you mean…" in html and "Former names: " in html
    assert "Check whether the institution printed on the report is <strong>杭州检测技术有限公司</strong>" in html
    assert '<p class="registrant-name" lang="zh-CN">' in html


def test_near_names_cost_no_sql_and_bounded_work(reg):
    """Near names come from the in-process directory, bounded even for long or common text."""
    for n in range(30):
        institution(reg, name=f"第{n}号检测有限公司")
    directory = reg.directory
    with count_sql(reg) as sql:
        assert directory.near("第7号检测有限公") and directory.near("第7号检测有限公")[0].name == "第7号检测有限公司"
        assert directory.near("检测" * 500) == []  # long text of common pairs: cut, nothing close
        assert directory.near("x") == [] and directory.near("") == [] and directory.near(None) == []
    assert sql == []


# --- abnormal institutions ---------------------------------------------------------------------
def test_an_abnormal_institution_is_a_warning_with_its_listing(client, reg):
    lab = institution(reg, name="异常的检测公司", province="11")
    register(reg, lab, ["AB-1"])
    list_as_abnormal(reg, lab)
    client.get("/verify?number=WARMUP")
    with count_sql(reg) as sql:
        response, html = page(client, "/verify?number=AB-1")
    assert len(sql) <= 1
    assert state_of(html) == ("found", "abnormal")
    assert "verdict-found" not in html and "✓" not in html
    assert "已登记，但出具机构已列入异常名录" in html
    note = html.split('id="abnormal"', 1)[1].split("</div>", 1)[0]
    assert ('该机构已于 <time class="date" datetime="2026-09-14">2026-09-14</time> 被浙江省市场监督管理局'
            '列入异常检验检测机构名录。') in note
    assert "不对外公开" not in html  # the officer's reason is not published
    _, html = page(client, "/verify?number=AB-1&lang=en")
    assert "Registered, but the institution is on the abnormal list" in html
    assert "by Zhejiang Administration for Market Regulation on <time class=\"date\" datetime=\"2026-09-14\">" in html
    # delisted: the plain verdict again
    with reg.sessions() as session:
        authority = session.scalar(select(Authority).where(Authority.code == "11"))
        officer = Officer(username="officer", authority_id=authority.id, authority_code="11")
    AbnormalService(sessions=reg.sessions).unmark(officer, lab.id, "已整改")
    reg.refresh()
    _, html = page(client, "/verify?number=AB-1")
    assert state_of(html) == ("found", "found") and 'id="abnormal"' not in html


def test_an_abnormal_flag_without_a_recorded_listing_still_warns(client, reg):
    lab = institution(reg, name="旧数据异常机构", abnormal=True)
    register(reg, lab, ["AB-2"])
    _, html = page(client, "/verify?number=AB-2")
    assert state_of(html) == ("found", "abnormal")
    assert "该机构已被列入异常检验检测机构名录。" in html


def test_the_abnormal_listing_of_the_asked_institution_shows_on_a_mismatch(client, reg):
    owner = institution(reg, name="登记机构甲")
    asked = institution(reg, name="异常机构乙")
    register(reg, owner, ["AB-3"])
    list_as_abnormal(reg, asked)
    _, html = page(client, "/verify", query_string={"number": "AB-3", "institution": "异常机构乙"})
    assert state_of(html) == ("mismatch", "mismatch")
    assert "2026-09-14" in html.split('id="abnormal"', 1)[1]
