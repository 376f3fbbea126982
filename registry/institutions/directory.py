"""The institution directory: an in-process map of every institution
(docs/architecture.md, "The institution directory").

It resolves the free-text ``institution`` of a query (USCC, certificate number, current or
former name) and fills verdicts without SQL. It reloads when the ``directory_version`` counter
in ``registry_state`` changes; every change to institutions or certificates bumps it in the same
transaction (:func:`bump_directory_version`).
"""
from __future__ import annotations

import datetime as dt
import difflib
import threading
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from registry.compliance.models import AbnormalMark, Sanction
from registry.infra.base import RegistryState
from registry.institutions.models import Certificate, Institution
from registry.numbers.normalize import InvalidValue, name_key, normalize_certificate_number, normalize_uscc

DIRECTORY_VERSION = "directory_version"


@dataclass(frozen=True)
class CertificateInfo:
    number: str
    status: str
    issuing_authority: str
    expires_on: dt.date | None

    def to_json(self) -> dict:
        return {
            "number": self.number,
            "status": self.status,
            "issuing_authority": self.issuing_authority,
            "expires_on": self.expires_on.isoformat() if self.expires_on else None,
        }


@dataclass(frozen=True)
class AbnormalListing:
    """The measure in force on an abnormal institution: when it was listed and by whom, for the
    public verdict (the officer's reason stays in the regulators' history)."""

    since: dt.datetime | None
    authority_name: str | None = None
    authority_name_en: str | None = None


@dataclass(frozen=True)
class PublicMeasure:
    """A confirmed public measure (通报, abnormal listing) for the public verdict page, with its
    dates (registry/compliance/sanctions.py); never in the verify JSON."""

    measure: str
    decided_at: dt.datetime | None
    lifted_at: dt.datetime | None = None


@dataclass(frozen=True)
class InstitutionInfo:
    id: int
    uscc: str
    name: str
    abnormal: bool
    review_authority_code: str
    review_authority_name: str
    certificates: tuple[CertificateInfo, ...]
    former_names: tuple[str, ...] = ()
    listing: AbnormalListing | None = None  # set when abnormal (its date unknown if never marked)
    measures: tuple[PublicMeasure, ...] = ()  # confirmed public measures, newest first

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "uscc": self.uscc,
            "abnormal": self.abnormal,
            "certificates": [c.to_json() for c in self.certificates],
        }


@dataclass
class _Snapshot:
    version: int = -1
    by_id: dict[int, InstitutionInfo] = field(default_factory=dict)
    by_uscc: dict[str, int] = field(default_factory=dict)
    by_certificate: dict[str, int] = field(default_factory=dict)
    by_name_key: dict[str, list[int]] = field(default_factory=dict)
    # what suggestions search, per institution, computed once at load (not per keystroke)
    search: list[tuple[tuple[str, ...], InstitutionInfo]] = field(default_factory=list)
    # for near names: each name key (current and former) and its character pairs → institutions
    name_keys: dict[int, tuple[str, ...]] = field(default_factory=dict)
    pairs: dict[str, list[int]] = field(default_factory=dict)


def read_version(session: Session) -> int:
    value = session.scalar(select(RegistryState.value).where(RegistryState.key == DIRECTORY_VERSION))
    return int(value or 0)


