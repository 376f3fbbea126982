"""Onboarding institutions: a request on a public page, proved by a CMA certificate on record for
the USCC and a verified address, decided by an officer of the institution's reviewing authority
(approve or refuse, always with a reason, sealed in the admin log); or accounts created in bulk
from a bureau's certificate list. Either way the new account's owner sets the password through a
single-use link sent to the address (the account starts with a password nobody knows)."""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from registry.accounts.accounts import (RESET_LIFETIME, VERIFY_LIFETIME, AccountError, AccountService,
                                       normalize_email, _sha256)
from registry.accounts.models import Account, AccountRequest, PasswordReset
from registry.institutions.models import Certificate, Institution
from registry.numbers.normalize import InvalidValue, normalize_uscc
from registry.numbers.quarters import Clock

OPEN_PER_INSTITUTION = 3  # requests waiting (unverified or pending) for one institution
MAX_REASON = 500


@dataclass(frozen=True)
class Created:
    """An account made by a decision or a bulk run, and the link (token) for its owner."""

    account: Account
    token: str


@dataclass(frozen=True)
class BulkResult:
    created: list[Created]
    skipped: list[tuple[int, str, str, str]]  # (line, certificate, reason zh, reason en)


class OnboardingService:
    def __init__(self, *, sessions: sessionmaker[Session], accounts: AccountService, clock: Clock,
                 admin_log=None) -> None:
        self._sessions = sessions
        self._accounts = accounts
        self._clock = clock
        self._log = admin_log

    def request(self, *, uscc: str, certificate: str, username: str, email: str) -> tuple[AccountRequest, str]:
        """Record a request; returns it with the token of the verification link for ``email``."""
        try:
            code = normalize_uscc(uscc or "")
        except InvalidValue:
            raise AccountError("bad_uscc", "统一社会信用代码无效", "this is not a valid unified social credit code") from None
        number = "".join((certificate or "").split()).upper()
        address = normalize_email(email)
        name = (username or "").strip()
        now = self._clock()
        with self._sessions() as session:
            institution = session.scalar(select(Institution).where(Institution.uscc == code))
            cert = session.scalar(select(Certificate).where(Certificate.number == number)) if number else None
            if institution is None or cert is None or cert.institution_id != institution.id or cert.status != "valid":
                raise AccountError("no_certificate", "登记的资质认定证书中没有该统一社会信用代码与证书编号的组合（或证书已失效）",
                                   "no valid CMA certificate with this number is on record for this unified social credit code")
            if session.scalar(select(Account.id).where(Account.username == name)) is not None:
                raise AccountError("username_taken", "用户名已被使用", f"the username {name} is taken")
            waiting = session.scalar(select(func.count()).select_from(AccountRequest).where(
                AccountRequest.institution_id == institution.id, AccountRequest.status.in_(("unverified", "pending")),
                AccountRequest.expires_at > now))
            if waiting >= OPEN_PER_INSTITUTION:
                raise AccountError("too_many_requests", "该机构已有多个待处理的申请，请等待审核",
                                   "this institution already has several requests waiting for review")
            self._accounts.check_username(name)
            token = secrets.token_urlsafe(32)
            row = AccountRequest(institution_id=institution.id, certificate_number=number, username=name, email=address,
                                 token_hash=_sha256(token), status="unverified", created_at=now,
                                 expires_at=now + VERIFY_LIFETIME)
            session.add(row)
            session.commit()
            session.refresh(row)  # with its institution, for the caller's message
            return row, token

    def verify(self, token: str) -> AccountRequest | None:
        """The link in the request's e-mail: the request goes to the reviewing authority."""
        if not token or len(token) > 200:
            return None
        now = self._clock()
        with self._sessions() as session:
            row = session.scalar(select(AccountRequest).where(AccountRequest.token_hash == _sha256(token)))
            if row is None or row.status != "unverified" or row.expires_at <= now:
                return None
            row.status, row.verified_at = "pending", now
            row.expires_at = now + dt.timedelta(days=90)
            session.commit()
            session.refresh(row)
            return row

    def pending(self, *, authority_id: int, national: bool) -> list[AccountRequest]:
        with self._sessions() as session:
            stmt = (select(AccountRequest).join(Institution, Institution.id == AccountRequest.institution_id)
                    .where(AccountRequest.status == "pending").order_by(AccountRequest.id))
            if not national:
                stmt = stmt.where(Institution.review_authority_id == authority_id)
            return list(session.scalars(stmt))

    def decide(self, request_id: int, *, approve: bool, reason: str, officer: str, authority_id: int,
               national: bool) -> tuple[AccountRequest, Created | None]:
        """Approve (the account is created, its owner gets a link to set the password) or refuse;
        either way with a reason, sealed in the admin log. Only the reviewing authority (or SAMR)."""
        reason = " ".join((reason or "").split())[:MAX_REASON]
        if not reason:
            raise AccountError("reason_required", "请填写理由", "give a reason")
        now = self._clock()
        with self._sessions() as session:
            row = session.get(AccountRequest, request_id, with_for_update={"of": AccountRequest})
            if row is None or row.status != "pending":
                raise AccountError("unknown_request", "没有这份待审核的申请", "no such request is waiting for review")
            if not (national or row.institution.review_authority_id == authority_id):
                raise AccountError("not_yours", "该机构不归本部门审核", "the institution is not reviewed by your authority")
            row.status = "approved" if approve else "refused"
            row.decided_at, row.decided_by, row.reason = now, officer[:64], reason
            created = None
            if approve:
                created = self._create(session, username=row.username, institution=row.institution, email=row.email,
                                       actor=officer)
                row.account_id = created.account.id
            self._record(session, officer, "onboard_approve" if approve else "onboard_refuse", row.username,
                         institution=row.institution.uscc, certificate=row.certificate_number, reason=reason)
            session.commit()
            session.refresh(row)
            return row, created

    def bulk(self, rows: list[tuple[int, str, str]], *, officer: str, authority_id: int,
             national: bool) -> BulkResult:
        """Accounts from a bureau's list of (line, certificate number, address): each certificate
        on record and in the officer's jurisdiction gets an institution account (username = the
        certificate number) whose owner sets the password by link. One transaction."""
        created, skipped = [], []
        with self._sessions() as session:
            for line, number, email in rows:
                number = "".join((number or "").split()).upper()
                cert = session.scalar(select(Certificate).where(Certificate.number == number)) if number else None
                if cert is None or cert.status != "valid":
                    skipped.append((line, number, "证书不存在或已失效", "no valid certificate with this number"))
                    continue
                if not (national or cert.institution.review_authority_id == authority_id):
                    skipped.append((line, number, "该机构不归本部门审核", "the institution is not reviewed by your authority"))
                    continue
                username = f"cma-{number}".lower()
                if session.scalar(select(Account.id).where(Account.username == username)) is not None:
                    skipped.append((line, number, "账号已存在", "the account exists already"))
                    continue
                try:
                    made = self._create(session, username=username, institution=cert.institution, email=email,
                                        actor=officer)
                except AccountError as exc:
                    skipped.append((line, number, exc.message_zh, exc.message_en))
                    continue
                self._record(session, officer, "onboard_bulk", username, institution=cert.institution.uscc,
                             certificate=number)
                created.append(made)
            session.commit()
        return BulkResult(created, skipped)

    def _create(self, session: Session, *, username: str, institution: Institution, email: str, actor: str) -> Created:
        """An institution account with a password nobody knows and a live set-password link."""
        now = self._clock()
        address = normalize_email(email)
        account = Account(username=username, password_hash=self._accounts.unusable_password(), role="institution",
                          institution_id=institution.id, active=True, failed_logins=0, session_version=1,
                          created_at=now, email=address, email_verified_at=now)
        session.add(account)
        session.flush()
        token = secrets.token_urlsafe(32)
        session.add(PasswordReset(account_id=account.id, token_hash=_sha256(token), created_by=actor[:64],
                                  created_at=now, expires_at=now + RESET_LIFETIME, by_owner=True))
        return Created(account, token)

    def _record(self, session: Session, actor: str, action: str, target: str, **detail) -> None:
        import json

        if self._log is not None:
            self._log.record(session, actor=actor, action=action, target=target,
                             detail=json.dumps(detail, ensure_ascii=False, sort_keys=True))
