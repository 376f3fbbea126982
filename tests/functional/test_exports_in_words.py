"""The console's exports read in the officer's language when the link carries it (``lang``):
headings and values are words, not codes, in CSV and XLSX; the formula guard stays; without
``lang`` the columns keep their codes (docs/contract.md). Issue 19."""
from __future__ import annotations

import csv
import io

from openpyxl import load_workbook

from tests.builders import register
from tests.functional.regulator_helpers import (  # noqa: F401 - fixtures
    complaint, institution, officer_client, rapp, rreg)


def _csv(client, url: str) -> list[list[str]]:
    with client.get(url) as response:
        assert response.status_code == 200, url
        return list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"), newline="")))


def _xlsx(client, url: str) -> list[tuple]:
    with client.get(url) as response:
        assert response.status_code == 200, url
        return list(load_workbook(io.BytesIO(response.data)).active.iter_rows(values_only=True))


def test_queue_compliance_and_abnormal_exports_in_both_languages(rapp, rreg):
    lab = institution(rreg, province="15", name="山东词语检测公司")
    register(rreg, lab, ["WD-1", "WD-2"], quarter="2026Q3")
    complaint(rreg, province="15", institution=lab, number="=WD-EVIL", category="wrong_institution")
    client = officer_client(rapp, rreg, "15")
    queue_page = client.get("/regulator/complaints?lang=en").get_data(as_text=True)
    assert "complaints.csv?lang=en" in queue_page and "complaints.xlsx?lang=en" in queue_page

    zh = _csv(client, "/regulator/complaints.csv?lang=zh")
    assert zh[0][:7] == ["投诉编号", "报告编号", "机构名称", "办理部门", "投诉问题类型", "状态", "核验结果"]
    row = zh[1]
    assert row[1] == "'=WD-EVIL"  # the formula guard stays
    assert row[3] == "山东省市场监督管理局" and row[4] == "登记的机构与报告上的不一致" and row[5] == "待受理"
    assert row[6] == "未登记" and row[10] == "否"

    en = _xlsx(client, "/regulator/complaints.xlsx?lang=en")
    assert en[0][:7] == ("Complaint reference", "Report number", "Institution", "Authority", "Issue", "Status",
                         "Verification result")
    assert en[1][3] == "Shandong Administration for Market Regulation"
    assert en[1][4:7] == ("Registered by a different institution", "Awaiting decision",
                          "Not registered")
    assert en[1][10] == "No"

    compliance_zh = _csv(client, "/regulator/compliance/2026Q3.csv?lang=zh")
    assert compliance_zh[0][:4] == ["季度", "统一社会信用代码", "机构名称", "报送情况"]
    assert compliance_zh[1][:4] == ["2026年第3季度", lab.uscc, "山东词语检测公司", "按时报送"]
    assert compliance_zh[1][7] == "否"
    compliance_en = _xlsx(client, "/regulator/compliance/2026Q3.xlsx?lang=en")
    assert compliance_en[0][:4] == ("Quarter", "USCC", "Institution", "Registration")
    assert compliance_en[1][:6] == ("2026 Q3", lab.uscc, "山东词语检测公司", "On time", 2, 1)
    assert compliance_en[1][7] == "No"

    assert _csv(client, "/regulator/abnormal.csv?lang=en")[0] == ["USCC", "Institution", "Listed at", "Reason",
                                                                 "Done by"]
    assert _xlsx(client, "/regulator/abnormal.xlsx?lang=zh")[0] == ("统一社会信用代码", "机构名称", "列入时间", "原因",
                                                                   "操作人")

    # without lang the columns keep their codes (scripts read them)
    codes = _csv(client, "/regulator/complaints.csv")
    assert codes[0][0] == "reference" and codes[1][4] == "wrong_institution" and codes[1][5] == "received"


def test_trail_export_in_words(rapp, rreg):
    lab = institution(rreg, province="15", name="山东轨迹检测公司")
    case = complaint(rreg, province="15", institution=lab)
    client = officer_client(rapp, rreg, "15")
    zh = _csv(client, f"/regulator/complaints/{case.id}/trail.csv?lang=zh")
    assert zh[0] == ["事件编号", "序号", "时间", "事项", "操作人", "投诉人可见", "说明"]
    assert [r[3:6] for r in zh[1:3]] == [["投诉已提交", "投诉人", "是"], ["已分派", "系统", "是"]]
    en = _xlsx(client, f"/regulator/complaints/{case.id}/trail.xlsx?lang=en")
    assert en[0][3:6] == ("Event", "Done by", "Visible to the complainant")
    assert [r[3:6] for r in en[1:3]] == [("Complaint submitted", "Complainant", "Yes"), ("Assigned", "System", "Yes")]