def bump_directory_version(session: Session) -> None:
    """Tell every worker's directory to reload; call inside the transaction that changed data."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(RegistryState).values(key=DIRECTORY_VERSION, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": RegistryState.value + 1})
    session.execute(stmt)


# Bounds on the work of one near-name lookup (:meth:`InstitutionDirectory.near`).
MAX_NEAR_TEXT = 60
MAX_PAIR_POSTINGS = 400
MAX_NEAR_CANDIDATES = 40
NEAR_CUTOFF = 0.6


def _pairs(key: str) -> list[str]:
    return [key[i:i + 2] for i in range(len(key) - 1)]


def _closeness(typed: str, name: str) -> float:
    """How alike two name keys are (0..1). One inside the other — the name as printed without the
    registered suffix, or with a department added — counts as close when the shorter is a real
    name (four characters or more)."""
    shorter, longer = sorted((typed, name), key=len)
    if len(shorter) >= 4 and shorter in longer:
        return max(0.8, difflib.SequenceMatcher(None, typed, name).ratio())
    return difflib.SequenceMatcher(None, typed, name, autojunk=False).ratio()


class InstitutionDirectory:
    """Thread-safe, swap-on-reload map; lookups never touch the database."""

    def __init__(self) -> None:
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        return self._snapshot.version

    @property
    def loaded(self) -> bool:
        return self._snapshot.version >= 0

    def refresh(self, session: Session, *, force: bool = False) -> bool:
        """Reload if the stored version changed; returns whether it reloaded."""
        version = read_version(session)
        if not force and version == self._snapshot.version:
            return False
        with self._lock:
            self._snapshot = self._load(session, version)
        return True

    @staticmethod
    def _load(session: Session, version: int) -> _Snapshot:
        snap = _Snapshot(version=version)
        institutions = session.scalars(
            select(Institution).options(
                selectinload(Institution.certificates).joinedload(Certificate.issuing_authority),
                selectinload(Institution.names),
            )
        ).all()
        listings = {}
        marks = session.scalars(
            select(AbnormalMark).join(Institution, Institution.id == AbnormalMark.institution_id)
            .where(Institution.abnormal.is_(True), AbnormalMark.abnormal.is_(True)).order_by(AbnormalMark.id)
        )
        for mark in marks:  # the latest listing of each institution wins
            authority = mark.authority
            listings[mark.institution_id] = AbnormalListing(
                mark.at, authority.name if authority else None, (authority.name_en or None) if authority else None)
        measures: dict[int, list[PublicMeasure]] = {}
        for m in session.scalars(select(Sanction).where(Sanction.measure.in_(("public_notice", "abnormal")),
                                                        Sanction.status.in_(("confirmed", "lifted")))
                                 .order_by(Sanction.decided_at.desc())):
            measures.setdefault(m.institution_id, []).append(PublicMeasure(m.measure, m.decided_at, m.lifted_at))
        for inst in institutions:
            certs = tuple(
                CertificateInfo(c.number, c.status, c.issuing_authority.name, c.expires_on) for c in inst.certificates
            )
            former = tuple(n.name for n in inst.names if n.valid_to is not None and n.name != inst.name)
            info = InstitutionInfo(
                id=inst.id,
                uscc=inst.uscc,
                name=inst.name,
                abnormal=inst.abnormal,
                review_authority_code=inst.review_authority.code,
                review_authority_name=inst.review_authority.name,
                certificates=certs,
                former_names=former,
                listing=listings.get(inst.id, AbnormalListing(None)) if inst.abnormal else None,
                measures=tuple(measures.get(inst.id, ())),
            )
            snap.by_id[inst.id] = info
            hay = [name_key(info.name).upper(), info.uscc] + [name_key(n).upper() for n in former]
            snap.search.append((tuple(hay + [c.number for c in certs]), info))
            names = tuple(dict.fromkeys([hay[0]] + hay[2:]))
            snap.name_keys[inst.id] = names
            for pair in {p for n in names for p in _pairs(n)}:
                snap.pairs.setdefault(pair, []).append(inst.id)
            snap.by_uscc[inst.uscc] = inst.id
            for c in certs:
                snap.by_certificate[c.number] = inst.id
            keys = {inst.name_key} | {n.name_key for n in inst.names}
            for key in keys:
                ids = snap.by_name_key.setdefault(key, [])
                # the current holder of a name wins over a former holder
                if key == inst.name_key:
                    ids.insert(0, inst.id)
                else:
                    ids.append(inst.id)
        return snap

    def get(self, institution_id: int) -> InstitutionInfo | None:
        return self._snapshot.by_id.get(institution_id)

    def by_uscc(self, uscc: str) -> InstitutionInfo | None:
        snap = self._snapshot
        iid = snap.by_uscc.get((uscc or "").strip().upper())
        return snap.by_id.get(iid) if iid is not None else None

    def resolve(self, text: str | None) -> InstitutionInfo | None:
        """USCC (any case), certificate number, or current/former name; None when nothing matches."""
        if not text or not text.strip():
            return None
        snap = self._snapshot
        try:
            iid = snap.by_uscc.get(normalize_uscc(text))
            if iid is not None:
                return snap.by_id[iid]
        except InvalidValue:
            pass
        try:
            iid = snap.by_certificate.get(normalize_certificate_number(text))
            if iid is not None:
                return snap.by_id[iid]
        except InvalidValue:
            pass
        ids = snap.by_name_key.get(name_key(text))
        return snap.by_id[ids[0]] if ids else None

    def suggest(self, text: str, limit: int = 8) -> list[InstitutionInfo]:
        """Institutions whose name, former name, USCC or certificate starts with or contains ``text``."""
        key = name_key(text).upper()
        if len(key) < 2:
            return []
        snap = self._snapshot
        prefix, contains = [], []
        for hay, info in snap.search:
            if any(h.startswith(key) for h in hay):
                prefix.append(info)
            elif any(key in h for h in hay):
                contains.append(info)
            if len(prefix) >= limit:
                break
        return (prefix + contains)[:limit]

    def near(self, text: str | None, limit: int = 5) -> list[InstitutionInfo]:
        """Institutions whose current or former name is close to ``text``: "did you mean …" for a
        name that did not resolve (a suffix missing or added, a character wrong). In-process, and
        bounded whatever the directory's size: candidates come from the character pairs they share
        with ``text``, pairs common to very many names (检测, 有限) are passed over, and only the
        best-sharing few are compared closely."""
        key = name_key(text or "").upper()[:MAX_NEAR_TEXT]
        if len(key) < 2:
            return []
        snap = self._snapshot
        shared: dict[int, int] = {}
        for pair in set(_pairs(key)):
            ids = snap.pairs.get(pair, ())
            if len(ids) > MAX_PAIR_POSTINGS:
                continue
            for iid in ids:
                shared[iid] = shared.get(iid, 0) + 1
        candidates = sorted(shared, key=lambda iid: (-shared[iid], iid))[:MAX_NEAR_CANDIDATES]
        scored = []
        for iid in candidates:
            score = max(_closeness(key, name) for name in snap.name_keys[iid])
            if score >= NEAR_CUTOFF:
                scored.append((-score, snap.by_id[iid].name, iid))
        return [snap.by_id[iid] for _, _, iid in sorted(scored)[:limit]]

    def __len__(self) -> int:
        return len(self._snapshot.by_id)


__all__ = [
    "AbnormalListing",
    "CertificateInfo",
    "InstitutionInfo",
    "InstitutionDirectory",
    "bump_directory_version",
    "read_version",
]
