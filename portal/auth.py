"""Signing in and out, password change, and the per-blueprint access guard.

``guard_blueprint(bp, *roles)`` is how every non-public blueprint is protected: it attaches a
``before_request`` that lets through only a signed-in, active account with one of ``roles``
(anonymous: redirect to the login page, or 401 JSON under /api/; wrong role: 403).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from registry.accounts.accounts import MIN_PASSWORD, AccountError, AccountService
from registry.accounts.models import Account

from .errors import error_response
from .extensions import client_address, limiter, login_manager, registry
from .i18n import current_language, local_time

bp = Blueprint("auth", __name__)

LOGIN_LIMIT = "20/minute"


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


def guard_blueprint(bp: Blueprint, *roles: str) -> Blueprint:
    """Require a signed-in, active account with one of ``roles`` on every route of ``bp``.

    Anonymous: a redirect to /login?next=… (401 JSON on /api/ paths); another role: 403.
    Call it once where the blueprint is defined; returns ``bp``. ``bp.guarded_roles`` records
    the roles so the access-matrix test can find every guarded blueprint.
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
            sign_in(result.account)
            notice = accounts().take_reset_notice(result.account.id)
            if notice is not None:
                flash(_("您的密码曾由管理员 %(by)s 于 %(at)s 重置。如有疑问，请联系管理员。",
                        by=notice.by, at=local_time(notice.at)), "warn")
            return redirect(_safe_next(request.args.get("next")) or home_url(current_user))
        error = str(SIGN_IN_REFUSED[result.reason])
    status = 200 if error is None and not form.errors else 400
    return render_template("auth/login.html", form=form, error=error), status


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
    """The owner sets a new password through the single-use link an admin's reset gave."""
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
            accounts().complete_reset(token, form.new.data)
        except AccountError as exc:
            error = exc.message_zh if _lang() == "zh" else exc.message_en
        else:
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
