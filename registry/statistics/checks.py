"""Quality checks only this registry can make of a filing: the reports it declares against the
report numbers it registered for the year's four quarters, year-on-year jumps, ratios far from
the national medians, certificates that are not the entity's or had expired, and a late or
missing filing. Each finding names its rule and carries its figures; the thresholds are settings
(``STATS_*``, docs/contract.md "Settings").
"""
from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.institutions.models import Certificate
from registry.registration.models import ReportNumber
from registry.statistics.models import Filing
from registry.statistics.survey import load_schema, validate

YOY_FIELDS = ("revenue", "staff", "instruments", "reports")
RATIOS = {  # name → (numerator, denominator)
    "revenue_per_staff": ("revenue", "staff"),
    "reports_per_staff": ("reports", "staff"),
    "revenue_per_report": ("revenue", "reports"),
}
RULES = ("numbers_missing", "numbers_undeclared", "yoy_change", "ratio_far", "certificate_not_own",
         "certificate_expired", "late_filing", "missing_filing")


@dataclass(frozen=True)
class Thresholds:
    """``reports_tolerance``: the share by which registered numbers may differ from declared
    reports; ``yoy``: the year-on-year change that is flagged (0.5 = ±50 %); ``median_factor``: a
    ratio this many times above or below the national median is flagged; ``min_peers``: filings
    needed before a median means anything."""

    reports_tolerance: float = 0.05
    yoy: float = 0.5
    median_factor: float = 5.0
    min_peers: int = 5


@dataclass(frozen=True)
class Finding:
    rule: str
    figures: dict[str, Any] = field(default_factory=dict)


def quarters_of(year: int) -> list[str]:
    return [f"{year}Q{q}" for q in range(1, 5)]


def registered_counts(session: Session, year: int, institution_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Report numbers each institution registered (and did not withdraw) for ``year``'s quarters."""
    stmt = (select(ReportNumber.institution_id, func.count())
            .where(ReportNumber.quarter.in_(quarters_of(year)), ReportNumber.withdrawn_at.is_(None))
            .group_by(ReportNumber.institution_id))
    if institution_ids is not None:
        stmt = stmt.where(ReportNumber.institution_id.in_(list(institution_ids)))
    return {int(i): int(n) for i, n in session.execute(stmt)}


def typed(filing: Filing, schema_version: str) -> dict[str, Any]:
    """The filing's valid answers as typed values (invalid or missing ones left out)."""
    values, _errors = validate(load_schema(schema_version), filing.data or {})
    return values


def medians(rows: Iterable[dict[str, Any]], *, min_peers: int) -> dict[str, float]:
    """The national median of each ratio over the given filings' answers (only with enough peers)."""
    found: dict[str, float] = {}
    for name, (num, den) in RATIOS.items():
        values = [r[num] / r[den] for r in rows if r.get(num) is not None and r.get(den)]
        if len(values) >= min_peers:
            found[name] = statistics.median(values)
    return found


def check_filing(*, values: dict[str, Any], registered: int, last_year: dict[str, Any] | None,
                 national: dict[str, float], certificates: list[Certificate], year: int, late: bool,
                 thresholds: Thresholds) -> list[Finding]:
    """Every finding of one filing (its typed answers) against the registry."""
    found: list[Finding] = []
    declared = values.get("reports")
    if declared is not None:
        allowed = declared * thresholds.reports_tolerance
        figures = {"declared": declared, "registered": registered, "difference": registered - declared,
                   "tolerance": thresholds.reports_tolerance}
        if declared - registered > allowed:
            found.append(Finding("numbers_missing", figures))
        elif registered - declared > allowed:
            found.append(Finding("numbers_undeclared", figures))
    if last_year:
        for key in YOY_FIELDS:
            now, before = values.get(key), last_year.get(key)
            if now is None or not before:
                continue
            change = (now - before) / before
            if abs(change) > thresholds.yoy:
                found.append(Finding("yoy_change", {"field": key, "this_year": now, "last_year": before,
                                                    "change": round(change, 3), "threshold": thresholds.yoy}))
    for name, (num, den) in RATIOS.items():
        median = national.get(name)
        if not median or values.get(num) is None or not values.get(den):
            continue
        ratio = values[num] / values[den]
        if ratio > median * thresholds.median_factor or ratio < median / thresholds.median_factor:
            found.append(Finding("ratio_far", {"ratio": name, "value": round(ratio, 3), "median": round(median, 3),
                                               "factor": thresholds.median_factor}))
    own = {c.number: c for c in certificates}
    start = dt.date(year, 1, 1)
    for number in values.get("certificates") or []:
        cert = own.get(number)
        if cert is None:
            found.append(Finding("certificate_not_own", {"certificate": number}))
        elif cert.status == "revoked" or (cert.expires_on is not None and cert.expires_on < start):
            found.append(Finding("certificate_expired", {"certificate": number, "status": cert.status,
                                                         "expires_on": cert.expires_on.isoformat() if cert.expires_on else ""}))
    if late:
        found.append(Finding("late_filing"))
    return found
