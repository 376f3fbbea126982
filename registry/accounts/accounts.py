"""Portal accounts, sign-in, server-side sessions and password-reset links (Flask-free).

Passwords are werkzeug scrypt hashes. The service takes its session factory and clock through
the constructor, and, when given one, seals every admin action into the admin log
(``registry/accounts/adminlog.py``) in the same transaction as the action.

Sign-in failures are throttled per (username, client address), never per account: another
address cannot lock the owner out. Every failure — unknown name, wrong password, a throttled
pair — gets the same answer after the same work (one scrypt, against a dummy hash when there is
no account or no usable password).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from registry.accounts.models import Account, ApiToken, LoginSession, LoginThrottle, PasswordReset
from registry.institutions.models import Authority, Institution
from registry.numbers.normalize import InvalidValue, normalize_uscc
from registry.numbers.quarters import Clock, system_clock

ROLES = ("institution", "regulator", "admin")
MIN_PASSWORD = 10
# sign-in throttle per (username, client address): this many failures are free, then each one
# doubles the wait (1 s, 2 s, 4 s … at most THROTTLE_MAX); a quiet THROTTLE_FORGET forgets them
FREE_FAILURES = 5
THROTTLE_MAX = dt.timedelta(minutes=15)
THROTTLE_FORGET = dt.timedelta(hours=24)
SESSION_LIFETIME = dt.timedelta(days=31)
SESSION_TOUCH = dt.timedelta(minutes=1)  # last_seen is written at most once a minute per session
RESET_LIFETIME = dt.timedelta(hours=24)
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
# A hash to compare against when the username is unknown, so both paths cost one scrypt.
_DUMMY_HASH = generate_password_hash("not a password", method="scrypt")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class AccountError(ValueError):
    """A refused account operation; ``code`` names the reason, messages in both languages."""

    def __init__(self, code: str, message_zh: str, message_en: str):
        super().__init__(message_en)
        self.code, self.message_zh, self.message_en = code, message_zh, message_en


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def check_password_strength(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError("weak_password", f"密码至少需要 {MIN_PASSWORD} 个字符",
                           f"the password needs at least {MIN_PASSWORD} characters")


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt: ``account`` when it succeeded, else ``reason``."""

    account: Account | None
    reason: str | None = None  # bad_credentials (every failure alike) | disabled (right password only)


@dataclass(frozen=True)
class ResetNotice:
    """Who reset an account's password, and when (told to the owner at the next sign-in)."""

    by: str
    at: dt.datetime


