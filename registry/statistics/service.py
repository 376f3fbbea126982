"""Annual statistics filings: open a year, file (draft → submitted), review (returned with
per-field comments → resubmitted → approved; reopened with a reason), the reviewers' queue with
completion rates, and the institutions that have not filed.

Flask-free. Jurisdiction: each filing has its own reviewer (default: last year's filing's
reviewer, else the institution's ``review_authority``); SAMR (``00``) sees every filing, any other
authority the filings whose reviewer it is. Complaints keep following ``review_authority``.
Every transition is sealed into the statistics trail (registry/statistics/trail.py) in the same
transaction as the change it records.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from registry.complaints.casework import Officer
from registry.complaints.workdays import end_of_day, local_day
from registry.institutions.models import Authority, Certificate, Institution
from registry.numbers.quarters import Clock, system_clock
from registry.statistics.checks import Finding, Thresholds, check_filing, medians, registered_counts, typed
from registry.statistics.models import Filing, ReviewGroup, StatisticsYear
from registry.statistics.reports import (MAX_SECTION_CHARS, PdfRefused, Section, clean_filename, clean_sections,
                                         sections_from, sections_to_store, store_pdf)
from registry.statistics.survey import FieldError, Schema, keep_answers, load_schema, validate, version_for_year
from registry.statistics.tables import Tables, build_tables
from registry.statistics.trail import EDITABLE, StatisticsTrail

STATUSES = ("draft", "submitted", "returned", "resubmitted", "approved", "reopened")
UNDER_REVIEW = frozenset({"submitted", "resubmitted"})
FILED = frozenset({"submitted", "returned", "resubmitted", "approved", "reopened"})
MIN_YEAR, MAX_YEAR = 2000, 2100
MAX_COMMENT = 1000
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024  # STATS_ATTACHMENT_MAX_MB
MAX_ATTACHMENTS = 5  # per section, STATS_ATTACHMENTS_PER_SECTION
NATIONAL = "00"
CNAS = "40"
# professional field → the national review group of national-certificate holders in it, until an
# admin sets the table (statistics_review_groups, the admin page /admin/statistics/review-groups)
REVIEW_GROUPS = {"vehicle": "41", "construction": "42", "building_materials": "42", "food": "43",
                 "environment": "44", "water": "44", "medical_devices": "45"}


class StatisticsRefused(ValueError):
    """The action does not fit: ``bad_year``, ``already_open``, ``not_open``, ``wrong_state``,
    ``reason_required``, ``comment_required``, ``unknown_field``, ``unknown_reviewer``, ``bad_dates``,
    ``unknown_section``, ``unknown_attachment``, ``invalid`` (then ``errors`` names each field's or
    section's problem)."""

    def __init__(self, code: str, errors: Mapping[str, FieldError] | None = None):
        super().__init__(code)
        self.code = code
        self.errors = dict(errors or {})


class NotAllowed(PermissionError):
    """The filing is outside the officer's jurisdiction."""


def check_year(year: int) -> int:
    if not isinstance(year, int) or not MIN_YEAR <= year <= MAX_YEAR:
        raise StatisticsRefused("bad_year")
    return year


@dataclass(frozen=True)
class QueueRow:
    institution_id: int
    uscc: str
    name: str
    province: str  # the authority code of its province (from the answers, else its review authority)
    city: str
    reviewer_code: str
    filing_id: int | None
    status: str  # a filing status, or "not_started"
    submitted_at: dt.datetime | None
    late: bool
    missing: bool  # not filed and the filing deadline has passed
    findings: int = 0  # how many quality checks flag it


@dataclass
class Completion:
    """Filed / due and approved / filed for one province or city."""

    key: str
    due: int = 0
    filed: int = 0
    approved: int = 0

    @property
    def filed_rate(self) -> float | None:
        return self.filed / self.due if self.due else None

    @property
    def approved_rate(self) -> float | None:
        return self.approved / self.filed if self.filed else None


@dataclass(frozen=True)
class FilingView:
    """A filing with what its pages show: its schema, answers, problems and deadlines."""

    filing: Filing
    year: StatisticsYear
    schema: Schema
    answers: dict[str, Any]
    errors: dict[str, FieldError]
    late: bool
    intact: bool
    findings: list[Finding] = field(default_factory=list)
    registered: int = 0
    events: list = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)  # the report sections that apply to the filing
    national_center: bool = False

    @property
    def report(self) -> dict[str, str]:
        return dict(self.filing.report or {})

    def attachments_of(self, section: str) -> list[dict]:
        return [a for a in self.filing.attachments or [] if a["section"] == section]

    def sections_of(self, report: str) -> list[Section]:
        return [s for s in self.sections if s.report == report]

    @property
    def editable(self) -> bool:
        return self.filing.status in EDITABLE


