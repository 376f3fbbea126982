"""Portal accounts and sign-in with lockout (Flask-free).

Passwords are werkzeug scrypt hashes. The service takes its session factory and clock through
the constructor.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from registry.accounts.models import Account
from registry.institutions.models import Authority, Institution
from registry.numbers.normalize import InvalidValue, normalize_uscc
from registry.numbers.quarters import Clock, system_clock

ROLES = ("institution", "regulator", "admin")
MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
LOCKOUT = dt.timedelta(minutes=15)
MIN_PASSWORD = 10
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
# A hash to compare against when the username is unknown, so both paths cost one scrypt.
_DUMMY_HASH = generate_password_hash("not a password", method="scrypt")


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
    reason: str | None = None  # bad_credentials | locked | disabled


class AccountService:
    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    # --- administration ----------------------------------------------------------------------
    def create(self, *, username: str, password: str, role: str, institution_uscc: str | None = None,
               authority_code: str | None = None) -> Account:
        """Create an account; the role decides which binding (institution or authority) it needs."""
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
                session.commit()
            except IntegrityError:
                session.rollback()
                raise AccountError("username_taken", "用户名已被使用", f"the username {username} is taken") from None
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

    def set_active(self, account_id: int, active: bool) -> Account:
        with self._sessions() as session:
            account = self._require(session, account_id)
            account.active = active
            account.session_version += 1  # signs the account out everywhere
            session.commit()
            return account

    def reset_password(self, account_id: int) -> str:
        """Give the account a new random password (returned, shown once) and lift any lockout."""
        password = secrets.token_urlsafe(12)
        with self._sessions() as session:
            account = self._require(session, account_id)
            account.password_hash = hash_password(password)
            account.failed_logins, account.failed_since, account.locked_until = 0, None, None
            account.session_version += 1
            session.commit()
        return password

    @staticmethod
    def _require(session: Session, account_id: int) -> Account:
        account = session.get(Account, account_id)
        if account is None:
            raise AccountError("unknown_account", "账号不存在", "no such account")
        return account

    # --- signing in --------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> SignIn:
        """Check a password; after MAX_FAILURES failures within FAILURE_WINDOW the account is
        locked for LOCKOUT, and while locked even the right password is refused."""
        now = self._clock()
        with self._sessions() as session:
            account = session.scalar(select(Account).where(Account.username == (username or "").strip()))
            if account is None:
                check_password_hash(_DUMMY_HASH, password or "")
                return SignIn(None, "bad_credentials")
            if account.locked_until is not None and account.locked_until > now:
                return SignIn(None, "locked")
            if not check_password_hash(account.password_hash, password or ""):
                if account.failed_since is None or now - account.failed_since > FAILURE_WINDOW:
                    account.failed_logins, account.failed_since = 0, now
                account.failed_logins += 1
                if account.failed_logins >= MAX_FAILURES:
                    account.locked_until = now + LOCKOUT
                    account.failed_logins, account.failed_since = 0, None
                session.commit()
                return SignIn(None, "locked" if account.locked_until and account.locked_until > now else "bad_credentials")
            if not account.active:
                return SignIn(None, "disabled")
            account.failed_logins, account.failed_since, account.locked_until = 0, None, None
            account.last_login_at = now
            session.commit()
            return SignIn(account)

    def change_password(self, account_id: int, current: str, new: str) -> Account:
        with self._sessions() as session:
            account = self._require(session, account_id)
            if not check_password_hash(account.password_hash, current or ""):
                raise AccountError("wrong_password", "当前密码不正确", "the current password is wrong")
            check_password_strength(new)
            if new == current:
                raise AccountError("same_password", "新密码不能与当前密码相同", "the new password must differ from the current one")
            account.password_hash = hash_password(new)
            account.session_version += 1
            session.commit()
            return account
