"""The regulator console over HTTP on both stacks: the workflow from a public complaint to its
conclusion, personal data and attachments, transfers, the queue, exports, the abnormal list and
the audit chain's CLI check."""
from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

from openpyxl import load_workbook
from sqlalchemy import delete, select, update

from registry.complaints.service import store_attachment
from registry.complaints.models import Complaint, ComplaintEvent
from registry.numbers.quarters import SHANGHAI
from tests.builders import register
from tests.functional.regulator_helpers import (  # noqa: F401
    act, complaint, csrf, institution, officer_client, rapp, rreg, sign_in, token_from,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def events(reg, complaint_id):
    with reg.sessions() as s:
        return s.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == complaint_id)
                         .order_by(ComplaintEvent.id)).all()


def file_public_complaint(client, **data):
    token = token_from(client.get("/complaints/new").get_data(as_text=True))
    form = {"csrf_token": token, "number": "SD-404", "institution": "", "category": "not_found",
            "description": "电商平台上的报告查不到。", "name": "李四", "contact": "13900139000", "website": ""}
    form.update(data)
    response = client.post("/complaints", data=form, content_type="multipart/form-data")
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"]


def test_workflow_public_complaint_to_conclusion(rapp, rreg):
    lab = institution(rreg, province="15", name="山东流程检测公司")
    public = rapp.test_client()
    status_url = file_public_complaint(public, institution="山东流程检测公司")
    with rreg.sessions() as s:
        row = s.scalar(select(Complaint))
    assert row.authority.code == "15" and row.institution_id == lab.id

    shandong, guangdong = officer_client(rapp, rreg, "15"), officer_client(rapp, rreg, "19")
    assert "SD-404" in shandong.get("/regulator/complaints").get_data(as_text=True)
    assert "SD-404" not in guangdong.get("/regulator/complaints").get_data(as_text=True)

    page = shandong.get(f"/regulator/complaints/{row.id}").get_data(as_text=True)
    assert "李四" not in page and "13900139000" not in page  # personal data only on request
    assert "决定受理 2026-10-26" in page  # 7 working days after Thursday 10-15
    assert "处理记录完整" in page

    assert act(shandong, row.id, "accept", note="").status_code == 303
    public_page = public.get(status_url).get_data(as_text=True)
    assert "已受理" in public_page and "审核部门已受理" in public_page
    assert "办结 2026-11-05" in shandong.get(f"/regulator/complaints/{row.id}").get_data(as_text=True)

    assert act(shandong, row.id, "request-info", note="请上传报告首页的照片。").status_code == 303
    public_page = public.get(status_url).get_data(as_text=True)
    assert "请上传报告首页的照片。" in public_page and 'id="answer-form"' in public_page
    answer_url = status_url + "/answer"
    response = public.post(answer_url, data={"csrf_token": token_from(public_page), "answer": "照片已发邮箱。"})
    assert response.status_code == 303
    public_page = public.get(status_url).get_data(as_text=True)
    assert "您的补充说明已提交" in public_page and "您已补充说明" in public_page and 'id="answer-form"' not in public_page
    assert "照片已发邮箱。" not in public_page  # the answer goes to the regulator, not back on the public page
    trail = shandong.get(f"/regulator/complaints/{row.id}").get_data(as_text=True)
    assert "照片已发邮箱。" in trail and "投诉人已补充" in trail

    assert act(shandong, row.id, "note", note="内部：已电话联系机构。").status_code == 303
    assert act(shandong, row.id, "conclude", finding="forged", note="机构确认未出具该报告。").status_code == 303
    public_page = public.get(status_url).get_data(as_text=True)
    assert "已办结" in public_page and "经核查，报告系伪造" in public_page
    assert "内部：已电话联系机构" not in public_page and "机构确认未出具该报告" not in public_page

    kinds = [e.kind for e in events(rreg, row.id)]
    assert kinds == ["submitted", "routed", "accepted", "info_requested", "info_provided", "note", "concluded"]
    assert all(e.seq and e.mac for e in events(rreg, row.id))
    result = rapp.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "intact: 7 events" in result.output


