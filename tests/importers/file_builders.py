"""Build sample import files (as bytes) with the tests' own code: CSV/TXT in any encoding and line
ending, XLSX with number, formula, error and date cells, and broken or hostile files."""
from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from xml.sax.saxutils import escape

import openpyxl

from registry.numbers.normalize import make_uscc


def csv_bytes(rows, *, encoding: str = "utf-8", newline: str = "\n", delimiter: str = ",") -> bytes:
    """CSV of ``rows`` (lists of str); ``encoding="utf-8-sig"`` writes a BOM."""
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return out.getvalue().encode(encoding)


def txt_bytes(lines, *, encoding: str = "utf-8", newline: str = "\n") -> bytes:
    return "".join(f"{line}{newline}" for line in lines).encode(encoding)


def xlsx_bytes(rows, *, sheet: str = "Sheet1", start_row: int = 1, start_column: int = 1,
               extra_sheets: dict | None = None, number_formats: dict | None = None) -> bytes:
    """An XLSX written by openpyxl; cells keep their Python type (str, int, float, date, None).

    ``extra_sheets`` maps sheet names to rows placed before the main sheet.
    """
    workbook = openpyxl.Workbook()
    first = workbook.active
    sheets = list((extra_sheets or {}).items()) + [(sheet, rows)]
    for position, (name, sheet_rows) in enumerate(sheets):
        ws = first if position == 0 else workbook.create_sheet()
        ws.title = name
        offset = start_row if name == sheet else 1
        for r, values in enumerate(sheet_rows):
            for c, value in enumerate(values):
                if value is not None:
                    cell = ws.cell(row=offset + r, column=start_column + c, value=value)
                    if number_formats and type(value) in number_formats:
                        cell.number_format = number_formats[type(value)]
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# --- hand-written XLSX: formulas with cached values, error cells, numbers as Excel stores them ----
_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
</Types>"""
_ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""
_WORKBOOK = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<sheets><sheet name="{name}" sheetId="1" r:id="rId1"/></sheets></workbook>"""
_WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="{target}"/>
</Relationships>"""


def cell_xml(ref: str, value=None, *, formula: str | None = None, error: str | None = None) -> str:
    """One ``<c>``: a number, an inline string, an error, or a formula with its cached value."""
    f = f"<f>{escape(formula)}</f>" if formula else ""
    if error is not None:
        return f'<c r="{ref}" t="e">{f}<v>{escape(error)}</v></c>'
    if isinstance(value, str):
        if formula:
            return f'<c r="{ref}" t="str">{f}<v>{escape(value)}</v></c>'
        return f'<c r="{ref}" t="inlineStr"><is><t>{escape(value)}</t></is></c>'
    return f'<c r="{ref}">{f}<v>{value!r}</v></c>'


def raw_xlsx(rows: dict[int, list[str]], *, sheet: str = "Sheet1", sheet_path: str = "worksheets/sheet1.xml",
             row_refs: bool = True) -> bytes:
    """An XLSX built by hand: ``rows`` maps row numbers to lists of :func:`cell_xml` strings.

    ``sheet_path`` (relative to ``xl/``) is where the sheet's part lives; without ``row_refs`` the
    ``<row>`` elements carry no ``r`` (readers then count them in order).
    """
    body = "".join(f'<row r="{r}">{"".join(cells)}</row>' if row_refs else f'<row>{"".join(cells)}</row>'
                   for r, cells in sorted(rows.items()))
    sheet_xml = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                 '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                 f"<sheetData>{body}</sheetData></worksheet>")
    out = io.BytesIO()
    parts = {"[Content_Types].xml": _CONTENT_TYPES, "_rels/.rels": _ROOT_RELS,
             "xl/workbook.xml": _WORKBOOK.format(name=escape(sheet)),
             "xl/_rels/workbook.xml.rels": _WORKBOOK_RELS.format(target=sheet_path),
             f"xl/{sheet_path}": sheet_xml}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():  # a fixed timestamp keeps the bytes reproducible
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), text, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def corrupt_xlsx() -> bytes:
    """A real workbook with its sheet's compressed bytes overwritten: the zip opens, the XML does not."""
    good = bytearray(xlsx_bytes([["报告编号"], ["2020001"]]))
    middle = len(good) // 2
    good[middle: middle + 200] = b"\xff" * 200
    return bytes(good)


def truncated_xlsx() -> bytes:
    return xlsx_bytes([["报告编号"], ["2020001"]])[:300]


def zip_bomb(member_size: int = 4 * 1024 * 1024) -> bytes:
    """A zip that looks like a workbook and whose sheet inflates more than 1000:1."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("xl/workbook.xml", _WORKBOOK.format(name="Sheet1"))
        archive.writestr("xl/worksheets/sheet1.xml", b" " * member_size)
    return out.getvalue()


def sparse_xlsx(*refs: str) -> bytes:
    """A workbook holding one number in each of the cells ``refs`` (say "A1" and "XFD1048576")."""
    rows: dict[int, list[str]] = {}
    for ref in refs:
        row = int(ref.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        rows.setdefault(row, []).append(cell_xml(ref, 1))
    return raw_xlsx(rows)


def lying_zip(data: bytes, factor: int) -> bytes:
    """``data`` (a zip) whose central directory declares each member ``factor`` times its compressed
    size: what a bomb's directory says, without the test inflating gigabytes."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at != -1:
        compressed = int.from_bytes(out[at + 20: at + 24], "little")
        out[at + 24: at + 28] = (compressed * factor).to_bytes(4, "little")
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


def not_a_workbook_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<w/>")
    return out.getvalue()


OLE2_XLS = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 20
BINARY = bytes(range(256)) * 4


# --- certificate rows ---------------------------------------------------------------------------
CERTIFICATE_HEADER = ["证书编号", "机构名称", "统一社会信用代码", "发证日期", "有效期至", "状态", "地址", "审核部门"]


def make_certificate_row(*, number: str = "201919000123", name: str = "广东某某检测技术有限公司",
                         uscc: str | None = None, issued_on="2020-12-01", expires_on="2026-11-30",
                         status: str = "有效", address: str = "广州市天河区某路1号；广州市黄埔区某路2号",
                         review_authority="19") -> list:
    return [number, name, uscc or make_uscc("91440101MA5CXXXX0"), issued_on, expires_on, status, address,
            review_authority]


def sample_dates() -> list[dt.date]:
    return [dt.date(2020, 12, 1), dt.date(2026, 11, 30)]