class AccountService:
    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock, admin_log=None) -> None:
        self._sessions = sessions
        self._clock = clock
        self._log = admin_log  # an AdminLog, or None (no sealing, e.g. in unit tests)

    def _record(self, session: Session, actor: str | None, action: str, target: str, **detail) -> None:
        if self._log is not None and actor:
            self._log.record(session, actor=actor, action=action, target=target,
                             detail=json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else None)

    # --- administration ----------------------------------------------------------------------
    def create(self, *, username: str, password: str, role: str, institution_uscc: str | None = None,
               authority_code: str | None = None, actor: str | None = None) -> Account:
        """Create an account; the role decides which binding (institution or authority) it needs.
        ``actor`` (the admin's username) seals the creation in the admin log."""
        username = (username or "").strip()
        if not _USERNAME.match(username):
            raise AccountError("bad_username", "用户名应为 3–64 个字母、数字或 _ . @ -",
                               "a username is 3-64 letters, digits or _ . @ -")
        if role not in ROLES:
            raise AccountError("bad_role", "角色应为 institution、regulator 或 admin",
                               "the role must be institution, regulator or admin")
        check_password_strength(password)
        with self._sessions() as session:
            account = Account(username=username, password_hash=hash_password(password), role=role,
                              active=True, failed_logins=0, session_version=1, created_at=self._clock())
            if institution_uscc and role != "institution":
                raise AccountError("bad_binding", "只有机构账号绑定机构", "only institution accounts have an institution")
            if authority_code and role != "regulator":
                raise AccountError("bad_binding", "只有监管部门账号绑定监管部门", "only regulator accounts have an authority")
            if role == "institution":
                account.institution_id = self._institution_id(session, institution_uscc)
            elif role == "regulator":
                account.authority_id = self._authority_id(session, authority_code)
            session.add(account)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                raise AccountError("username_taken", "用户名已被使用", f"the username {username} is taken") from None
            binding = {"institution": institution_uscc and normalize_uscc(institution_uscc),
                       "authority": authority_code and authority_code.strip()}
            self._record(session, actor, "create", username, role=role,
                         **{k: v for k, v in binding.items() if v})
            session.commit()
            return self.get(account.id)

    @staticmethod
    def _institution_id(session: Session, uscc: str | None) -> int:
        if not uscc:
            raise AccountError("institution_required", "机构账号须指定机构（统一社会信用代码）",
                               "an institution account needs --institution USCC")
        try:
            uscc = normalize_uscc(uscc)
        except InvalidValue as exc:
            raise AccountError("unknown_institution", f"统一社会信用代码无效：{uscc}", f"{uscc}: {exc}") from None
        found = session.scalar(select(Institution.id).where(Institution.uscc == uscc))
        if found is None:
            raise AccountError("unknown_institution", f"没有统一社会信用代码为 {uscc} 的机构",
                               f"no institution with the unified social credit code {uscc} is registered")
        return found

    @staticmethod
    def _authority_id(session: Session, code: str | None) -> int:
        if not code:
            raise AccountError("authority_required", "监管部门账号须指定监管部门代码",
                               "a regulator account needs --authority CODE")
        found = session.scalar(select(Authority.id).where(Authority.code == code.strip()))
        if found is None:
            raise AccountError("unknown_authority", f"没有代码为 {code} 的监管部门", f"no authority with the code {code}")
        return found

    def get(self, account_id: int) -> Account | None:
        with self._sessions() as session:
            return session.get(Account, account_id)

    def list(self) -> list[Account]:
        with self._sessions() as session:
            return list(session.scalars(select(Account).order_by(Account.role, Account.username)))

    def page(self, search: str = "", page: int = 1, per_page: int = 50) -> tuple[list[Account], int]:
        """One page of accounts (by role, then name) whose username, institution or authority
        contains ``search``; with the number of matches."""
        stmt = select(Account)
        text = " ".join((search or "").split())[:100]
        if text:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = (stmt.outerjoin(Institution, Institution.id == Account.institution_id)
                    .outerjoin(Authority, Authority.id == Account.authority_id)
                    .where(or_(Account.username.ilike(like, escape="\\"), Institution.name.ilike(like, escape="\\"),
                               Institution.uscc.ilike(like, escape="\\"), Authority.name.ilike(like, escape="\\"),
                               Authority.code == text)))
        with self._sessions() as session:
            total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
            rows = list(session.scalars(stmt.order_by(Account.role, Account.username)
                                        .offset((max(1, page) - 1) * per_page).limit(per_page)))
            return rows, total

    def set_active(self, account_id: int, active: bool, *, actor: str | None = None) -> Account:
        """Enable or disable an account. Disabling ends all its sessions and revokes the API
        tokens it created."""
        with self._sessions() as session:
            account = self._require(session, account_id)
            account.active = active
            account.session_version += 1
            now = self._clock()
            self._revoke_sessions(session, account.id, now)
            if not active:
                session.execute(update(ApiToken).where(ApiToken.account_id == account.id,
                                                       ApiToken.revoked_at.is_(None)).values(revoked_at=now))
            self._record(session, actor, "enable" if active else "disable", account.username)
            session.commit()
            return account

    def reset_password(self, account_id: int, *, actor: str) -> str:
        """Lock the account until its owner sets a new password through a single-use link:
        the password becomes unusable, every session ends, and the returned token (shown once;
        only its hash is kept) is good for RESET_LIFETIME. Sealed in the admin log."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions() as session:
            account = self._require(session, account_id)
            account.password_hash = hash_password(secrets.token_urlsafe(32))  # nobody knows it
            account.failed_logins, account.failed_since, account.locked_until = 0, None, None
            account.session_version += 1
            self._revoke_sessions(session, account.id, now)
            session.execute(update(PasswordReset).where(PasswordReset.account_id == account.id,
                                                        PasswordReset.used_at.is_(None)).values(expires_at=now))
            session.add(PasswordReset(account_id=account.id, token_hash=_sha256(token), created_by=actor,
                                      created_at=now, expires_at=now + RESET_LIFETIME))
            self._record(session, actor, "reset", account.username, expires_at=(now + RESET_LIFETIME).isoformat())
            session.commit()
        return token

    def reset_account(self, token: str) -> Account | None:
        """The account a live reset link is for, or None (unknown, used or expired)."""
        with self._sessions() as session:
            reset = self._live_reset(session, token)
            return session.get(Account, reset.account_id) if reset is not None else None

    def complete_reset(self, token: str, new_password: str) -> Account:
        """Set the new password through a reset link; the link is used up."""
        check_password_strength(new_password)
        with self._sessions() as session:
            reset = self._live_reset(session, token)
            if reset is None:
                raise AccountError("bad_reset_link", "该重置链接无效、已使用或已过期，请联系管理员重新重置",
                                   "this reset link is invalid, used or expired; ask an admin for a new one")
            now = self._clock()
            reset.used_at = now
            account = session.get(Account, reset.account_id)
            account.password_hash = hash_password(new_password)
            account.session_version += 1
            self._revoke_sessions(session, account.id, now)
            session.commit()
            return account

    def _live_reset(self, session: Session, token: str) -> PasswordReset | None:
        if not token or len(token) > 200:
            return None
        reset = session.scalar(select(PasswordReset).where(PasswordReset.token_hash == _sha256(token)))
        if reset is None or reset.used_at is not None or reset.expires_at <= self._clock():
            return None
        return reset

    def take_reset_notice(self, account_id: int) -> ResetNotice | None:
        """Who reset this account's password and when, once: the next call answers None."""
        with self._sessions() as session:
            reset = session.scalar(select(PasswordReset).where(
                PasswordReset.account_id == account_id, PasswordReset.used_at.is_not(None),
                PasswordReset.notified_at.is_(None)).order_by(PasswordReset.id.desc()).limit(1))
            if reset is None:
                return None
            session.execute(update(PasswordReset).where(PasswordReset.account_id == account_id,
                                                        PasswordReset.notified_at.is_(None),
                                                        PasswordReset.used_at.is_not(None))
                            .values(notified_at=self._clock()))
            session.commit()
            return ResetNotice(by=reset.created_by, at=reset.created_at)

    @staticmethod
    def _require(session: Session, account_id: int) -> Account:
        account = session.get(Account, account_id)
        if account is None:
            raise AccountError("unknown_account", "账号不存在", "no such account")
        return account

    # --- signing in --------------------------------------------------------------------------
    def authenticate(self, username: str, password: str, *, client: str = "") -> SignIn:
        """Check a password. Every failure answers ``bad_credentials`` after exactly one scrypt;
        failures are counted per (username, client), and past FREE_FAILURES that pair waits
        (doubling each time) while the owner elsewhere signs in as usual. ``disabled`` is told
        only to someone who gave the right password."""
        now = self._clock()
        name = (username or "").strip()
        key = _sha256(f"{name.lower()}\0{client}")
        with self._sessions() as session:
            account = session.scalar(select(Account).where(Account.username == name)) if len(name) <= 64 else None
            ok = check_password_hash(account.password_hash if account is not None else _DUMMY_HASH, password or "")
            throttle = session.get(LoginThrottle, key)
            if throttle is not None and now - throttle.last_failure_at > THROTTLE_FORGET:
                throttle.failures, throttle.blocked_until = 0, None
            if throttle is not None and throttle.blocked_until is not None and throttle.blocked_until > now:
                session.commit()
                return SignIn(None, "bad_credentials")  # waiting: not even the right password counts
            if account is None or not ok:
                self._count_failure(session, key, throttle, now)
                return SignIn(None, "bad_credentials")
            if not account.active:
                return SignIn(None, "disabled")
            if throttle is not None:
                session.delete(throttle)
            account.last_login_at = now
            session.commit()
            return SignIn(account)

    @staticmethod
    def _count_failure(session: Session, key: str, throttle: LoginThrottle | None, now: dt.datetime) -> None:
        if throttle is None:
            throttle = LoginThrottle(key=key, failures=0)
            session.add(throttle)
        throttle.failures += 1
        throttle.last_failure_at = now
        if throttle.failures >= FREE_FAILURES:
            wait = dt.timedelta(seconds=2 ** min(throttle.failures - FREE_FAILURES, 20))
            throttle.blocked_until = now + min(wait, THROTTLE_MAX)
        try:
            session.commit()
        except IntegrityError:  # a concurrent first failure of the same pair: one of them counts
            session.rollback()

    def change_password(self, account_id: int, current: str, new: str) -> Account:
        """Change the password; every session of the account ends (the caller starts a new one)."""
        with self._sessions() as session:
            account = self._require(session, account_id)
            if not check_password_hash(account.password_hash, current or ""):
                raise AccountError("wrong_password", "当前密码不正确", "the current password is wrong")
            check_password_strength(new)
            if new == current:
                raise AccountError("same_password", "新密码不能与当前密码相同", "the new password must differ from the current one")
            account.password_hash = hash_password(new)
            account.session_version += 1
            self._revoke_sessions(session, account.id, self._clock())
            session.commit()
            return account

    # --- server-side sessions ----------------------------------------------------------------
    def start_session(self, account_id: int, *, user_agent: str = "") -> str:
        """A new session for a signed-in browser; the returned id goes into its cookie."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions() as session:
            session.add(LoginSession(token_hash=_sha256(token), account_id=account_id, created_at=now,
                                     last_seen=now, user_agent=_agent_summary(user_agent)))
            session.commit()
        return token

    def session_account(self, token: str) -> Account | None:
        """The active account of a live session (one indexed lookup), or None."""
        if not token or len(token) > 100:
            return None
        now = self._clock()
        with self._sessions() as session:
            row = session.execute(select(LoginSession, Account).join(Account, Account.id == LoginSession.account_id)
                                  .where(LoginSession.token_hash == _sha256(token))).first()
            if row is None:
                return None
            login, account = row
            if login.revoked_at is not None or not account.active or now - login.created_at > SESSION_LIFETIME:
                return None
            if now - login.last_seen > SESSION_TOUCH:
                login.last_seen = now
                session.commit()
            return account

    def end_session(self, token: str) -> None:
        """Sign one browser out, on the server: its cookie opens nothing any more."""
        if not token:
            return
        with self._sessions() as session:
            session.execute(update(LoginSession).where(LoginSession.token_hash == _sha256(token),
                                                       LoginSession.revoked_at.is_(None))
                            .values(revoked_at=self._clock()))
            session.commit()

    @staticmethod
    def _revoke_sessions(session: Session, account_id: int, now: dt.datetime) -> None:
        session.execute(update(LoginSession).where(LoginSession.account_id == account_id,
                                                   LoginSession.revoked_at.is_(None)).values(revoked_at=now))


def _agent_summary(user_agent: str) -> str | None:
    text = " ".join((user_agent or "").split())
    return text[:120] or None