def test_personal_data_and_attachment_views_are_logged(rapp, rreg):
    lab = institution(rreg, province="15")
    stored = store_attachment(io.BytesIO(PNG), Path(rapp.config["FILES_DIR"]))
    case = complaint(rreg, province="15", institution=lab, attachment=(stored.path, stored.content_type))
    client = officer_client(rapp, rreg, "00")  # SAMR may see it too
    page = client.get(f"/regulator/complaints/{case.id}/complainant").get_data(as_text=True)
    assert "张三" in page and "13800138000" in page
    with client.get(f"/regulator/complaints/{case.id}/attachment") as download:
        assert download.status_code == 200 and download.data == PNG
        assert download.mimetype == "image/png"
        assert download.headers["Content-Disposition"].startswith("attachment;")
    logged = [(e.kind, e.actor, e.public) for e in events(rreg, case.id)][2:]
    assert [k for k, _, _ in logged] == ["personal_data_viewed", "attachment_viewed"]
    assert all(a.endswith("(00)") and not p for _, a, p in logged)
    # the public never sees those events
    status = rapp.test_client().get(f"/complaints/{case.tracking_code}").get_data(as_text=True)
    assert "查看投诉人信息" not in status


def test_an_attachment_outside_the_files_directory_is_refused(rapp, rreg):
    case = complaint(rreg, province="15", attachment=("../../etc/passwd", "text/plain"))
    assert officer_client(rapp, rreg, "15").get(f"/regulator/complaints/{case.id}/attachment").status_code == 404


def test_transfer_moves_the_complaint_and_restarts_its_clock(rapp, rreg):
    case = complaint(rreg, province="15", created_at=dt.datetime(2026, 9, 1, 9, tzinfo=SHANGHAI))
    shandong, guangdong = officer_client(rapp, rreg, "15"), officer_client(rapp, rreg, "19")
    assert "queue-item is-overdue" in shandong.get("/regulator/complaints").get_data(as_text=True)
    response = act(shandong, case.id, "transfer", authority="19", note="机构实际在广东。")
    assert response.status_code == 303
    assert shandong.get(f"/regulator/complaints/{case.id}").status_code == 403
    page = guangdong.get("/regulator/complaints").get_data(as_text=True)
    assert case.number in page and "决定受理 2026-10-26" in page and "is-overdue" not in page


def test_refused_actions_change_nothing(rapp, rreg):
    case = complaint(rreg, province="15")
    client = officer_client(rapp, rreg, "15")
    before = len(events(rreg, case.id))
    act(client, case.id, "reject", note="  ")
    assert "请填写理由或说明" in client.get(f"/regulator/complaints/{case.id}").get_data(as_text=True)
    act(client, case.id, "conclude", finding="forged", note="x")  # not accepted yet
    act(client, case.id, "extend", note="x")
    act(client, case.id, "transfer", authority="15", note="x")  # to itself
    assert len(events(rreg, case.id)) == before
    act(client, case.id, "accept")
    act(client, case.id, "extend", note="需要现场核查。")
    act(client, case.id, "extend", note="再延一次")
    assert [e.kind for e in events(rreg, case.id)][before:] == ["accepted", "extended"]
    act(client, case.id, "conclude", finding="nonsense", note="x")
    assert "请选择处理结论" in client.get(f"/regulator/complaints/{case.id}").get_data(as_text=True)
    act(client, case.id, "reject", note="已受理的不能再不予受理")
    with rreg.sessions() as s:
        assert s.get(Complaint, case.id).status == "accepted"
    assert "已延期" in client.get(f"/regulator/complaints/{case.id}").get_data(as_text=True)


