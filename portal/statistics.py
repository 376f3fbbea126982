"""Annual statistics direct reporting (检验检测统计直报) in the portal: the institution's filing
(/institution/statistics/…) and the reviewer's queue, review and national tables
(/regulator/statistics/…).

The routes join the institution and regulator blueprints, so their guards (role, and for the
regulator the officer's authority) and the access-matrix tests cover them. Jurisdiction and
ownership are the registry's (registry/statistics/service.py). Views parse, call, render.
"""
from __future__ import annotations

import re

from flask import abort, flash, g, jsonify, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from registry.institutions.models import Institution
from registry.statistics.reports import PdfRefused, Section
from registry.statistics.service import STATUSES, FilingView, NotAllowed, StatisticsRefused, check_year
from registry.statistics.survey import FieldError, Schema, load_schema, version_for_year
from registry.statistics.tables import DIMENSIONS, MEASURES, Tables

from . import exports
from .charts import Series, stacked_bars
from .errors import error_response
from .extensions import db_session, registry
from .i18n import authority_name, current_language, local_time
from .institution import bp as institution_bp
from .regulator import bp as regulator_bp
from .regulator import officer

STATUS_LABELS = {
    "not_started": _l("未填报"), "draft": _l("草稿"), "submitted": _l("已提交"), "returned": _l("已退回修改"),
    "resubmitted": _l("已重新提交"), "approved": _l("已审核通过"), "reopened": _l("已重新开放修改"),
}
EVENT_LABELS = {
    "filing_opened": _l("开始填报"), "reviewer_chosen": _l("选择审核部门"), "filing_submitted": _l("提交"),
    "filing_returned": _l("退回修改"), "filing_resubmitted": _l("重新提交"), "filing_approved": _l("审核通过"),
    "filing_reopened": _l("重新开放修改"), "attachment_added": _l("上传附件"), "attachment_removed": _l("删除附件"),
}
FIELD_ERRORS = {
    "required": _l("请填写此项。"),
    "not_a_number": _l("请填写数字，如 1234.5。"),
    "not_whole": _l("请填写整数。"),
    "too_small": _l("不能小于 %(min)s。"),
    "too_large": _l("不能大于 %(max)s。"),
    "unknown_choice": _l("请从列出的选项中选择。"),
    "too_long": _l("每项不能超过 %(max)s 个字符。"),
    "too_many": _l("最多填写 %(max)s 项。"),
    "duplicate": _l("有重复的行，请删除重复项。"),
}
REFUSALS = {
    "not_open": _l("该年度的统计直报尚未开放。"),
    "wrong_state": _l("当前状态下不能进行此操作。"),
    "reason_required": _l("请填写重新开放的理由。"),
    "comment_required": _l("退回时请至少对一个字段填写修改意见。"),
    "unknown_field": _l("修改意见针对的字段不存在。"),
    "unknown_reviewer": _l("请选择列出的审核部门之一。"),
    "invalid": _l("表格中有需要更正的内容，请按各字段的提示修改后再提交。"),
    "bad_year": _l("年份无效。"),
    "unknown_section": _l("该章节不存在或不适用于本机构。"),
    "unknown_attachment": _l("该附件不存在。"),
}
REPORT_LABELS = {"annual": _l("年度报告"), "social": _l("社会责任报告")}
PDF_ERRORS = {
    "empty": _l("文件是空的。"),
    "too_large": _l("文件超过 %(mb)s MB。"),
    "wrong_type": _l("只接受 PDF 文件（按文件内容判断）。"),
    "broken": _l("文件已损坏或不是完整的 PDF，无法读取。"),
    "encrypted": _l("PDF 有密码保护，请去掉密码后重新上传。"),
    "too_many": _l("每个章节最多 %(n)s 个附件。"),
}
_ATTACHMENT_ID = re.compile(r"^[0-9a-f]{32}$")
RULE_LABELS = {
    "numbers_missing": _l("申报报告份数多于该年度四个季度登记的报告编号（漏报或瞒报编号）"),
    "numbers_undeclared": _l("登记的报告编号多于申报的报告份数（报告份数少报）"),
    "yoy_change": _l("与上年相比变化超过阈值"),
    "ratio_far": _l("比率远离全国中位数"),
    "certificate_not_own": _l("所列证书不属于本法人"),
    "certificate_expired": _l("所列证书在统计年度前已过期或已撤销"),
    "late_filing": _l("逾期填报"),
    "missing_filing": _l("截止日期已过仍未填报"),
}
RATIO_LABELS = {"revenue_per_staff": _l("人均营业收入（万元/人）"), "reports_per_staff": _l("人均报告份数（份/人）"),
                "revenue_per_report": _l("每份报告营业收入（万元/份）")}
