"""Signing in (password, then a TOTP or recovery code when two-factor sign-in is on) and out,
password change and reset by link, e-mail verification, and the per-blueprint access guard.

``guard_blueprint(bp, *roles)`` is how every non-public blueprint is protected: it attaches a
``before_request`` that lets through only a signed-in, active account with one of ``roles``
(anonymous: redirect to the login page, or 401 JSON under /api/; wrong role: 403). With
``REQUIRE_2FA`` on, a regulator or admin without two-factor sign-in is sent to set it up first.
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from registry.accounts.accounts import (MIN_PASSWORD, OWNER_RESET_LIFETIME, TWO_FACTOR_ROLES, VERIFY_LIFETIME,
                                       AccountError, AccountService)
from registry.accounts.models import Account
from registry.numbers.quarters import SHANGHAI
from workflows.notify import CHOICES as UNSUBSCRIBABLE

from .errors import error_response
from .extensions import client_address, limiter, login_manager, registry
from .i18n import current_language, local_time

bp = Blueprint("auth", __name__)

LOGIN_LIMIT = "20/minute"
FORGOT_LIMIT = "5/hour;20/day"  # per client address: each request may send an e-mail
PENDING_SECONDS = 300  # between the password and the code


class User(UserMixin):
    """The signed-in account as flask-login sees it. Its id is ``<account id>:<session id>``: the
    session id names a row of the ``sessions`` table, checked on every authenticated request, so
    signing out, a password change or reset, or disabling the account ends it on the server."""

    def __init__(self, account: Account, session_token: str):
        self.account = account
        self.session_token = session_token
        self.id = account.id
        self.role = account.role
        self.username = account.username
        self.institution_id = account.institution_id
        self.authority_id = account.authority_id

    def get_id(self) -> str:
        return f"{self.account.id}:{self.session_token}"

    @property
    def is_active(self) -> bool:
        return bool(self.account.active)


def accounts() -> AccountService:
    return registry().accounts


def _load_user(user_id: str) -> User | None:
    """One indexed lookup per authenticated request: the live session and its active account."""
    account_id, _, token = (user_id or "").partition(":")
    account = accounts().session_account(token)
    if account is None or str(account.id) != account_id:
        return None
    return User(account, token)


def sign_in(account: Account) -> None:
    """Start a server-side session for ``account`` in this browser (a fresh cookie session)."""
    token = accounts().start_session(account.id, user_agent=request.headers.get("User-Agent", ""))
    login_user(User(account, token))


def current_account() -> User | None:
    """The signed-in user (with ``role``, ``institution_id``, ``authority_id``), or None."""
    return current_user if current_user.is_authenticated else None


def needs_2fa_setup(user: User) -> bool:
    """A regulator or admin without two-factor sign-in while REQUIRE_2FA is on."""
    return (user.role in TWO_FACTOR_ROLES and bool(current_app.config.get("REQUIRE_2FA"))
            and not user.account.has_2fa)


def guard_blueprint(bp: Blueprint, *roles: str, enforce_2fa: bool = True) -> Blueprint:
    """Require a signed-in, active account with one of ``roles`` on every route of ``bp``.

    Anonymous: a redirect to /login?next=… (401 JSON on /api/ paths); another role: 403; an
    account that must set up two-factor sign-in first: a redirect to that page (unless
    ``enforce_2fa`` is off: the account pages themselves). Call it once where the blueprint is
    defined; returns ``bp``. ``bp.guarded_roles`` records the roles so the access-matrix test can
    find every guarded blueprint.
    """
    allowed = frozenset(roles)
    if not allowed:
        raise ValueError("guard_blueprint needs at least one role")

    @bp.before_request
    def _guard():
        user = current_account()
        if user is None:
            if request.path.startswith("/api/"):
                return error_response(401)
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if user.role not in allowed:
            return error_response(403)
        if enforce_2fa and needs_2fa_setup(user):
            if request.path.startswith("/api/"):
                return error_response(403)
            flash(_("您的账号必须先开启两步验证。"), "warn")
            return redirect(url_for("account.two_factor"))
        g.account = user
        return None

    bp.guarded_roles = allowed
    return bp


# --- forms and views -------------------------------------------------------------------------
class LoginForm(FlaskForm):
    username = StringField(_l("用户名"), validators=[DataRequired(_l("请填写用户名。")), Length(max=64)])
    password = PasswordField(_l("密码"), validators=[DataRequired(_l("请填写密码。")), Length(max=200)])


class PasswordForm(FlaskForm):
    current = PasswordField(_l("当前密码"), validators=[DataRequired(_l("请填写当前密码。"))])
    new = PasswordField(_l("新密码"), validators=[
        DataRequired(_l("请填写新密码。")),
        Length(min=MIN_PASSWORD, max=200, message=_l("新密码至少需要 %(n)s 个字符。", n=MIN_PASSWORD))])
    confirm = PasswordField(_l("再次输入新密码"), validators=[EqualTo("new", _l("两次输入的新密码不一致。"))])


HOME = {"institution": "institution.overview", "admin": "admin.index"}

# Every failure gets the same words (unknown name, wrong password, too many tries from here):
# they tell nobody whether an account exists.
SIGN_IN_REFUSED = {
    "bad_credentials": _l("用户名或密码不正确。多次失败后须稍候再试。"),
    "disabled": _l("该账号已停用，请联系管理员。"),
}


def home_url(user: User) -> str:
    endpoint = HOME.get(user.role)
    if endpoint is None and user.role == "regulator" and "regulator" in current_app.blueprints:
        return url_for("regulator.index") if "regulator.index" in current_app.view_functions else "/regulator/"
    return url_for(endpoint) if endpoint else url_for("public.index")


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: never an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def login():
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        result = accounts().authenticate(form.username.data, form.password.data, client=client_address())
        if result.account is not None:
            session.clear()  # a fresh session on sign-in (no fixation)
            if result.account.has_2fa:  # the password was right; the code comes next
                session["pending_2fa"] = [result.account.id, int(time.time()),
                                          _safe_next(request.args.get("next")) or ""]
                return redirect(url_for("auth.login_code"), 303)
            return _signed_in(result.account, _safe_next(request.args.get("next")))
        error = str(SIGN_IN_REFUSED[result.reason])
    status = 200 if error is None and not form.errors else 400
    return render_template("auth/login.html", form=form, error=error), status


def _signed_in(account: Account, next_url: str | None):
    sign_in(account)
    notice = accounts().take_reset_notice(account.id)
    if notice is not None:
        flash(_("您的密码曾由管理员 %(by)s 于 %(at)s 重置。如有疑问，请联系管理员。",
                by=notice.by, at=local_time(notice.at)), "warn")
    return redirect(next_url or home_url(current_user))


class CodeForm(FlaskForm):
    code = StringField(_l("验证码或恢复码"), validators=[DataRequired(_l("请填写验证码。")), Length(max=40)])


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def login_code():
    """The second step of signing in: a code from the authenticator app, or a recovery code."""
    pending = session.get("pending_2fa")
    if not (isinstance(pending, list) and len(pending) == 3 and time.time() - pending[1] < PENDING_SECONDS):
        session.pop("pending_2fa", None)
        flash(_("请重新输入用户名和密码。"), "warn")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        account = accounts().second_factor(int(pending[0]), form.code.data, client=client_address())
        if account is not None:
            session.clear()
            return _signed_in(account, _safe_next(pending[2]))
        error = _("验证码不正确或已使用。多次失败后须稍候再试。")
    status = 200 if error is None and not form.errors else 400
    return render_template("auth/code.html", form=form, error=error), status


class ForgotForm(FlaskForm):
    who = StringField(_l("用户名或已验证的电子邮件地址"), validators=[
        DataRequired(_l("请填写用户名或电子邮件地址。")), Length(max=254)])


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(FORGOT_LIMIT, methods=["POST"])
def forgot_password():
    """Ask for a reset link: the same answer whether or not the account exists or has a
    verified address; the link goes only to that address."""
    form = ForgotForm()
    if form.validate_on_submit():
        found = accounts().request_reset(form.who.data)
        if found is not None:
            account, token = found
            registry().notifier.send(
                "password_reset", account.verified_email, account_id=account.id, secret=True,
                username=account.username, by_admin=False, hours=int(OWNER_RESET_LIFETIME.total_seconds() // 3600),
                link=reset_link(token))
        return render_template("auth/forgot.html", form=None, sent=True)
    status = 400 if form.errors else 200
    return render_template("auth/forgot.html", form=form, sent=False), status


def reset_link(token: str) -> str:
    return registry().notifier.link(url_for("auth.reset_password", token=token))


def send_verification(account: Account, token: str) -> None:
    registry().notifier.send("email_verify", account.email, account_id=account.id, secret=True,
                             username=account.username, hours=int(VERIFY_LIFETIME.total_seconds() // 3600),
                             link=registry().notifier.link(url_for("auth.verify_email", token=token)))


def tell_password_changed(account: Account) -> None:
    registry().notifier.send("password_changed", account.verified_email, account_id=account.id,
                             username=account.username,
                             when=registry().clock().astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"))


@bp.get("/account/email/verify/<token>")
def verify_email(token: str):
    """The link in a verification e-mail (it works in any browser, signed in or not)."""
    account = accounts().verify_email(token)
    response = current_app.make_response(
        (render_template("auth/verified.html", account=account), 200 if account is not None else 404))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/unsubscribe/<int:account_id>/<choice>/<signature>", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def unsubscribe(account_id: int, choice: str, signature: str):
    """The link at the foot of a message that may be turned off: a page with one button (GET
    changes nothing), or the mail client's one-click POST (RFC 8058; no CSRF token there)."""
    notifier = registry().notifier
    if notifier.unsubscribe_signature(account_id, choice) != signature[:64] or choice not in UNSUBSCRIBABLE:
        return render_template("auth/unsubscribe.html", done=False, valid=False), 404
    if request.method == "POST":
        notifier.unsubscribe(account_id, choice, signature)
        return render_template("auth/unsubscribe.html", done=True, valid=True, label=_choice_label(choice))
    return render_template("auth/unsubscribe.html", done=False, valid=True, label=_choice_label(choice))


