"""Portal accounts, sign-in, server-side sessions and password-reset links (Flask-free).

Passwords are werkzeug scrypt hashes, at least MIN_PASSWORD characters and none of the 10,000
most common passwords (``common_passwords.txt``). The service takes its session factory and clock
through the constructor, and, when given one, seals every admin action into the admin log
(``registry/accounts/adminlog.py``) in the same transaction as the action.

Two-factor sign-in is TOTP (RFC 6238, ``pyotp``): the secret is kept encrypted (a ``Sealer``,
registry/infra/sealing.py), a code is accepted once (the last used time step is kept), and ten
single-use recovery codes (only their SHA-256 kept) stand in for a lost phone. Code failures are
throttled like password failures. A password reset is a single-use, expiring link for the
owner's verified address only, whether the owner asked for it or an admin started it.

Sign-in failures are throttled per (username, client address), never per account: another
address cannot lock the owner out. Every failure — unknown name, wrong password, a throttled
pair — gets the same answer after the same work (one scrypt, against a dummy hash when there is
no account or no usable password).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import pyotp

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from registry.accounts.models import (Account, ApiToken, EmailVerification, LoginSession, LoginThrottle,
                                      PasswordReset, RecoveryCode)
from registry.infra.sealing import Sealer
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
OWNER_RESET_LIFETIME = dt.timedelta(hours=1)  # a link the owner asked for (forgot password)
OWNER_RESETS_PER_DAY = 5  # links sent to one account a day on request (the rest silently not)
VERIFY_LIFETIME = dt.timedelta(hours=48)
TWO_FACTOR_ROLES = ("regulator", "admin")  # required for these when REQUIRE_2FA is on
RECOVERY_CODES = 10
TOTP_ISSUER = "报告编号登记 Report Number Registry"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")


@functools.cache
def _dummy_hash() -> str:
    """A hash to compare against when the username is unknown, so both paths cost one scrypt.
    Made on first use, not at import: every process (a CLI import, an RQ work-horse) would pay
    one scrypt and its 32 MiB at start-up for it."""
    return generate_password_hash("not a password", method="scrypt")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class AccountError(ValueError):
    """A refused account operation; ``code`` names the reason, messages in both languages."""

    def __init__(self, code: str, message_zh: str, message_en: str):
        super().__init__(message_en)
        self.code, self.message_zh, self.message_en = code, message_zh, message_en


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


@functools.cache
def common_passwords() -> frozenset[str]:
    text = (Path(__file__).with_name("common_passwords.txt")).read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def _is_common(password: str) -> bool:
    """In the list as it is, or once the digits and signs people add at the end are taken off
    (``password2026!``), or made of one repeated character."""
    lowered = password.lower()
    stem = lowered.rstrip("0123456789!@#$%^&*.?-_ ")
    return (lowered in common_passwords() or (len(stem) >= 4 and stem in common_passwords())
            or len(set(lowered)) <= 2)


def check_password_strength(password: str, *, username: str = "") -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError("weak_password", f"密码至少需要 {MIN_PASSWORD} 个字符",
                           f"the password needs at least {MIN_PASSWORD} characters")
    if _is_common(password) or (username and username.lower() in password.lower()):
        raise AccountError("common_password", "该密码过于常见或包含用户名，容易被猜中，请换一个",
                           "this password is too common (or contains the username) and easy to guess; choose another")


def normalize_email(value: str) -> str:
    address = " ".join((value or "").split())
    if len(address) > 254 or not _EMAIL.match(address):
        raise AccountError("bad_email", "电子邮件地址格式不正确", "this is not a valid e-mail address")
    local, _, domain = address.partition("@")
    return f"{local}@{domain.lower()}"


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt: ``account`` when it succeeded, else ``reason``."""

    account: Account | None
    reason: str | None = None  # bad_credentials (every failure alike) | disabled (right password only)


@dataclass(frozen=True)
class SessionInfo:
    """One live sign-in, as the account page lists it."""

    id: int
    created_at: dt.datetime
    last_seen: dt.datetime
    user_agent: str | None
    current: bool


