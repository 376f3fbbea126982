"""Complaint intake: the form, CSRF, attachments, routing, tracking codes and the status page."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.institutions.authorities import seed_authorities
from registry.complaints.service import hash_tracking_code, normalize_tracking_code
from registry.complaints.models import Complaint, ComplaintEvent
from tests.builders import make_institution, register

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"


@pytest.fixture
def app(stack):
    from portal import create_app

    app = create_app({**stack, "RATELIMIT_COMPLAINT": "100/hour"})
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted(), reg.bloom.status()
    seed(reg)
    yield app
    reg.close()


def seed(reg) -> None:
    with reg.sessions() as session:
        seed_authorities(session)
        session.commit()


def institution(reg, **kw):
    with reg.sessions() as session:
        inst = make_institution(session, **kw)
        session.expunge(inst)
    reg.refresh()
    return inst


def csrf_token(client) -> str:
    html = client.get("/complaints/new").get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def complaint_data(client, **overrides):
    data = {
        "csrf_token": csrf_token(client),
        "number": "WT2026-0001",
        "institution": "",
        "category": "not_found",
        "description": "在电商平台看到这份报告，查不到编号。",
        "name": "张三",
        "contact": "13800138000",
        "website": "",
    }
    data.update(overrides)
    return data


def submit(client, **overrides):
    response = client.post("/complaints", data=complaint_data(client, **overrides), content_type="multipart/form-data")
    response.get_data()
    response.close()
    # werkzeug's client closes a big body's temporary file only when following redirects
    response.request.environ["wsgi.input"].close()
    return response


def stored(reg):
    with reg.sessions() as session:
        return session.scalars(select(Complaint).order_by(Complaint.id)).all()


def count(reg, model) -> int:
    with reg.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


# --- the form ----------------------------------------------------------------------------------
def test_form_is_prefilled_from_the_verdict_page(client):
    html = client.get("/complaints/new?number=MM-1&institution=某检测站&status=mismatch").get_data(as_text=True)
    assert 'value="MM-1"' in html and 'value="某检测站"' in html
    assert re.search(r'<input checked id="category-1" name="category" required type="radio" value="wrong_institution">', html)
    assert 'name="csrf_token"' in html and 'enctype="multipart/form-data"' in html
    for field in ("number", "institution", "description", "name", "contact", "attachment"):
        assert f'<label for="{field}">' in html
    assert '<div class="hp" aria-hidden="true">' in html and 'tabindex="-1"' in html


def test_form_prefill_is_escaped(client):
    html = client.get("/complaints/new?number=%22%3E%3Cscript%3Ex%3C/script%3E").get_data(as_text=True)
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html


# --- submission, routing, status page ----------------------------------------------------------
def test_submission_is_routed_to_the_institutions_province_and_tracked(client, reg):
    lab = institution(reg, name="山东某检测公司", province="15")
    register(reg, lab, ["SD-1"])
    response = submit(client, number="sd-1", institution="山东某检测公司", category="altered",
                      description="报告数据与实物不符。")
    assert response.status_code == 303
    location = response.headers["Location"]
    match = re.fullmatch(r"/complaints/([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})", location)
    assert match, location

    [row] = stored(reg)
    assert row.authority.code == "15" and row.institution_id == lab.id
    assert row.number == "SD-1" and row.category == "altered"
    assert row.verdict_status == "found" and row.verdict_json["status"] == "found"
    assert row.verdict_json["institution"]["uscc"] == lab.uscc
    assert row.complainant_name == "张三" and row.complainant_contact == "13800138000"
    assert row.tracking_hash == hash_tracking_code(normalize_tracking_code(match.group(1)))  # only its hash is kept
    assert len(normalize_tracking_code(match.group(1))) == 16  # 80 random bits in base32

    page = client.get(location)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "您的投诉已提交" in html  # the flash after the redirect
    assert match.group(1) in html and "SD-1" in html
    assert "山东省市场监督管理局" in html
    assert "已收到，等待审核部门处理" in html
    assert "投诉已提交" in html and "已转交审核部门" in html
    # never personal data, the description, internal notes or the attachment
    for private in ("张三", "13800138000", "报告数据与实物不符", "被投诉机构的审核部门"):
        assert private not in html


def test_unknown_institution_goes_to_national_triage(client, reg):
    response = submit(client, number="UNK-1", institution="查无此机构", category="wrong_institution")
    assert response.status_code == 303
    [row] = stored(reg)
    assert row.authority.code == "00" and row.institution_id is None
    assert row.verdict_status == "not_found"
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "国家市场监督管理总局" in html


def test_without_institution_the_sole_registrant_is_the_subject(client, reg):
    lab = institution(reg, name="广东检测中心", province="19")
    register(reg, lab, ["GD-1"])
    assert submit(client, number="GD-1", institution="").status_code == 303
    [row] = stored(reg)
    assert row.authority.code == "19" and row.institution_id == lab.id


def test_events_are_public_and_append_only(client, reg):
    submit(client, number="EV-1")
    [row] = stored(reg)
    with reg.sessions() as session:
        events = session.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == row.id)
                                 .order_by(ComplaintEvent.id)).all()
    assert [(e.kind, e.actor, e.public) for e in events] == [("submitted", "public", True), ("routed", "system", True)]


def test_status_page_accepts_the_code_as_typed_and_refuses_unknown_codes(client, reg):
    location = submit(client, number="TC-1").headers["Location"]
    code = location.rsplit("/", 1)[1]
    assert client.get("/complaints/" + code.replace("-", "").lower()).status_code == 200
    missing = client.get("/complaints/AAAA-BBBB-CCCC-DDDD")
    assert missing.status_code == 404 and "没有这个查询码对应的投诉" in missing.get_data(as_text=True)
    assert client.get("/complaints/short").status_code == 404


def test_status_page_in_english(client, reg):
    location = submit(client, number="EN-1", institution="查无此机构").headers["Location"]
    html = client.get(location + "?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "Complaint status" in html and "Received, waiting for the review authority" in html
    assert "SAMR / CNCA" in html and "Complaint submitted" in html


# --- refusals -----------------------------------------------------------------------------------
@pytest.fixture
def csrf_app(stack):
    from portal import create_app

    app = create_app({**stack, "WTF_CSRF_ENABLED": True, "RATELIMIT_COMPLAINT": "100/hour"})
    seed(app.extensions["registry"])
    yield app
    app.extensions["registry"].close()


def test_missing_or_wrong_csrf_token_is_refused(csrf_app):
    client = csrf_app.test_client()
    reg = csrf_app.extensions["registry"]
    data = complaint_data(client)
    for token in (None, "not-a-token", data["csrf_token"] + "x"):
        attempt = {k: v for k, v in data.items() if k != "csrf_token"}
        if token is not None:
            attempt["csrf_token"] = token
        response = client.post("/complaints", data=attempt)
        html = response.get_data(as_text=True)
        assert response.status_code == 400
        assert "表单已过期或无效" in html and "Traceback" not in html
    other = csrf_app.test_client()  # a token from someone else's session
    response = other.post("/complaints", data={**data})
    assert response.status_code == 400
    assert count(reg, Complaint) == 0
    assert client.post("/complaints", data=data).status_code == 303  # the right token works


def test_honeypot_filled_is_refused(client, reg):
    response = submit(client, website="http://spam.example")
    assert response.status_code == 400
    assert count(reg, Complaint) == 0


def test_script_in_the_description_is_shown_escaped(client, reg):
    evil = '<script>alert("x")</script>'
    # re-rendered form (the contact is wrong): the description comes back escaped
    response = submit(client, description=evil, contact="not a contact", institution=evil)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert evil not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html or "&lt;script&gt;alert(&quot;x&quot;)" in html
    assert "请填写有效的手机号、固定电话或电子邮箱。" in html
    # stored as given; the status page shows the institution text escaped and no description
    location = submit(client, description=evil, institution=evil).headers["Location"]
    assert stored(reg)[0].description == evil
    html = client.get(location).get_data(as_text=True)
    assert evil not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("field,value,message", [
    ("description", "", "请描述您发现的问题。"),
    ("description", "长" * 2001, "问题描述不能超过 2000 个字符。"),
    ("number", "", "请填写报告编号。"),
    ("number", "报告%编号", "报告编号格式无效"),
    ("category", "bogus", "Not a valid choice"),
    ("contact", "12345", "请填写有效的手机号、固定电话或电子邮箱。"),
    ("contact", "me@nowhere", "请填写有效的电子邮箱地址。"),
])
def test_invalid_fields_are_refused_with_a_message(client, reg, field, value, message):
    response = submit(client, **{field: value})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in html or field == "category"
    assert 'aria-invalid="true"' in html or field == "category"
    assert count(reg, Complaint) == 0


def test_description_of_2000_characters_with_crlf_is_accepted(client, reg):
    text = ("一" * 999 + "\r\n") * 2
    assert submit(client, description=text[:-2]).status_code == 303
    assert len(stored(reg)[0].description) == 1999


@pytest.mark.parametrize("contact", ["13800138000", "+86 138 0013 8000", "010-12345678", "someone@example.cn"])
def test_valid_contacts_are_accepted(client, reg, contact):
    assert submit(client, contact=contact).status_code == 303


# --- attachments ---------------------------------------------------------------------------------
def files_in(app) -> list[Path]:
    folder = Path(app.config["FILES_DIR"]) / "complaints"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("content,kind", [(PNG, "image/png"), (JPEG, "image/jpeg"), (PDF, "application/pdf")])
def test_attachment_is_stored_privately_with_a_random_name(app, client, reg, content, kind):
    response = submit(client, attachment=(io.BytesIO(content), "我的报告 照片.png"))
    assert response.status_code == 303
    [row] = stored(reg)
    assert row.attachment_type == kind
    [path] = files_in(app)
    assert path.read_bytes() == content
    assert row.attachment_path == f"complaints/{path.name}"
    assert re.fullmatch(r"[0-9a-f]{32}\.(png|jpg|pdf)", path.name)
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert path.name not in html and "照片" not in html
    for url in (f"/static/{row.attachment_path}", f"/files/{row.attachment_path}", f"/{row.attachment_path}"):
        assert client.get(url).status_code == 404


@pytest.mark.parametrize("content,name", [
    (b"MZ\x90\x00\x03" + b"\x00" * 200, "photo.png"),                       # an .exe renamed
    (b"<!doctype html><script>alert(1)</script>", "scan.png"),            # HTML renamed
    (b"GIF89a" + b"\x00" * 50, "report.jpg"),                               # a GIF is not accepted
    (b"   %PDF-1.4", "report.pdf"),                                         # magic not at the start
])
def test_disguised_attachment_is_refused(app, client, reg, content, name):
    response = submit(client, attachment=(io.BytesIO(content), name))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "附件须为 JPEG、PNG 图片或 PDF 文件。" in html
    assert count(reg, Complaint) == 0 and files_in(app) == []


def test_oversize_attachment_is_refused(app, client, reg):
    just_over = PNG + b"\x00" * (5 * 1024 * 1024 + 1 - len(PNG))
    response = submit(client, attachment=(io.BytesIO(just_over), "big.png"))
    assert response.status_code == 400
    assert "附件不能超过 5 MB。" in response.get_data(as_text=True)
    exactly = PNG + b"\x00" * (5 * 1024 * 1024 - len(PNG))
    assert submit(client, attachment=(io.BytesIO(exactly), "ok.png")).status_code == 303
    assert len(files_in(app)) == 1


def test_far_too_large_request_gets_the_413_page(app, client, reg):
    huge = PNG + b"\x00" * (7 * 1024 * 1024)
    response = submit(client, attachment=(io.BytesIO(huge), "huge.png"))
    html = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "提交的内容过大。" in html and "附件不能超过 5 MB" in html
    assert count(reg, Complaint) == 0 and files_in(app) == []