def test_queue_filters_search_and_deadline_order(rapp, rreg):
    lab = institution(rreg, province="15", name="山东队列检测公司")
    old = complaint(rreg, province="15", institution=lab, number="Q-OLD", category="altered",
                    created_at=dt.datetime(2026, 9, 1, 9, tzinfo=SHANGHAI))
    new = complaint(rreg, province="15", number="Q-NEW", created_at=dt.datetime(2026, 10, 14, 9, tzinfo=SHANGHAI))
    done = complaint(rreg, province="15", number="Q-DONE", status="concluded")
    client = officer_client(rapp, rreg, "15")
    page = client.get("/regulator/complaints").get_data(as_text=True)
    assert page.index("Q-OLD") < page.index("Q-NEW") and "Q-DONE" not in page
    assert re.search(r'queue-item is-overdue">\s*<p class="qi-head"><a href="/regulator/complaints/%d"' % old.id, page)
    overdue = client.get("/regulator/complaints?overdue=1").get_data(as_text=True)
    assert "Q-OLD" in overdue and "Q-NEW" not in overdue
    assert "Q-DONE" in client.get("/regulator/complaints?status=concluded").get_data(as_text=True)
    assert "Q-NEW" not in client.get("/regulator/complaints?category=altered").get_data(as_text=True)
    assert "Q-NEW" not in client.get(f"/regulator/complaints?institution={lab.id}").get_data(as_text=True)
    by_code = client.get("/regulator/complaints?status=all&q=" + new.tracking_code.lower()).get_data(as_text=True)
    assert "Q-NEW" in by_code and "Q-OLD" not in by_code
    assert "Q-OLD" in client.get("/regulator/complaints?q=q-old").get_data(as_text=True)
    assert "Q-NEW" in client.get("/regulator/complaints?quarter=2026Q4").get_data(as_text=True)
    assert "Q-NEW" not in client.get("/regulator/complaints?quarter=2026Q3").get_data(as_text=True)
    assert client.get("/regulator/complaints?quarter=bogus").status_code == 400
    dashboard = client.get("/regulator/").get_data(as_text=True)
    assert "<svg" in dashboard and "Q-OLD" in dashboard  # overdue listed on the dashboard


# --- tamper evidence through the CLI ----------------------------------------------------------
def sealed_cases(rapp, rreg):
    cases = [complaint(rreg, province="15") for _ in range(3)]
    client = officer_client(rapp, rreg, "15")
    act(client, cases[0].id, "accept")
    with rreg.sessions() as s:
        return s.scalars(select(ComplaintEvent).order_by(ComplaintEvent.seq)).all()


def verify(rapp):
    return rapp.test_cli_runner().invoke(args=["audit", "verify"])


def test_audit_verify_names_an_edited_event(rapp, rreg):
    evs = sealed_cases(rapp, rreg)
    assert verify(rapp).exit_code == 0
    with rreg.sessions() as s:
        s.execute(update(ComplaintEvent).where(ComplaintEvent.id == evs[6].id).values(actor="someone else"))
        s.commit()
    result = verify(rapp)
    assert result.exit_code == 1 and f"BROKEN at event {evs[6].id}" in result.output
    # and the trail page says so
    page = officer_client(rapp, rreg, "15").get(f"/regulator/complaints/{evs[6].complaint_id}").get_data(as_text=True)
    assert 'id="seal-bad"' in page


def test_audit_verify_names_the_event_after_a_deleted_one(rapp, rreg):
    evs = sealed_cases(rapp, rreg)
    with rreg.sessions() as s:
        s.execute(delete(ComplaintEvent).where(ComplaintEvent.id == evs[2].id))
        s.commit()
    result = verify(rapp)
    assert result.exit_code == 1 and f"BROKEN at event {evs[3].id}" in result.output and "seq 3" in result.output


def test_audit_verify_detects_truncation(rapp, rreg):
    evs = sealed_cases(rapp, rreg)
    with rreg.sessions() as s:
        s.execute(delete(ComplaintEvent).where(ComplaintEvent.seq > 4))
        s.commit()
    result = verify(rapp)
    assert result.exit_code == 1 and f"after event {evs[3].id} (seq 4) up to seq 7" in result.output


