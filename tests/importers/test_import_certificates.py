"""Certificate lists: columns in any order, per-row validation, dates, statuses, refusals."""
from __future__ import annotations

import datetime as dt
import io

import pytest

from importers.certificates import CertificateRow, read_certificates
from importers.errors import FileRefused
from registry.numbers.normalize import make_uscc
from tests.importers.file_builders import CERTIFICATE_HEADER, csv_bytes, make_certificate_row, xlsx_bytes

USCC = make_uscc("91440101MA5CXXXX0")


def read(data: bytes, filename: str = "certificates.csv", **limits):
    certificate_file = read_certificates(io.BytesIO(data), filename, **limits)
    return list(certificate_file.rows()), certificate_file


def test_a_good_row_in_csv():
    rows, certificate_file = read(csv_bytes([CERTIFICATE_HEADER, make_certificate_row()], encoding="gbk"))
    assert rows == [CertificateRow(
        line=2, number="201919000123", institution_name="广东某某检测技术有限公司", uscc=USCC,
        issued_on=dt.date(2020, 12, 1), expires_on=dt.date(2026, 11, 30), status="valid",
        addresses=("广州市天河区某路1号", "广州市黄埔区某路2号"), review_authority="19", issuing_authority_code="19",
    )]
    assert certificate_file.problems == []


def test_english_headers_in_any_order_and_other_columns_ignored():
    header = ["status", "remark", "uscc", "Certificate Number", "institution_name", "expires_on", "issued_on"]
    data = csv_bytes([header, ["Suspended", "x", USCC.lower(), "200111000001", "某机构", "2026/1/2", "2020/1/2"]])
    [row], _ = read(data)
    assert (row.status, row.uscc, row.number, row.issuing_authority_code) == ("suspended", USCC, "200111000001", "01")
    assert row.addresses == () and row.review_authority is None
    assert (row.issued_on, row.expires_on) == (dt.date(2020, 1, 2), dt.date(2026, 1, 2))


@pytest.mark.parametrize(("text", "expected"), [
    ("2020-12-01", dt.date(2020, 12, 1)), ("2020/12/1", dt.date(2020, 12, 1)),
    ("2020年12月1日", dt.date(2020, 12, 1)), ("2020 年 12 月 1 日", dt.date(2020, 12, 1)),
    ("20201201", dt.date(2020, 12, 1)), ("2020.12.01", dt.date(2020, 12, 1)),
    ("2020-12-01 00:00:00", dt.date(2020, 12, 1)), ("", None),
])
def test_date_spellings(text, expected):
    [row], _ = read(csv_bytes([CERTIFICATE_HEADER, make_certificate_row(issued_on=text, expires_on="")]))
    assert row.issued_on == expected and row.expires_on is None


@pytest.mark.parametrize(("word", "status"), [
    ("有效", "valid"), ("暂停", "suspended"), ("撤销", "revoked"), ("注销", "expired"), ("过期", "expired"),
    ("VALID", "valid"), (" revoked ", "revoked"), ("Expired", "expired"),
])
def test_status_words(word, status):
    [row], _ = read(csv_bytes([CERTIFICATE_HEADER, make_certificate_row(status=word)]))
    assert row.status == status


def test_xlsx_date_cells_numbers_and_codes():
    data = xlsx_bytes([
        ["审核部门", *CERTIFICATE_HEADER[:-1]],
        [9, 201909000123, "上海某机构", USCC, dt.date(2020, 12, 1), dt.datetime(2026, 11, 30, 0, 0), "有效", "上海市某路"],
        ["上海市市场监督管理局", "201909000124", "上海某机构", USCC, 20201201, 44166, "有效", None],
    ], number_formats={dt.date: "yyyy-mm-dd", dt.datetime: "yyyy-mm-dd"})
    first, second = read(data, "c.xlsx")[0]
    assert (first.number, first.issued_on, first.expires_on) == ("201909000123", dt.date(2020, 12, 1), dt.date(2026, 11, 30))
    assert first.review_authority == "09" and first.addresses == ("上海市某路",)
    assert (second.issued_on, second.expires_on) == (dt.date(2020, 12, 1), dt.date(2020, 12, 1))  # 44166: Excel serial
    assert second.review_authority == "上海市市场监督管理局"


@pytest.mark.parametrize(("change", "column", "code"), [
    ({"uscc": USCC[:-1] + ("0" if USCC[-1] != "0" else "1")}, "C", "uscc_check"),
    ({"uscc": "123"}, "C", "uscc_length"),
    ({"uscc": USCC[:-1] + "I"}, "C", "uscc_character"),
    ({"number": "20191900012"}, "A", "certificate_format"),
    ({"number": "203319000123"}, "A", "certificate_authority"),
    ({"name": "  "}, "B", "name_missing"),
    ({"issued_on": "2020-13-01"}, "D", "date"),
    ({"expires_on": "next year"}, "E", "date"),
    ({"issued_on": "2026-12-01"}, "E", "date_order"),
    ({"status": "良好"}, "F", "status"),
])
def test_bad_rows_are_problems_never_exceptions(change, column, code):
    data = xlsx_bytes([CERTIFICATE_HEADER, make_certificate_row(**change), make_certificate_row(number="201919000999")])
    rows, certificate_file = read(data, "c.xlsx")
    assert [row.number for row in rows] == ["201919000999"]
    [problem] = certificate_file.problems
    assert (problem.code, problem.line, problem.location) == (code, 2, f"Sheet1!{column}2")
    assert problem.message_zh and problem.message_en and problem.message_zh != problem.message_en


def test_missing_required_column_names_it_in_both_languages():
    header = [h for h in CERTIFICATE_HEADER if h != "统一社会信用代码"]
    with pytest.raises(FileRefused) as refused:
        read(csv_bytes([header, ["201919000123", "某机构", "2020-12-01", "2026-11-30", "有效", "", ""]]))
    assert refused.value.code == "missing_column"
    assert "统一社会信用代码" in refused.value.message_zh and "uscc" in refused.value.message_en


def test_no_header_at_all_is_refused():
    with pytest.raises(FileRefused) as refused:
        read(csv_bytes([make_certificate_row()]))
    assert refused.value.code == "missing_column" and "证书编号" in refused.value.message_zh


def test_row_limit():
    data = csv_bytes([CERTIFICATE_HEADER] + [make_certificate_row()] * 3)
    certificate_file = read_certificates(io.BytesIO(data), "c.csv", max_rows=2)
    with pytest.raises(FileRefused) as refused:
        list(certificate_file.rows())
    assert refused.value.code == "too_many_rows"
