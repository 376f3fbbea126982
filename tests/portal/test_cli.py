"""The CLI of the contract through app.test_cli_runner(), on both stacks."""
import csv

import openpyxl
import pytest
from sqlalchemy import func, select

from registry.institutions.models import Authority, Certificate, Institution

from registry.registration.models import Batch, ReportNumber
from registry.numbers.normalize import make_uscc
from tests.builders import make_institution


@pytest.fixture
def lab(reg):
    with reg.sessions() as s:
        inst = make_institution(s, name="南京市计量测试研究院", province="10")
        return inst.uscc, inst.id


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return str(path)


def count(reg, model, *where):
    with reg.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_init_db_and_seed_are_idempotent(runner, reg):
    assert runner.invoke(args=["init-db"]).exit_code == 0
    first = runner.invoke(args=["seed-authorities"])
    again = runner.invoke(args=["seed-authorities"])
    assert first.exit_code == again.exit_code == 0
    assert "0 created" in again.output
    assert count(reg, Authority) == 39
    assert count(reg, Authority, Authority.code == "32") == 1


def test_demo_data_loads_once(runner, reg):
    result = runner.invoke(args=["demo-data", "--institutions", "6", "--numbers-per-quarter", "5"])
    assert result.exit_code == 0, result.output
    assert "demo account demo-lab (institution" in result.output and "demo-samr" in result.output
    institutions = count(reg, Institution)
    numbers = count(reg, ReportNumber)
    assert institutions == 6 and numbers > 0
    again = runner.invoke(args=["demo-data", "--institutions", "6", "--numbers-per-quarter", "5"])
    assert again.exit_code == 0 and "already" in again.output
    assert count(reg, ReportNumber) == numbers
    with reg.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Institution).where(Institution.abnormal)) == 1
        withdrawn = s.scalar(select(func.count()).select_from(ReportNumber).where(ReportNumber.withdrawn_at.is_not(None)))
    assert withdrawn == 6


def test_demo_data_registers_the_sample_reports_fingerprint(runner, reg, client):
    """A fresh demo shows the document check: the sample report in portal/static/demo is
    registered with its number and SHA-256; the same file matches, a changed one does not."""
    import hashlib

    from registry.infra.settings import DEMO_REPORT
    from workflows.demo import SAMPLE_NUMBER

    result = runner.invoke(args=["demo-data", "--institutions", "2", "--numbers-per-quarter", "3"])
    assert result.exit_code == 0, result.output
    reg.refresh()
    sample = DEMO_REPORT.read_bytes()
    assert sample.startswith(b"%PDF-")
    served = client.get("/static/demo/sample-report.pdf")
    assert served.status_code == 200 and served.data == sample
    served.close()
    same = client.get("/api/v1/verify", query_string={"number": SAMPLE_NUMBER,
                                                      "sha256": hashlib.sha256(sample).hexdigest()})
    assert same.status_code == 200
    assert same.json["status"] == "found" and same.json["document"] == "match"
    assert same.json["institution"]["name"] == "北京产品质量检验所（演示）"
    changed = client.get("/api/v1/verify", query_string={"number": SAMPLE_NUMBER,
                                                         "sha256": hashlib.sha256(sample + b" ").hexdigest()})
    assert changed.json["document"] == "mismatch"


def test_demo_labs_reported_every_quarter_since_their_certificate(runner, reg):
    """A demo lab's overview shows a history: every quarter owed since its certificate was issued
    (2021–2023) reported on time, not years of 未报送 before the six quarters the demo details;
    the deliberate gaps of a larger demo (one lab in seven skips a quarter) stay."""
    result = runner.invoke(args=["demo-data", "--institutions", "8", "--numbers-per-quarter", "4"])
    assert result.exit_code == 0, result.output
    with reg.sessions() as s:
        ids = s.scalars(select(Institution.id).order_by(Institution.id)).all()
    states = {iid: [q.state for q in reg.registration.quarter_overview(institution_id=iid)] for iid in ids}
    assert all(len(quarters) >= 12 for quarters in states.values())  # certificates of 2021–2023
    assert all(set(quarters) <= {"on_time", "open"} for iid, quarters in states.items() if iid != ids[6])
    assert states[ids[6]].count("missing") == 1  # the seventh lab's deliberate gap


@pytest.mark.parametrize("institutions", [1, 2, 3])
def test_demo_data_with_few_institutions(runner, reg, institutions):
    result = runner.invoke(args=["demo-data", "--institutions", str(institutions), "--numbers-per-quarter", "2"])
    assert result.exit_code == 0, result.output
    assert count(reg, Institution) == institutions and "Traceback" not in result.output
    with reg.sessions() as s:
        renamed = s.scalar(select(func.count()).select_from(Institution).where(Institution.name.like("%集团%")))
        assert renamed == 1


def test_import_numbers_all_good(runner, reg, lab, tmp_path):
    uscc, iid = lab
    path = write(tmp_path / "q3.csv", "报告编号\nNJ2026-0001\nNJ2026-0002~NJ2026-0004\n")
    result = runner.invoke(args=["import-numbers", path, "--institution", uscc.lower(), "--quarter", "2026Q3"])
    assert result.exit_code == 0, result.output
    assert "registered 4" in result.output
    reg.refresh()
    assert reg.verifier.verify("NJ2026-0003").status == "found"
    # the same file again: the earlier receipt, nothing changed
    again = runner.invoke(args=["import-numbers", path, "--institution", uscc, "--quarter", "2026Q3"])
    assert again.exit_code == 0 and "already registered as batch" in again.output
    assert count(reg, Batch) == 1


