"""Certificate lists (资质认定证书): one row per CMA certificate and its institution.

Each row is validated on its own — USCC with its check character, certificate number and issuing
authority code, dates, status word — and a bad row becomes a :class:`RowProblem`, never an
exception. Resolving the review authority (a code or a name) is left to the registry.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from importers.errors import FileRefused, FileWarning, RowProblem, invalid_value_messages
from importers.numbers import DEFAULT_MAX_PROBLEMS, Rejected, too_many_problems
from importers.tabular import DEFAULT_MAX_BYTES, Column, Layout, Row, cell_text, locate_columns, open_table
from registry.numbers.normalize import (
    InvalidValue,
    certificate_authority_code,
    clean_text,
    normalize_certificate_number,
    normalize_uscc,
)

DEFAULT_MAX_ROWS = 1_000_000

COLUMNS = [
    Column("certificate_number", "证书编号", "certificate_number",
           ("资质认定证书编号", "证书号", "CMA证书编号", "certificate no", "certificate number", "cert no")),
    Column("institution_name", "机构名称", "institution_name",
           ("检验检测机构名称", "检验检测机构", "单位名称", "institution", "institution name", "name")),
    Column("uscc", "统一社会信用代码", "uscc", ("社会信用代码", "信用代码", "unified social credit code", "credit code")),
    Column("issued_on", "发证日期", "issued_on", ("颁发日期", "发证时间", "issue date", "issued", "date issued")),
    Column("expires_on", "有效期至", "expires_on", ("有效期", "有效期限", "到期日期", "截止日期", "expiry date",
                                                  "expires", "valid until", "expiry")),
    Column("status", "状态", "status", ("证书状态", "certificate status")),
    Column("address", "地址", "address", ("机构地址", "检验检测地址", "地点", "addresses"), required=False),
    Column("review_authority", "审核部门", "review_authority", ("审核机关", "review authority"), required=False),
]

STATUS_WORDS = {
    "有效": "valid", "valid": "valid",
    "暂停": "suspended", "suspended": "suspended",
    "撤销": "revoked", "revoked": "revoked",
    "注销": "expired", "过期": "expired", "expired": "expired",
}

_DATE_PATTERNS = [
    re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"),
    re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日?"),
    re.compile(r"(\d{4})(\d{2})(\d{2})"),
]
_EXCEL_EPOCH = dt.date(1899, 12, 30)


@dataclass(frozen=True)
class CertificateRow:
    line: int
    number: str
    institution_name: str
    uscc: str
    issued_on: dt.date | None
    expires_on: dt.date | None
    status: str  # valid | suspended | revoked | expired
    addresses: tuple[str, ...]
    review_authority: str | None
    issuing_authority_code: str


def parse_date(value) -> dt.date | None:
    """A date cell or text (2020-12-01, 2020/12/1, 2020年12月1日, 20201201); empty → None."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value).is_integer() and 20000 <= value < 80000:
            # a date cell whose date format was lost: Excel's serial day number
            return _EXCEL_EPOCH + dt.timedelta(days=int(value))
    text = unicodedata.normalize("NFKC", cell_text(value)).strip()
    text = "".join(text.split()) if "年" in text else text
    if not text:
        return None
    for pattern in _DATE_PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            year, month, day = map(int, match.groups())
            try:
                return dt.date(year, month, day)
            except ValueError:
                break
    raise Rejected("date", f"日期“{text}”无法识别，请写作 2020-12-01",
                   f"the date {text!r} is not recognised; write it as 2020-12-01")


def parse_status(text: str) -> str:
    word = unicodedata.normalize("NFKC", text).strip().casefold()
    if word in STATUS_WORDS:
        return STATUS_WORDS[word]
    raise Rejected("status", f"证书状态“{text.strip()}”无法识别（应为 有效、暂停、撤销、注销 或 过期）",
                   f"the certificate status {text.strip()!r} is not one of valid, suspended, revoked, expired "
                   "(有效, 暂停, 撤销, 注销/过期)")


