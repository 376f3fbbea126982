"""Workbooks that would make a reader allocate without bound are refused whole and fast, before any
reader sees them (issue 13, item 1): the sheet's extent comes from the cell references in the XML."""
from __future__ import annotations

import io
import os
import time
import zipfile

import pytest
import python_calamine

from importers.certificates import read_certificates
from importers.errors import FileRefused
from importers.numbers import read_report_numbers
from importers.tabular import MAX_SHEET_CELLS, MAX_SHEET_COLUMNS, MAX_SHEET_ROWS
from importers.withdrawals import read_withdrawals
from tests.importers.file_builders import cell_xml, lying_zip, raw_xlsx, sparse_xlsx

READERS = [read_report_numbers, read_withdrawals, read_certificates]


@pytest.fixture
def no_reader(monkeypatch):
    """A refused workbook must never reach calamine (which would allocate the whole rectangle)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the workbook reached the XLSX reader")

    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_filelike", refuse)


def refusal(data: bytes, reader=read_report_numbers) -> FileRefused:
    started = time.monotonic()
    with pytest.raises(FileRefused) as refused:
        list(reader(io.BytesIO(data), "bomb.xlsx").rows() if reader is not read_report_numbers
             else reader(io.BytesIO(data), "bomb.xlsx").numbers())
    assert time.monotonic() - started < 5
    return refused.value


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("far_cell", ["XFD1048576", "ZZ1000000"])
def test_two_far_apart_cells_are_refused_before_the_reader(no_reader, reader, far_cell):
    refused = refusal(sparse_xlsx("A1", far_cell), reader)
    assert refused.code == "sheet_too_large"
    assert refused.message_zh.startswith("bomb.xlsx：") and f"A1:{far_cell}" in refused.message_zh
    assert f"A1:{far_cell}" in refused.message_en and "columns" in refused.message_en


def test_cells_and_rows_without_references_are_counted_in_order(no_reader):
    # No r= anywhere: the 2nd row is 2, but the cell after 200 empty ones is in column 201.
    wide = raw_xlsx({1: [cell_xml("A1", 1)], 2: ["<c/>" * 200 + "<c><v>1</v></c>"]}, row_refs=False)
    assert refusal(wide).code == "sheet_too_large"
    tall = raw_xlsx({1: [cell_xml("A1", 1)], MAX_SHEET_ROWS + 5: ["<c><v>1</v></c>"]})
    assert refusal(tall).code == "sheet_too_large"


@pytest.mark.parametrize("cell", [
    '<c x=">" r="XFD1048576"><v>1</v></c>',  # ">" inside an attribute value
    "<c  r = 'XFD1048576' ><v>1</v></c>",  # other spacing and quotes
    '<c s="1" r="XFD1048576"><v>1</v></c>',  # the reference not first
])
def test_unusual_but_valid_spellings_of_a_cell(no_reader, cell):
    assert refusal(raw_xlsx({1: [cell_xml("A1", 1)], 1048576: [cell]})).code == "sheet_too_large"


def test_a_sheet_part_anywhere_in_the_zip_is_scanned(no_reader):
    data = raw_xlsx({1: [cell_xml("A1", 1)], 1048576: [cell_xml("XFD1048576", 1)]}, sheet_path="data/other.xml")
    assert refusal(data).code == "sheet_too_large"


def test_formatted_empty_cells_far_away_are_no_reason_to_refuse():
    # Excel writes a formatted empty cell as <c r=".." s=".."/>; readers skip it, so may we.
    data = raw_xlsx({1: [cell_xml("A1", "报告编号")], 2: [cell_xml("A2", "R-1")],
                     1048576: ['<c r="XFD1048576" s="1"/>']})
    numbers_file = read_report_numbers(io.BytesIO(data), "ok.xlsx")
    assert list(numbers_file.numbers()) == ["R-1"]


def test_the_widest_and_the_tallest_accepted_sheets():
    last = _column(MAX_SHEET_COLUMNS)
    widest = raw_xlsx({1: [cell_xml("A1", "报告编号"), cell_xml(f"{last}1", "备注")], 2: [cell_xml("A2", "R-2")]})
    assert list(read_report_numbers(io.BytesIO(widest), "ok.xlsx").numbers()) == ["R-2"]
    tallest = raw_xlsx({1: [cell_xml("A1", "报告编号")], MAX_SHEET_ROWS: [cell_xml(f"A{MAX_SHEET_ROWS}", "R-3")]})
    assert list(read_report_numbers(io.BytesIO(tallest), "ok.xlsx").numbers()) == ["R-3"]
    wider = raw_xlsx({1: [cell_xml("A1", "报告编号"), cell_xml(f"{_column(MAX_SHEET_COLUMNS + 1)}1", "备注")]})
    assert refusal(wider).code == "sheet_too_large"
    bottom = MAX_SHEET_CELLS // 10 + 1
    both = raw_xlsx({1: [cell_xml("A1", "报告编号")], bottom: [cell_xml(f"J{bottom}", 1)]})
    assert refusal(both).code == "sheet_too_large"  # 10 columns: within each bound, not their product


def _column(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def test_a_dtd_in_a_part_is_refused(no_reader):
    data = raw_xlsx({1: [cell_xml("A1", 1)]})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
        b"?>", b'?><!DOCTYPE worksheet [<!ENTITY a "aaaa">]>', 1)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in parts.items():
            archive.writestr(name, body)
    assert refusal(out.getvalue()).code == "corrupt_xlsx"


def test_declared_inflated_size_is_capped_whatever_the_byte_limit(no_reader):
    # Twelve incompressible members, each declaring 83 times its size: under the per-member ratio,
    # and 1.2 GB in all — the old cap (20 × 200 MiB = 4 GiB) let that through to the reader.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        for n in range(12):
            archive.writestr(f"xl/media/image{n}.bin", os.urandom(1_200_000))
    data = lying_zip(out.getvalue(), 83)
    assert refusal(data).code == "zip_bomb"