def test_import_numbers_some_rejected(runner, reg, lab, tmp_path):
    uscc, _ = lab
    path = write(tmp_path / "q3.csv", "报告编号\nNJ2026-0101\nBAD@NUMBER\nNJ2026-0101\nNJ2026-0105~NJ2026-0103\n", "gb18030")
    rejected = tmp_path / "rejected.csv"
    result = runner.invoke(args=["import-numbers", path, "--institution", uscc, "--quarter", "2026Q3",
                                 "--rejected-csv", str(rejected)])
    assert result.exit_code == 1, result.output
    assert "q3.csv:line 3" in result.output
    with rejected.open(encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:2] == ["line", "location"] and len(rows) == 3
    assert count(reg, ReportNumber) == 1
    with reg.sessions() as s:
        batch = s.scalar(select(Batch))
    assert (batch.accepted, batch.duplicates, batch.rejected) == (1, 1, 2)


@pytest.mark.parametrize("args, needle", [
    (["--institution", "91110000100000000X", "--quarter", "2026Q3"], "check character"),
    (["--institution", make_uscc("91110000999999999"), "--quarter", "2026Q3"], "no institution"),
    (["--quarter", "2099Q1"], "has not started"),
    (["--quarter", "2026Q9"], "--quarter"),
])
def test_import_numbers_refused(runner, reg, lab, tmp_path, args, needle):
    path = write(tmp_path / "q.csv", "NJ2026-0001\n")
    if "--institution" not in args:
        args = ["--institution", lab[0]] + args
    result = runner.invoke(args=["import-numbers", path] + args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert count(reg, ReportNumber) == 0 and count(reg, Batch) == 0


def test_import_numbers_unreadable_file_changes_nothing(runner, reg, lab, tmp_path):
    bad = tmp_path / "numbers.xlsx"
    bad.write_bytes(b"PK\x03\x04 this is not really a workbook")
    result = runner.invoke(args=["import-numbers", str(bad), "--institution", lab[0], "--quarter", "2026Q3"])
    assert result.exit_code == 2, result.output
    assert "numbers.xlsx" in result.output and "Traceback" not in result.output
    missing = runner.invoke(args=["import-numbers", str(tmp_path / "nope.csv"), "--institution", lab[0], "--quarter", "2026Q3"])
    assert missing.exit_code == 2 and "nope.csv" in missing.output
    assert count(reg, Batch) == 0


def test_late_batch_is_flagged(runner, reg, lab, tmp_path):
    path = write(tmp_path / "old.txt", "NJ2020-9\n")
    result = runner.invoke(args=["import-numbers", path, "--institution", lab[0], "--quarter", "2020Q4"])
    assert result.exit_code == 0 and "(late)" in result.output
    with reg.sessions() as s:
        assert s.scalar(select(Batch.late)) is True


def test_withdraw_numbers(runner, reg, lab, tmp_path):
    uscc, _ = lab
    runner.invoke(args=["import-numbers", write(tmp_path / "n.txt", "NJ-1\nNJ-2\n"), "--institution", uscc, "--quarter", "2026Q3"])
    path = write(tmp_path / "w.csv", "报告编号,撤销原因\nNJ-1,报告作废\nNJ-404,写错了\n")
    result = runner.invoke(args=["withdraw-numbers", path, "--institution", uscc])
    assert result.exit_code == 1, result.output
    assert "withdrawn 1" in result.output and "NJ-404" in result.output
    reg.refresh()
    assert reg.verifier.verify("NJ-1").status == "withdrawn"
    assert reg.verifier.verify("NJ-2").status == "found"


def test_import_certificates(runner, reg, tmp_path):
    uscc = make_uscc("91320100MA1000001")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["证书编号", "机构名称", "统一社会信用代码", "发证日期", "有效期至", "状态", "地址"])
    sheet.append(["201012345678", "江苏某检测有限公司", uscc.lower(), "2020-12-01", "2026/11/30", "有效", "南京市江宁区1号；南京市浦口区2号"])
    sheet.append(["201012345679", "江苏某检测有限公司", uscc, "2020年12月1日", "2026-11-30", "暂停", ""])
    sheet.append(["209912345678", "坏证书", uscc, "2020-12-01", "2026-11-30", "有效", ""])
    path = tmp_path / "certs.xlsx"
    book.save(path)
    result = runner.invoke(args=["import-certificates", str(path)])
    assert result.exit_code == 1, result.output
    assert "institutions created 1" in result.output
    assert count(reg, Certificate) == 2
    # a new name for a known USCC becomes current, the old one former; a status change is kept
    csv_path = write(tmp_path / "certs2.csv", f"certificate_number,institution_name,uscc,issued_on,expires_on,status\n"
                                              f"201012345679,江苏新名称检测有限公司,{uscc},2020-12-01,2026-11-30,valid\n")
    result = runner.invoke(args=["import-certificates", csv_path])
    assert result.exit_code == 0, result.output
    assert "renamed 1" in result.output
    reg.refresh()
    assert reg.directory.resolve("江苏某检测有限公司").name == "江苏新名称检测有限公司"
    with reg.sessions() as s:
        inst = s.scalar(select(Institution))
        assert s.scalar(select(Authority.code).where(Authority.id == inst.review_authority_id)) == "10"


def test_bloom_check_and_rebuild(runner, reg, lab, tmp_path):
    runner.invoke(args=["import-numbers", write(tmp_path / "n.txt", "NJ-1\nNJ-2\n"), "--institution", lab[0], "--quarter", "2026Q3"])
    check = runner.invoke(args=["bloom", "check"])
    assert check.exit_code == 0, check.output
    assert "missing_count: 0" in check.output
    rebuild = runner.invoke(args=["bloom", "rebuild"])
    assert rebuild.exit_code == 0, rebuild.output
    reg.refresh()
    assert reg.verifier.verify("NJ-2").status == "found"
