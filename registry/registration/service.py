"""Registering and withdrawing report numbers: bits first, then rows, in one transaction."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from registry.registration.loaders import LoadCounts, chunked, make_loader
from registry.registration.pipeline import BitsPipeline, RowsPipeline
from registry.institutions.models import Institution
from registry.registration.models import Batch, NumberEvent, ReportNumber
from registry.numbers.normalize import clean_text, normalize_number
from registry.numbers.quarters import REPORTING_BEGAN, SHANGHAI, Clock, Quarter, system_clock
from registry.tlog.models import PendingEntry

# Numbers per chunk through the pipelines. A few chunks are in flight (parsed, hashed, loading),
# so this bounds the import's memory: at 10,000 a 100 k-number file already reaches the steady
# state a 1 M one keeps (at 50,000 the 1 M file's peak RSS was higher); no slower (bench/import).
CHUNK = 10_000
COUNT_CHUNK = 5_000  # numbers per query when counting those already registered


class RegistrationRefused(ValueError):
    """The registration as a whole is refused; nothing changed. ``code`` names the reason."""

    def __init__(self, code: str, message_zh: str, message_en: str):
        super().__init__(message_en)
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en


class BloomWriter(Protocol):
    def add(self, numbers: Iterable[str], *, batch_id: int) -> None: ...


class BloomIndexLike(Protocol):
    def writing(self, session: Session): ...


@dataclass
class Receipt:
    batch_id: int
    institution_id: int
    uscc: str
    institution_name: str
    quarter: str
    source: str
    file_name: str | None
    sha256: str
    accepted: int
    duplicates: int
    rejected: int
    late: bool
    created_by: str | None
    created_at: dt.datetime
    repeated: bool = False          # the same file again: the earlier receipt, nothing changed
    in_file_duplicates: int | None = None
    already_registered: int | None = None
    documents: int = 0              # of ``accepted``, those registered with a document fingerprint
    documents_given: int | None = None  # fingerprints this call handed over (None: a receipt read back)

    def to_json(self) -> dict:
        from registry.numbers.quarters import iso_local

        return {
            "batch_id": self.batch_id,
            "institution": {"uscc": self.uscc, "name": self.institution_name},
            "quarter": self.quarter,
            "source": self.source,
            "file_name": self.file_name,
            "sha256": self.sha256,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "late": self.late,
            "created_by": self.created_by,
            "created_at": iso_local(self.created_at),
            "repeated": self.repeated,
        }


@dataclass
class WithdrawResult:
    withdrawn: int = 0
    already_withdrawn: int = 0
    not_registered: list[tuple[int | None, str]] = field(default_factory=list)


@dataclass
class RestoreResult:
    restored: int = 0
    not_withdrawn: int = 0
    not_registered: list[tuple[int | None, str]] = field(default_factory=list)


@dataclass
class ChangePreview:
    """What withdrawing (or restoring) some numbers would do, nothing changed: the numbers it
    would change, those already in the wanted state, and those never registered."""

    change: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_registered: list[tuple[int | None, str]] = field(default_factory=list)


def receipt_of(batch: Batch, institution: Institution, *, repeated: bool = False) -> Receipt:
    return Receipt(
        batch_id=batch.id,
        institution_id=institution.id,
        uscc=institution.uscc,
        institution_name=institution.name,
        quarter=batch.quarter,
        source=batch.source,
        file_name=batch.file_name,
        sha256=batch.sha256,
        accepted=batch.accepted,
        duplicates=batch.duplicates,
        rejected=batch.rejected,
        late=batch.late,
        created_by=batch.created_by,
        created_at=batch.created_at,
        repeated=repeated,
        documents=batch.documents or 0,
    )


class RegistrationService:
    def __init__(self, *, sessions: sessionmaker[Session], bloom: BloomIndexLike, clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._bloom = bloom
        self._clock = clock

    def at(self, clock: Clock) -> "RegistrationService":
        """The same service (same Bloom index) judging lateness by ``clock``:
        a background import judges it when the uploader confirmed."""
        return RegistrationService(sessions=self._sessions, bloom=self._bloom, clock=clock)

    def imported_figures(self, *, since: dt.timedelta) -> tuple[int, int]:
        """Numbers registered by every batch so far, and by the batches of the last ``since``
        (for /metrics: a total that only grows, and the recent rate)."""
        start = self._clock() - since
        with self._sessions() as session:
            total, recent = session.execute(select(
                func.coalesce(func.sum(Batch.accepted), 0),
                func.coalesce(func.sum(Batch.accepted).filter(Batch.created_at >= start), 0))).one()
        return int(total), int(recent)

    def check_quarter(self, quarter: Quarter) -> bool:
        """Refuse a quarter that has not started; return whether an upload now is late."""
        today = self._clock().astimezone(SHANGHAI).date()
        if quarter < REPORTING_BEGAN:
            raise RegistrationRefused("quarter_too_early", f"{quarter} 早于 2019 年第一季度，无需报送", f"{quarter} is before 2019Q1, when reporting began")
        if not quarter.has_started(today):
            raise RegistrationRefused(
                "quarter_not_started",
                f"{quarter} 尚未开始（{quarter.first_day} 起），不能报送",
                f"quarter {quarter} has not started yet (it starts {quarter.first_day})",
            )
        return quarter.is_late(today)

    def find_repeat(self, *, institution_id: int, quarter: Quarter, sha256: str) -> Receipt | None:
        """The earlier receipt of the same file for the same institution and quarter, if any."""
        with self._sessions() as session:
            batch = session.scalar(
                select(Batch).where(
                    Batch.institution_id == institution_id, Batch.quarter == str(quarter), Batch.sha256 == sha256
                )
            )
            if batch is None:
                return None
            return receipt_of(batch, session.get(Institution, institution_id), repeated=True)

    def register(
        self,
        *,
        institution_id: int,
        quarter: Quarter,
        numbers: Iterable[str],
        sha256: str,
        source: str = "file",
        file_name: str | None = None,
        created_by: str | None = None,
        rejected: Callable[[], int] = lambda: 0,
        progress: Callable[[int], None] | None = None,
        documents: dict[str, str] | None = None,
    ) -> Receipt:
        """Register already-normalised ``numbers`` as one batch. All or nothing.

        ``documents`` holds document fingerprints (number → 64 lowercase hex): a reader's
        ``documents``, filled before it yields the numbers they belong to; each chunk takes its
        own out of it. A fingerprint is stored only with the registration its number creates.

        ``numbers`` may be a generator over millions of rows (it is consumed in chunks); any
        exception it raises rolls the whole batch back. Bits are set in the Bloom index before the
        rows commit, so a committed number is never answered "not found".
        """
        late = self.check_quarter(quarter)
        repeat = self.find_repeat(institution_id=institution_id, quarter=quarter, sha256=sha256)
        if repeat is not None:
            return repeat
        now = self._clock()
        with self._sessions() as session:
            institution = session.get(Institution, institution_id)
            if institution is None:
                raise RegistrationRefused("unknown_institution", "机构不存在", "unknown institution")
            try:
                with self._bloom.writing(session) as writer:
                    batch = Batch(
                        institution_id=institution_id,
                        quarter=str(quarter),
                        source=source,
                        file_name=file_name,
                        sha256=sha256,
                        late=late,
                        created_by=created_by,
                        created_at=now,
                    )
                    session.add(batch)
                    session.flush()
                    counts = self._load(session, writer, batch, numbers, now=now, progress=progress,
                                        documents=documents)
                    batch.accepted = counts.inserted
                    batch.duplicates = counts.in_file_duplicates + counts.already_registered
                    batch.documents = counts.documents
                    batch.rejected = rejected()
                    session.commit()
            except IntegrityError:
                # the same file registered meanwhile by a concurrent call (the batches' unique
                # key): its receipt is this one's; this transaction changed nothing
                session.rollback()
                repeat = self.find_repeat(institution_id=institution_id, quarter=quarter, sha256=sha256)
                if repeat is None:
                    raise
                return repeat
            receipt = receipt_of(batch, institution)
            receipt.in_file_duplicates = counts.in_file_duplicates
            receipt.already_registered = counts.already_registered
            receipt.documents_given = counts.documents_given
            return receipt

    def _load(self, session: Session, writer, batch: Batch, numbers: Iterable[str], *, now: dt.datetime,
              progress: Callable[[int], None] | None = None, documents: dict[str, str] | None = None) -> LoadCounts:
        """Set the bits of ``numbers`` and load their rows into ``batch``, inside the caller's
        transaction; both are finished before this returns, so the bits precede the commit."""
        loader = make_loader(session, institution_id=batch.institution_id, quarter=batch.quarter,
                             batch_id=batch.id, registered_at=now)
        try:
            bits = BitsPipeline(writer, batch.id)
            rows = RowsPipeline(loader.load)
            done = given = 0
            try:
                for chunk in chunked(numbers, CHUNK):
                    bits.submit(chunk)
                    # the chunk's own fingerprints (a sandboxed reader may hold the next record's too)
                    own = {n: documents.pop(n) for n in chunk if n in documents} if documents else None
                    given += len(own) if own else 0
                    rows.submit(chunk, own)
                    done += len(chunk)
                    if progress:
                        progress(done)
            finally:
                # bits first: their last writes go while the database thread loads the last chunks
                bits_error = _join(bits)
                rows_error = _join(rows)
            if rows_error or bits_error:
                raise rows_error or bits_error
            # advances the newest-batch marker even for a batch without numbers (a zero declaration)
            writer.add((), batch_id=batch.id)
            counts = replace(loader.counts(), documents_given=given)
            loader.finish()
        finally:
            loader.close()
        return counts

    def declare_zero(self, *, institution_id: int, quarter: Quarter, created_by: str | None = None) -> Receipt:
        """Declare that the institution issued no reports in ``quarter`` (counts as on time)."""
        digest = hashlib.sha256(f"zero:{quarter}".encode()).hexdigest()
        receipt = self.register(
            institution_id=institution_id, quarter=quarter, numbers=(), sha256=digest, source="zero",
            created_by=created_by,
        )
        return receipt

    def withdraw(
        self, *, institution_id: int, items: Iterable[tuple[int | None, str, str]], when: dt.datetime | None = None,
        actor: str | None = None, source: str = "cli",
    ) -> WithdrawResult:
        """Withdraw ``(line, number, reason)`` items of one institution in one transaction.

        Numbers the institution never registered are listed in ``not_registered`` (row errors);
        already-withdrawn ones are counted and left as they were. Each withdrawal is kept in the
        number's history (``number_events``: who, when, why, through what)."""
        changed, unchanged, not_registered = self._change(
            institution_id, items, withdraw=True, when=when or self._clock(), actor=actor, source=source)
        return WithdrawResult(withdrawn=changed, already_withdrawn=unchanged, not_registered=not_registered)

    def restore(
        self, *, institution_id: int, items: Iterable[tuple[int | None, str, str]], when: dt.datetime | None = None,
        actor: str | None = None, source: str = "cli",
    ) -> RestoreResult:
        """Undo withdrawals: ``(line, number, reason)`` items of one institution, in one
        transaction. The number answers ``found`` again; its history keeps the withdrawal and
        this restore (who, when, why). Numbers not withdrawn are counted and left as they were;
        numbers never registered are listed in ``not_registered``."""
        changed, unchanged, not_registered = self._change(
            institution_id, items, withdraw=False, when=when or self._clock(), actor=actor, source=source)
        return RestoreResult(restored=changed, not_withdrawn=unchanged, not_registered=not_registered)

    def _change(self, institution_id: int, items: Iterable[tuple[int | None, str, str]], *, withdraw: bool,
                when: dt.datetime, actor: str | None, source: str) -> tuple[int, int, list[tuple[int | None, str]]]:
        """Withdraw (or restore) each item's number in one transaction, each change kept in the
        number's history: (changed, already so, never registered by this institution)."""
        changed = unchanged = 0
        not_registered: list[tuple[int | None, str]] = []
        with self._sessions() as session:
            for line, raw, reason in items:
                number = normalize_number(raw)
                reason = clean_text(reason or "", 500) or None
                state = ReportNumber.withdrawn_at.is_(None) if withdraw else ReportNumber.withdrawn_at.is_not(None)
                values = {"withdrawn_at": when, "withdraw_reason": reason or ""} if withdraw else {
                    "withdrawn_at": None, "withdraw_reason": None}
                done = session.execute(
                    update(ReportNumber)
                    .where(ReportNumber.number == number, ReportNumber.institution_id == institution_id, state)
                    .values(**values)
                    .returning(ReportNumber.batch_id, ReportNumber.quarter, ReportNumber.salt, ReportNumber.sha256)
                    .execution_options(synchronize_session=False)
                ).first()
                if done:
                    changed += 1
                    session.add(NumberEvent(number=number, institution_id=institution_id,
                                            kind="withdrawn" if withdraw else "restored", reason=reason,
                                            actor=_actor(actor), source=source, at=when))
                    # the transparency log's entry, with the registration's salt (registry/tlog)
                    session.add(PendingEntry(action="withdraw" if withdraw else "restore", number=number,
                                             institution_id=institution_id, batch_id=done.batch_id,
                                             quarter=done.quarter, at=when, salt=done.salt, sha256=done.sha256))
                elif self._registered(session, institution_id, number):
                    unchanged += 1
                else:
                    not_registered.append((line, number))
            session.commit()
        return changed, unchanged, not_registered

    def preview_change(self, *, institution_id: int, items: Iterable[tuple[int | None, str, str]],
                       restore: bool = False) -> ChangePreview:
        """What :meth:`withdraw` (or, ``restore``, :meth:`restore`) would do with ``items``;
        nothing changes. Each number once, in the order given."""
        preview, seen = ChangePreview(), set()
        with self._sessions() as session:
            for line, raw, _reason in items:
                number = normalize_number(raw)
                if number in seen:
                    continue
                seen.add(number)
                withdrawn_at = session.execute(
                    select(ReportNumber.withdrawn_at).where(
                        ReportNumber.number == number, ReportNumber.institution_id == institution_id)
                ).first()
                if withdrawn_at is None:
                    preview.not_registered.append((line, number))
                elif (withdrawn_at[0] is not None) == restore:
                    preview.change.append(number)
                else:
                    preview.unchanged.append(number)
        return preview

    def history(self, *, number: str, institution_id: int) -> list[NumberEvent]:
        """The withdrawals and restores of a registered number, oldest first."""
        with self._sessions() as session:
            return list(session.scalars(
                select(NumberEvent).where(NumberEvent.number == normalize_number(number),
                                          NumberEvent.institution_id == institution_id)
                .order_by(NumberEvent.at, NumberEvent.id)))

    def count_registered(self, institution_id: int, numbers: Iterable[str], *, chunk: int = COUNT_CHUNK) -> int:
        """How many of ``numbers`` (distinct, normalised) this institution has registered already,
        withdrawn ones included: what an upload's check shows before it is confirmed. Bounded
        for any count: one ``number IN (…) AND institution_id = …`` query per ``chunk`` numbers
        (by primary key), never a set of them in memory."""
        total = 0
        with self._sessions() as session:
            for part in chunked(numbers, chunk):
                total += session.scalar(
                    select(func.count()).select_from(ReportNumber).where(
                        ReportNumber.number.in_(part), ReportNumber.institution_id == institution_id)) or 0
        return total

    def withdrawn_of(self, institution_id: int, numbers: Iterable[str], *, chunk: int = COUNT_CHUNK) -> dict[str, bool]:
        """Which of ``numbers`` (normalised) this institution registered: number → withdrawn or
        not; a number it never registered is absent. One query per ``chunk`` numbers."""
        found: dict[str, bool] = {}
        with self._sessions() as session:
            for part in chunked(dict.fromkeys(numbers), chunk):
                for number, withdrawn_at in session.execute(
                        select(ReportNumber.number, ReportNumber.withdrawn_at).where(
                            ReportNumber.number.in_(part), ReportNumber.institution_id == institution_id)):
                    found[number] = withdrawn_at is not None
        return found

    @staticmethod
    def _registered(session: Session, institution_id: int, number: str) -> bool:
        return session.scalar(select(ReportNumber.number).where(
            ReportNumber.number == number, ReportNumber.institution_id == institution_id)) is not None

    # --- continuous registration and the quarter overview (issue 6) ---------------------------
    def register_continuous(
        self, *, institution_id: int, quarter: Quarter, numbers: list[str], created_by: str | None = None,
        documents: dict[str, str] | None = None,
    ) -> tuple[Receipt, "ContinuousCounts"]:
        """Add already-normalised ``numbers`` to the institution's API batch of today (Shanghai
        date) for ``quarter``, creating it on the first call of the day: a lab system that
        registers each report as it is issued leaves one batch per day and quarter, not thousands.

        Bits are set before the rows commit, as in :meth:`register`. Returns the day's batch and
        the counts of this call alone. ``documents``: document fingerprints of some of the
        numbers (number → 64 lowercase hex), stored with the registrations this call creates.
        """
        late = self.check_quarter(quarter)
        now = self._clock()
        day = now.astimezone(SHANGHAI).date()
        digest = hashlib.sha256(f"api:{institution_id}:{quarter}:{day.isoformat()}".encode()).hexdigest()
        for attempt in (1, 2):
            with self._sessions() as session:
                institution = session.get(Institution, institution_id)
                if institution is None:
                    raise RegistrationRefused("unknown_institution", "机构不存在", "unknown institution")
                with self._bloom.writing(session) as writer:
                    batch = session.scalar(
                        select(Batch).where(Batch.institution_id == institution_id, Batch.quarter == str(quarter),
                                            Batch.sha256 == digest).with_for_update()
                    )
                    if batch is None:
                        batch = Batch(institution_id=institution_id, quarter=str(quarter), source="api",
                                      file_name=None, sha256=digest, late=late, created_by=created_by,
                                      created_at=now, accepted=0, duplicates=0, rejected=0, documents=0)
                        session.add(batch)
                        try:
                            session.flush()
                        except IntegrityError:  # a concurrent call created today's batch first
                            session.rollback()
                            if attempt == 2:
                                raise
                            continue
                    counts = self._load(session, writer, batch, numbers, now=now, documents=dict(documents or {}))
                    duplicates = counts.in_file_duplicates + counts.already_registered
                    batch.accepted += counts.inserted
                    batch.duplicates += duplicates
                    batch.documents = (batch.documents or 0) + counts.documents
                    session.commit()
                return receipt_of(batch, institution), ContinuousCounts(counts.inserted, duplicates)
        raise AssertionError("unreachable")

    def add_rejected(self, *, batch_id: int, rejected: int) -> None:
        """Count rows rejected before registration (bad numbers in an API call) on the batch."""
        if rejected:
            with self._sessions() as session:
                session.execute(update(Batch).where(Batch.id == batch_id).values(rejected=Batch.rejected + rejected))
                session.commit()

    def quarter_overview(self, *, institution_id: int) -> list["QuarterStatus"]:
        """Every quarter from the later of the institution's first certificate and 2019Q1 up to
        the current one, newest first: ``on_time``, ``late``, ``missing`` or ``open``, with counts."""
        from registry.institutions.models import Certificate
        from registry.numbers.quarters import quarters_between

        today = self._clock().astimezone(SHANGHAI).date()
        with self._sessions() as session:
            first_issued = session.scalar(
                select(func.min(Certificate.issued_on)).where(Certificate.institution_id == institution_id))
            rows = session.execute(
                select(Batch.quarter, Batch.late, Batch.accepted, Batch.source).where(
                    Batch.institution_id == institution_id)
            ).all()
        first = max(REPORTING_BEGAN, Quarter.containing(first_issued)) if first_issued else REPORTING_BEGAN
        current = Quarter.containing(today)
        by_quarter: dict[str, list] = {}
        for row in rows:
            by_quarter.setdefault(row.quarter, []).append(row)
        out = []
        for q in reversed(quarters_between(first, current)) if first <= current else []:
            batches = by_quarter.get(str(q), [])
            if any(not b.late for b in batches):
                state = "on_time"
            elif batches:
                state = "late"
            elif today <= q.deadline:
                state = "open"
            else:
                state = "missing"
            out.append(QuarterStatus(
                quarter=str(q), state=state, deadline=q.deadline, batches=len(batches),
                numbers=sum(b.accepted for b in batches), zero=any(b.source == "zero" for b in batches),
            ))
        return out


@dataclass(frozen=True)
class ContinuousCounts:
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class QuarterStatus:
    quarter: str
    state: str  # on_time | late | missing | open
    deadline: dt.date
    batches: int
    numbers: int
    zero: bool


def _actor(actor: str | None) -> str | None:
    return clean_text(actor, 100) or None if actor else None


def _join(stage) -> BaseException | None:
    try:
        stage.join()
    except BaseException as exc:  # reported by the caller after both stages stopped
        return exc
    return None


def sha256_of(fileobj, chunk: int = 1 << 20) -> str:
    """SHA-256 of a binary file object, read in chunks; the position is restored to the start."""
    digest = hashlib.sha256()
    fileobj.seek(0)
    while True:
        block = fileobj.read(chunk)
        if not block:
            break
        digest.update(block)
    fileobj.seek(0)
    return digest.hexdigest()