def _review_authority(value) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() and 0 <= value < 100:
        return f"{int(value):02d}"  # a code typed into a number cell lost its leading zero
    text = " ".join(cell_text(value).split())
    return text or None


class CertificateFile:
    """A certificate list being read; iterate :meth:`rows` once."""

    def __init__(self, layout: Layout, filename: str, *, max_rows: int, max_problems: int):
        self.filename = filename
        self.problems: list[RowProblem] = []
        self.warnings: list[FileWarning] = list(layout.warnings)
        self.rows_read = 0
        self._layout = layout
        self._max_rows = max_rows
        self._max_problems = max_problems
        self._started = False

    def rows(self) -> Iterator[CertificateRow]:
        if self._started:
            raise RuntimeError("rows() can be iterated once")
        self._started = True
        for row in self._layout.data_rows:
            self.rows_read += 1
            if self.rows_read > self._max_rows:
                raise FileRefused("too_many_rows", f"超过每个文件 {self._max_rows} 行的上限",
                                  f"more than {self._max_rows} rows in the file", filename=self.filename)
            parsed = self._parse(row)
            if parsed is not None:
                yield parsed

    def _parse(self, row: Row) -> CertificateRow | None:
        columns = self._layout.columns
        key = None
        try:
            key = "certificate_number"
            number = normalize_certificate_number(row.text(columns[key]))
            key = "institution_name"
            name = " ".join(clean_text(row.text(columns[key])).split())
            if not name:
                raise Rejected("name_missing", "机构名称为空", "the institution name is empty")
            key = "uscc"
            uscc = normalize_uscc(row.text(columns[key]))
            key = "issued_on"
            issued_on = parse_date(row.value(columns[key]))
            key = "expires_on"
            expires_on = parse_date(row.value(columns[key]))
            if issued_on and expires_on and expires_on < issued_on:
                raise Rejected("date_order", f"有效期至 {expires_on} 早于发证日期 {issued_on}",
                               f"the certificate expires ({expires_on}) before it was issued ({issued_on})")
            key = "status"
            status = parse_status(row.text(columns[key]))
        except InvalidValue as exc:
            zh, en = invalid_value_messages(exc)
            self._reject(row, key, exc.code, zh, en)
            return None
        except Rejected as rejected:
            self._reject(row, key, rejected.code, rejected.message_zh, rejected.message_en)
            return None
        addresses: tuple[str, ...] = ()
        if "address" in columns:
            text = unicodedata.normalize("NFKC", clean_text(row.text(columns["address"])))
            addresses = tuple(" ".join(part.split()) for part in text.split(";") if part.strip())
        review = _review_authority(row.value(columns["review_authority"])) if "review_authority" in columns else None
        return CertificateRow(row.line, number, name, uscc, issued_on, expires_on, status, addresses, review,
                              certificate_authority_code(number))

    def _reject(self, row: Row, key: str, code: str, zh: str, en: str) -> None:
        index = self._layout.columns[key]
        column = next(c for c in COLUMNS if c.key == key)
        self.problems.append(RowProblem(row.line, row.location(index), row.text(index), code,
                                        zh if column.name_zh in zh else f"{column.name_zh}：{zh}",
                                        f"{column.name_en}: {en}"))
        if len(self.problems) > self._max_problems:
            raise too_many_problems(self.filename, self._max_problems)


def read_certificates(fileobj: BinaryIO, filename: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                      max_rows: int = DEFAULT_MAX_ROWS, max_problems: int = DEFAULT_MAX_PROBLEMS) -> CertificateFile:
    """Open a certificate list; a missing required column raises :class:`FileRefused` naming it."""
    table = open_table(fileobj, filename, max_bytes=max_bytes)
    layout = locate_columns(table, COLUMNS, filename)
    return CertificateFile(layout, filename, max_rows=max_rows, max_problems=max_problems)
