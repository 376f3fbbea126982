"""Attachments a person can manage from a phone (issue 19, part 2): a refused file is named (a
.docx says it is a Word document), a good file survives a refused submission (kept under a signed,
short-lived token, shown as kept, removable), the complainant can attach a file to an answer, and
the status page says what happens next and by when."""
from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.institutions.authorities import seed_authorities

from registry.complaints.attachments import KEEP_SECONDS, KEPT_FOLDER, purge_kept
from registry.complaints.models import Complaint, ComplaintEvent
from tests.functional.regulator_helpers import (  # noqa: F401
    act, csrf, institution, officer_client, rapp, rreg, token_from,
)

@pytest.fixture(autouse=True)
def seeded(rreg):
    with rreg.sessions() as session:
        seed_authorities(session)
        session.commit()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


def docx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


def form(client, **overrides) -> dict:
    data = {"csrf_token": csrf(client, "/complaints/new"), "number": "SD-404", "institution": "",
            "category": "not_found", "description": "电商平台上的报告查不到。", "name": "", "contact": "",
            "website": ""}
    data.update(overrides)
    return data


def post(client, data, url="/complaints"):
    response = client.post(url, data=data, content_type="multipart/form-data")
    response.get_data()
    response.close()
    response.request.environ["wsgi.input"].close()  # werkzeug leaves a big body's temporary file open
    return response


def kept_files(app) -> list[Path]:
    folder = Path(app.config["FILES_DIR"]) / KEPT_FOLDER
    return sorted(folder.iterdir()) if folder.exists() else []


def complaints_of(reg):
    with reg.sessions() as s:
        return s.scalars(select(Complaint).order_by(Complaint.id)).all()


def kept_token(html: str) -> str:
    return re.search(r'name="kept_attachment" value="([^"]+)"', html).group(1)


def test_a_word_document_is_named_and_refused(rapp, rreg):
    client = rapp.test_client()
    response = post(client, form(client, attachment=(io.BytesIO(docx_bytes()), "检测报告.docx")))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "“检测报告.docx”是Word 文档（.docx），不能作为附件。" in html
    assert "附件须为 JPEG、PNG 图片或 PDF 文件。" in html and "重新选择" in html
    assert complaints_of(rreg) == [] and kept_files(rapp) == []
    client.get("/?lang=en")
    html = post(client, form(client, attachment=(io.BytesIO(docx_bytes()), "report.docx"))).get_data(as_text=True)
    assert "“report.docx” is a Word document (.docx) and cannot be attached." in html


def test_a_too_large_file_is_named(rapp, rreg):
    client = rapp.test_client()
    big = PNG + b"\x00" * (5 * 1024 * 1024)
    html = post(client, form(client, attachment=(io.BytesIO(big), "IMG_2041.png"))).get_data(as_text=True)
    assert "“IMG_2041.png”太大。" in html and "附件不能超过 5 MB。" in html


def test_a_good_attachment_is_kept_after_an_error_and_sent_with_the_correction(rapp, rreg):
    client = rapp.test_client()
    response = post(client, form(client, description="", attachment=(io.BytesIO(PNG), "照片 1.png")))
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "请描述您发现的问题。" in html
    assert 'id="kept-attachment"' in html and "已保留附件" in html and "照片 1.png" in html
    assert "移除此附件" in html
    [kept] = kept_files(rapp)
    assert kept.read_bytes() == PNG and complaints_of(rreg) == []
    token = kept_token(html)
    assert kept.name not in html  # the file name on disk is inside the signed token only

    response = post(client, form(client, kept_attachment=token))
    assert response.status_code == 303
    [row] = complaints_of(rreg)
    assert row.attachment_path == f"complaints/{kept.name}" and row.attachment_type == "image/png"
    assert (Path(rapp.config["FILES_DIR"]) / row.attachment_path).read_bytes() == PNG
    assert kept_files(rapp) == []
    # the token was used: sent again (the back button), it says so and files nothing
    again = post(client, form(client, kept_attachment=token))
    assert again.status_code == 400 and "已过期，请重新选择" in again.get_data(as_text=True)
    assert len(complaints_of(rreg)) == 1


def test_a_kept_attachment_can_be_removed_or_replaced(rapp, rreg):
    client = rapp.test_client()
    html = post(client, form(client, category="", attachment=(io.BytesIO(PNG), "a.png"))).get_data(as_text=True)
    token = kept_token(html)
    assert post(client, form(client, kept_attachment=token, drop_attachment="1")).status_code == 303
    assert complaints_of(rreg)[-1].attachment_path is None and kept_files(rapp) == []

    html = post(client, form(client, category="", attachment=(io.BytesIO(PNG), "a.png"))).get_data(as_text=True)
    token = kept_token(html)
    pdf = b"%PDF-1.7\n" + b"0" * 40
    assert post(client, form(client, kept_attachment=token, attachment=(io.BytesIO(pdf), "b.pdf"))).status_code == 303
    assert complaints_of(rreg)[-1].attachment_type == "application/pdf" and kept_files(rapp) == []


