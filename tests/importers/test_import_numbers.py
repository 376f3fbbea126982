"""Report-number files: formats, encodings, Excel pitfalls, ranges, limits and refusals."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from tests.importers.file_builders import (
    BINARY,
    OLE2_XLS,
    PDF,
    PNG,
    cell_xml,
    corrupt_xlsx,
    csv_bytes,
    not_a_workbook_zip,
    raw_xlsx,
    truncated_xlsx,
    txt_bytes,
    xlsx_bytes,
    zip_bomb,
)

from importers.errors import FileRefused, RowProblem
from importers.numbers import read_report_numbers


def read(data: bytes, filename: str = "numbers.csv", **limits):
    numbers_file = read_report_numbers(io.BytesIO(data), filename, **limits)
    return list(numbers_file.numbers()), numbers_file


# --- text formats and encodings ------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_csv_in_every_supported_encoding(encoding):
    data = csv_bytes([["序号", "报告编号", "备注"], ["1", "检字2020-001", "复检"], ["2", "检字2020-002", ""]],
                     encoding=encoding)
    numbers, numbers_file = read(data)
    assert numbers == ["检字2020-001", "检字2020-002"]
    assert numbers_file.problems == [] and numbers_file.rows == 2


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_any_line_ending_and_physical_line_numbers(newline):
    data = txt_bytes(["报告编号", "", "  A-1  ", "bad!", "", "A-2"], newline=newline)
    numbers, numbers_file = read(data, "numbers.txt")
    assert numbers == ["A-1", "A-2"]
    assert [(p.line, p.raw, p.code) for p in numbers_file.problems] == [(4, "bad!", "bad_character")]


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_delimiter_is_sniffed(delimiter):
    data = csv_bytes([["序号", "report no", "remark"], ["1", "R-1", "x"], ["2", "R-2", "y"]], delimiter=delimiter)
    assert read(data)[0] == ["R-1", "R-2"]


def test_quoted_fields_may_hold_delimiters_and_newlines():
    data = csv_bytes([["备注", "报告编号"], ["a, b\nc", "Q-1"], ["d", "Q-2"]])
    numbers, numbers_file = read(data + "e,bad!\n".encode())
    assert numbers == ["Q-1", "Q-2"]
    assert numbers_file.problems[0].line == 5  # the quoted newline is a physical line


@pytest.mark.parametrize("header", ["报告编号", "报告号", "报告编号(必填)", "报告编号（必填）", "*报告编号", "report_number",
                                    "Report Number", "REPORT NO.", "report-no", " number "])
def test_header_names_match_loosely(header):
    data = csv_bytes([["序号", header, "日期"], ["1", "n-1", "2020-12-01"]])
    assert read(data)[0] == ["N-1"]


def test_extension_is_only_a_hint():
    data = csv_bytes([["报告编号"], ["2020001"]])
    assert read(data, "numbers.xlsx")[0] == ["2020001"]
    assert read(xlsx_bytes([["报告编号"], ["2020001"]]), "numbers.csv")[0] == ["2020001"]


def test_headerless_single_column_and_a_header_without_digits():
    assert read(txt_bytes(["2020001", "2020002"]), "a.txt")[0] == ["2020001", "2020002"]
    numbers, numbers_file = read(txt_bytes(["编号列表", "2020001"]), "a.txt")
    assert numbers == ["2020001"]
    assert [w.code for w in numbers_file.warnings] == ["header_assumed"]


def test_title_rows_above_the_header_are_skipped():
    data = csv_bytes([["XX检测中心2020年第四季度报告编号清单"], [], ["序号", "报告编号", "签发日期"], ["1", "X-1", ""]],
                     encoding="gbk")
    numbers, numbers_file = read(data)
    assert numbers == ["X-1"] and numbers_file.rows == 1


def test_normalisation_is_the_contract_one():
    data = txt_bytes(["报告编号", "wt\u200b2020\u2014０１", "〔2020〕第1号", "a b"])
    assert read(data, "a.txt")[0] == ["WT2020-01", "(2020)第1号", "AB"]


def test_invalid_numbers_carry_chinese_and_english_reasons():
    data = txt_bytes(["报告编号", "A" * 65, "bad!", "\u200b", "#N/A"])
    _, numbers_file = read(data, "a.txt")
    codes = {p.code: p for p in numbers_file.problems}
    assert set(codes) == {"too_long", "bad_character", "empty", "cell_error"}
    assert "64" in codes["too_long"].message_zh and "64" in codes["too_long"].message_en
    assert "不允许的字符" in codes["bad_character"].message_zh and "'!'" in codes["bad_character"].message_zh
    assert codes["empty"].message_zh == "报告编号为空"
    assert all(isinstance(p, RowProblem) and p.location is None for p in numbers_file.problems)


def test_duplicates_are_kept():
    assert read(txt_bytes(["A-1", "A-1", "a-1"]), "a.txt")[0] == ["A-1", "A-1", "A-1"]


# --- ranges -------------------------------------------------------------------------------------
def test_range_keeps_zero_padding():
    numbers, _ = read(txt_bytes(["报告编号", "WT2020-0098~WT2020-0102"]), "ranges.txt")
    assert numbers == ["WT2020-0098", "WT2020-0099", "WT2020-0100", "WT2020-0101", "WT2020-0102"]


@pytest.mark.parametrize("text", ["A-08至A-10", "A-08～A-10", "a-08 ~ a-10", "A-08~10"])
def test_range_spellings(text):
    assert read(txt_bytes(["报告编号", text]), "r.txt")[0] == ["A-08", "A-09", "A-10"]


def test_unpadded_range_may_grow_a_digit():
    assert read(txt_bytes(["报告编号", "98~101"]), "r.txt")[0] == ["98", "99", "100", "101"]


@pytest.mark.parametrize(("text", "code"), [
    ("A-10~A-08", "range_reversed"),
    ("A-08~B-10", "range_prefix"),
    ("A-008~A-10", "range_prefix"),
    ("A~B", "range_prefix"),
    ("A-1~A-2~A-3", "range_format"),
    ("A-1~", "empty"),
    ("A-1~A-!", "bad_character"),
    ("1~100001", "range_too_long"),
])
def test_bad_ranges_are_row_problems(text, code):
    numbers, numbers_file = read(txt_bytes(["报告编号", text, "OK-1"]), "r.txt")
    assert numbers == ["OK-1"]
    [problem] = numbers_file.problems
    assert (problem.line, problem.raw, problem.code) == (2, text, code)
    assert problem.message_zh and problem.message_en


def test_range_limit_is_a_keyword():
    _, numbers_file = read(txt_bytes(["报告编号", "1~11"]), "r.txt", max_range=10)
    assert [p.code for p in numbers_file.problems] == ["range_too_long"]
    assert len(read(txt_bytes(["报告编号", "1~100000"]), "r.txt")[0]) == 100_000


def test_too_many_numbers_after_expansion_refuses_the_file():
    numbers_file = read_report_numbers(io.BytesIO(txt_bytes(["报告编号", "1~6", "7~12"])), "r.txt", max_numbers=10)
    stream = numbers_file.numbers()
    assert [next(stream) for _ in range(6)] == ["1", "2", "3", "4", "5", "6"]
    with pytest.raises(FileRefused) as refused:
        next(stream)
    assert refused.value.code == "too_many_numbers" and "r.txt" in str(refused.value)
    assert read(txt_bytes([str(n) for n in range(10)]), "a.txt", max_numbers=10)[0][-1] == "9"


def test_too_many_problems_refuses_the_file():
    with pytest.raises(FileRefused) as refused:
        read(txt_bytes(["报告编号"] + ["bad!"] * 6), "a.txt", max_problems=5)
    assert refused.value.code == "too_many_problems"


# --- XLSX ----------------------------------------------------------------------------------------
def test_xlsx_numeric_cells_lose_their_float_form():
    data = xlsx_bytes([["报告编号"], [20200001], [20200002.0], [2.0200003e07], ["WT-1"], [1.5]])
    numbers, numbers_file = read(data, "numbers.xlsx")
    assert numbers == ["20200001", "20200002", "20200003", "WT-1", "1.5"]
    assert numbers_file.problems == []


def test_xlsx_hand_written_formulas_give_their_cached_values():
    data = raw_xlsx({
        1: [cell_xml("A1", "XX检测中心2020年第四季度报告编号清单")],
        3: [cell_xml("A3", "序号"), cell_xml("B3", "报告编号")],
        4: [cell_xml("A4", 1), cell_xml("B4", 2.0200001e07)],
        5: [cell_xml("A5", 2), cell_xml("B5", "WT2020-0002", formula='"WT2020-"&TEXT(A5,"0000")')],
        6: [cell_xml("A6", 3), cell_xml("B6", 20200003, formula="B4+2")],
        7: [cell_xml("A7", 4), cell_xml("B7", "bad!")],
    })
    numbers, numbers_file = read(data, "numbers.xlsx")
    assert numbers == ["20200001", "WT2020-0002", "20200003"]
    [problem] = numbers_file.problems
    assert (problem.line, problem.location, problem.raw) == (7, "Sheet1!B7", "bad!")


def test_xlsx_error_cells_are_reported_as_a_warning():
    data = raw_xlsx({1: [cell_xml("A1", "报告编号")], 2: [cell_xml("A2", "N-1")],
                     3: [cell_xml("A3", formula="1/0", error="#DIV/0!")], 4: [cell_xml("A4", error="#N/A")]})
    numbers, numbers_file = read(data, "n.xlsx")
    assert numbers == ["N-1"]
    assert [w.code for w in numbers_file.warnings] == ["excel_errors"]
    assert "2" in numbers_file.warnings[0].message_en


def test_xlsx_title_rows_offsets_and_locations():
    rows = [["XX检测中心2020年第四季度报告编号清单"], [], ["序号", "报告编号"], [1, "X-1"], [2, "bad!"]]
    numbers, numbers_file = read(xlsx_bytes(rows, start_row=2, start_column=3), "n.xlsx")
    assert numbers == ["X-1"]
    assert numbers_file.problems[0].location == "Sheet1!D6" and numbers_file.problems[0].line == 6


def test_xlsx_picks_the_sheet_with_the_header():
    data = xlsx_bytes([["报告编号"], ["S-1"]], sheet="清单", extra_sheets={"说明": [["本表填写说明"], ["请勿修改"]]})
    assert read(data, "n.xlsx")[0] == ["S-1"]


def test_xlsx_date_cell_in_a_number_column_reads_as_iso_text():
    data = xlsx_bytes([["报告编号"], [dt.date(2020, 12, 1)]])
    assert read(data, "n.xlsx")[0] == ["2020-12-01"]


@pytest.mark.parametrize(("values", "warned"), [
    (["20200001", "20200002", "2020003", "202004"], True),
    ([20200001, 20200002, 2020003], True),
    (["20200001", "20200002", "20200003"], False),
    (["A-1", "A-22", "A-333"], False),
])
def test_leading_zeros_lost_by_excel_are_warned(values, warned):
    data = xlsx_bytes([["报告编号"]] + [[v] for v in values])
    numbers_file = read(data, "n.xlsx")[1]
    assert [w.code for w in numbers_file.warnings] == (["leading_zeros"] if warned else [])
    if warned:
        assert "Excel" in numbers_file.warnings[0].message_zh and "leading zeros" in numbers_file.warnings[0].message_en


# --- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "filename", "code"), [
    (b"", "a.csv", "empty"),
    (b"\n\r\n  \n", "a.csv", "empty"),
    (OLE2_XLS, "a.xls", "xls"),
    (PDF, "a.csv", "wrong_type"),
    (PNG, "a.txt", "wrong_type"),
    (BINARY, "a.csv", "wrong_type"),
    (b"A-1\nB\x00\n", "a.txt", "wrong_type"),
    (not_a_workbook_zip(), "a.xlsx", "wrong_type"),
    (corrupt_xlsx(), "a.xlsx", "corrupt_xlsx"),
    (truncated_xlsx(), "a.xlsx", "corrupt_xlsx"),
    (zip_bomb(), "a.xlsx", "zip_bomb"),
    (csv_bytes([["序号", "日期"], ["1", "2020"]]), "a.csv", "missing_column"),
    (xlsx_bytes([]), "a.xlsx", "empty"),
])
def test_whole_file_refusals(data, filename, code):
    with pytest.raises(FileRefused) as refused:
        read(data, filename)
    assert refused.value.code == code
    assert refused.value.message_zh.startswith(filename) and str(refused.value).startswith(filename)
    assert str(refused.value) == refused.value.message_en


def test_refused_before_any_row_when_the_type_is_wrong():
    with pytest.raises(FileRefused):
        read_report_numbers(io.BytesIO(PDF), "a.pdf")  # no iteration needed


def test_zip_bomb_by_total_size():
    with pytest.raises(FileRefused) as refused:
        read(zip_bomb(member_size=300_000), "a.xlsx", max_bytes=10_000)
    assert refused.value.code == "zip_bomb"


def test_over_max_bytes_seekable_and_streamed():
    data = txt_bytes(["报告编号"] + [f"N-{n}" for n in range(20_000)])
    with pytest.raises(FileRefused) as refused:
        read(data, "a.txt", max_bytes=len(data) - 1)
    assert refused.value.code == "too_large"

    class Pipe(io.RawIOBase):  # not seekable: the size shows only while reading
        def __init__(self):
            self.source = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self.source.read(min(len(buffer), 4096))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    numbers_file = read_report_numbers(Pipe(), "a.txt", max_bytes=len(data) - 1)
    with pytest.raises(FileRefused) as refused:
        list(numbers_file.numbers())
    assert refused.value.code == "too_large"
    assert len(list(read_report_numbers(Pipe(), "a.txt").numbers())) == 20_000


def test_undecodable_text_is_refused():
    # valid UTF-8 in the sniffed part, then a byte that no encoding chosen from it accepts
    data = txt_bytes(["报告编号"] + ["编号-1"] * 20_000) + b"\xff\xfe\xff\n"
    numbers_file = read_report_numbers(io.BytesIO(data), "a.txt")
    with pytest.raises(FileRefused) as refused:
        list(numbers_file.numbers())
    assert refused.value.code == "undecodable" and "UTF-8" in refused.value.message_en


def test_line_too_long_is_refused():
    with pytest.raises(FileRefused) as refused:  # found while looking for the header
        read_report_numbers(io.BytesIO(b"A" * (1024 * 1024 + 10)), "a.txt")
    assert refused.value.code == "line_too_long"


def test_file_object_not_at_its_start():
    buffer = io.BytesIO(b"junk" + xlsx_bytes([["报告编号"], ["P-1"]]))
    buffer.seek(4)
    assert list(read_report_numbers(buffer, "a.xlsx").numbers()) == ["P-1"]


@pytest.mark.parametrize(("encoding", "detected"), [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"),
                                                    ("gbk", "gb18030"), ("gb2312", "gb18030")])
def test_encoding_detection(encoding, detected):
    from importers.tabular import open_table

    table = open_table(io.BytesIO(txt_bytes(["报告编号", "检字第1号"], encoding=encoding)), "a.txt")
    assert table.encoding == detected


def test_neither_utf8_nor_gb18030_falls_back_to_charset_normalizer():
    from importers.tabular import open_table

    data = ("report_number\n" + "".join(f"R-{i}\n" for i in range(50)) + "ÿ-2\n").encode("latin-1")
    assert open_table(io.BytesIO(data), "a.csv").encoding not in {"utf-8", "gb18030"}
    numbers, numbers_file = read(data)
    assert len(numbers) == 50 and [p.line for p in numbers_file.problems] == [52]


# --- document fingerprints (文件摘要 / sha256) -----------------------------------------------------
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize("header", ["文件摘要", "sha256", "SHA-256", "文件摘要（可选）", "Document SHA256"])
def test_a_fingerprint_column_in_csv(header):
    data = csv_bytes([["报告编号", header], ["A-1", DIGEST.upper()], ["A-2", ""], ["A-3", f" {DIGEST} "]])
    numbers_file = read_report_numbers(io.BytesIO(data), "numbers.csv")
    taken = {}
    for number in numbers_file.numbers():  # each fingerprint is there before its number is yielded
        taken.update(numbers_file.documents)
        numbers_file.documents.clear()
        assert number not in taken or taken[number] == DIGEST
    assert taken == {"A-1": DIGEST, "A-3": DIGEST} and numbers_file.problems == []


def test_a_fingerprint_column_in_xlsx_with_bad_values_rejecting_their_rows():
    data = xlsx_bytes([["Report No.", "sha256"], ["X-1", DIGEST], ["X-2", DIGEST[:-2]], ["X-3~X-5", DIGEST],
                       ["X-1", DIGEST], ["X-6", "0" * 64], ["X-6", "1" * 64], ["X-7", 12345]])
    numbers, numbers_file = read(data, "numbers.xlsx")
    assert numbers == ["X-1", "X-1", "X-6"]
    assert numbers_file.documents == {"X-1": DIGEST, "X-6": "0" * 64}
    assert [(p.location, p.code) for p in numbers_file.problems] == [
        ("Sheet1!B3", "bad_sha256"), ("Sheet1!B4", "sha256_range"), ("Sheet1!B7", "sha256_conflict"),
        ("Sheet1!B8", "bad_sha256")]
    assert all(p.message_zh and p.message_en for p in numbers_file.problems)
    assert "文件摘要" in numbers_file.problems[0].message_zh


def test_without_the_column_nothing_is_collected():
    numbers, numbers_file = read(csv_bytes([["报告编号", "备注"], ["A-1", DIGEST]]))
    assert numbers == ["A-1"] and numbers_file.documents == {}