DIMENSION_LABELS = {"province": _l("按省份"), "field": _l("按专业领域"), "type": _l("按机构类型"), "size": _l("按规模")}
MEASURE_LABELS = {"institutions": _l("机构数"), "revenue": _l("营业收入（万元）"), "staff": _l("从业人员"),
                  "instruments": _l("仪器设备（台套）"), "instrument_value": _l("仪器设备原值（万元）"),
                  "reports": _l("报告份数")}
SIZE_LABELS = {"large": _l("规模以上（营业收入 ≥ 1000 万元）"), "small": _l("规模以下")}
SORTS = ("name", "province", "city", "status", "submitted", "findings")


def _language() -> str:
    return current_language()


def field_error(error: FieldError | None) -> str:
    if error is None:
        return ""
    return str(FIELD_ERRORS.get(error.code, error.code)) % error.params if error.params else str(FIELD_ERRORS.get(error.code, error.code))


def _refusal(exc: StatisticsRefused) -> str:
    return str(REFUSALS.get(exc.code, exc.code))


def _field_label(schema: Schema, key: str) -> str:
    f = schema.by_key.get(key)
    return f.text(f.label, _language()) if f else key


def answer_text(schema: Schema, key: str, value) -> str:
    """An answer as the reviewer reads it: choices by their label in the page's language."""
    f = schema.by_key.get(key)
    if f is None or value in (None, "", []):
        return "—"
    if f.type == "boolean":
        return str(_("是")) if str(value) in ("1", "true", "True") else (str(_("否")) if str(value) in ("0", "false", "False") else str(value))
    if f.type in ("choice", "province"):
        return f.choice_label(str(value), _language())
    if f.type == "multichoice":
        return "、".join(f.choice_label(str(v), _language()) for v in value)
    return str(value)


def finding_text(schema: Schema, finding) -> str:
    """A finding's figures in words."""
    fig = finding.figures
    if finding.rule in ("numbers_missing", "numbers_undeclared"):
        declared, registered = "{:,}".format(fig["declared"]), "{:,}".format(fig["registered"])
        difference = "{:+,}".format(fig["difference"])
        return _("申报 %(declared)s 份，登记编号 %(registered)s 个，相差 %(difference)s（允许 %(pct)s%%）",
                 declared=declared, registered=registered, difference=difference,
                 pct=round(fig["tolerance"] * 100, 1))
    if finding.rule == "yoy_change":
        return _("%(field)s：本年 %(now)s，上年 %(before)s，变化 %(change)s%%（阈值 ±%(pct)s%%）",
                 field=_field_label(schema, fig["field"]), now=fig["this_year"], before=fig["last_year"],
                 change=round(fig["change"] * 100, 1), pct=round(fig["threshold"] * 100))
    if finding.rule == "ratio_far":
        return _("%(ratio)s：%(value)s，全国中位数 %(median)s（超过 %(factor)s 倍之差）",
                 ratio=RATIO_LABELS.get(fig["ratio"], fig["ratio"]), value=fig["value"], median=fig["median"],
                 factor=fig["factor"])
    if finding.rule in ("certificate_not_own", "certificate_expired"):
        return fig.get("certificate", "")
    return ""


@institution_bp.context_processor
@regulator_bp.context_processor
def _statistics_labels() -> dict:
    return {"stat_status_labels": STATUS_LABELS, "stat_event_labels": EVENT_LABELS, "field_error": field_error,
            "answer_text": answer_text, "rule_labels": RULE_LABELS, "finding_text": finding_text,
            "stat_language": _language, "report_labels": REPORT_LABELS, "file_size": file_size}


