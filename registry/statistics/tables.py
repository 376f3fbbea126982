"""The national tables of the yearly statistical bulletin from the approved filings: by province,
professional field, institution type and size (规模以上: revenue ≥ 1000 万元), each with the
year-on-year change. Only approved filings count; an institution counts once in each of its
professional fields (so the field table's institutions add up to more than the total).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.statistics.checks import typed
from registry.statistics.models import Filing, StatisticsYear

LARGE_REVENUE = 1000  # 万元: 规模以上
MEASURES = ("institutions", "revenue", "staff", "instruments", "instrument_value", "reports")
DIMENSIONS = ("province", "field", "type", "size")


@dataclass
class Cell:
    institutions: int = 0
    revenue: float = 0.0
    staff: int = 0
    instruments: int = 0
    instrument_value: float = 0.0
    reports: int = 0

    def add(self, values: dict[str, Any]) -> None:
        self.institutions += 1
        for key in MEASURES[1:]:
            setattr(self, key, getattr(self, key) + (values.get(key) or 0))


@dataclass(frozen=True)
class Row:
    key: str
    this_year: Cell
    last_year: Cell | None

    def change(self, measure: str) -> float | None:
        """Year-on-year change of one measure (None without last year's figure)."""
        if self.last_year is None:
            return None
        before = getattr(self.last_year, measure)
        return (getattr(self.this_year, measure) - before) / before if before else None


@dataclass
class Tables:
    year: int
    approved: int  # approved filings counted
    filed: int  # filings submitted (any state but draft)
    total: Row | None = None
    by: dict[str, list[Row]] = field(default_factory=dict)


def _keys(dimension: str, values: dict[str, Any]) -> list[str]:
    if dimension == "province":
        return [values.get("province") or "—"]
    if dimension == "field":
        return list(values.get("fields") or ["—"])
    if dimension == "type":
        return [values.get("institution_type") or "—"]
    return ["large" if (values.get("revenue") or 0) >= LARGE_REVENUE else "small"]


def _cells(rows: Iterable[dict[str, Any]]) -> tuple[Cell, dict[str, dict[str, Cell]]]:
    total = Cell()
    by: dict[str, dict[str, Cell]] = {d: {} for d in DIMENSIONS}
    for values in rows:
        total.add(values)
        for dimension in DIMENSIONS:
            for key in _keys(dimension, values):
                by[dimension].setdefault(key, Cell()).add(values)
    return total, by


def _approved(session: Session, year: int) -> list[dict[str, Any]]:
    year_row = session.get(StatisticsYear, year)
    if year_row is None:
        return []
    return [typed(f, year_row.schema_version) for f in session.scalars(
        select(Filing).where(Filing.year == year, Filing.status == "approved").order_by(Filing.id))]


def build_tables(session: Session, year: int) -> Tables:
    this_rows = _approved(session, year)
    last_rows = _approved(session, year - 1)
    filed = len(session.scalars(select(Filing.id).where(Filing.year == year, Filing.status != "draft")).all())
    total, by = _cells(this_rows)
    last_total, last_by = _cells(last_rows)
    tables = Tables(year=year, approved=len(this_rows), filed=filed,
                    total=Row("total", total, last_total if last_rows else None))
    for dimension in DIMENSIONS:
        tables.by[dimension] = [Row(key, cell, last_by[dimension].get(key) if last_rows else None)
                                for key, cell in sorted(by[dimension].items(),
                                                        key=lambda kv: (-kv[1].institutions, kv[0]))]
    return tables
