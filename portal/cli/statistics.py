"""Annual statistics direct reporting: ``statistics open|remind|export`` (docs/contract.md, "CLI").

Exit status: 0 done; 2 refused (a bad year or path, a year already open), with one line saying why.
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from registry.statistics.service import StatisticsRefused, check_year

from ..extensions import registry
from ..statistics import tables_workbook

statistics = AppGroup("statistics", help="Annual statistics filings (检验检测统计直报).")


def _year(text: str) -> int:
    try:
        return check_year(int(text))
    except (ValueError, StatisticsRefused):
        click.echo(f"error: {text!r} is not a survey year (2000–2100)", err=True)
        sys.exit(2)


def _date(text: str | None, name: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        click.echo(f"error: {name} must be a date like 2027-01-31, not {text!r}", err=True)
        sys.exit(2)


@statistics.command("open")
@click.argument("year")
@click.option("--file-by", help="last day institutions file (default 31 January of the next year)")
@click.option("--review-by", help="last day reviewers review (default end of February of the next year)")
def open_year(year: str, file_by: str | None, review_by: str | None):
    """Open YEAR's filing with the survey schema for it; exit 2 if it is already open."""
    number = _year(year)
    try:
        row = registry().statistics.open_year(number, actor="cli", file_by=_date(file_by, "--file-by"),
                                              review_by=_date(review_by, "--review-by"))
    except StatisticsRefused as exc:
        message = {"already_open": f"the {number} filing is already open",
                   "bad_year": "--review-by is before --file-by"}.get(exc.code, exc.code)
        click.echo(f"error: {message}", err=True)
        sys.exit(2)
    click.echo(f"opened the {row.year} filing (survey {row.schema_version}): file by {row.file_by}, "
               f"review by {row.review_by}")


@statistics.command("remind")
@click.argument("year")
def remind(year: str):
    """List the institutions that have not filed YEAR, one line each (USCC, status, name), and
    queue an e-mail reminder to each one's verified addresses (at most once a day)."""
    number = _year(year)
    reg = registry()
    try:
        rows = reg.statistics.not_filed(number)
    except StatisticsRefused:
        click.echo(f"error: the {number} filing is not open", err=True)
        sys.exit(2)
    for row in rows:
        click.echo(f"{row.uscc}\t{row.status}\t{row.name}")
    file_by = next(y.file_by for y in reg.statistics.years() if y.year == number)
    reg.notices.statistics_reminders(number, file_by, rows)


@statistics.command("export")
@click.argument("year")
@click.option("--out", "out", required=True, help="the .xlsx file to write")
def export(year: str, out: str):
    """Write YEAR's aggregation tables (approved filings) to an XLSX workbook."""
    number = _year(year)
    path = Path(out)
    if path.suffix.lower() != ".xlsx" or not path.parent.is_dir() or path.is_dir():
        click.echo(f"error: {out!r} is not an .xlsx file in an existing folder", err=True)
        sys.exit(2)
    try:
        tables = registry().statistics.tables(number)
    except StatisticsRefused:
        click.echo(f"error: the {number} filing is not open", err=True)
        sys.exit(2)
    try:
        # the headings and group names in the portal's default language (Chinese), as a page would show them
        with open(path, "wb") as fh, current_app.test_request_context("/?lang=zh"):
            tables_workbook(fh, tables)
    except OSError as exc:
        click.echo(f"error: cannot write {out!r}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    click.echo(f"wrote {out}: {tables.approved} approved filings of {number}")


COMMANDS = [statistics]
