"""The admin's pages of the annual statistics (/admin/statistics…): each open year's calendar
(the notice published, the filing and review deadlines, SAMR's quality check), the year's report
sections (registry/statistics/reports.py), and the table of national review groups by
professional field. Every change is sealed in the admin log. The routes join the admin
blueprint, so its guard and the access-matrix test cover them."""
from __future__ import annotations

import datetime as dt

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from registry.institutions.models import Authority
from registry.statistics.reports import APPLIES, MAX_SECTIONS, REPORTS, SectionsRefused
from registry.statistics.service import MAX_YEAR, StatisticsRefused, check_year
from registry.statistics.survey import load_schema, version_for_year

from .admin import bp
from .extensions import db_session, registry
from .i18n import authority_name, current_language
from .statistics import REPORT_LABELS

CALENDAR = (("opens_on", _l("开放填报（通知发布）")), ("file_by", _l("机构填报截止")),
            ("review_by", _l("审核部门审核截止")), ("check_by", _l("市场监管总局质量核查截止")))
SECTION_ERRORS = {
    "bad_key": _l("第 %(row)s 行：代码须以小写字母开头，只用小写字母、数字和下划线（2–40 个字符）。"),
    "key_taken": _l("第 %(row)s 行：该代码已被调查表字段使用，请换一个。"),
    "duplicate_key": _l("第 %(row)s 行：代码重复。"),
    "title_required": _l("第 %(row)s 行：请填写中文和英文标题。"),
    "too_long": _l("第 %(row)s 行：标题不超过 100 个字符，说明不超过 500 个字符。"),
    "bad_choice": _l("第 %(row)s 行：请从列出的选项中选择。"),
    "too_many": _l("最多 %(row)s 个章节。"),
}
APPLIES_LABELS = {"all": _l("所有机构"), "national_center": _l("仅拥有国家质检中心的机构")}
BLANK_ROWS = 3


def _year_or_404(year: int):
    try:
        check_year(year)
    except StatisticsRefused:
        abort(404)
    row = next((y for y in registry().statistics.years() if y.year == year), None)
    if row is None:
        abort(404)
    return row


def _date(name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat((request.form.get(name) or "").strip())
    except ValueError:
        return None


@bp.route("/statistics", methods=["GET", "POST"])
def statistics_calendar():
    """Each open year's dates; a POST sets one year's (``year`` and the four dates)."""
    service = registry().statistics
    error, status = None, 200
    if request.method == "POST":
        text = (request.form.get("year") or "").strip()
        if not text.isdigit() or int(text) not in {y.year for y in service.years()}:
            abort(400)
        dates = {name: _date(name) for name, _label in CALENDAR}
        if None in dates.values():
            error, status = (_("%(year)s 年：请按“2027-01-31”的格式填写每个日期。", year=text), 400)
        else:
            try:
                service.set_calendar(int(text), actor=g.account.username, **dates)
            except StatisticsRefused:
                error, status = (_("%(year)s 年：日期须依次为开放填报 ≤ 填报截止 ≤ 审核截止 ≤ 核查截止。", year=text), 400)
            else:
                flash(_("已保存 %(year)s 年的日程。", year=text), "ok")
                return redirect(url_for(".statistics_calendar"), 303)
    return render_template("admin/statistics.html", years=service.years(), calendar=CALENDAR, error=error,
                           posted=request.form if status == 400 else {}), status


@bp.route("/statistics/<int:year>/sections", methods=["GET", "POST"])
def statistics_sections(year: int):
    """The year's report sections, one row each (a row emptied is removed, blank rows add)."""
    row = _year_or_404(year)
    service = registry().statistics
    error, status, rows = None, 200, None
    if request.method == "POST":
        count = request.form.get("rows", "")
        if not count.isdigit() or int(count) > MAX_SECTIONS + BLANK_ROWS:
            abort(400)
        rows = [{"key": request.form.get(f"key_{i}", ""), "report": request.form.get(f"report_{i}", ""),
                 "title_zh": request.form.get(f"title_zh_{i}", ""), "title_en": request.form.get(f"title_en_{i}", ""),
                 "help_zh": request.form.get(f"help_zh_{i}", ""), "help_en": request.form.get(f"help_en_{i}", ""),
                 "required": request.form.get(f"required_{i}") == "1",
                 "applies": request.form.get(f"applies_{i}", "")} for i in range(int(count))]
        try:
            service.set_sections(year, rows, actor=g.account.username)
        except SectionsRefused as exc:
            error, status = str(SECTION_ERRORS[exc.code]) % {"row": exc.row}, 400
        else:
            flash(_("已保存 %(year)s 年的报告章节。", year=year), "ok")
            return redirect(url_for(".statistics_sections", year=year), 303)
    if rows is None:
        rows = [{"key": s.key, "report": s.report, "title_zh": s.title_zh, "title_en": s.title_en,
                 "help_zh": s.help_zh, "help_en": s.help_en, "required": s.required, "applies": s.applies}
                for s in service.sections(year)]
    rows = rows + [{"report": "annual", "applies": "all", "required": True}] * BLANK_ROWS
    return render_template("admin/statistics_sections.html", year=row, rows=rows, error=error, reports=REPORTS,
                           applies=APPLIES, applies_labels=APPLIES_LABELS, report_labels=REPORT_LABELS), status


@bp.route("/statistics/review-groups", methods=["GET", "POST"])
def statistics_review_groups():
    """Professional field → the national review group (行业评审组) of national-certificate holders in it."""
    service = registry().statistics
    years = service.years()
    schema = load_schema(years[0].schema_version if years else version_for_year(MAX_YEAR))
    fields = [(code, en if current_language() == "en" else zh) for code, zh, en in schema.by_key["fields"].choices]
    groups = list(db_session().scalars(select(Authority).where(Authority.kind == "review_group").order_by(Authority.code)))
    error, status = None, 200
    current = service.review_groups()
    if request.method == "POST":
        chosen = {code: (request.form.get(f"group_{code}") or "").strip() or None for code, _label in fields
                  if f"group_{code}" in request.form}
        if not chosen:
            abort(400)
        try:
            service.set_review_groups({**{c: current.get(c) for c, _label in fields}, **chosen},
                                      fields=[c for c, _label in fields], actor=g.account.username)
        except StatisticsRefused:
            error, status = _("请从列出的评审组中选择。"), 400
        else:
            flash(_("已保存评审组对照表。"), "ok")
            return redirect(url_for(".statistics_review_groups"), 303)
    return render_template("admin/statistics_groups.html", fields=fields, groups=[(a.code, authority_name(a)) for a in groups],
                           current=current, error=error), status
