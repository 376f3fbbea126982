"""The filings' sealed trail: every transition of a filing (opened, submitted, returned,
resubmitted, approved, reopened, reviewer changed) is one ``statistics_events`` entry in an HMAC
chain built by the admin log's machinery (:class:`registry.accounts.adminlog.AdminLog`, itself a
sibling of the complaint audit chain): the same key ring, its own counter row, subkey and head.

Each entry's sealed ``detail`` carries the filing's state after it (:func:`filing_state`, a digest
of its status, reviewer, answers and comments, and of its reports' texts and attachments), so a
filing row changed around the trail no longer matches its newest entry
(:meth:`StatisticsTrail.intact_for`). While the institution may edit the filing (a draft, a
returned or reopened filing) its answers and texts change between transitions by design (saved as
it types), so the check then compares what the institution cannot change — status, reviewer, the
reviewer's comments and note — sealed beside the whole state as ``locked``.
"""
from __future__ import annotations

import hashlib
import hmac
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.accounts.adminlog import AdminLog, GENESIS
from registry.statistics.models import Filing, FilingEvent

REDIS_HEAD_KEY = "rnr:statslog:head"
#: the statuses in which the institution edits its filing
EDITABLE = frozenset({"draft", "returned", "reopened"})


def filing_state(filing: Filing) -> str:
    """The digest of what a transition seals of its filing."""
    parts = [filing.status, filing.reviewer_id, filing.data or {}, filing.comments or {}, filing.note or ""]
    if filing.report or filing.attachments:  # the reports' texts and files (a filing without them seals as before)
        parts += [filing.report or {}, [[a["id"], a["section"], a["sha256"]] for a in filing.attachments or []]]
    payload = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def locked_state(filing: Filing) -> str:
    """The digest of what nobody but a transition changes while the institution edits its filing."""
    payload = json.dumps([filing.status, filing.reviewer_id, filing.comments or {}, filing.note or ""],
                         ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class StatisticsTrail(AdminLog):
    model = FilingEvent
    counter = "statistics_log_seq"
    label = b"statistics-log:v1"
    head_info = "statistics_log_head"

    def seal(self, session: Session, filing: Filing, *, actor: str, action: str, note: str | None = None,
             **extra) -> FilingEvent:
        """Seal one transition of ``filing`` (flushed, so its id is known) into the session's transaction."""
        detail = json.dumps({"status": filing.status, "note": note or "", "state": filing_state(filing),
                             "locked": locked_state(filing), **extra},
                            ensure_ascii=False, sort_keys=True)
        return self.record(session, actor=actor, action=action, target=f"filing:{filing.id}", detail=detail,
                           filing_id=filing.id)

    def events(self, session: Session, filing_id: int) -> list[FilingEvent]:
        return list(session.scalars(select(FilingEvent).where(FilingEvent.filing_id == filing_id)
                                    .order_by(FilingEvent.seq)))

    def intact_for(self, session: Session, filing: Filing) -> bool:
        """Every entry of the filing holds its seal, and the row is what its newest entry sealed."""
        events = self.events(session, filing.id)
        if not events:
            return False
        prevs = dict(session.execute(select(FilingEvent.seq, FilingEvent.mac)
                                     .where(FilingEvent.seq.in_([e.seq - 1 for e in events]))).all())
        for e in events:
            prev = GENESIS if e.seq == 1 else prevs.get(e.seq - 1)
            if prev is None or self.check_seal(e, prev) != "ok":
                return False
        detail = json.loads(events[-1].detail or "{}")
        if filing.status in EDITABLE and "locked" in detail:  # being edited: its answers move on
            return hmac.compare_digest(detail["locked"], locked_state(filing))
        return hmac.compare_digest(detail.get("state", ""), filing_state(filing))