def test_a_forged_or_expired_token_attaches_nothing(rapp, rreg):
    client = rapp.test_client()
    assert post(client, form(client, kept_attachment="not-a-token")).status_code == 303
    assert complaints_of(rreg)[-1].attachment_path is None

    html = post(client, form(client, category="", attachment=(io.BytesIO(PNG), "a.png"))).get_data(as_text=True)
    token = kept_token(html)
    [kept] = kept_files(rapp)
    old = time.time() - KEEP_SECONDS - 60
    os.utime(kept, (old, old))
    response = post(client, form(client, kept_attachment=token))
    assert response.status_code == 400 and "已过期，请重新选择" in response.get_data(as_text=True)
    assert kept_files(rapp) == []


def test_kept_files_are_purged_after_an_hour(tmp_path):
    folder = tmp_path / KEPT_FOLDER
    folder.mkdir()
    fresh, stale = folder / ("a" * 32 + ".png"), folder / ("b" * 32 + ".png")
    fresh.write_bytes(PNG)
    stale.write_bytes(PNG)
    old = time.time() - KEEP_SECONDS - 1
    os.utime(stale, (old, old))
    assert purge_kept(tmp_path) == 1
    assert fresh.exists() and not stale.exists()


def test_the_form_carries_the_browser_check_and_the_personal_information_notice(rapp):
    html = rapp.test_client().get("/complaints/new").get_data(as_text=True)
    assert 'data-max-bytes="5242880"' in html and "/static/attachment.js" in html
    assert 'id="pi-notice"' in html and 'href="/privacy#complaints"' in html


def file_complaint(rapp, rreg):
    institution(rreg, province="15", name="山东附件检测公司")
    public = rapp.test_client()
    response = post(public, form(public, institution="山东附件检测公司"))
    assert response.status_code == 303
    [row] = complaints_of(rreg)
    return public, response.headers["Location"], row


def test_the_status_page_says_what_happens_next_and_by_when(rapp, rreg):
    public, status_url, row = file_complaint(rapp, rreg)
    html = public.get(status_url).get_data(as_text=True)
    # received on Thursday 2026-10-15: decided within 7 working days, by Monday 2026-10-26
    assert 'id="next-steps"' in html
    assert "审核部门将在 2026年10月26日 前（收到投诉后 7 个工作日内）决定是否受理。" in html
    officer = officer_client(rapp, rreg, "15")
    assert act(officer, row.id, "accept", note="").status_code == 303
    html = public.get(status_url + "?lang=en").get_data(as_text=True)
    assert "by 5 November 2026" in html


def test_an_answer_can_carry_an_attachment(rapp, rreg):
    public, status_url, row = file_complaint(rapp, rreg)
    officer = officer_client(rapp, rreg, "15")
    assert act(officer, row.id, "request-info", note="请上传报告首页的照片。").status_code == 303
    page = public.get(status_url).get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and 'id="answer-attachment"' in page

    # a wrong file: named, the answer text kept on the page, nothing recorded
    response = post(public, {"csrf_token": token_from(page), "answer": "首页照片见附件。",
                             "attachment": (io.BytesIO(docx_bytes()), "首页.docx")}, status_url + "/answer")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "“首页.docx”是Word 文档（.docx）" in html and "首页照片见附件。" in html
    with rreg.sessions() as s:
        assert "info_provided" not in [e.kind for e in s.scalars(select(ComplaintEvent))]

    response = post(public, {"csrf_token": token_from(page), "answer": "首页照片见附件。",
                             "attachment": (io.BytesIO(PNG), "首页.png")}, status_url + "/answer")
    assert response.status_code == 303
    assert "您的补充说明和附件已提交" in public.get(status_url).get_data(as_text=True)
    with rreg.sessions() as s:
        added = s.scalar(select(ComplaintEvent).where(ComplaintEvent.kind == "attachment_added"))
    assert added is not None and not added.public and added.actor == "public"
    assert added.note.startswith("complaints/") and added.note.endswith(".png")
    assert "首页.png" not in public.get(status_url).get_data(as_text=True)

    trail = officer.get(f"/regulator/complaints/{row.id}").get_data(as_text=True)
    link = f"/regulator/complaints/{row.id}/attachments/{added.id}"
    assert link in trail and "投诉人补充了附件" in trail
    with officer.get(link) as download:
        assert download.status_code == 200 and download.data == PNG and download.mimetype == "image/png"
    with rreg.sessions() as s:
        viewed = s.scalars(select(ComplaintEvent).where(ComplaintEvent.kind == "attachment_viewed")).all()
    assert [v.note for v in viewed] == [added.note]
    # another authority cannot, and an event that is no attachment is not one
    assert officer_client(rapp, rreg, "19").get(link).status_code in (403, 404)
    assert officer.get(f"/regulator/complaints/{row.id}/attachments/{added.id - 1}").status_code == 404
    assert rapp.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0
