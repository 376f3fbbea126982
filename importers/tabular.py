"""Shared machinery of the importers: sniff a file, decode it, iterate its rows, find the header.

A file's type comes from its content (the name's extension is only a hint): XLSX is a zip
holding ``xl/workbook.xml``; everything else must be text. Text files (CSV, TXT) are decoded
incrementally — the encoding is chosen from the first 64 KiB (UTF-8 strictly, then GB18030,
a superset of GBK/GB2312, then charset-normalizer's guess) — so memory stays constant however
long the file is. XLSX sheets are read with python-calamine's ``iter_rows()``: calamine parses a
sheet into a compact Rust-side range (far smaller and faster than openpyxl's objects), and rows
become Python objects one at a time; the workbook's bytes are bounded by ``max_bytes`` and the
zip's central directory is checked for bombs before anything is decompressed, and every member's
cell references are scanned so that no sheet spanning too many rows, columns or cells reaches the reader.
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from typing import BinaryIO

from importers.errors import FileRefused, FileWarning

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
SNIFF_BYTES = 64 * 1024
HEADER_SCAN_ROWS = 20
MAX_LINE_CHARS = 1024 * 1024
ZIP_TOTAL_FACTOR = 20  # refuse when the members would inflate beyond 20 × max_bytes
ZIP_MAX_INFLATED = 1024 * 1024 * 1024  # ... or beyond 1 GiB whatever max_bytes is
ZIP_MEMBER_RATIO = 100  # ... or one big member compresses better than 100:1
ZIP_RATIO_FLOOR = 1024 * 1024  # small members may compress well; only judge big ones
ZIP_MAX_MEMBERS = 10_000
# A sheet's content (first to last cell with a value) may span at most this much; a reader
# allocates the whole rectangle. The rows allow a header and blank lines above the 1,000,000
# numbers a file may hold; the cells bound the reader's memory (about 32 bytes a cell).
MAX_SHEET_ROWS = 1_100_000
MAX_SHEET_COLUMNS = 100
MAX_SHEET_CELLS = 10_000_000

EXCEL_ERRORS = frozenset(
    {"#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!", "#GETTING_DATA", "#SPILL!", "#CALC!"}
)

_MAGIC_REFUSALS = [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "xls",
     "不支持 Excel 97–2003 (.xls) 或加密的 Excel 文件，请另存为 .xlsx 或 CSV（UTF-8）后再上传",
     "Excel 97–2003 (.xls) and password-protected workbooks are not supported; save as .xlsx or CSV (UTF-8)"),
    (b"%PDF", "wrong_type", "这是 PDF 文件，请上传 CSV、TXT 或 XLSX 文件",
     "this is a PDF; upload a CSV, TXT or XLSX file"),
    (b"\x89PNG", "wrong_type", "这是图片文件，请上传 CSV、TXT 或 XLSX 文件",
     "this is an image; upload a CSV, TXT or XLSX file"),
    (b"\xff\xd8\xff", "wrong_type", "这是图片文件，请上传 CSV、TXT 或 XLSX 文件",
     "this is an image; upload a CSV, TXT or XLSX file"),
    (b"GIF8", "wrong_type", "这是图片文件，请上传 CSV、TXT 或 XLSX 文件",
     "this is an image; upload a CSV, TXT or XLSX file"),
    (b"\x1f\x8b", "wrong_type", "这是压缩文件，请解压后上传 CSV、TXT 或 XLSX 文件",
     "this is a compressed archive; upload a CSV, TXT or XLSX file"),
    (b"Rar!", "wrong_type", "这是压缩文件，请解压后上传 CSV、TXT 或 XLSX 文件",
     "this is a compressed archive; upload a CSV, TXT or XLSX file"),
    (b"7z\xbc\xaf\x27\x1c", "wrong_type", "这是压缩文件，请解压后上传 CSV、TXT 或 XLSX 文件",
     "this is a compressed archive; upload a CSV, TXT or XLSX file"),
]


# --- rows ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class Row:
    """One non-blank row: raw cell values and where they came from.

    Text files give ``str`` cells; XLSX cells are whatever calamine returns (str, int, float,
    bool, date, datetime, time, timedelta).
    """

    line: int  # 1-based physical line (text) or sheet row number (XLSX)
    cells: tuple
    sheet: str | None = None
    first_column: int = 0  # 0-based sheet column of cells[0] (calamine trims leading empty columns)

    def value(self, index: int):
        return self.cells[index] if 0 <= index < len(self.cells) else ""

    def text(self, index: int) -> str:
        return cell_text(self.value(index))

    def location(self, index: int) -> str | None:
        if self.sheet is None:
            return None
        return f"{self.sheet}!{column_letter(self.first_column + index)}{self.line}"

    def filled(self) -> list[int]:
        """Indexes of the non-empty cells."""
        return [i for i, cell in enumerate(self.cells) if cell_text(cell).strip()]


def column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def cell_text(value) -> str:
    """Render a cell as the text a person sees, undoing Excel's number habits.

    Whole floats lose their ``.0`` and scientific notation (``2.0200001e+07`` → ``20200001``);
    dates become ISO dates.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if value.is_integer():
            return str(int(value))
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text or "E" in text else text
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