def _choice_label(choice: str) -> str:
    zh, en = UNSUBSCRIBABLE[choice]
    return en if _lang() == "en" else zh


@bp.post("/logout")
def logout():
    user = current_account()
    if user is not None:
        accounts().end_session(user.session_token)  # a copied cookie opens nothing any more
    logout_user()
    session.clear()
    flash(_("您已退出登录。"), "ok")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password():
    user = current_account()
    if user is None:
        return redirect(url_for("auth.login", next=request.path))
    form = PasswordForm()
    error = None
    if form.validate_on_submit():
        try:
            account = accounts().change_password(user.account.id, form.current.data, form.new.data)
        except AccountError as exc:
            error = exc.message_zh if _lang() == "zh" else exc.message_en
        else:
            sign_in(account)  # every session ended; this browser gets a new one
            tell_password_changed(account)
            flash(_("密码已修改。"), "ok")
            return redirect(home_url(current_user))
    status = 200 if error is None and not form.errors else 400
    return render_template("auth/password.html", form=form, error=error), status


class ResetForm(FlaskForm):
    new = PasswordField(_l("新密码"), validators=[
        DataRequired(_l("请填写新密码。")),
        Length(min=MIN_PASSWORD, max=200, message=_l("新密码至少需要 %(n)s 个字符。", n=MIN_PASSWORD))])
    confirm = PasswordField(_l("再次输入新密码"), validators=[EqualTo("new", _l("两次输入的新密码不一致。"))])