# --- exports ------------------------------------------------------------------------------
# notes are stripped of surrounding whitespace when recorded, so tab and CR are checked in the unit test
NOTES = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)"]
EVIL = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def test_exports_neutralise_formulas(rapp, rreg):
    lab = institution(rreg, province="15", name="=CMD|' /C calc'!A0")
    case = complaint(rreg, province="15", institution=lab, number="+1-EVIL")
    client = officer_client(rapp, rreg, "15")
    for note in NOTES:
        act(client, case.id, "note", note=note)
    with client.get("/regulator/complaints.csv") as response:
        assert response.mimetype == "text/csv" and response.headers["Content-Disposition"].startswith("attachment;")
        text = response.data.decode("utf-8-sig")
    assert "'=CMD|' /C calc'!A0" in text and "'+1-EVIL" in text
    assert ",=CMD" not in text and ",+1-EVIL" not in text
    with client.get(f"/regulator/complaints/{case.id}/trail.csv") as response:
        text = response.data.decode("utf-8-sig")
    import csv

    notes = [row[6] for row in csv.reader(io.StringIO(text, newline=""))][-len(NOTES):]
    assert notes == ["'" + e for e in NOTES]
    with client.get(f"/regulator/complaints/{case.id}/trail.xlsx") as response:
        assert response.mimetype.endswith("spreadsheetml.sheet")
        wb = load_workbook(io.BytesIO(response.data))
    notes = [row[6] for row in wb.active.iter_rows(min_row=2, values_only=True)][-len(NOTES):]
    assert notes == ["'" + e for e in NOTES]
    for row in wb.active.iter_rows(min_row=2):
        assert all(cell.data_type != "f" for cell in row)
    with client.get("/regulator/complaints.xlsx") as response:
        sheet = load_workbook(io.BytesIO(response.data)).active
    assert sheet.cell(2, 2).value == "'+1-EVIL" and sheet.cell(2, 3).value == "'=CMD|' /C calc'!A0"


def test_compliance_and_leads_exports(rapp, rreg):
    lab = institution(rreg, province="15", name="山东导出检测公司")
    register(rreg, lab, ["EX-1", "EX-2"], quarter="2026Q3")
    client = officer_client(rapp, rreg, "15")
    with client.get("/regulator/compliance/2026Q3.csv") as response:
        text = response.data.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("quarter,uscc,institution,standing")
    assert f"2026Q3,{lab.uscc},山东导出检测公司,on_time,2,1," in text
    with client.get("/regulator/compliance/2026Q3.xlsx") as response:
        rows = list(load_workbook(io.BytesIO(response.data)).active.iter_rows(values_only=True))
    assert rows[1][:6] == ("2026Q3", lab.uscc, "山东导出检测公司", "on_time", 2, 1)
    assert client.get("/regulator/compliance/2026Q9.csv").status_code == 404


# --- the abnormal list reaches the public verdict -------------------------------------------
def test_marking_abnormal_shows_on_the_public_verdict(rapp, rreg):
    lab = institution(rreg, province="15", name="山东异常检测公司")
    register(rreg, lab, ["AB-1"])
    client = officer_client(rapp, rreg, "15")
    public = rapp.test_client()
    assert public.get("/api/v1/verify?number=AB-1").get_json()["institution"]["abnormal"] is False

    token = csrf(client, f"/regulator/institutions/{lab.id}")
    refused = client.post(f"/regulator/institutions/{lab.id}/abnormal", data={"csrf_token": token, "abnormal": "1"})
    assert refused.status_code == 303 and public.get("/api/v1/verify?number=AB-1").get_json()["institution"]["abnormal"] is False
    client.post(f"/regulator/institutions/{lab.id}/abnormal",
                data={"csrf_token": token, "abnormal": "1", "reason": "连续两个季度未报送"})
    assert public.get("/api/v1/verify?number=AB-1").get_json()["institution"]["abnormal"] is True
    listed = client.get("/regulator/abnormal").get_data(as_text=True)
    assert "山东异常检测公司" in listed and "连续两个季度未报送" in listed
    client.post(f"/regulator/institutions/{lab.id}/abnormal",
                data={"csrf_token": token, "abnormal": "0", "reason": "已整改"})
    assert public.get("/api/v1/verify?number=AB-1").get_json()["institution"]["abnormal"] is False
    page = client.get(f"/regulator/institutions/{lab.id}").get_data(as_text=True)
    assert "已整改" in page and "连续两个季度未报送" in page
    with client.get("/regulator/abnormal.csv") as response:
        assert "山东异常检测公司" not in response.data.decode("utf-8-sig")


def test_english_console(rapp, rreg):
    client = officer_client(rapp, rreg, "15")
    page = client.get("/regulator/?lang=en").get_data(as_text=True)
    assert "Regulator console" in page and "Complaints" in page


def test_neutralise_unit():
    from portal.exports import neutralise

    for evil in EVIL:
        assert neutralise(evil) == "'" + evil
    assert neutralise("WT-1") == "WT-1" and neutralise(-5) == -5 and neutralise(None) is None
