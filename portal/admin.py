"""The admin area (/admin/): accounts (create, disable/enable, reset password), the holiday
table the working-day calendar falls back on, platform keys, and the sealed admin log of all of these."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from registry.accounts.accounts import MIN_PASSWORD, RESET_LIFETIME, ROLES, AccountError
from registry.complaints.holidays import HolidayService
from registry.notifications.outbox import mask_address

from . import platform_keys
from .auth import accounts, guard_blueprint, reset_link
from .forms import _Choice
from .extensions import registry
from .i18n import current_language
from .paging import PER_PAGE, clamp, page_arg, search_arg
from .urls import int_arg

bp = guard_blueprint(Blueprint("admin", __name__, url_prefix="/admin"), "admin")

ROLE_LABELS = {"institution": _l("机构用户"), "regulator": _l("监管部门用户"), "admin": _l("管理员")}


class AccountForm(FlaskForm):
    username = StringField(_l("用户名"), validators=[DataRequired(_l("请填写用户名。")), Length(max=64)])
    role = SelectField(_l("角色"), choices=[_Choice(r, ROLE_LABELS[r]) for r in ROLES], validators=[DataRequired()])
    institution = StringField(_l("机构统一社会信用代码（机构用户）"), validators=[Optional(), Length(max=18)])
    authority = StringField(_l("监管部门代码（监管部门用户）"), validators=[Optional(), Length(max=2)])
    password = PasswordField(_l("初始密码（至少 %(n)s 个字符）", n=MIN_PASSWORD),
                             validators=[DataRequired(_l("请填写初始密码。")), Length(max=200)])


class HolidayForm(FlaskForm):
    day = DateField(_l("日期"), validators=[DataRequired(_l("请填写日期。"))])
    name = StringField(_l("名称（如“春节”）"), validators=[DataRequired(_l("请填写名称。")), Length(max=100)])
    is_workday = BooleanField(_l("调休上班日（而非放假）"))


def _holidays() -> HolidayService:
    return registry().holidays


def _actor() -> str:
    return g.account.username


def _message(exc: AccountError) -> str:
    return exc.message_en if current_language() == "en" else exc.message_zh


def _post_only_form() -> None:
    if not FlaskForm().validate_on_submit():
        abort(400)


@bp.route("/", methods=["GET", "POST"])
def index():
    form = AccountForm()
    error = None
    if form.validate_on_submit():
        try:
            account = accounts().create(username=form.username.data, password=form.password.data,
                                        role=form.role.data, institution_uscc=form.institution.data or None,
                                        authority_code=form.authority.data or None, actor=_actor())
        except AccountError as exc:
            error = _message(exc)
        else:
            flash(_("已创建账号 %(name)s。", name=account.username), "ok")
            return redirect(url_for(".index"), 303)
    status = 400 if (error or form.errors) else 200
    q, page = search_arg(), page_arg()
    listed, total = accounts().page(q, page, PER_PAGE)
    pager = clamp(page, total)
    if pager.page != page:  # past the last page: show the last one
        listed, _total = accounts().page(q, pager.page, PER_PAGE)
    return render_template("admin/index.html", form=form, error=error, accounts=listed, pager=pager, q=q,
                           role_labels=ROLE_LABELS, action_form=FlaskForm(), now_utc=registry().clock()), status


@bp.get("/accounts/<int:account_id>/disable")
def disable_check(account_id: int):
    """The check page before disabling: what will change, one confirm button."""
    return _check_page(account_id, "disable")


@bp.get("/accounts/<int:account_id>/reset")
def reset_check(account_id: int):
    """The check page before a password reset."""
    return _check_page(account_id, "reset")


def _check_page(account_id: int, what: str, status: int = 200):
    account = accounts().get(account_id)
    if account is None:
        abort(404)
    return render_template("admin/check.html", account=account, what=what, role_labels=ROLE_LABELS,
                           action_form=FlaskForm(), hours=int(RESET_LIFETIME.total_seconds() // 3600),
                           masked_email=account.verified_email and mask_address(account.verified_email)), status


@bp.get("/accounts/<int:account_id>")
def account_page(account_id: int):
    """One account; after disabling or enabling it, the confirmation that names the result."""
    account = accounts().get(account_id)
    if account is None:
        abort(404)
    done = request.args.get("done") if request.args.get("done") in ("disable", "enable") else None
    return render_template("admin/account.html", account=account, done=done, role_labels=ROLE_LABELS,
                           action_form=FlaskForm())


@bp.post("/accounts/<int:account_id>/disable")
def disable(account_id: int):
    return _set_active(account_id, False)


@bp.post("/accounts/<int:account_id>/enable")
def enable(account_id: int):
    return _set_active(account_id, True)


def _set_active(account_id: int, active: bool):
    _post_only_form()
    try:
        account = accounts().set_active(account_id, active, actor=_actor())
    except AccountError:
        abort(404)
    return redirect(url_for(".account_page", account_id=account.id, done="enable" if active else "disable"), 303)


@bp.post("/accounts/<int:account_id>/reset")
def reset(account_id: int):
    """Lock the account and e-mail its owner a single-use link (the admin never sees it)."""
    _post_only_form()
    hours = int(RESET_LIFETIME.total_seconds() // 3600)
    try:
        account, token = accounts().reset_password(account_id, actor=_actor())
    except AccountError as exc:
        if exc.code == "no_verified_email":
            return _check_page(account_id, "reset", 400)
        abort(404)
    registry().notifier.send("password_reset", account.verified_email, account_id=account.id, secret=True,
                             username=account.username, by_admin=True, hours=hours, link=reset_link(token))
    return render_template("admin/reset.html", account=account, hours=hours,
                           masked_email=mask_address(account.verified_email))


@bp.route("/holidays", methods=["GET", "POST"])
def holidays():
    form = HolidayForm()
    error = None
    if form.validate_on_submit():
        try:
            _holidays().add(day=form.day.data, name=form.name.data, is_workday=form.is_workday.data,
                            actor=_actor())
        except AccountError as exc:
            error = _message(exc)
        else:
            flash(_("已添加 %(day)s。", day=form.day.data.isoformat()), "ok")
            return redirect(url_for(".holidays"), 303)
    status = 400 if (error or form.errors) else 200
    return render_template("admin/holidays.html", form=form, error=error, holidays=_holidays().list(),
                           action_form=FlaskForm()), status


@bp.post("/holidays/<int:holiday_id>/delete")
def delete_holiday(holiday_id: int):
    _post_only_form()
    if not _holidays().delete(holiday_id, actor=_actor()):
        abort(404)
    flash(_("已删除。"), "ok")
    return redirect(url_for(".holidays"), 303)


@bp.route("/platforms", methods=["GET", "POST"])
def platforms():
    """Platform keys for bulk verification and the offline snapshot (portal/platform_keys.py)."""
    return platform_keys.keys_page("admin/platforms.html", actor=_actor(), revoke_endpoint="admin.revoke_platform")


@bp.post("/platforms/<int:platform_id>/revoke")
def revoke_platform(platform_id: int):
    return platform_keys.revoke(platform_id, actor=_actor(), back_endpoint="admin.platforms")


LOG_ACTIONS = {
    "create": _l("创建账号"), "disable": _l("停用账号"), "enable": _l("启用账号"), "reset": _l("重置密码"),
    "holiday_add": _l("添加节假日"), "holiday_delete": _l("删除节假日"),
    "platform_issue": _l("签发平台密钥"), "platform_revoke": _l("吊销平台密钥"),
    "stat_calendar": _l("设置统计直报日程"), "stat_sections": _l("设置年度报告章节"),
    "stat_review_groups": _l("设置行业评审组对照表"),
    "onboard_approve": _l("批准账号申请"), "onboard_refuse": _l("拒绝账号申请"), "onboard_bulk": _l("按证书清单创建账号"),
}


OUTBOX_STATES = {"pending": _l("待发送"), "sending": _l("发送中"), "sent": _l("已发送"), "failed": _l("发送失败")}


@bp.get("/outbox")
def outbox():
    """The e-mail outbox, newest first: kind, masked recipient, subject, state — never a body (a
    tracking code or a link) nor a complainant's address."""
    page = int_arg("page", high=1_000_000) or 1
    listing = registry().outbox.page(page)
    return render_template("admin/outbox.html", listing=listing, mask=mask_address, states=OUTBOX_STATES,
                           mail_server=bool(current_app.config.get("MAIL_SERVER")))


@bp.get("/log")
def log():
    """The sealed admin log, newest first, 50 a page."""
    page = int_arg("page", high=1_000_000) or 1
    reg = registry()
    with reg.sessions() as session:
        listing = reg.admin_log.page(session, page)
    return render_template("admin/log.html", listing=listing, actions=LOG_ACTIONS)
