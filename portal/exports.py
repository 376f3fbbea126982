"""CSV and XLSX exports for casework: streamed, and safe to open in a spreadsheet.

A text cell that begins with ``= + - @``, a tab or a carriage return would be read as a formula
by Excel, WPS or LibreOffice (CSV injection); such cells get a leading apostrophe
(:func:`workflows.cells.neutralise`). Numbers and dates are written as themselves. CSV is generated row by row; XLSX is written by openpyxl's
write-only workbook (rows go to a temporary file, constant memory) and streamed from disk.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from flask import Response

from registry.numbers.quarters import SHANGHAI
from workflows.cells import DANGEROUS, neutralise

CHUNK = 64 * 1024
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _plain(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "1" if value else "0"
    return value


def _disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def csv_rows(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterable[str]:
    """The CSV text in pieces, a UTF-8 BOM first so Excel opens Chinese text correctly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    yield "\ufeff"
    writer.writerow([neutralise(h) for h in header])
    for row in rows:
        writer.writerow([neutralise(_plain(v)) for v in row])
        if buffer.tell() > CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    response = Response(csv_rows(header, rows), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    return _attachment(response, filename)


def csv_file_response(filename: str, path) -> Response:
    """A CSV file on disk (header first, UTF-8 with or without BOM) served neutralised, streamed."""
    def rows():
        with open(path, newline="", encoding="utf-8-sig") as fh:
            yield from csv.reader(fh)

    rows_iter = rows()
    header = next(rows_iter, [])
    return csv_response(filename, header, rows_iter)


def write_xlsx(fh, sheet: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=sheet[:31])
    ws.append([neutralise(h) for h in header])
    for row in rows:
        ws.append([_xlsx_value(v) for v in row])
    wb.save(fh)


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # Excel has no time zones: write the Shanghai wall-clock time
        return value.astimezone(SHANGHAI).replace(tzinfo=None)
    if value is None:
        return None
    return neutralise(value)


def xlsx_response(filename: str, sheet: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    spool = tempfile.TemporaryFile()
    write_xlsx(spool, sheet, header, rows)
    size = spool.tell()
    spool.seek(0)

    def chunks():
        try:
            while True:
                data = spool.read(CHUNK)
                if not data:
                    break
                yield data
        finally:
            spool.close()

    response = Response(chunks(), mimetype=XLSX_TYPE)
    response.headers["Content-Length"] = str(size)
    return _attachment(response, filename)


def _attachment(response: Response, filename: str) -> Response:
    response.headers["Content-Disposition"] = _disposition(filename)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def table_response(fmt: str, basename: str, header: Sequence[str], rows: Iterable[Sequence[Any]],
                   sheet: str = "export") -> Response:
    if fmt == "xlsx":
        return xlsx_response(f"{basename}.xlsx", sheet, header, rows)
    return csv_response(f"{basename}.csv", header, rows)


__all__ = ["DANGEROUS", "csv_file_response", "csv_response", "csv_rows", "neutralise", "table_response", "write_xlsx", "xlsx_response"]