@bp.route("/account/reset/<token>", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def reset_password(token: str):
    """The owner sets a new password through the single-use link e-mailed to the verified address."""
    account = accounts().reset_account(token)
    if account is None:
        response = current_app.make_response(
            (render_template("auth/reset.html", form=None, account=None), 404))
        response.headers["Cache-Control"] = "no-store"
        return response
    form = ResetForm()
    error = None
    if form.validate_on_submit():
        try:
            changed = accounts().complete_reset(token, form.new.data)
        except AccountError as exc:
            error = exc.message_zh if _lang() == "zh" else exc.message_en
        else:
            tell_password_changed(changed)
            logout_user()
            session.clear()
            flash(_("新密码已设置，请登录。"), "ok")
            return redirect(url_for("auth.login"), 303)
    status = 200 if error is None and not form.errors else 400
    response = current_app.make_response(
        (render_template("auth/reset.html", form=form, account=account, error=error), status))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _lang() -> str:
    return current_language()


def init_app(app: Flask) -> None:
    """LoginManager and cookie settings: HttpOnly, SameSite=Lax, Secure unless debugging or testing."""
    login_manager.init_app(app)
    login_manager.user_loader(_load_user)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"
    secure = not (app.debug or app.testing)
    app.config["SESSION_COOKIE_SECURE"] = secure  # Flask's default (False) is always present
    app.config["REMEMBER_COOKIE_SECURE"] = secure
    app.config.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")

    @app.context_processor
    def _account_context():
        # a function, not a value: public pages never load the account (no SQL on the verify path)
        return {"current_account": current_account}
