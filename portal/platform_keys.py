"""Platform keys in the consoles: one form and one page, served by the admin area
(/admin/platforms) and by the national regulator's console (/regulator/platforms).

Both issue (the key shown once, on that answer only), list every key with its use per day and
not-found rate from the query log, and revoke; every issue and revoke is sealed in the admin log
with the acting account (:class:`registry.platforms.service.PlatformService`). Each blueprint
keeps its own access control; these helpers only parse, call the registry and render.
"""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from registry.platforms.service import MAX_QUOTA, PlatformError

from .extensions import registry
from .i18n import current_language


class PlatformForm(FlaskForm):
    name = StringField(_l("平台（机构）名称"), validators=[DataRequired(_l("请填写平台（机构）名称。")), Length(max=200)])
    per_minute = IntegerField(_l("每分钟核验条数上限"), validators=[
        InputRequired(_l("请填写每分钟上限（整数）。")), NumberRange(1, MAX_QUOTA, _l("配额须为正整数。"))])
    per_day = IntegerField(_l("每日核验条数上限"), validators=[
        InputRequired(_l("请填写每日上限（整数）。")), NumberRange(1, MAX_QUOTA, _l("配额须为正整数。"))])
    days = IntegerField(_l("有效期（天）"), default=365, validators=[
        InputRequired(_l("请填写有效期（天数）。")), NumberRange(1, 3650, _l("有效期须为 1 至 3650 天。"))])
    origins = TextAreaField(_l("允许浏览器调用的来源（每行一个，如 https://example.com；可留空）"),
                            validators=[Optional(), Length(max=4000)])


def keys_page(template: str, *, actor: str, revoke_endpoint: str):
    """GET lists the keys; a valid POST issues one, shown once on this answer (never cached)."""
    form = PlatformForm()
    error, issued = None, None
    if form.validate_on_submit():
        try:
            key, plaintext = registry().platforms.create(
                name=form.name.data, per_minute=form.per_minute.data, per_day=form.per_day.data, days=form.days.data,
                origins=(form.origins.data or "").split(), created_by=actor)
        except PlatformError as exc:
            error = exc.message_en if current_language() == "en" else exc.message_zh
        else:
            issued = (key, plaintext)
            form = PlatformForm(formdata=None)
    status = 400 if (error or form.errors) else 200
    response = current_app.make_response((render_template(
        template, form=form, error=error, issued=issued, platforms=registry().platforms.list(),
        action_form=FlaskForm(), revoke_endpoint=revoke_endpoint), status))
    response.headers["Cache-Control"] = "no-store"  # the page may carry a key, once
    return response


def revoke(platform_id: int, *, actor: str, back_endpoint: str):
    if not FlaskForm().validate_on_submit():
        abort(400)
    if not registry().platforms.revoke(platform_id, actor=actor):
        abort(404)
    flash(_("已吊销该平台密钥。"), "ok")
    return redirect(url_for(back_endpoint), 303)