@dataclass(frozen=True)
class ResetNotice:
    """Who reset an account's password, and when (told to the owner at the next sign-in)."""

    by: str
    at: dt.datetime


class AccountService:
    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock, admin_log=None,
                 sealer: Sealer | None = None) -> None:
        self._sessions = sessions
        self._clock = clock
        self._log = admin_log  # an AdminLog, or None (no sealing, e.g. in unit tests)
        self._sealer = sealer  # encrypts TOTP secrets; without one, two-factor enrolment is refused

    def _record(self, session: Session, actor: str | None, action: str, target: str, **detail) -> None:
        if self._log is not None and actor:
            self._log.record(session, actor=actor, action=action, target=target,
                             detail=json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else None)

    # --- administration ----------------------------------------------------------------------
    def create(self, *, username: str, password: str, role: str, institution_uscc: str | None = None,
               authority_code: str | None = None, actor: str | None = None, email: str | None = None,
               email_verified: bool = False) -> Account:
        """Create an account; the role decides which binding (institution or authority) it needs.
        ``actor`` (the admin's username) seals the creation in the admin log."""
        username = (username or "").strip()
        if not _USERNAME.match(username):
            raise AccountError("bad_username", "用户名应为 3–64 个字母、数字或 _ . @ -",
                               "a username is 3-64 letters, digits or _ . @ -")
        if role not in ROLES:
            raise AccountError("bad_role", "角色应为 institution、regulator 或 admin",
                               "the role must be institution, regulator or admin")
        check_password_strength(password, username=username)
        address = normalize_email(email) if email else None
        with self._sessions() as session:
            account = Account(username=username, password_hash=hash_password(password), role=role,
                              active=True, failed_logins=0, session_version=1, created_at=self._clock(),
                              email=address, email_verified_at=self._clock() if address and email_verified else None)
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
    def check_username(username: str) -> None:
        if not _USERNAME.match(username or ""):
            raise AccountError("bad_username", "用户名应为 3–64 个字母、数字或 _ . @ -",
                               "a username is 3-64 letters, digits or _ . @ -")

    @staticmethod
    def unusable_password() -> str:
        """The hash of a password nobody knows (the owner sets one by link)."""
        return hash_password(secrets.token_urlsafe(32))

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

    def reset_password(self, account_id: int, *, actor: str) -> tuple[Account, str]:
        """An admin's reset: lock the account until its owner sets a new password through a
        single-use link sent to the owner's verified address (the caller sends it): the password
        becomes unusable, every session ends, and the returned token (never shown to the admin;
        only its hash is kept) is good for RESET_LIFETIME. Sealed in the admin log. Refused for an
        account without a verified address (the link would have nowhere to go)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions() as session:
            account = self._require(session, account_id)
            if account.verified_email is None:
                raise AccountError("no_verified_email", "该账号没有已验证的电子邮件地址，无法发送重置链接",
                                   "this account has no verified e-mail address to send a reset link to")
            account.password_hash = hash_password(secrets.token_urlsafe(32))  # nobody knows it
            account.failed_logins, account.failed_since, account.locked_until = 0, None, None
            account.session_version += 1
            self._revoke_sessions(session, account.id, now)
            self._new_reset(session, account, token, created_by=actor, lifetime=RESET_LIFETIME)
            self._record(session, actor, "reset", account.username, expires_at=(now + RESET_LIFETIME).isoformat(),
                         sent_to="verified e-mail")
            session.commit()
            return account, token

    def request_reset(self, name_or_email: str) -> tuple[Account, str] | None:
        """The owner forgot the password: a link (good for OWNER_RESET_LIFETIME) for the account
        named by its username or verified address, to be sent to that address. None — and the
        caller answers exactly as when it is not — for no such account, no verified address, a
        disabled account, or more than OWNER_RESETS_PER_DAY requests today. The password keeps
        working until the link is used (a stranger's request locks nobody out)."""
        text = " ".join((name_or_email or "").split())
        if not text or len(text) > 254:
            return None
        now = self._clock()
        with self._sessions() as session:
            where = Account.username == text
            if "@" in text:
                try:
                    where = (Account.email == normalize_email(text)) & Account.email_verified_at.is_not(None)
                except AccountError:
                    return None
            account = session.scalars(select(Account).where(where).order_by(Account.id).limit(1)).first()
            if account is None or account.verified_email is None or not account.active:
                return None
            recent = session.scalar(select(func.count()).select_from(PasswordReset).where(
                PasswordReset.account_id == account.id, PasswordReset.by_owner.is_(True),
                PasswordReset.created_at > now - dt.timedelta(days=1)))
            if recent >= OWNER_RESETS_PER_DAY:
                return None
            token = secrets.token_urlsafe(32)
            self._new_reset(session, account, token, created_by=account.username, lifetime=OWNER_RESET_LIFETIME,
                            by_owner=True)
            session.commit()
            return account, token

    def _new_reset(self, session: Session, account: Account, token: str, *, created_by: str,
                   lifetime: dt.timedelta, by_owner: bool = False) -> None:
        """Earlier live links of the account die; only the newest works."""
        now = self._clock()
        session.execute(update(PasswordReset).where(PasswordReset.account_id == account.id,
                                                    PasswordReset.used_at.is_(None),
                                                    PasswordReset.expires_at > now).values(expires_at=now))
        session.add(PasswordReset(account_id=account.id, token_hash=_sha256(token), created_by=created_by[:64],
                                  created_at=now, expires_at=now + lifetime, by_owner=by_owner))

    def reset_account(self, token: str) -> Account | None:
        """The account a live reset link is for, or None (unknown, used or expired)."""
        with self._sessions() as session:
            reset = self._live_reset(session, token)
            return session.get(Account, reset.account_id) if reset is not None else None

    def complete_reset(self, token: str, new_password: str) -> Account:
        """Set the new password through a reset link; the link is used up."""
        with self._sessions() as session:
            reset = self._live_reset(session, token)
            if reset is None:
                raise AccountError("bad_reset_link", "该重置链接无效、已使用或已过期，请重新申请",
                                   "this reset link is invalid, used or expired; ask for a new one")
            now = self._clock()
            account = session.get(Account, reset.account_id)
            check_password_strength(new_password, username=account.username)
            reset.used_at = now
            if reset.by_owner:
                reset.notified_at = now  # the owner did it: nothing to tell at the next sign-in
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
            ok = check_password_hash(account.password_hash if account is not None else _dummy_hash(), password or "")
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
            check_password_strength(new, username=account.username)
            if new == current:
                raise AccountError("same_password", "新密码不能与当前密码相同", "the new password must differ from the current one")
            account.password_hash = hash_password(new)
            account.session_version += 1
            self._revoke_sessions(session, account.id, self._clock())
            session.commit()
            return account

    # --- two-factor sign-in (TOTP) ------------------------------------------------------------
    def begin_2fa(self, account_id: int) -> str:
        """A new TOTP secret for the account, kept (encrypted) until the owner confirms a code
        from it; two-factor sign-in is not on before that. Returns the secret (base32)."""
        if self._sealer is None:
            raise AccountError("no_sealer", "未配置加密密钥", "two-factor sign-in needs the encryption key")
        secret = pyotp.random_base32()
        with self._sessions() as session:
            account = self._require(session, account_id)
            if account.has_2fa:
                raise AccountError("2fa_on", "两步验证已开启", "two-factor sign-in is already on")
            account.totp_secret = self._sealer.seal(secret)
            session.commit()
        return secret

    def pending_2fa_secret(self, account_id: int) -> str | None:
        """The secret being enrolled (shown again until confirmed), or None."""
        account = self.get(account_id)
        if account is None or account.has_2fa or not account.totp_secret or self._sealer is None:
            return None
        return self._sealer.open(account.totp_secret)

    @staticmethod
    def provisioning_uri(account: Account, secret: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name=account.username, issuer_name=TOTP_ISSUER)

    def confirm_2fa(self, account_id: int, code: str) -> list[str]:
        """Turn two-factor sign-in on with a code from the enrolled secret; returns the recovery
        codes (shown once; only their hashes are kept). Other sessions end."""
        with self._sessions() as session:
            account = self._require(session, account_id)
            if account.has_2fa or not account.totp_secret:
                raise AccountError("no_enrolment", "请重新开始设置两步验证", "start the two-factor set-up again")
            step = self._totp_step(account, code)
            if step is None:
                raise AccountError("bad_code", "验证码不正确或已过期", "the code is wrong or has expired")
            now = self._clock()
            account.totp_enabled_at, account.totp_last_step = now, step
            codes = self._replace_recovery_codes(session, account.id)
            account.session_version += 1
            session.commit()
            return codes

    def new_recovery_codes(self, account_id: int) -> list[str]:
        """A fresh set of recovery codes; the old ones stop working."""
        with self._sessions() as session:
            account = self._require(session, account_id)
            if not account.has_2fa:
                raise AccountError("2fa_off", "两步验证未开启", "two-factor sign-in is not on")
            codes = self._replace_recovery_codes(session, account.id)
            session.commit()
            return codes

    def disable_2fa(self, account_id: int, password: str, *, required: bool) -> None:
        """Turn two-factor sign-in off (with the password), unless the role requires it."""
        with self._sessions() as session:
            account = self._require(session, account_id)
            if required:
                raise AccountError("2fa_required", "您的角色必须使用两步验证", "your role requires two-factor sign-in")
            if not check_password_hash(account.password_hash, password or ""):
                raise AccountError("wrong_password", "当前密码不正确", "the current password is wrong")
            account.totp_secret, account.totp_enabled_at, account.totp_last_step = None, None, None
            session.execute(update(RecoveryCode).where(RecoveryCode.account_id == account.id,
                                                       RecoveryCode.used_at.is_(None)).values(used_at=self._clock()))
            session.commit()

    def recovery_codes_left(self, account_id: int) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(RecoveryCode).where(
                RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None))) or 0)

    def second_factor(self, account_id: int, code: str, *, client: str = "") -> Account | None:
        """The second step of signing in: a current TOTP code (each accepted once) or an unused
        recovery code (used up). Failures are throttled per (account, client address) like
        password failures; a waiting pair is refused even the right code. None on any failure."""
        now = self._clock()
        key = _sha256(f"2fa\0{account_id}\0{client}")
        with self._sessions() as session:
            account = session.get(Account, account_id)
            throttle = session.get(LoginThrottle, key)
            if throttle is not None and now - throttle.last_failure_at > THROTTLE_FORGET:
                throttle.failures, throttle.blocked_until = 0, None
            if throttle is not None and throttle.blocked_until is not None and throttle.blocked_until > now:
                session.commit()
                return None
            if account is None or not account.active or not account.has_2fa:
                self._count_failure(session, key, throttle, now)
                return None
            cleaned = "".join((code or "").split()).replace("-", "")
            if cleaned.isdigit() and len(cleaned) == 6:
                step = self._totp_step(account, cleaned)
                ok = step is not None and step > (account.totp_last_step or 0)
                if ok:
                    account.totp_last_step = step
            else:
                ok = session.execute(
                    update(RecoveryCode).where(RecoveryCode.account_id == account.id,
                                               RecoveryCode.code_hash == _sha256(cleaned.lower()),
                                               RecoveryCode.used_at.is_(None))
                    .values(used_at=now).execution_options(synchronize_session=False)).rowcount == 1
            if not ok:
                self._count_failure(session, key, throttle, now)
                return None
            if throttle is not None:
                session.delete(throttle)
            account.last_login_at = now
            session.commit()
            return account

    def _totp_step(self, account: Account, code: str) -> int | None:
        """The time step whose code ``code`` is (this one or one either side), or None."""
        cleaned = "".join((code or "").split())
        if self._sealer is None or not account.totp_secret or not (cleaned.isdigit() and len(cleaned) == 6):
            return None
        totp = pyotp.TOTP(self._sealer.open(account.totp_secret))
        now = self._clock()
        for offset in (0, -1, 1):
            moment = now + dt.timedelta(seconds=offset * totp.interval)
            if secrets.compare_digest(totp.at(moment), cleaned):
                return totp.timecode(moment)
        return None

    def _replace_recovery_codes(self, session: Session, account_id: int) -> list[str]:
        now = self._clock()
        session.execute(update(RecoveryCode).where(RecoveryCode.account_id == account_id,
                                                   RecoveryCode.used_at.is_(None)).values(used_at=now))
        codes = [f"{secrets.token_hex(5)[:5]}-{secrets.token_hex(5)[:5]}" for _ in range(RECOVERY_CODES)]
        for code in codes:
            session.add(RecoveryCode(account_id=account_id, code_hash=_sha256(code.replace("-", "")), created_at=now))
        return codes

    # --- e-mail address ------------------------------------------------------------------------
    def set_email(self, account_id: int, email: str) -> tuple[Account, str]:
        """Record a new address, unverified until the link (the returned token) sent to it is
        followed; earlier links die."""
        address = normalize_email(email)
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions() as session:
            account = self._require(session, account_id)
            if account.email != address:
                account.email, account.email_verified_at = address, None
            session.execute(update(EmailVerification).where(EmailVerification.account_id == account.id,
                                                            EmailVerification.used_at.is_(None))
                            .values(expires_at=now))
            session.add(EmailVerification(account_id=account.id, email=address, token_hash=_sha256(token),
                                          created_at=now, expires_at=now + VERIFY_LIFETIME))
            session.commit()
            return account, token

    def verify_email(self, token: str) -> Account | None:
        """Follow a verification link: the address is verified if it is still the account's."""
        if not token or len(token) > 200:
            return None
        now = self._clock()
        with self._sessions() as session:
            link = session.scalar(select(EmailVerification).where(EmailVerification.token_hash == _sha256(token)))
            if link is None or link.used_at is not None or link.expires_at <= now:
                return None
            account = session.get(Account, link.account_id)
            link.used_at = now
            if account.email != link.email:
                session.commit()
                return None
            account.email_verified_at = now
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

    def live_sessions(self, account_id: int, *, current: str = "") -> list[SessionInfo]:
        """The account's signed-in browsers, most recently seen first."""
        now = self._clock()
        with self._sessions() as session:
            rows = session.scalars(select(LoginSession).where(
                LoginSession.account_id == account_id, LoginSession.revoked_at.is_(None),
                LoginSession.created_at > now - SESSION_LIFETIME).order_by(LoginSession.last_seen.desc()))
            mine = _sha256(current) if current else None
            return [SessionInfo(row.id, row.created_at, row.last_seen, row.user_agent, row.token_hash == mine)
                    for row in rows]

    def end_all_sessions(self, account_id: int) -> None:
        """Sign out everywhere: every session of the account ends, this browser's too."""
        with self._sessions() as session:
            account = self._require(session, account_id)
            account.session_version += 1
            self._revoke_sessions(session, account.id, self._clock())
            session.commit()

    def forget_expired(self) -> int:
        """Delete what no longer opens anything: sessions signed out or past SESSION_LIFETIME, and
        failed-sign-in counts quiet for THROTTLE_FORGET (the retention chore). The number deleted."""
        now = self._clock()
        with self._sessions() as session:
            gone = session.execute(delete(LoginSession).where(
                (LoginSession.revoked_at.is_not(None)) | (LoginSession.created_at <= now - SESSION_LIFETIME))).rowcount
            gone += session.execute(delete(LoginThrottle).where(
                LoginThrottle.last_failure_at <= now - THROTTLE_FORGET)).rowcount
            session.commit()
        return gone

    @staticmethod
    def _revoke_sessions(session: Session, account_id: int, now: dt.datetime) -> None:
        session.execute(update(LoginSession).where(LoginSession.account_id == account_id,
                                                   LoginSession.revoked_at.is_(None)).values(revoked_at=now))


def _agent_summary(user_agent: str) -> str | None:
    text = " ".join((user_agent or "").split())
    return text[:120] or None