class StatisticsService:
    def __init__(self, *, sessions: sessionmaker[Session], trail: StatisticsTrail,
                 clock: Clock = system_clock, thresholds: Thresholds | None = None, files_dir: Path | None = None,
                 admin_log=None, max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
                 max_attachments: int = MAX_ATTACHMENTS) -> None:
        self._sessions = sessions
        self._trail = trail
        self._clock = clock
        self.thresholds = thresholds or Thresholds()
        self.files_dir = files_dir
        self._admin_log = admin_log  # the admin's calendar, sections and review groups are sealed there
        self.max_attachment_bytes = max_attachment_bytes
        self.max_attachments = max_attachments

    @property
    def trail(self) -> StatisticsTrail:
        return self._trail

    def now(self) -> dt.datetime:
        return self._clock()

    def today(self) -> dt.date:
        return local_day(self._clock())

    # --- years --------------------------------------------------------------------------------
    def open_year(self, year: int, *, actor: str, file_by: dt.date | None = None,
                  review_by: dt.date | None = None) -> StatisticsYear:
        """Open ``year``'s filing with its schema version; deadlines default to the notice's
        calendar (file by 31 January, review by the end of February of the next year)."""
        check_year(year)
        file_by = file_by or dt.date(year + 1, 1, 31)
        review_by = review_by or dt.date(year + 1, 3, 1) - dt.timedelta(days=1)
        if review_by < file_by:
            raise StatisticsRefused("bad_year")
        with self._sessions() as session:
            if session.get(StatisticsYear, year) is not None:
                raise StatisticsRefused("already_open")
            row = StatisticsYear(year=year, schema_version=version_for_year(year), file_by=file_by,
                                 review_by=review_by, opened_at=self._clock(), opened_by=actor[:100],
                                 opens_on=dt.date(year, 12, 1), check_by=dt.date(year + 1, 3, 31),
                                 sections=sections_to_store(sections_from(None)))
            session.add(row)
            session.commit()
            session.expunge(row)
            return row

    def set_deadlines(self, year: int, *, file_by: dt.date, review_by: dt.date) -> None:
        with self._sessions() as session:
            row = self._open(session, year)
            if review_by < file_by:
                raise StatisticsRefused("bad_year")
            row.file_by, row.review_by = file_by, review_by
            session.commit()

    def set_calendar(self, year: int, *, opens_on: dt.date, file_by: dt.date, review_by: dt.date,
                     check_by: dt.date, actor: str) -> None:
        """The admin's dates for ``year``: published ≤ file by ≤ review by ≤ SAMR's check; sealed in the admin log."""
        if not opens_on <= file_by <= review_by <= check_by:
            raise StatisticsRefused("bad_dates")
        with self._sessions() as session:
            row = self._open(session, year)
            row.opens_on, row.file_by, row.review_by, row.check_by = opens_on, file_by, review_by, check_by
            self._admin_record(session, actor, "stat_calendar", f"statistics:{year}", {
                "opens_on": opens_on, "file_by": file_by, "review_by": review_by, "check_by": check_by})
            session.commit()

    def sections(self, year: int) -> list[Section]:
        """The year's report sections as the admin defined them (the default set until then)."""
        with self._sessions() as session:
            return sections_from(self._open(session, year).sections)

    def set_sections(self, year: int, rows: list[Mapping[str, Any]], *, actor: str) -> list[Section]:
        """Replace the year's section list (raises :class:`~registry.statistics.reports.SectionsRefused`);
        sealed in the admin log. Texts filed under a key no longer listed stay in the filings, unshown."""
        with self._sessions() as session:
            row = self._open(session, year)
            sections = clean_sections(rows, taken=load_schema(row.schema_version).by_key)
            row.sections = sections_to_store(sections)
            self._admin_record(session, actor, "stat_sections", f"statistics:{year}",
                               {"sections": [[s.key, s.report, s.required, s.applies] for s in sections],
                                "digest": hashlib.sha256(json.dumps(row.sections, ensure_ascii=False, sort_keys=True)
                                                         .encode()).hexdigest()})
            session.commit()
            return sections

    def review_groups(self) -> dict[str, str | None]:
        """Professional field → the code of its national review group (None: none, CNAS reviews)."""
        with self._sessions() as session:
            return self._review_groups(session)

    @staticmethod
    def _review_groups(session: Session) -> dict[str, str | None]:
        groups: dict[str, str | None] = dict(REVIEW_GROUPS)
        codes = dict(session.execute(select(Authority.id, Authority.code)).all())
        for row in session.scalars(select(ReviewGroup)):
            groups[row.field] = codes.get(row.authority_id) if row.authority_id else None
        return groups

    def set_review_groups(self, mapping: Mapping[str, str | None], *, fields: list[str], actor: str) -> None:
        """The admin's table: each of ``fields`` → an authority code of a review group, or None."""
        with self._sessions() as session:
            groups = {a.code: a for a in session.scalars(select(Authority).where(Authority.kind == "review_group"))}
            if any(k not in fields for k in mapping) or any(v and v not in groups for v in mapping.values()):
                raise StatisticsRefused("unknown_reviewer")
            stored = {r.field: r for r in session.scalars(select(ReviewGroup))}
            for key in fields:
                code = mapping.get(key) or None
                row = stored.get(key) or ReviewGroup(field=key)
                row.authority_id = groups[code].id if code else None
                session.add(row)
            session.flush()
            self._admin_record(session, actor, "stat_review_groups", "statistics:review_groups",
                               {k: mapping.get(k) or None for k in fields})
            session.commit()

    def _admin_record(self, session: Session, actor: str, action: str, target: str, detail: dict) -> None:
        if self._admin_log is not None:
            self._admin_log.record(session, actor=actor, action=action, target=target,
                                   detail=json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str))

    def years(self) -> list[StatisticsYear]:
        with self._sessions() as session:
            rows = list(session.scalars(select(StatisticsYear).order_by(StatisticsYear.year.desc())))
            session.expunge_all()
            return rows

    def current_year(self) -> StatisticsYear | None:
        years = self.years()
        return years[0] if years else None

    @staticmethod
    def _open(session: Session, year: int) -> StatisticsYear:
        row = session.get(StatisticsYear, check_year(year))
        if row is None:
            raise StatisticsRefused("not_open")
        return row

    # --- who files, and to whom ---------------------------------------------------------------
    @staticmethod
    def due_institutions(session: Session, year: int) -> list[Institution]:
        """Every legal entity holding a CMA certificate valid on some day of ``year``."""
        start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
        ids = select(Certificate.institution_id).where(
            (Certificate.issued_on.is_(None)) | (Certificate.issued_on <= end),
            (Certificate.expires_on.is_(None)) | (Certificate.expires_on >= start))
        return list(session.scalars(select(Institution).where(Institution.id.in_(ids)).order_by(Institution.id)))

    @staticmethod
    def default_reviewer(session: Session, institution: Institution, year: int) -> int:
        """Last year's filing's reviewer, else the institution's review authority."""
        last = session.scalar(select(Filing.reviewer_id).where(Filing.institution_id == institution.id,
                                                                Filing.year == year - 1))
        return last or institution.review_authority_id

    @classmethod
    def reviewer_choices(cls, session: Session, institution: Institution, fields: list[str] | None = None) -> list[Authority]:
        """The authorities an institution may file to: its review authority, the issuers of its
        certificates, and — when it holds a national certificate — the review group of its
        professional fields and CNAS."""
        codes = {institution.review_authority.code}
        codes |= {c.issuing_authority.code for c in institution.certificates}
        if NATIONAL in codes:
            groups = cls._review_groups(session)
            codes |= {groups[f] for f in (fields or []) if groups.get(f)} | {CNAS}
        return list(session.scalars(select(Authority).where(Authority.code.in_(codes)).order_by(Authority.code)))

    # --- the institution's side ---------------------------------------------------------------
    def filing_for(self, institution_id: int, year: int, *, actor: str) -> FilingView:
        """The institution's filing for ``year``, created as a draft (with its certificates, sites
        and province filled in) the first time it is asked for."""
        with self._sessions() as session:
            year_row = self._open(session, year)
            filing = self._filing(session, institution_id, year_row, actor=actor)
            session.commit()
            return self._view(session, filing, year_row)

    def _filing(self, session: Session, institution_id: int, year_row: StatisticsYear, *, actor: str) -> Filing:
        filing = session.scalar(select(Filing).where(Filing.institution_id == institution_id,
                                                     Filing.year == year_row.year))
        if filing is not None:
            return filing
        inst = session.get(Institution, institution_id)
        if inst is None:
            raise LookupError(institution_id)
        province = inst.review_authority.code if inst.review_authority.kind == "provincial" else ""
        data = {"province": province,
                "certificates": "\n".join(c.number for c in inst.certificates if c.status != "revoked"),
                "sites": "\n".join(a.address for a in inst.addresses)}
        now = self._clock()
        filing = Filing(year=year_row.year, institution_id=inst.id,
                        reviewer_id=self.default_reviewer(session, inst, year_row.year), status="draft",
                        data=data, comments={}, created_at=now, updated_at=now)
        session.add(filing)
        session.flush()
        self._trail.seal(session, filing, actor=actor, action="filing_opened")
        return filing

    def save(self, institution_id: int, year: int, form: Mapping[str, Any], *, actor: str,
             reviewer_code: str | None = None, report: Mapping[str, str] | None = None) -> FilingView:
        """Keep the answers as typed (a draft may hold invalid ones), when given the reports'
        section texts (by section key) and the reviewer."""
        with self._sessions() as session:
            year_row = self._open(session, year)
            filing = self._filing(session, institution_id, year_row, actor=actor)
            if filing.status not in EDITABLE:
                raise StatisticsRefused("wrong_state")
            schema = load_schema(year_row.schema_version)
            filing.data = keep_answers(schema, form)
            if report is not None:
                keys = {s.key for s in sections_from(year_row.sections)}
                kept = {k: v for k, v in (filing.report or {}).items() if k not in keys}  # a removed section's text
                kept.update({k: str(v).replace("\r\n", "\n")[:2 * MAX_SECTION_CHARS] for k, v in report.items()
                             if k in keys and str(v or "").strip()})
                filing.report = kept or None
            if reviewer_code and reviewer_code != filing.reviewer.code:
                choices = {a.code: a for a in self.reviewer_choices(session, filing.institution,
                                                                    list(filing.data.get("fields") or []))}
                if reviewer_code not in choices:
                    raise StatisticsRefused("unknown_reviewer")
                before = filing.reviewer.code
                filing.reviewer_id = choices[reviewer_code].id
                session.flush()
                self._trail.seal(session, filing, actor=actor, action="reviewer_chosen",
                                 note=f"{before} → {reviewer_code}")
            filing.updated_at = self._clock()
            session.commit()
            return self._view(session, filing, year_row)

    def submit(self, institution_id: int, year: int, *, actor: str) -> FilingView:
        """Submit a draft (→ submitted) or a returned/reopened filing (→ resubmitted); refused
        with every field's problem while any answer is missing or invalid."""
        with self._sessions() as session:
            year_row = self._open(session, year)
            filing = self._filing(session, institution_id, year_row, actor=actor)
            if filing.status not in EDITABLE:
                raise StatisticsRefused("wrong_state")
            _values, errors = validate(load_schema(year_row.schema_version), filing.data or {})
            errors.update(self._section_errors(filing, year_row))
            if errors:
                session.commit()  # a newly created draft stays
                raise StatisticsRefused("invalid", errors)
            resubmission = filing.status != "draft"
            now = self._clock()
            filing.status = "resubmitted" if resubmission else "submitted"
            filing.submitted_at = filing.submitted_at or now
            filing.updated_at = now
            self._trail.seal(session, filing, actor=actor, action=f"filing_{filing.status}",
                             late=now > end_of_day(year_row.file_by))
            session.commit()
            return self._view(session, filing, year_row)

    # --- the reports' sections and attachments ----------------------------------------------------
    @staticmethod
    def _applies(filing: Filing, year_row: StatisticsYear) -> tuple[list[Section], bool]:
        """The sections that apply to the filing, and whether it owns a 国家质检中心 (the
        institution's flag, or its own answer)."""
        center = bool(filing.institution.national_center) or \
            str((filing.data or {}).get("national_center")) in ("1", "true", "True")
        return [s for s in sections_from(year_row.sections) if s.applies_to(center)], center

    @staticmethod
    def _lock(session: Session, filing: Filing) -> None:
        """Hold the filing's row (PostgreSQL; SQLite writes one at a time) and read it afresh."""
        session.execute(select(Filing.id).where(Filing.id == filing.id).with_for_update())
        session.refresh(filing)

    def _section_errors(self, filing: Filing, year_row: StatisticsYear) -> dict[str, FieldError]:
        errors: dict[str, FieldError] = {}
        files = {a["section"] for a in filing.attachments or []}
        for section in self._applies(filing, year_row)[0]:
            text = str((filing.report or {}).get(section.key) or "").strip()
            if len(text) > MAX_SECTION_CHARS:
                errors[section.key] = FieldError("too_long", {"max": MAX_SECTION_CHARS})
            elif section.required and not text and section.key not in files:
                errors[section.key] = FieldError("required")
        return errors

    def add_attachment(self, institution_id: int, year: int, section_key: str, stream: BinaryIO,
                       filename: str | None, *, actor: str) -> dict:
        """Check a PDF (raises :class:`~registry.statistics.reports.PdfRefused`), keep it beside
        the other uploads and list it under the section; sealed as ``attachment_added``."""
        with self._sessions() as session:
            year_row = self._open(session, year)
            filing = self._filing(session, institution_id, year_row, actor=actor)
            self._lock(session, filing)  # two uploads at once: one after the other
            if filing.status not in EDITABLE:
                raise StatisticsRefused("wrong_state")
            if section_key not in {s.key for s in self._applies(filing, year_row)[0]}:
                raise StatisticsRefused("unknown_section")
            files = list(filing.attachments or [])
            if sum(a["section"] == section_key for a in files) >= self.max_attachments:
                raise PdfRefused("too_many")
            if self.files_dir is None:
                raise RuntimeError("no files directory")
            stored, data = store_pdf(stream, self.files_dir, max_bytes=self.max_attachment_bytes)
            try:
                entry = {"id": Path(stored.path).stem, "section": section_key, "name": clean_filename(filename),
                         "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "path": stored.path,
                         "at": self._clock().isoformat(timespec="seconds"), "by": actor[:64]}
                filing.attachments = files + [entry]
                filing.updated_at = self._clock()
                self._trail.seal(session, filing, actor=actor, action="attachment_added",
                                 note=f"{section_key}: {entry['name']}", sha256=entry["sha256"])
                session.commit()
            except BaseException:
                (self.files_dir / stored.path).unlink(missing_ok=True)  # no half writes: the file goes too
                raise
            return entry

    def remove_attachment(self, institution_id: int, year: int, attachment_id: str, *, actor: str) -> None:
        """Take a file off a filing still being edited; sealed as ``attachment_removed``."""
        with self._sessions() as session:
            year_row = self._open(session, year)
            filing = self._filing(session, institution_id, year_row, actor=actor)
            self._lock(session, filing)
            if filing.status not in EDITABLE:
                raise StatisticsRefused("wrong_state")
            files = list(filing.attachments or [])
            gone = next((a for a in files if a["id"] == attachment_id), None)
            if gone is None:
                raise StatisticsRefused("unknown_attachment")
            filing.attachments = [a for a in files if a is not gone] or None
            filing.updated_at = self._clock()
            self._trail.seal(session, filing, actor=actor, action="attachment_removed",
                             note=f"{gone['section']}: {gone['name']}", sha256=gone["sha256"])
            session.commit()
        if self.files_dir is not None:
            (self.files_dir / gone["path"]).unlink(missing_ok=True)

    def attachment_file(self, filing_id: int, attachment_id: str, *, institution_id: int | None = None,
                        officer: Officer | None = None) -> tuple[Path, str]:
        """The file and its name, for the filing's own institution or an officer whose
        jurisdiction the filing is in (SAMR: all). LookupError when there is no such file (or it
        is another institution's); NotAllowed outside the officer's jurisdiction."""
        with self._sessions() as session:
            if officer is not None:
                filing = self._officers_filing(session, officer, filing_id)
            else:
                filing = session.get(Filing, filing_id)
                if filing is None or institution_id is None or filing.institution_id != institution_id:
                    raise LookupError(filing_id)
            entry = next((a for a in filing.attachments or [] if a["id"] == attachment_id), None)
        if entry is None or self.files_dir is None:
            raise LookupError(attachment_id)
        path = self.files_dir / entry["path"]
        if not path.is_file():
            raise LookupError(attachment_id)
        return path, entry["name"]

    # --- the reviewer's side ------------------------------------------------------------------
    def _officers_filing(self, session: Session, officer: Officer, filing_id: int) -> Filing:
        filing = session.get(Filing, filing_id)
        if filing is None:
            raise LookupError(filing_id)
        if not (officer.national or filing.reviewer_id == officer.authority_id):
            raise NotAllowed(filing_id)
        return filing

    def view(self, officer: Officer, filing_id: int) -> FilingView:
        with self._sessions() as session:
            filing = self._officers_filing(session, officer, filing_id)
            return self._view(session, filing, session.get(StatisticsYear, filing.year), events=True)

    def own_view(self, institution_id: int, filing_id: int) -> FilingView:
        with self._sessions() as session:
            filing = session.get(Filing, filing_id)
            if filing is None or filing.institution_id != institution_id:
                raise LookupError(filing_id)
            return self._view(session, filing, session.get(StatisticsYear, filing.year), events=True)

    def return_filing(self, officer: Officer, filing_id: int, comments: Mapping[str, str], note: str = "") -> None:
        """Back to the institution with a comment on each field that needs correcting."""
        with self._sessions() as session:
            filing = self._officers_filing(session, officer, filing_id)
            if filing.status not in UNDER_REVIEW:
                raise StatisticsRefused("wrong_state")
            schema = load_schema(session.get(StatisticsYear, filing.year).schema_version)
            kept = {k: str(v).strip()[:MAX_COMMENT] for k, v in comments.items() if str(v or "").strip()}
            sections = {s.key for s in sections_from(session.get(StatisticsYear, filing.year).sections)}
            if any(k not in schema.by_key and k not in sections for k in kept):
                raise StatisticsRefused("unknown_field")
            if not kept:
                raise StatisticsRefused("comment_required")
            filing.status, filing.comments = "returned", kept
            filing.note = (note or "").strip()[:MAX_COMMENT] or None
            filing.updated_at = self._clock()
            self._trail.seal(session, filing, actor=officer.actor, action="filing_returned", note=filing.note,
                             fields=sorted(kept))
            session.commit()

    def approve(self, officer: Officer, filing_id: int) -> None:
        with self._sessions() as session:
            filing = self._officers_filing(session, officer, filing_id)
            if filing.status not in UNDER_REVIEW:
                raise StatisticsRefused("wrong_state")
            now = self._clock()
            filing.status, filing.comments, filing.note = "approved", {}, None
            filing.approved_at, filing.updated_at = now, now
            self._trail.seal(session, filing, actor=officer.actor, action="filing_approved")
            session.commit()

    def reopen(self, officer: Officer, filing_id: int, reason: str) -> None:
        """An approved filing back to the institution for a change, with the reason."""
        reason = (reason or "").strip()[:MAX_COMMENT]
        if not reason:
            raise StatisticsRefused("reason_required")
        with self._sessions() as session:
            filing = self._officers_filing(session, officer, filing_id)
            if filing.status != "approved":
                raise StatisticsRefused("wrong_state")
            filing.status, filing.note, filing.approved_at = "reopened", reason, None
            filing.updated_at = self._clock()
            self._trail.seal(session, filing, actor=officer.actor, action="filing_reopened", note=reason)
            session.commit()

    # --- queue, completion, reminders ---------------------------------------------------------
    def queue(self, officer: Officer | None, year: int) -> list[QueueRow]:
        """Every due institution (and every filing) of ``year`` in the officer's jurisdiction (all
        of them without an officer: the CLI's reminders)."""
        with self._sessions() as session:
            year_row = self._open(session, year)
            filings = {f.institution_id: f for f in session.scalars(select(Filing).where(Filing.year == year))}
            due = {i.id: i for i in self.due_institutions(session, year)}
            for inst_id, filing in filings.items():
                due.setdefault(inst_id, filing.institution)
            last = dict(session.execute(select(Filing.institution_id, Filing.reviewer_id)
                                        .where(Filing.year == year - 1)).all())
            codes = dict(session.execute(select(Authority.id, Authority.code)).all())
            deadline = end_of_day(year_row.file_by)
            overdue = self._clock() > deadline
            national = self._medians(session, year_row)
            registered = registered_counts(session, year)
            previous = self._previous(session, year)
            rows = []
            for inst in due.values():
                filing = filings.get(inst.id)
                reviewer_id = filing.reviewer_id if filing else (last.get(inst.id) or inst.review_authority_id)
                if officer is not None and not (officer.national or reviewer_id == officer.authority_id):
                    continue
                data = filing.data if filing else {}
                status = filing.status if filing else "not_started"
                submitted = filing.submitted_at if filing else None
                province = (data or {}).get("province") or (
                    inst.review_authority.code if inst.review_authority.kind == "provincial" else "")
                found = (self._findings(session, filing, year_row, national=national, previous=previous,
                                        registered=registered.get(inst.id, 0))
                         if filing is not None and filing.status in FILED else [])
                rows.append(QueueRow(
                    institution_id=inst.id, uscc=inst.uscc, name=inst.name, province=province,
                    city=str((data or {}).get("city") or ""), reviewer_code=codes.get(reviewer_id, ""),
                    filing_id=filing.id if filing else None, status=status, submitted_at=submitted,
                    late=bool(submitted and submitted > deadline), missing=overdue and status in ("draft", "not_started"),
                    findings=len(found)))
            return rows

    @staticmethod
    def completion(rows: list[QueueRow], *, by: str = "province") -> list[Completion]:
        """Filed / due and approved / filed per province (or city) of the given queue rows."""
        groups: dict[str, Completion] = {}
        for row in rows:
            key = row.province if by == "province" else (row.city or "—")
            c = groups.setdefault(key, Completion(key))
            c.due += 1
            c.filed += row.status in FILED
            c.approved += row.status == "approved"
        return sorted(groups.values(), key=lambda c: c.key)

    def not_filed(self, year: int) -> list[QueueRow]:
        """The due institutions that have not submitted ``year``'s filing."""
        return [r for r in self.queue(None, year) if r.status in ("draft", "not_started")]

    def tables(self, year: int) -> Tables:
        """The bulletin's tables of ``year`` (approved filings only), with last year's for the change."""
        with self._sessions() as session:
            self._open(session, year)
            return build_tables(session, year)

    # --- quality checks ---------------------------------------------------------------------------
    def _medians(self, session: Session, year_row: StatisticsYear) -> dict[str, float]:
        rows = [typed(f, year_row.schema_version) for f in session.scalars(
            select(Filing).where(Filing.year == year_row.year, Filing.status.in_(FILED)))]
        return medians(rows, min_peers=self.thresholds.min_peers)

    @staticmethod
    def _previous(session: Session, year: int) -> dict[int, dict[str, Any]]:
        """Last year's filed answers per institution (for year-on-year changes)."""
        last = session.get(StatisticsYear, year - 1)
        if last is None:
            return {}
        return {f.institution_id: typed(f, last.schema_version) for f in session.scalars(
            select(Filing).where(Filing.year == year - 1, Filing.status.in_(FILED)))}

    def _findings(self, session: Session, filing: Filing, year_row: StatisticsYear, *,
                  national: dict[str, float] | None = None, previous: dict[int, dict] | None = None,
                  registered: int | None = None) -> list[Finding]:
        if national is None:
            national = self._medians(session, year_row)
        if previous is None:
            previous = self._previous(session, year_row.year)
        if registered is None:
            registered = registered_counts(session, year_row.year, [filing.institution_id]).get(filing.institution_id, 0)
        certificates = list(session.scalars(select(Certificate).where(Certificate.institution_id == filing.institution_id)))
        late = bool(filing.submitted_at and filing.submitted_at > end_of_day(year_row.file_by))
        return check_filing(values=typed(filing, year_row.schema_version), registered=registered,
                            last_year=previous.get(filing.institution_id), national=national,
                            certificates=certificates, year=year_row.year, late=late, thresholds=self.thresholds)

    # --- helpers --------------------------------------------------------------------------------
    def _view(self, session: Session, filing: Filing, year_row: StatisticsYear, *, events: bool = False) -> FilingView:
        schema = load_schema(year_row.schema_version)
        _values, errors = validate(schema, filing.data or {})
        late = bool(filing.submitted_at and filing.submitted_at > end_of_day(year_row.file_by))
        trail = self._trail.events(session, filing.id) if events else []
        intact = self._trail.intact_for(session, filing)
        registered = registered_counts(session, year_row.year, [filing.institution_id]).get(filing.institution_id, 0)
        findings = self._findings(session, filing, year_row, registered=registered) if filing.status in FILED else []
        sections, center = self._applies(filing, year_row)
        filing.reviewer, filing.institution  # noqa: B018 - loaded before the session closes
        session.expunge_all()
        return FilingView(filing=filing, year=year_row, schema=schema, answers=dict(filing.data or {}),
                          errors=errors, late=late, intact=intact, findings=findings, registered=registered,
                          events=trail, sections=sections, national_center=center)
