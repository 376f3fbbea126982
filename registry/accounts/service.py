"""Accounts, sign-in with lockout, API tokens and the holiday table (Flask-free).

Passwords are werkzeug scrypt hashes; API tokens are random, shown once, and only their
SHA-256 is kept (a token is high-entropy, so a fast hash is enough and lookups stay one index
probe). Services take their session factory and clock through the constructor.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from registry.accounts.models import Account, ApiToken, IdempotentResponse

from registry.complaints.models import Holiday

from registry.institutions.models import Authority, Institution
from registry.numbers.normalize import InvalidValue, normalize_uscc
from registry.numbers.quarters import Clock, system_clock

ROLES = ("institution", "regulator", "admin")
MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
LOCKOUT = dt.timedelta(minutes=15)
MIN_PASSWORD = 10
TOKEN_PREFIX = "rnr_"
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


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


class TokenService:
    """Per-institution API tokens: create (plaintext returned once), list, revoke, authenticate."""

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def create(self, *, institution_id: int, name: str, created_by: str | None) -> tuple[ApiToken, str]:
        name = " ".join((name or "").split())[:100]
        if not name:
            raise AccountError("name_required", "请为令牌命名（如“LIMS 系统”）", "give the token a name (e.g. 'LIMS')")
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._sessions() as session:
            token = ApiToken(institution_id=institution_id, name=name, token_hash=hash_token(plaintext),
                             prefix=plaintext[:12], created_by=created_by, created_at=self._clock())
            session.add(token)
            session.commit()
            return token, plaintext

    def list(self, institution_id: int) -> list[ApiToken]:
        with self._sessions() as session:
            return list(session.scalars(
                select(ApiToken).where(ApiToken.institution_id == institution_id).order_by(ApiToken.id.desc())))

    def revoke(self, *, institution_id: int, token_id: int) -> bool:
        """Revoke one of the institution's tokens; False when it has no such token."""
        with self._sessions() as session:
            token = session.get(ApiToken, token_id)
            if token is None or token.institution_id != institution_id:
                return False
            if token.revoked_at is None:
                token.revoked_at = self._clock()
                session.commit()
            return True

    def authenticate(self, plaintext: str) -> ApiToken | None:
        """The live token with this text, or None (unknown or revoked)."""
        if not plaintext or not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
            return None
        with self._sessions() as session:
            token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext)))
            if token is None or token.revoked_at is not None:
                return None
            now = self._clock()
            if token.last_used_at is None or now - token.last_used_at > dt.timedelta(minutes=1):
                token.last_used_at = now  # at most one write a minute per token
                session.commit()
            return token


class IdempotencyStore:
    """Idempotency-Key → the response first given; a retry with another body is refused."""

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def find(self, *, token_id: int, key: str) -> IdempotentResponse | None:
        with self._sessions() as session:
            return session.scalar(select(IdempotentResponse).where(
                IdempotentResponse.token_id == token_id, IdempotentResponse.key == key))

    def save(self, *, token_id: int, key: str, request_sha256: str, status: int, body: dict) -> IdempotentResponse:
        """Keep the response; when a concurrent call with the same key won, return its response."""
        with self._sessions() as session:
            stored = IdempotentResponse(token_id=token_id, key=key, request_sha256=request_sha256, status=status,
                                        body=body, created_at=self._clock())
            session.add(stored)
            try:
                session.commit()
                return stored
            except IntegrityError:
                session.rollback()
        return self.find(token_id=token_id, key=key)


class HolidayService:
    """The admin-maintained holiday table, read by the working-day calendar where
    chinese-calendar has no data."""

    def __init__(self, *, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def list(self) -> list[Holiday]:
        with self._sessions() as session:
            return list(session.scalars(select(Holiday).order_by(Holiday.day)))

    def add(self, *, day: dt.date, name: str, is_workday: bool = False) -> Holiday:
        name = " ".join((name or "").split())[:100]
        if not name:
            raise AccountError("name_required", "请填写名称（如“春节”）", "give the day a name")
        with self._sessions() as session:
            holiday = Holiday(day=day, name=name, is_workday=is_workday)
            session.add(holiday)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                raise AccountError("day_taken", f"{day} 已在表中", f"{day} is already in the table") from None
            return holiday

    def delete(self, holiday_id: int) -> bool:
        with self._sessions() as session:
            holiday = session.get(Holiday, holiday_id)
            if holiday is None:
                return False
            session.delete(holiday)
            session.commit()
            return True
