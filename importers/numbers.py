"""Report-number files: CSV, TXT or XLSX in, normalised numbers (ranges expanded) out.

The numbers are produced by a generator, so a million-line file is read in constant memory;
duplicates are left in (the database counts them). Rejected rows are collected as
:class:`RowProblem` while iterating; ``warnings`` and ``rows`` are complete once iteration ends.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from importers.errors import FileRefused, FileWarning, RowProblem, invalid_value_messages
from importers.tabular import (DEFAULT_MAX_BYTES, EXCEL_ERRORS, Column, Layout, Row, column_letter, locate_columns,
                               open_table)
from registry.numbers.normalize import PLAIN_ASCII_NUMBER, InvalidValue, normalize_document_sha256, normalize_number

DEFAULT_MAX_NUMBERS = 1_000_000
DEFAULT_MAX_RANGE = 100_000
DEFAULT_MAX_PROBLEMS = 100_000

NUMBER_COLUMN = Column(
    "number", "报告编号", "report_number",
    ("报告号", "报告编码", "报告书编号", "检验报告编号", "检测报告编号", "检验检测报告编号", "编号",
     "report no", "report number", "report num", "report id", "number"),
)

# optional: the SHA-256 of the issued report file, registered with the number (docs/contract.md)
DOCUMENT_COLUMN = Column(
    "sha256", "文件摘要", "sha256",
    ("报告文件摘要", "文件哈希", "文件哈希值", "文件SHA256", "报告文件SHA256", "document sha256", "file sha256",
     "document fingerprint", "document hash", "file hash"),
    required=False,
)

_RANGE_SEPARATOR = re.compile(r"[~至]")
# Checked inline first (normalize_number would only upper-case such text): saves most of the time
# of a million-row file.
_PLAIN_ASCII = PLAIN_ASCII_NUMBER
_SUFFIX = re.compile(r"^(.*?)(\d+)$")


class Rejected(Exception):
    """A value (or row) that is rejected, with its reason in both languages."""

    def __init__(self, code: str, message_zh: str, message_en: str):
        super().__init__(message_en)
        self.code, self.message_zh, self.message_en = code, message_zh, message_en

    @classmethod
    def from_invalid(cls, exc: InvalidValue, *, end: str | None = None) -> Rejected:
        zh, en = invalid_value_messages(exc)
        if end:
            zh, en = f"范围的{'起点' if end == 'start' else '终点'}：{zh}", f"range {end}: {en}"
        return cls(exc.code, zh, en)


@dataclass(slots=True)
class NumberSpan:
    """One cell's numbers: a single number, or a range of ``count`` numbers."""

    prefix: str
    first: int
    count: int
    width: int  # zero padding of the numeric suffix; 0 = none
    single: str | None = None

    def __iter__(self) -> Iterator[str]:
        if self.single is not None:
            yield self.single
            return
        for n in range(self.first, self.first + self.count):
            yield f"{self.prefix}{n:0{self.width}d}"


def parse_number_cell(raw: str, *, max_range: int = DEFAULT_MAX_RANGE) -> NumberSpan:
    """Normalise one cell: a report number or a range ``START~END`` / ``START至END``.

    Excel's error values (``#N/A`` …) are rejected although ``#N/A`` passes normalisation:
    they are the remains of a broken formula, never a number someone printed on a report.
    """
    stripped = raw.strip()
    if stripped in EXCEL_ERRORS:
        raise Rejected("cell_error", f"单元格是 Excel 错误值 {stripped}，不是报告编号",
                       f"the cell holds the Excel error {stripped}, not a report number")
    if stripped.isascii() and _PLAIN_ASCII.fullmatch(stripped):
        number = stripped.upper()
        return NumberSpan(number, 0, 1, 0, single=number)
    text = unicodedata.normalize("NFKC", raw)
    if not _RANGE_SEPARATOR.search(text):
        try:
            number = normalize_number(raw)
        except InvalidValue as exc:
            raise Rejected.from_invalid(exc) from None
        return NumberSpan(number, 0, 1, 0, single=number)
    return parse_range(text, max_range=max_range)