def file_size(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{max(size // 1024, 1)} KB"


def pdf_error(reason: str, filename: str | None) -> str:
    service = registry().statistics
    text = str(PDF_ERRORS.get(reason, PDF_ERRORS["broken"])) % {"mb": service.max_attachment_bytes // (1024 * 1024),
                                                               "n": service.max_attachments}
    return f"“{filename}”：{text}" if filename else text


# --- the institution's filing --------------------------------------------------------------------
def _open_years() -> list:
    return registry().statistics.years()


@institution_bp.get("/statistics")
def statistics_home():
    years = _open_years()
    service = registry().statistics
    rows = []
    for year in years:
        filing = service.filing_for(g.account.institution_id, year.year, actor=g.account.username) \
            if year == years[0] else None
        rows.append((year, filing))
    return render_template("institution/statistics.html", rows=rows)


def _form_answers(schema: Schema) -> dict:
    answers = {}
    for f in schema.fields:
        answers[f.key] = request.form.getlist(f.key) if f.type == "multichoice" else request.form.get(f.key, "")
    return answers


def _form_report(sections: list[Section]) -> dict[str, str]:
    return {s.key: request.form.get(f"section_{s.key}", "") for s in sections}


def _save_draft(view: FilingView, year: int) -> FilingView:
    return registry().statistics.save(
        g.account.institution_id, year, _form_answers(view.schema), actor=g.account.username,
        reviewer_code=(request.form.get("reviewer") or "").strip()[:2] or None, report=_form_report(view.sections))


def _attach_files(view: FilingView, year: int) -> dict[str, str]:
    """The files chosen under each section, each checked and kept; the problems by section."""
    service, problems = registry().statistics, {}
    for section in view.sections:
        for upload in request.files.getlist(f"file_{section.key}"):
            if not upload or not upload.filename:
                continue
            try:
                service.add_attachment(g.account.institution_id, year, section.key, upload.stream, upload.filename,
                                       actor=g.account.username)
            except PdfRefused as exc:
                problems.setdefault(section.key, []).append(pdf_error(exc.reason, upload.filename))
    return {k: " ".join(v) for k, v in problems.items()}


@institution_bp.route("/statistics/<int:year>", methods=["GET", "POST"])
def statistics_form(year: int):
    service = registry().statistics
    try:
        check_year(year)
        view = service.filing_for(g.account.institution_id, year, actor=g.account.username)
    except StatisticsRefused:
        abort(404)
    shown_errors: dict = {}
    file_errors: dict = {}
    status = 200
    if request.method == "POST":
        step = request.form.get("step", "save")
        try:
            view = _save_draft(view, year)
            removing = (request.form.get("remove") or "").strip()
            if removing:
                service.remove_attachment(g.account.institution_id, year, removing[:32], actor=g.account.username)
                flash(_("附件已删除。"), "success")
                return redirect(url_for("institution.statistics_form", year=year, _anchor="reports"), 303)
            file_errors = _attach_files(view, year)
            if file_errors:
                view = service.filing_for(g.account.institution_id, year, actor=g.account.username)
                return render_template("institution/statistics_form.html", v=view, errors={}, file_errors=file_errors,
                                       error_summary_text=_("附件未能上传，其他内容已保存为草稿。"),
                                       reviewers=_reviewer_choices(view)), 400
            if step == "submit":
                view = service.submit(g.account.institution_id, year, actor=g.account.username)
                flash(_("已提交，等待审核部门审核。"), "success")
                return redirect(url_for("institution.statistics_form", year=year), 303)
            flash(_("草稿已保存。"), "success")
            return redirect(url_for("institution.statistics_form", year=year), 303)
        except StatisticsRefused as exc:
            if exc.code != "invalid":
                flash(_refusal(exc), "error")
                return redirect(url_for("institution.statistics_form", year=year), 303)
            view = service.filing_for(g.account.institution_id, year, actor=g.account.username)
            shown_errors, status = exc.errors, 400
    return render_template("institution/statistics_form.html", v=view, errors=shown_errors, file_errors=file_errors,
                           error_summary_text=_refusal(StatisticsRefused("invalid")) if shown_errors else "",
                           reviewers=_reviewer_choices(view)), status


@institution_bp.post("/statistics/<int:year>/draft")
def statistics_autosave(year: int):
    """The filing page's background save (portal/static/autosave.js): the answers and section
    texts as typed, never files; JSON with the time saved, or why not (409 once submitted)."""
    service = registry().statistics
    try:
        check_year(year)
        view = service.filing_for(g.account.institution_id, year, actor=g.account.username)
        _save_draft(view, year)
    except StatisticsRefused as exc:
        if exc.code in ("not_open", "bad_year"):
            abort(404)
        return jsonify({"saved": False, "message": _refusal(exc)}), 409
    return jsonify({"saved": True, "at": local_time(service.now())[-5:]})


def _send_attachment(path, name: str):
    response = send_file(path, mimetype="application/pdf", as_attachment=True, download_name=name, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@institution_bp.get("/statistics/filings/<int:filing_id>/attachments/<attachment_id>")
def statistics_attachment(filing_id: int, attachment_id: str):
    """One of the institution's own files (another's: 404)."""
    if not _ATTACHMENT_ID.match(attachment_id):
        abort(404)
    try:
        path, name = registry().statistics.attachment_file(filing_id, attachment_id,
                                                           institution_id=g.account.institution_id)
    except LookupError:
        abort(404)
    return _send_attachment(path, name)


def _reviewer_choices(view: FilingView) -> list[tuple[str, str]]:
    session = db_session()
    inst = session.get(Institution, view.filing.institution_id)
    choices = registry().statistics.reviewer_choices(session, inst, list(view.answers.get("fields") or []))
    return [(a.code, authority_name(a)) for a in choices]


@institution_bp.get("/statistics/filings/<int:filing_id>")
def statistics_filing(filing_id: int):
    try:
        view = registry().statistics.own_view(g.account.institution_id, filing_id)
    except LookupError:
        abort(404)
    return render_template("institution/statistics_filing.html", v=view)


# --- the reviewer's queue ------------------------------------------------------------------------
def _year_arg():
    years = _open_years()
    text = request.args.get("year", "").strip()
    if text:
        if not text.isdigit() or int(text) not in {y.year for y in years}:
            abort(404)
        return next(y for y in years if y.year == int(text)), years
    if not years:
        return None, years
    return years[0], years


def _sorted(rows, sort: str, descending: bool):
    keys = {"name": lambda r: r.name, "province": lambda r: (r.province, r.city), "city": lambda r: (r.city, r.name),
            "status": lambda r: STATUSES.index(r.status) if r.status in STATUSES else -1,
            "submitted": lambda r: (r.submitted_at is None, r.submitted_at.isoformat() if r.submitted_at else ""),
            "findings": lambda r: r.findings}
    return sorted(rows, key=keys.get(sort, keys["province"]), reverse=descending)


def _queue_rows(year: int):
    rows = registry().statistics.queue(officer(), year)
    status = request.args.get("status", "")
    if status == "missing":
        rows = [r for r in rows if r.missing]
    elif status in STATUS_LABELS:
        rows = [r for r in rows if r.status == status]
    sort = request.args.get("sort", "province")
    return _sorted(rows, sort if sort in SORTS else "province", request.args.get("desc") == "1")


@regulator_bp.get("/statistics")
def statistics_queue():
    year, years = _year_arg()
    if year is None:
        return render_template("regulator/statistics_queue.html", year=None, years=years, rows=[],
                               by_province=[], by_city=[], args={})
    all_rows = registry().statistics.queue(officer(), year.year)
    rows = _queue_rows(year.year)
    service = registry().statistics
    args = {k: v for k, v in request.args.items() if k in ("year", "status", "sort", "desc")}
    return render_template("regulator/statistics_queue.html", year=year, years=years, rows=rows,
                           by_province=service.completion(all_rows, by="province"),
                           by_city=service.completion(all_rows, by="city"), args=args, sorts=SORTS)


QUEUE_HEADER = ["uscc", "institution", "province", "city", "reviewer", "status", "submitted_at", "late",
                "missing", "findings"]


@regulator_bp.get("/statistics.<any(csv, xlsx):fmt>")
def statistics_queue_export(fmt: str):
    year, _years = _year_arg()
    if year is None:
        abort(404)
    rows = ([r.uscc, r.name, r.province, r.city, r.reviewer_code, r.status, r.submitted_at, r.late, r.missing,
             r.findings] for r in _queue_rows(year.year))
    return exports.table_response(fmt, f"statistics-{year.year}", QUEUE_HEADER, rows, sheet="filings")


# --- one filing under review ---------------------------------------------------------------------
@regulator_bp.get("/statistics/filings/<int:filing_id>/attachments/<attachment_id>")
def statistics_review_attachment(filing_id: int, attachment_id: str):
    """A file of a filing in the officer's jurisdiction (SAMR: any)."""
    if not _ATTACHMENT_ID.match(attachment_id):
        abort(404)
    try:
        path, name = registry().statistics.attachment_file(filing_id, attachment_id, officer=officer())
    except NotAllowed:
        return error_response(403)
    except LookupError:
        abort(404)
    return _send_attachment(path, name)


@regulator_bp.get("/statistics/filings/<int:filing_id>")
def statistics_review(filing_id: int):
    try:
        view = registry().statistics.view(officer(), filing_id)
    except NotAllowed:
        return error_response(403)
    return render_template("regulator/statistics_review.html", v=view)


@regulator_bp.post("/statistics/filings/<int:filing_id>/<any(return, approve, reopen):step>")
def statistics_step(filing_id: int, step: str):
    service = registry().statistics
    try:
        if step == "return":
            comments = {k[len("comment_"):]: v for k, v in request.form.items() if k.startswith("comment_")}
            service.return_filing(officer(), filing_id, comments, request.form.get("note", ""))
            flash(_("已退回机构修改。"), "success")
        elif step == "approve":
            service.approve(officer(), filing_id)
            flash(_("已审核通过。"), "success")
        else:
            service.reopen(officer(), filing_id, request.form.get("reason", ""))
            flash(_("已重新开放，机构可以修改。"), "success")
    except NotAllowed:
        return error_response(403)
    except StatisticsRefused as exc:
        flash(_refusal(exc), "error")
    return redirect(url_for("regulator.statistics_review", filing_id=filing_id), 303)


# --- the national tables -------------------------------------------------------------------------
def group_label(dimension: str, key: str, schema: Schema) -> str:
    if dimension == "province":
        return answer_text(schema, "province", key) if key != "—" else "—"
    if dimension == "field":
        return answer_text(schema, "fields", [key]) if key != "—" else "—"
    if dimension == "type":
        return answer_text(schema, "institution_type", key) if key != "—" else "—"
    return str(SIZE_LABELS.get(key, key))


def table_rows(tables: Tables, schema: Schema):
    """Every table as rows of one sheet: dimension, group, each measure, and the year-on-year
    change of institutions and revenue (in %, blank without last year)."""
    def pct(value):
        return None if value is None else round(value * 100, 1)

    groups = [("total", [tables.total])] + [(d, tables.by[d]) for d in DIMENSIONS]
    for dimension, rows in groups:
        for row in rows:
            if row is None:
                continue
            label = str(_("合计")) if dimension == "total" else group_label(dimension, row.key, schema)
            name = str(_("合计")) if dimension == "total" else str(DIMENSION_LABELS[dimension])
            yield [name, label, *[round(getattr(row.this_year, m), 2) for m in MEASURES],
                   pct(row.change("institutions")), pct(row.change("revenue"))]


def tables_header() -> list[str]:
    return [str(_("分组方式")), str(_("分组")), *[str(MEASURE_LABELS[m]) for m in MEASURES],
            str(_("机构数同比（%）")), str(_("营业收入同比（%）"))]


def tables_workbook(fh, tables: Tables) -> None:
    """The tables as one XLSX sheet (the formula guard of portal/exports.py applies)."""
    schema = load_schema(version_for_year(tables.year))
    exports.write_xlsx(fh, f"{tables.year}", tables_header(), table_rows(tables, schema))


@regulator_bp.get("/statistics/tables")
def statistics_tables():
    year, years = _year_arg()
    if year is None:
        return redirect(url_for("regulator.statistics_queue"), 303)
    tables = registry().statistics.tables(year.year)
    schema = load_schema(year.schema_version)
    charts = []
    for dimension in ("province", "field", "type", "size"):
        rows = tables.by[dimension][:12]
        cats = [(r.key, group_label(dimension, r.key, schema)) for r in rows]
        series = [Series("this", str(year.year), "#0b5cad")]
        charts.append(stacked_bars(f"{DIMENSION_LABELS[dimension]} · {MEASURE_LABELS['revenue']}", cats, series,
                                   {(r.key, "this"): r.this_year.revenue for r in rows}, width=520))
    return render_template("regulator/statistics_tables.html", year=year, years=years, tables=tables,
                           schema=schema, charts=charts, dimension_labels=DIMENSION_LABELS,
                           measure_labels=MEASURE_LABELS, measures=MEASURES, group_label=group_label,
                           dimensions=DIMENSIONS)


@regulator_bp.get("/statistics/tables.<any(csv, xlsx):fmt>")
def statistics_tables_export(fmt: str):
    year, _years = _year_arg()
    if year is None:
        abort(404)
    tables = registry().statistics.tables(year.year)
    schema = load_schema(year.schema_version)
    rows = list(table_rows(tables, schema))  # labels resolved now: a CSV streams after the request
    return exports.table_response(fmt, f"statistics-tables-{year.year}", tables_header(), rows, sheet="tables")