# --- opening a file -----------------------------------------------------------------------------
class Table:
    """A readable file: one or more sheets of rows."""

    kind: str  # "text" | "xlsx"
    encoding: str | None = None
    warnings: tuple[FileWarning, ...] = ()

    def sheets(self) -> Iterator[tuple[str | None, Iterator[Row]]]:
        raise NotImplementedError


def open_table(fileobj: BinaryIO, filename: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Table:
    """Sniff ``fileobj`` and return a :class:`Table`, or raise :class:`FileRefused`."""
    start = _tell(fileobj)
    size = _size(fileobj, start)
    if size is not None and size > max_bytes:
        raise _too_large(filename, max_bytes)
    prefix = _read_up_to(fileobj, SNIFF_BYTES)
    if not prefix:
        raise FileRefused("empty", "文件是空的", "the file is empty", filename=filename)
    for magic, code, zh, en in _MAGIC_REFUSALS:
        if prefix.startswith(magic):
            raise FileRefused(code, zh, en, filename=filename)
    if prefix.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _XlsxTable(_whole(fileobj, prefix, start, max_bytes, filename), filename, max_bytes)
    return _TextTable(fileobj, prefix, filename, max_bytes, complete=len(prefix) < SNIFF_BYTES)


def _tell(fileobj) -> int | None:
    try:
        return fileobj.tell() if fileobj.seekable() else None
    except (AttributeError, OSError):
        return None


def _size(fileobj, start: int | None) -> int | None:
    if start is None:
        return None
    end = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(start)
    return end - start


def _read_up_to(fileobj, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = fileobj.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _too_large(filename: str, max_bytes: int) -> FileRefused:
    mib = max_bytes / (1024 * 1024)
    return FileRefused("too_large", f"文件超过 {mib:g} MiB 的上限", f"the file is larger than {mib:g} MiB",
                       filename=filename)


def _whole(fileobj, prefix: bytes, start: int | None, max_bytes: int, filename: str):
    """A seekable object holding the whole (zip) file: the original when it seeks, else a copy."""
    if start == 0:
        fileobj.seek(0)
        return fileobj
    rest = _read_up_to(fileobj, max_bytes + 1 - len(prefix))
    if len(prefix) + len(rest) > max_bytes:
        raise _too_large(filename, max_bytes)
    return io.BytesIO(prefix + rest)


# --- text files ---------------------------------------------------------------------------------
class _Source(io.RawIOBase):
    """The sniffed prefix followed by the rest of the file, counting bytes against the limit."""

    def __init__(self, prefix: bytes, fileobj, max_bytes: int, filename: str):
        self._prefix = memoryview(prefix)
        self._fileobj = fileobj
        self._max_bytes = max_bytes
        self._filename = filename
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
        else:
            data = self._fileobj.read(len(buffer))
            n = len(data) if data else 0
            buffer[:n] = data or b""
        self._count += n
        if self._count > self._max_bytes:
            raise _too_large(self._filename, self._max_bytes)
        return n

    def close(self) -> None:  # never close the caller's file object
        self._fileobj = None
        super().close()


def _decodes(sample: bytes, encoding: str, complete: bool) -> str | None:
    try:
        return codecs.getincrementaldecoder(encoding)("strict").decode(sample, final=complete)
    except (UnicodeDecodeError, LookupError):
        return None


def detect_encoding(sample: bytes, *, complete: bool, filename: str) -> tuple[str, str]:
    """Choose the encoding of a text file from its first bytes; return it and the decoded sample."""
    if sample.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]  # Excel's "Unicode text" export
    else:
        if b"\x00" in sample:
            raise _binary(filename)
        candidates = ["utf-8", "gb18030"]
    for encoding in candidates:
        text = _decodes(sample, encoding, complete)
        if text is not None:
            return encoding, text
    if candidates[0] == "utf-8":
        import charset_normalizer

        best = charset_normalizer.from_bytes(sample).best()
        if best is not None:
            text = _decodes(sample, best.encoding, complete)
            if text is not None:
                return best.encoding, text
    raise FileRefused(
        "undecodable",
        "无法识别文件的文字编码，请另存为 UTF-8 编码的 CSV 或 TXT",
        "the text encoding of the file cannot be recognised; save it as UTF-8 CSV or TXT",
        filename=filename,
    )


def _binary(filename: str) -> FileRefused:
    return FileRefused("wrong_type", "这不是文本文件，也不是 XLSX 工作簿；请上传 CSV、TXT 或 XLSX 文件",
                       "this is neither a text file nor an XLSX workbook; upload a CSV, TXT or XLSX file",
                       filename=filename)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def sniff_delimiter(sample_text: str) -> str:
    """Comma, tab or semicolon: whichever separates fields on the most of the first lines."""
    lines = [line for line in sample_text.splitlines()[:50] if line.strip()]
    scores = {d: sum(d in line for line in lines) for d in (",", "\t", ";")}
    best = max(scores, key=lambda d: scores[d])  # ties keep the first, the comma
    return best if scores[best] else ","


class _TextTable(Table):
    kind = "text"

    def __init__(self, fileobj, prefix: bytes, filename: str, max_bytes: int, *, complete: bool):
        self.encoding, sample_text = detect_encoding(prefix, complete=complete, filename=filename)
        if len(_CONTROL.findall(sample_text)) > max(2, len(sample_text) // 100):
            raise _binary(filename)
        self.delimiter = sniff_delimiter(sample_text)
        self._fileobj = fileobj
        self._prefix = prefix
        self._filename = filename
        self._max_bytes = max_bytes
        self._used = False

    def sheets(self) -> Iterator[tuple[str | None, Iterator[Row]]]:
        yield None, self._rows()

    def _rows(self) -> Iterator[Row]:
        if self._used:
            raise RuntimeError("a text file can be read once")
        self._used = True
        raw = _Source(self._prefix, self._fileobj, self._max_bytes, self._filename)
        stream = io.TextIOWrapper(io.BufferedReader(raw, 64 * 1024), encoding=self.encoding,
                                  errors="strict", newline="")
        reader = csv.reader(self._lines(stream), delimiter=self.delimiter)
        previous = 0
        try:
            for cells in reader:
                line, previous = previous + 1, reader.line_num
                # one cell is by far the commonest row: test it without a generator
                if (cells[0].strip() if len(cells) == 1 else any(cell.strip() for cell in cells)):
                    yield Row(line, tuple(cells))
        except UnicodeDecodeError:
            raise FileRefused(
                "undecodable",
                f"第 {previous + 1} 行附近的文字不是 {self.encoding} 编码，请整个文件使用同一种编码（建议 UTF-8）",
                f"near line {previous + 1} the text is not valid {self.encoding}; "
                "use one encoding for the whole file (UTF-8 recommended)",
                filename=self._filename) from None
        except csv.Error as exc:
            raise FileRefused("malformed_csv", f"第 {previous + 1} 行不是有效的 CSV：{exc}",
                              f"line {previous + 1} is not valid CSV: {exc}", filename=self._filename) from None
        finally:
            stream.detach()

    def _lines(self, stream) -> Iterator[str]:
        # readline with a limit: one endless "line" must not fill the memory.
        while True:
            line = stream.readline(MAX_LINE_CHARS)
            if not line:
                return
            if len(line) >= MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
                raise FileRefused("line_too_long", f"有一行超过 {MAX_LINE_CHARS} 个字符",
                                  f"a line is longer than {MAX_LINE_CHARS} characters", filename=self._filename)
            yield line


# --- XLSX ---------------------------------------------------------------------------------------
def check_zip(fileobj, filename: str, max_bytes: int) -> None:
    """Refuse a zip that is not a workbook or would inflate far beyond the limits (before inflating).

    Only the central directory is read here; the declared sizes it gives are checked again while
    :func:`scan_workbook` inflates the members (zipfile stops at the declared size and checks the CRC).
    """
    try:
        with zipfile.ZipFile(fileobj) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        raise _corrupt(filename) from None
    finally:
        fileobj.seek(0)
    names = {m.filename for m in members}
    if "xl/workbook.xml" not in names:
        raise FileRefused("wrong_type", "这是压缩文件但不是 XLSX 工作簿；请上传 CSV、TXT 或 XLSX 文件",
                          "this is a zip archive but not an XLSX workbook; upload a CSV, TXT or XLSX file",
                          filename=filename)
    total = sum(m.file_size for m in members)
    ratio_bomb = any(m.file_size > ZIP_RATIO_FLOOR and m.file_size > ZIP_MEMBER_RATIO * max(m.compress_size, 1)
                     for m in members)
    if (total > min(ZIP_TOTAL_FACTOR * max_bytes, ZIP_MAX_INFLATED) or len(members) > ZIP_MAX_MEMBERS
            or ratio_bomb):
        raise _zip_bomb(filename)


def _zip_bomb(filename: str) -> FileRefused:
    return FileRefused("zip_bomb", "工作簿解压后异常巨大（疑似压缩炸弹），已拒绝",
                       "the workbook would inflate to an abnormal size (a zip bomb?); refused",
                       filename=filename)


# A start tag <c ...> or <row ...> (any namespace prefix), its attributes and whether it closes itself.
# Attribute values cannot hold "<" in XML, so no match runs past the next tag: scanning stays linear.
_SHEET_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(c|row)(?=[\s/>])((?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*)>")
_R_ATTR = re.compile(rb"""(?:^|\s)r\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_ERROR_ATTR = re.compile(rb"""(?:^|\s)t\s*=\s*["']e["']""")
_CELL_REF = re.compile(rb"\$?([A-Za-z]{1,7})\$?([0-9]{1,12})")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_PLAIN_CELL = re.compile(rb'<c r="([A-Z]{1,7})([0-9]{1,12})"')  # as Excel writes every cell
_ANY_PLAIN_CELL = re.compile(rb"<c[\s/>]")
_PREFIXED_CELL = re.compile(rb":c[\s/>]")
_first, _second = itemgetter(0), itemgetter(1)
SCAN_CHUNK = 1024 * 1024
MAX_TAG_BYTES = 64 * 1024  # no start tag of a workbook is near this long


def _column_number(letters: bytes) -> int:
    number = 0
    for byte in letters.upper():
        number = number * 26 + byte - 64
    return number


class _Extent:
    """The rows and columns spanned by the cells with content of one worksheet part."""

    __slots__ = ("top", "bottom", "left", "right")

    def __init__(self):
        self.top = self.left = None
        self.bottom = self.right = 0

    def cells(self) -> int:
        return 0 if self.top is None else (self.bottom - self.top + 1) * (self.right - self.left + 1)

    def covers(self, row: int, col: int) -> bool:
        return self.top is not None and self.top <= row <= self.bottom and self.left <= col <= self.right

    def include(self, top: int, bottom: int, left: int, right: int) -> None:
        if self.top is None:
            self.top, self.bottom, self.left, self.right = top, bottom, left, right
        else:
            self.top, self.bottom = min(self.top, top), max(self.bottom, bottom)
            self.left, self.right = min(self.left, left), max(self.right, right)

    def too_large(self) -> bool:
        return self.top is not None and (self.bottom - self.top >= MAX_SHEET_ROWS
                                         or self.right - self.left >= MAX_SHEET_COLUMNS
                                         or self.cells() > MAX_SHEET_CELLS)

    def ref(self) -> str:
        return f"{column_letter(self.left - 1)}{self.top}:{column_letter(self.right - 1)}{self.bottom}"


def scan_workbook(fileobj, filename: str) -> int:
    """Refuse a workbook whose sheets span too many rows, columns or cells; count its Excel error cells.

    A reader allocates a sheet's whole rectangle, from its first to its last cell with content
    (calamine about 32 bytes a cell): two cells, A1 and XFD1048576, ask for half a terabyte. The
    cell references are therefore read from the XML stream of every member of the zip (the sheets
    may be named anything in the workbook's relationships) before a reader sees the file: a
    bounded regular scan of 1 MiB chunks, tracking the position of cells without a reference as
    readers do. A sheet's ``<dimension>`` is not trusted either way: readers allocate by the
    cells, and Excel's dimension also counts formatted empty cells, which readers skip — as this
    scan does with self-closing ``<c .../>`` elements.
    """
    errors = 0
    total_cells = 0
    try:
        with zipfile.ZipFile(fileobj) as archive:
            for member in archive.infolist():
                if member.is_dir():
                    continue
                extent, member_errors = _scan_member(archive, member, filename)
                if member.filename.startswith("xl/worksheets/"):
                    errors += member_errors
                total_cells += extent.cells()
                if total_cells > MAX_SHEET_CELLS:
                    raise FileRefused(
                        "sheet_too_large",
                        f"工作簿各工作表的内容共铺开 {total_cells} 个单元格，超出 {MAX_SHEET_CELLS} 个的上限，已拒绝；"
                        "请只保留需要的工作表和列后再上传",
                        f"the workbook's sheets span {total_cells} cells together, beyond the limit of "
                        f"{MAX_SHEET_CELLS}; refused — keep only the sheets and columns needed",
                        filename=filename)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, zlib.error):
        raise _corrupt(filename) from None
    finally:
        fileobj.seek(0)
    return errors


def _chunks(archive: zipfile.ZipFile, member: zipfile.ZipInfo, filename: str) -> Iterator[bytes]:
    """The inflated member in pieces of about 1 MiB, each ending before an unfinished tag."""
    tail = b""
    with archive.open(member) as stream:
        first = True
        while chunk := stream.read(SCAN_CHUNK):
            if first and _DOCTYPE.search(chunk[:4096]):  # no part of a workbook declares a DTD (entities)
                raise _corrupt(filename)
            first = False
            data = tail + chunk
            cut = data.rfind(b"<")
            if cut != -1 and b">" not in data[cut:]:  # keep the unfinished tag for the next piece
                data, tail = data[:cut], data[cut:]
                if len(tail) > MAX_TAG_BYTES:
                    raise _corrupt(filename)
            else:
                tail = b""
            yield data
    if tail:
        yield tail


class _Irregular(Exception):
    """The quick scan cannot judge this member; scan it tag by tag."""


def _scan_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, filename: str) -> tuple[_Extent, int]:
    try:
        return _scan_member_quickly(archive, member, filename)
    except _Irregular:
        return _scan_member_by_tag(archive, member, filename)


def _scan_member_quickly(archive, member, filename: str) -> tuple[_Extent, int]:
    """Every cell as Excel and most writers put it, ``<c r="B7" ...>``: bulk regular expressions.

    Self-closing (empty) cells count here too, so the extent can only be too large; a member
    beyond the limits, or with any other form of cell (no reference, a prefix), goes to
    :func:`_scan_member_by_tag`, which judges it exactly.
    """
    extent = _Extent()
    errors = 0
    for data in _chunks(archive, member, filename):
        refs = _PLAIN_CELL.findall(data)
        if len(refs) != len(_ANY_PLAIN_CELL.findall(data)) or _PREFIXED_CELL.search(data):
            raise _Irregular
        if not refs:
            continue
        if b't="e"' in data or b"t='e'" in data:
            errors += sum(1 for match in _SHEET_TAG.finditer(data)
                          if match.group(1) == b"c" and _ERROR_ATTR.search(match.group(2)))
        rows = list(map(int, map(_second, refs)))
        columns = [_column_number(letters) for letters in set(map(_first, refs))]
        extent.include(min(rows), max(rows), min(columns), max(columns))
        if extent.too_large():
            raise _Irregular
    return extent, errors


def _scan_member_by_tag(archive, member, filename: str) -> tuple[_Extent, int]:
    """Tag by tag, following the position of cells and rows without a reference as readers do."""
    extent = _Extent()
    errors = 0
    row = col = 0
    for data in _chunks(archive, member, filename):
        for match in _SHEET_TAG.finditer(data):
            attributes = match.group(2)
            ref = _R_ATTR.search(attributes)
            if match.group(1) == b"row":
                row = int(ref.group(1) if ref.group(1) is not None else ref.group(2)) if ref else row + 1
                col = 0
                continue
            cell_row = row
            if ref:
                found = _CELL_REF.fullmatch(ref.group(1) if ref.group(1) is not None else ref.group(2))
                if found is None:
                    raise _corrupt(filename)
                col = _column_number(found.group(1))
                cell_row = int(found.group(2))
            else:
                col += 1
            if _ERROR_ATTR.search(attributes):
                errors += 1
            if attributes.rstrip().endswith(b"/"):
                continue  # <c .../>: no value, a formatted empty cell that readers skip
            if not extent.covers(cell_row, col):
                extent.include(cell_row, cell_row, col, col)
                if extent.too_large():
                    raise _sheet_too_large(filename, extent)
    return extent, errors


def _sheet_too_large(filename: str, extent: _Extent) -> FileRefused:
    width = extent.right - extent.left + 1
    height = extent.bottom - extent.top + 1
    return FileRefused(
        "sheet_too_large",
        f"工作表的内容从 {extent.ref()} 铺开 {width} 列 × {height} 行，超出上限（最多 {MAX_SHEET_COLUMNS} 列、"
        f"{MAX_SHEET_ROWS} 行、共 {MAX_SHEET_CELLS} 个单元格），已拒绝；请删除远处多余的单元格，只保留需要的列后再上传",
        f"the sheet's content spans {extent.ref()}, {width} columns × {height} rows, beyond the limits "
        f"({MAX_SHEET_COLUMNS} columns, {MAX_SHEET_ROWS} rows, {MAX_SHEET_CELLS} cells in all); refused — delete "
        "stray cells far away and keep only the columns needed",
        filename=filename,
    )


def _corrupt(filename: str) -> FileRefused:
    return FileRefused("corrupt_xlsx", "XLSX 文件已损坏，无法读取；请用 Excel 重新保存后上传",
                       "the XLSX file is damaged and cannot be read; save it again from Excel",
                       filename=filename)


class _XlsxTable(Table):
    kind = "xlsx"

    def __init__(self, fileobj, filename: str, max_bytes: int):
        import python_calamine

        check_zip(fileobj, filename, max_bytes)
        errors = scan_workbook(fileobj, filename)
        self._filename = filename
        try:
            self._workbook = python_calamine.CalamineWorkbook.from_filelike(fileobj)
            metadata = self._workbook.sheets_metadata
        except Exception:  # calamine raises many types on damaged input; all mean "corrupt"
            raise _corrupt(filename) from None
        worksheets = [m for m in metadata if m.typ == python_calamine.SheetTypeEnum.WorkSheet]
        visible = [m for m in worksheets if m.visible == python_calamine.SheetVisibleEnum.Visible]
        self._names = [m.name for m in (visible or worksheets)]
        if not self._names:
            raise FileRefused("no_sheets", "工作簿里没有工作表", "the workbook has no worksheets", filename=filename)
        if errors:
            self.warnings = (FileWarning(
                "excel_errors",
                f"工作簿中有 {errors} 个单元格是 Excel 错误值（如 #N/A、#DIV/0!），已按空单元格处理；请检查公式",
                f"{errors} cells of the workbook hold Excel errors (such as #N/A or #DIV/0!) and were read as "
                "empty; check the formulas",
            ),)

    def sheets(self) -> Iterator[tuple[str | None, Iterator[Row]]]:
        for name in self._names:
            try:
                sheet = self._workbook.get_sheet_by_name(name)
            except Exception:  # see above
                raise _corrupt(self._filename) from None
            yield name, self._rows(sheet, name)

    def _rows(self, sheet, name: str) -> Iterator[Row]:
        start = sheet.start
        if start is None:
            return
        try:
            for index, cells in enumerate(sheet.iter_rows()):
                if any(cell_text(cell).strip() for cell in cells):
                    yield Row(index + 1, tuple(cells), name, start[1])
        except FileRefused:
            raise
        except Exception:
            raise _corrupt(self._filename) from None


# --- header detection ---------------------------------------------------------------------------
_BRACKETED = re.compile(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>")
_NOT_WORD = re.compile(r"[\W_]+")


def header_key(text: str) -> str:
    """Compare header names ignoring case, spaces, punctuation and notes like "(必填)"."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.replace("〔", "(").replace("〕", ")").replace("【", "[").replace("】", "]")
    text = _BRACKETED.sub("", text) or text
    return _NOT_WORD.sub("", text)


@dataclass(frozen=True)
class Column:
    """A column an importer looks for, with the header names it accepts."""

    key: str
    name_zh: str
    name_en: str
    aliases: tuple[str, ...] = ()
    required: bool = True

    def matches(self, text: str) -> bool:
        wanted = {header_key(a) for a in (self.name_zh, self.name_en, *self.aliases)}
        return header_key(text) in wanted


@dataclass
class Layout:
    """Where the wanted columns are, and the data rows after the header."""

    columns: dict[str, int]  # key -> cell index; for a headerless single column, -1 ("the filled cell")
    data_rows: Iterator[Row]
    header_line: int | None
    sheet: str | None
    warnings: list[FileWarning] = field(default_factory=list)
    header_row: Row | None = None  # the header row found (None: a headerless single column)

    def index(self, key: str, row: Row) -> int | None:
        index = self.columns.get(key)
        if index == -1:
            filled = row.filled()
            return filled[0] if filled else 0
        return index


def locate_columns(table: Table, columns: list[Column], filename: str, *, single_column: bool = False) -> Layout:
    """Find the header row (within the first rows of a sheet) naming the first of ``columns``.

    With ``single_column`` a file without such a header is read as one column of values when no
    row of its first rows has more than one filled cell.
    """
    key = columns[0]
    first_sheet: tuple[str | None, list[Row], Iterator[Row]] | None = None
    for sheet_name, rows in table.sheets():
        head = _take(rows, HEADER_SCAN_ROWS)
        if not head:
            continue
        if first_sheet is None:
            first_sheet = (sheet_name, head, rows)
        for position, row in enumerate(head):
            found = _match_header(row, columns)
            if key.key in found:
                missing = [c for c in columns if c.required and c.key not in found]
                if missing:
                    raise _missing_columns(missing, filename)
                return Layout(found, _chain(head[position + 1:], rows), row.line, sheet_name, list(table.warnings),
                              header_row=row)
    if first_sheet is None:
        raise FileRefused("empty", "文件里没有任何数据", "the file holds no data", filename=filename)
    sheet_name, head, rows = first_sheet
    if single_column and all(len(row.filled()) <= 1 for row in head):
        warnings = list(table.warnings)
        first = head[0]
        first_text = first.text(first.filled()[0]).strip()
        if not any(ch.isdigit() for ch in first_text):
            warnings.append(FileWarning(
                "header_assumed",
                f"第一行“{first_text}”不含数字，已当作表头跳过",
                f"the first line {first_text!r} holds no digit and was taken as a header",
            ))
            head = head[1:]
        return Layout({key.key: -1}, _chain(head, rows), None, sheet_name, warnings)
    raise _missing_columns([c for c in columns if c.required], filename, header_not_found=True)


def _take(rows: Iterator[Row], n: int) -> list[Row]:
    head = []
    for row in rows:
        head.append(row)
        if len(head) == n:
            break
    return head


def _chain(head: Iterable[Row], rest: Iterator[Row]) -> Iterator[Row]:
    yield from head
    yield from rest


def _match_header(row: Row, columns: list[Column]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, cell in enumerate(row.cells):
        if not isinstance(cell, str) or not cell.strip():
            continue
        for column in columns:
            if column.key not in found and column.matches(cell):
                found[column.key] = index
                break
    return found


def _missing_columns(missing: list[Column], filename: str, *, header_not_found: bool = False) -> FileRefused:
    zh = "、".join(f"“{c.name_zh}”" for c in missing)
    en = ", ".join(f"{c.name_en!r}" for c in missing)
    if header_not_found:
        return FileRefused("missing_column", f"在前 {HEADER_SCAN_ROWS} 行里找不到表头，需要的列：{zh}",
                           f"no header row found in the first {HEADER_SCAN_ROWS} rows; required columns: {en}",
                           filename=filename)
    return FileRefused("missing_column", f"缺少必需的列：{zh}", f"required column missing: {en}", filename=filename)