def parse_range(text: str, *, max_range: int = DEFAULT_MAX_RANGE) -> NumberSpan:
    parts = _RANGE_SEPARATOR.split(text)
    if len(parts) != 2:
        raise Rejected("range_format", "范围应写作“起始编号~结束编号”或“起始编号至结束编号”",
                       "a range is written START~END or START至END")
    ends = []
    for part, end in zip(parts, ("start", "end")):
        try:
            ends.append(normalize_number(part))
        except InvalidValue as exc:
            raise Rejected.from_invalid(exc, end=end) from None
    start, stop = ends
    # "WT2020-0098~0102": an end of digits only, shorter than the start, abbreviates the start.
    start_match = _SUFFIX.match(start)
    if start_match and stop.isdigit() and len(stop) < len(start) and (start_match.group(1) or len(stop) < len(start_match.group(2))):
        stop = start[: len(start) - len(stop)] + stop
    stop_match = _SUFFIX.match(stop)
    if not start_match or not stop_match:
        raise _range_prefix()
    prefix, first_digits = start_match.groups()
    stop_prefix, last_digits = stop_match.groups()
    if prefix != stop_prefix:
        raise _range_prefix()
    padded = first_digits.startswith("0") or last_digits.startswith("0")
    if len(first_digits) != len(last_digits) and padded:
        raise _range_prefix()
    first, last = int(first_digits), int(last_digits)
    if last < first:
        raise Rejected("range_reversed", f"范围的终点 {stop} 小于起点 {start}",
                       f"the range ends ({stop}) before it starts ({start})")
    count = last - first + 1
    if count > max_range:
        raise Rejected("range_too_long", f"范围含 {count} 个编号，超过每个范围 {max_range} 个的上限",
                       f"the range holds {count} numbers, more than the limit of {max_range} per range")
    width = len(first_digits) if len(first_digits) == len(last_digits) else 0
    return NumberSpan(prefix, first, count, width)


def _range_prefix() -> Rejected:
    return Rejected("range_prefix", "范围两端的前缀或数字位数不一致，应只有末尾的数字不同（如 WT2020-0098~WT2020-0102）",
                    "the two ends of a range must share a prefix and differ only in a trailing number "
                    "of the same width (e.g. WT2020-0098~WT2020-0102)")


def too_many_numbers(filename: str, max_numbers: int) -> FileRefused:
    return FileRefused("too_many_numbers", f"展开范围后超过每个文件 {max_numbers} 个编号的上限",
                       f"more than {max_numbers} numbers in the file after expanding ranges", filename=filename)


def too_many_problems(filename: str, max_problems: int) -> FileRefused:
    return FileRefused("too_many_problems", f"超过 {max_problems} 行有错误，请检查文件是否选错",
                       f"more than {max_problems} rows are wrong; is this the right file?", filename=filename)


class WidthSurvey:
    """Notices digit-only numbers shorter than most: Excel drops leading zeros of number cells."""

    def __init__(self) -> None:
        self.widths: Counter[int] = Counter()

    def observe(self, number: str) -> None:
        if number.isdigit():
            self.widths[len(number)] += 1

    def warning(self) -> FileWarning | None:
        widths = self.widths
        total = sum(widths.values())
        if total < 3:
            return None
        width, most = widths.most_common(1)[0]
        shorter = sum(n for w, n in widths.items() if w < width)
        if most * 2 < total or not shorter:
            return None
        return FileWarning(
            "leading_zeros",
            f"{shorter} 个纯数字编号比多数编号（{width} 位）短，可能被 Excel 去掉了开头的 0；"
            "如是，请把该列设为“文本”格式后重新导出",
            f"{shorter} digit-only numbers are shorter than most ({width} digits): Excel may have dropped "
            "their leading zeros; if so, format the column as Text and export again",
        )


