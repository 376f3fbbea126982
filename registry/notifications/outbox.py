"""The e-mail outbox: messages rendered when they arise, sent later by a background job.

A message is written in the transaction of whatever caused it (or its own), then a job carrying
only its id delivers it. Delivery claims the row with a guarded UPDATE (pending → sending, only
if still pending and due), so two workers, a job queued twice, or a worker restarted while the
first still runs never send it twice; a message claimed by a sender that died before it could
record the result is not sent again (it may have gone out): after CLAIM_TIMEOUT it is marked
failed for an admin to see. A failed attempt goes back to pending with an exponential backoff
(1, 2, 4 … minutes, at most MAX_BACKOFF) until MAX_ATTEMPTS.

A message carrying a secret (a tracking code, a reset or verification link) keeps its bodies only
encrypted (``sealed``) and loses them once sent or given up.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from registry.infra.sealing import Sealer, SealError
from registry.notifications.mailer import build_message
from registry.notifications.models import OutboxMessage

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
MAX_BACKOFF = dt.timedelta(hours=2)
CLAIM_TIMEOUT = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Rendered:
    """One message as it will be sent: subject, plain text and HTML (each Chinese, then English)."""

    subject: str
    text: str
    html: str
    unsubscribe: str | None = None


@dataclass(frozen=True)
class OutboxPage:
    messages: list[OutboxMessage]
    page: int
    pages: int
    total: int


def mask_address(address: str) -> str:
    """``zhang.san@lab.example.cn`` → ``z***@l***.cn``: enough to tell messages apart, not to write."""
    local, _, domain = (address or "").partition("@")
    if not domain:
        return "***"
    host, _, tld = domain.rpartition(".")
    return f"{local[:1]}***@{(host or tld)[:1]}***.{tld if host else ''}".rstrip(".")


def backoff(attempts: int) -> dt.timedelta:
    return min(dt.timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


class Outbox:
    def __init__(self, *, sessions: sessionmaker[Session], sealer: Sealer, mailer, sender: str, clock) -> None:
        self._sessions = sessions
        self._sealer = sealer
        self._mailer = mailer
        self._sender = sender
        self._clock = clock

    # --- writing -------------------------------------------------------------------------------
    def add(self, session: Session, *, kind: str, to: str, message: Rendered, account_id: int | None = None,
            secret: bool = False, dedupe: str | None = None) -> OutboxMessage | None:
        """Queue one message in ``session``'s transaction (the caller commits); None when a
        message with the same ``dedupe`` key was queued before."""
        if dedupe is not None and session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe == dedupe)):
            return None
        now = self._clock()
        row = OutboxMessage(kind=kind, account_id=account_id, recipient=mask_address(to) if secret else to,
                            subject=message.subject[:300], secret=secret, status="pending", attempts=0,
                            next_attempt_at=now, created_at=now, dedupe=dedupe)
        bodies = {"text": message.text, "html": message.html, "unsubscribe": message.unsubscribe, "to": to}
        if secret:
            row.sealed = self._sealer.seal(json.dumps(bodies, ensure_ascii=False))
        else:
            row.body_text, row.body_html = message.text, message.html
            row.sealed = json.dumps({"unsubscribe": message.unsubscribe}) if message.unsubscribe else None
        session.add(row)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:  # the same key queued at the same moment by another process
            return None
        return row

    # --- delivering ----------------------------------------------------------------------------
    def deliver(self, message_id: int) -> bool:
        """Send one message if it is pending and due; True when this call sent it."""
        now = self._clock()
        with self._sessions() as session:
            claimed = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.status == "pending",
                       OutboxMessage.next_attempt_at <= now)
                .values(status="sending", claimed_at=now, attempts=OutboxMessage.attempts + 1)
                .execution_options(synchronize_session=False)).rowcount
            session.commit()
            if claimed != 1:
                return False
            row = session.get(OutboxMessage, message_id)
            try:
                bodies = self._bodies(row)
                email = build_message(sender=self._sender, to=bodies.pop("to", None) or row.recipient,
                                      subject=row.subject, **bodies)
                self._mailer.send(email)
            except SealError as exc:
                self._give_up(session, row, str(exc))
                return False
            except Exception as exc:  # noqa: BLE001 - any SMTP or network failure: try again later
                self._retry(session, row, exc)
                return False
            row.status, row.sent_at, row.last_error = "sent", self._clock(), None
            if row.secret:
                row.sealed = None  # the secret is gone from here once it is on its way
            session.commit()
            return True

    def _bodies(self, row: OutboxMessage) -> dict:
        if row.secret:
            bodies = json.loads(self._sealer.open(row.sealed)) if row.sealed else None
            if bodies is None:
                raise SealError("the message's bodies were purged")
            return bodies
        extra = json.loads(row.sealed) if row.sealed else {}
        return {"text": row.body_text or "", "html": row.body_html, "unsubscribe": extra.get("unsubscribe"),
                "to": row.recipient}

    def _retry(self, session: Session, row: OutboxMessage, exc: Exception) -> None:
        row.last_error = f"{exc.__class__.__name__}: {exc}"[:200]
        if row.attempts >= MAX_ATTEMPTS:
            self._give_up(session, row, row.last_error)
            return
        row.status = "pending"
        row.next_attempt_at = self._clock() + backoff(row.attempts)
        session.commit()
        log.warning("e-mail %s not sent (attempt %s): %s; trying again at %s", row.id, row.attempts,
                    row.last_error, row.next_attempt_at.isoformat())

    @staticmethod
    def _give_up(session: Session, row: OutboxMessage, reason: str) -> None:
        row.status, row.last_error = "failed", reason[:200]
        if row.secret:
            row.sealed = None
        session.commit()
        log.error("e-mail %s given up after %s attempts: %s", row.id, row.attempts, reason)

    def due(self, limit: int = 100) -> list[int]:
        """Ids of pending messages whose time has come (new ones and retries), oldest first."""
        with self._sessions() as session:
            return list(session.scalars(select(OutboxMessage.id).where(
                OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= self._clock())
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit)))

    def deliver_due(self, limit: int = 100) -> int:
        """Send what is due (the periodic sweep: retries, and messages whose job was lost)."""
        self.abandon_stale()
        return sum(self.deliver(message_id) for message_id in self.due(limit))

    def abandon_stale(self) -> int:
        """Messages claimed longer than CLAIM_TIMEOUT ago by a sender that never recorded the
        result (it died): failed, never sent again (they may have gone out), secrets purged."""
        cutoff = self._clock() - CLAIM_TIMEOUT
        with self._sessions() as session:
            count = session.execute(
                update(OutboxMessage).where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < cutoff)
                .values(status="failed", last_error="interrupted while sending: may or may not have been sent",
                        sealed=None).execution_options(synchronize_session=False)).rowcount
            session.commit()
            return count

    def forget_done(self, *, days: int, batch: int = 5_000) -> int:
        """Delete sent and failed messages older than ``days`` days — their recipients and bodies
        are personal data (the retention chore), in bounded batches. The number deleted."""
        cutoff = self._clock() - dt.timedelta(days=days)
        gone = 0
        while True:
            with self._sessions() as session:
                ids = select(OutboxMessage.id).where(OutboxMessage.status.in_(("sent", "failed")),
                                                     OutboxMessage.created_at < cutoff).limit(batch)
                n = session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids.scalar_subquery()))
                                    .execution_options(synchronize_session=False)).rowcount
                session.commit()
            gone += n
            if n < batch:
                return gone

    # --- reading -------------------------------------------------------------------------------
    def page(self, page: int = 1, per_page: int = 50) -> OutboxPage:
        """Newest first, for the admins' outbox page (which shows recipients masked, never bodies)."""
        with self._sessions() as session:
            total = int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)
            pages = max(1, -(-total // per_page))
            page = min(max(1, page), pages)
            rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())
                                        .offset((page - 1) * per_page).limit(per_page)))
            return OutboxPage(rows, page, pages, total)

    def readable(self, message_id: int) -> Rendered | None:
        """A message's bodies, opened (for tests and the operator's shell; never shown on a page)."""
        with self._sessions() as session:
            row = session.get(OutboxMessage, message_id)
            if row is None:
                return None
            try:
                bodies = self._bodies(row)
            except SealError:
                return None
            return Rendered(subject=row.subject, text=bodies["text"], html=bodies.get("html") or "",
                            unsubscribe=bodies.get("unsubscribe"))