class NumberFile:
    """A report-number file being read; iterate :meth:`numbers` once.

    With a ``文件摘要`` / ``sha256`` column, a row may give its number's document fingerprint:
    it is put in :attr:`documents` (number → 64 lowercase hex) before the number is yielded,
    where the consumer takes it (and removes it: the dict holds only fingerprints not yet taken).
    A malformed fingerprint, one given to a range, or a second, different one for a number
    rejects the row."""

    def __init__(self, layout: Layout, filename: str, *, max_numbers: int, max_range: int, max_problems: int):
        self.filename = filename
        self.problems: list[RowProblem] = []
        self.warnings: list[FileWarning] = list(layout.warnings)
        self.rows = 0
        self._layout = layout
        self._max_numbers = max_numbers
        self._max_range = max_range
        self._max_problems = max_problems
        self._started = False
        self._first: tuple[str | None, int] | None = None  # headerless: (sheet, sheet column) of the first row
        self.documents: dict[str, str] = {}
        self._fingerprinted: dict[str, str] = {}  # every fingerprint given so far, to refuse a second one

    @property
    def column(self) -> dict | None:
        """Which column the numbers are read from, to show the uploader: the header text (None
        for a headerless single column), the sheet column as a letter and a 1-based position,
        the sheet (None for a text file) and the header's line. Complete once :meth:`numbers`
        has run (a headerless file's column is the one filled in its first row); None when no
        row was read."""
        index = self._layout.columns.get("number")
        header = self._layout.header_row
        if header is not None and index is not None and index >= 0:
            sheet, position, text, line = header.sheet, header.first_column + index, header.text(index).strip(), header.line
        elif self._first is not None:
            (sheet, position), text, line = self._first, None, None
        else:
            return None
        return {"header": text, "letter": column_letter(position), "position": position + 1, "sheet": sheet,
                "line": line}

    def numbers(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("numbers() can be iterated once")
        self._started = True
        total = 0
        survey = WidthSurvey()
        widths = survey.widths
        fixed = self._layout.columns.get("number")
        fixed = None if fixed == -1 else fixed  # -1: a headerless single column, found per row
        plain, errors, max_numbers = _PLAIN_ASCII.fullmatch, EXCEL_ERRORS, self._max_numbers
        documents = self._layout.columns.get(DOCUMENT_COLUMN.key)
        for row in self._layout.data_rows:
            self.rows += 1
            if fixed is not None:
                index = fixed
            else:
                index = self._layout.index("number", row)
                if self._first is None:
                    self._first = (row.sheet, row.first_column + index)
            cells = row.cells
            value = cells[index] if 0 <= index < len(cells) else ""
            if type(value) is str:
                # the common case inline (millions of rows): one plain ASCII number, as
                # parse_number_cell would take it
                stripped = value.strip()
                if stripped.isascii() and stripped not in errors and plain(stripped):
                    number = stripped.upper()
                    if documents is not None and not self._document(row, documents, number):
                        continue
                    total += 1
                    if total > max_numbers:
                        raise too_many_numbers(self.filename, max_numbers)
                    if number.isdigit():
                        widths[len(number)] += 1
                    yield number
                    continue
            raw = row.text(index)
            try:
                span = parse_number_cell(raw, max_range=self._max_range)
            except Rejected as rejected:
                self._reject(row, index, raw, rejected)
                continue
            if documents is not None and not self._document(row, documents, span.single):
                continue
            total += span.count
            if total > max_numbers:
                raise too_many_numbers(self.filename, max_numbers)
            if span.single is not None:
                survey.observe(span.single)
            yield from span
        warning = survey.warning()
        if warning:
            self.warnings.append(warning)

    def _document(self, row: Row, index: int, number: str | None) -> bool:
        """Take the row's document fingerprint, if it gives one, for ``number`` (None: the row
        is a range); False when the row is rejected for it."""
        raw = row.text(index)
        if not raw.strip():
            return True
        try:
            digest = normalize_document_sha256(raw)
        except InvalidValue as exc:
            self._reject(row, index, raw, Rejected.from_invalid(exc))
            return False
        if number is None:
            self._reject(row, index, raw, Rejected(
                "sha256_range", "文件摘要只能对应一个报告编号，不能用于编号范围；请把范围拆成单个编号，每行一个",
                "a document fingerprint belongs to one report number, not to a range: list the numbers one a row"))
            return False
        known = self._fingerprinted.get(number)
        if known is None:
            self._fingerprinted[number] = self.documents[number] = digest
        elif known != digest:
            self._reject(row, index, raw, Rejected(
                "sha256_conflict", f"报告编号 {number} 在前面的行中已填写了不同的文件摘要",
                f"an earlier row gave report number {number} a different document fingerprint"))
            return False
        return True

    def _reject(self, row: Row, index: int, raw: str, rejected: Rejected) -> None:
        self.problems.append(RowProblem(row.line, row.location(index), raw, rejected.code,
                                        rejected.message_zh, rejected.message_en))
        if len(self.problems) > self._max_problems:
            raise too_many_problems(self.filename, self._max_problems)


def read_report_numbers(fileobj: BinaryIO, filename: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                        max_numbers: int = DEFAULT_MAX_NUMBERS, max_range: int = DEFAULT_MAX_RANGE,
                        max_problems: int = DEFAULT_MAX_PROBLEMS) -> NumberFile:
    """Open a report-number file; whole-file problems raise :class:`FileRefused` here, before any row."""
    table = open_table(fileobj, filename, max_bytes=max_bytes)
    layout = locate_columns(table, [NUMBER_COLUMN, DOCUMENT_COLUMN], filename, single_column=True)
    return NumberFile(layout, filename, max_numbers=max_numbers, max_range=max_range, max_problems=max_problems)
