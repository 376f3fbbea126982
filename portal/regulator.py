"""The regulator console (/regulator/): complaint queue and trails, compliance, leads, abnormal list,
and (SAMR only) platform keys.

Access is attached to the blueprint (regulator accounts only); jurisdiction is the registry's
rule (:class:`registry.complaints.casework.Officer`): SAMR sees everything, another authority the
complaints routed to it and the institutions it reviews. Views parse, call the registry, render.
"""
from __future__ import annotations

import re

from flask import Blueprint, abort, flash, g, redirect, render_template, request, send_file, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from registry.compliance.abnormal import AbnormalService
from registry.complaints.casework import (
    FINDINGS,
    CaseworkService,
    InvalidAction,
    NotAllowed,
    Officer,
    QueueFilters,
)
from registry.complaints.service import CATEGORIES, STATUSES
from registry.compliance.service import ComplianceService
from registry.institutions.models import Authority, Institution
from registry.numbers.quarters import Quarter
from registry.tlog.note import parse_verifier

from . import exports, platform_keys
from .auth import guard_blueprint
from .charts import Series, stacked_bars
from .errors import error_response
from .extensions import db_session, registry
from .forms import CATEGORY_LABELS
from .i18n import LANGUAGES, authority_name, current_language
from .paging import page_arg, paginate, search_arg
from .urls import int_arg

bp = guard_blueprint(Blueprint("regulator", __name__, url_prefix="/regulator"), "regulator")

STATUS_LABELS = {
    "received": _l("待受理"),
    "accepted": _l("已受理"),
    "rejected": _l("不予受理"),
    "concluded": _l("已办结"),
}
FINDING_LABELS = {
    "forged": _l("报告系伪造"),
    "not_registered": _l("机构未登记该编号"),
    "misreported": _l("机构报送不实"),
    "unfounded": _l("投诉不成立"),
}
VERDICT_LABELS = {
    "found": _l("已登记"),
    "withdrawn": _l("已撤销"),
    "mismatch": _l("机构不符"),
    "ambiguous": _l("多家机构登记"),
    "not_found": _l("未登记"),
}
SOURCE_LABELS = {"file": _l("文件上传"), "api": _l("接口"), "portal": _l("门户"), "cli": _l("命令行"),
                 "zero": _l("零报告声明")}
STANDING_LABELS = {
    "on_time": _l("按时报送"),
    "zero": _l("零报告声明"),
    "late": _l("逾期报送"),
    "missing": _l("未报送"),
    "pending": _l("报送期内"),
    "not_expected": _l("无有效证书"),
}
EVENT_LABELS = {
    "submitted": _l("投诉已提交"),
    "routed": _l("已分派"),
    "accepted": _l("受理"),
    "rejected": _l("不予受理"),
    "transferred": _l("转办"),
    "info_requested": _l("要求补充材料"),
    "info_provided": _l("投诉人已补充"),
    "note": _l("内部备注"),
    "extended": _l("延长办理期限"),
    "concluded": _l("办结"),
    "personal_data_viewed": _l("查看投诉人信息"),
    "attachment_viewed": _l("下载附件"),
    "attachment_added": _l("投诉人补充了附件"),
}
ACTION_ERRORS = {
    "wrong_state": _l("当前状态下不能进行此操作。"),
    "reason_required": _l("请填写理由或说明。"),
    "unknown_finding": _l("请选择处理结论。"),
    "unknown_authority": _l("请选择另一个有效的转办部门。"),
    "already_extended": _l("办理期限只能延长一次。"),
    "no_question": _l("目前没有待回答的问题。"),
}
ACTOR_LABELS = {"public": _l("投诉人"), "system": _l("系统")}
CERTIFICATE_LABELS = {"valid": _l("有效"), "suspended": _l("暂停"), "revoked": _l("撤销"), "expired": _l("过期")}
YES_NO = {True: _l("是"), False: _l("否")}
# Export column headings in words (an export in the page's language; see _export)
EXPORT_HEADINGS = {
    "reference": _l("投诉编号"), "number": _l("报告编号"), "institution": _l("机构名称"), "authority": _l("办理部门"),
    "category": _l("投诉问题类型"), "status": _l("状态"), "verdict": _l("核验结果"), "received_at": _l("收到时间"),
    "deadline": _l("办理期限"), "workdays_left": _l("剩余工作日"), "overdue": _l("已超期"),
    "waiting_for_complainant": _l("等待投诉人补充"),
    "event_id": _l("事件编号"), "seq": _l("序号"), "at": _l("时间"), "kind": _l("事项"), "actor": _l("操作人"),
    "public": _l("投诉人可见"), "note": _l("说明"),
    "quarter": _l("季度"), "uscc": _l("统一社会信用代码"), "standing": _l("报送情况"),
    "numbers_registered": _l("登记编号数"), "batches": _l("批次数"), "first_upload": _l("首次报送时间"),
    "abnormal": _l("是否列入异常名录"),
    "distinct_clients": _l("不同查询来源数"), "queries": _l("查询次数"), "first_query": _l("首次查询时间"),
    "last_query": _l("最近查询时间"),
    "since": _l("列入时间"), "reason": _l("原因"), "by": _l("操作人"),
}
SHEET_NAMES = {"complaints": _l("投诉"), "trail": _l("办理记录"), "leads": _l("线索"), "abnormal": _l("异常名录")}
STANDING_COLORS = {"on_time": "#17692e", "zero": "#4f9a62", "late": "#b7791f", "missing": "#a4141b",
                   "pending": "#8a94a6"}
AGE_BUCKETS = ((0, 3, "0–3"), (4, 7, "4–7"), (8, 15, "8–15"), (16, 30, "16–30"), (31, 10 ** 6, ">30"))


def casework() -> CaseworkService:
    return registry().casework


def compliance() -> ComplianceService:
    return registry().compliance


def abnormal() -> AbnormalService:
    return registry().abnormal


@bp.before_request
def _officer() -> None:
    account = g.account.account
    if account.authority is None:
        abort(403)
    g.officer = Officer(username=account.username, authority_id=account.authority_id,
                        authority_code=account.authority.code)
    g.authority_name = authority_name(account.authority)


@bp.after_request
def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.errorhandler(NotAllowed)
def _not_allowed(_exc):
    return error_response(403)


@bp.errorhandler(LookupError)
def _missing(_exc):
    return error_response(404)


@bp.context_processor
def _labels() -> dict:
    return {
        "officer": g.get("officer"), "status_labels": STATUS_LABELS, "finding_labels": FINDING_LABELS,
        "standing_labels": STANDING_LABELS, "verdict_labels": VERDICT_LABELS, "event_labels": EVENT_LABELS, "category_labels": CATEGORY_LABELS,
        "action_labels": ACTION_LABELS, "note_labels": NOTE_LABELS,
        "event_note": event_note, "available_actions": available_actions,
        "source_labels": SOURCE_LABELS, "actor_labels": ACTOR_LABELS, "yes_no": YES_NO,
        "certificate_labels": CERTIFICATE_LABELS,
    }


_FINDING_NOTE = re.compile(r"^\[(\w+)\] ?(.*)$", re.S)
_TRANSFER_NOTE = re.compile(r"^→ (\w+) [^:]*: ?(.*)$", re.S)


def event_note(event) -> str:
    """An event's note in words: the finding code of a conclusion and the authority of a transfer
    (kept in the sealed note as `[forged] …` and `→ 19 name: …`) in the page's language."""
    note = event.note or ""
    colon = ": " if current_language() == "en" else "："
    if event.kind == "concluded":
        m = _FINDING_NOTE.match(note)
        if m and m.group(1) in FINDING_LABELS:
            return f"{FINDING_LABELS[m.group(1)]}{colon}{m.group(2)}"
    if event.kind == "transferred":
        m = _TRANSFER_NOTE.match(note)
        if m:
            target = db_session().scalar(select(Authority).where(Authority.code == m.group(1)))
            if target is not None:
                label = _("转办至 %(name)s", name=authority_name(target))
                return f"{label}{colon}{m.group(2)}"
    return note


def officer() -> Officer:
    return g.officer


# --- exports --------------------------------------------------------------------------------
def _export_in_words() -> bool:
    """The console's export links carry the page's language (``lang``): the file then reads in
    that language, ready to forward. Without it the columns keep their codes (docs/contract.md)."""
    return request.args.get("lang") in LANGUAGES


def _authority_names() -> dict[str, str]:
    return {a.code: authority_name(a) for a in db_session().scalars(select(Authority))}


def _export(fmt: str, basename: str, header: list[str], rows, *, sheet: str):
    """A table as CSV or XLSX (formula guard in portal/exports.py): in words in the page's
    language when the link asked for one — headings, statuses, categories, verdicts, standings,
    events, actors, authorities by name, quarters, yes/no — else as codes."""
    if not _export_in_words():
        return exports.table_response(fmt, basename, header, rows, sheet=sheet)
    # every label resolved now: a CSV streams after the request's context has ended
    words = {column: {k: str(v) for k, v in labels.items()} for column, labels in (
        ("category", CATEGORY_LABELS), ("status", STATUS_LABELS), ("verdict", VERDICT_LABELS),
        ("standing", STANDING_LABELS), ("kind", EVENT_LABELS), ("actor", ACTOR_LABELS))}
    if "authority" in header:
        words["authority"] = _authority_names()
    yes_no = {k: str(v) for k, v in YES_NO.items()}
    english = current_language() == "en"

    def word(column: str, value):
        if isinstance(value, bool):
            return yes_no[value]
        if column == "quarter" and value is not None and len(text := str(value)) == 6:
            return f"{text[:4]} Q{text[-1]}" if english else f"{text[:4]}年第{text[-1]}季度"
        labels = words.get(column)
        if labels is not None and isinstance(value, str):
            return labels.get(value, value)
        return value

    translated = ([word(column, value) for column, value in zip(header, row)] for row in rows)
    return exports.table_response(fmt, basename, [str(EXPORT_HEADINGS.get(h, h)) for h in header], translated,
                                  sheet=str(SHEET_NAMES.get(sheet, sheet)))


def _quarter_arg(name: str = "quarter") -> Quarter | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        return Quarter.parse(text)
    except ValueError:
        abort(400)


QUEUE_ARGS = ("status", "overdue", "institution", "quarter", "category", "q")  # never "page": exports hold all


def _filters() -> QueueFilters:
    args = request.args
    status = args.get("status", "open")
    if status not in ("open", "all", *STATUSES):
        status = "open"
    quarter = _quarter_arg()
    institution_id = int_arg("institution")
    category = args.get("category") if args.get("category") in CATEGORIES else None
    return QueueFilters(status=status, overdue=args.get("overdue") == "1", institution_id=institution_id,
                        quarter=str(quarter) if quarter else None, category=category,
                        search=(args.get("q") or "").strip()[:200] or None)


# --- the dashboard --------------------------------------------------------------------------
@bp.get("/")
def index():
    items = casework().queue(officer(), QueueFilters(status="all"))
    open_items = [i for i in items if i.status in ("received", "accepted")]
    overdue = [i for i in open_items if i.deadline.overdue]
    status_chart = _status_age_chart(open_items)
    trend = compliance().trend(officer(), count=8)
    return render_template("regulator/index.html", open_count=len(open_items), overdue=overdue[:10],
                           overdue_count=len(overdue), total=len(items), age_chart=status_chart,
                           uploads_chart=_uploads_chart(trend), trend=trend,
                           by_status={s: sum(1 for i in items if i.status == s) for s in STATUSES})


def _status_age_chart(items):
    series = [Series("received", str(STATUS_LABELS["received"]), "#0b5cad"),
              Series("accepted", str(STATUS_LABELS["accepted"]), "#4f9a62"),
              Series("overdue", str(_l("已超期")), "#a4141b")]
    values: dict = {}
    for item in items:
        for lo, hi, label in AGE_BUCKETS:
            if lo <= item.age_workdays <= hi:
                key = "overdue" if item.deadline.overdue else item.status
                values[(label, key)] = values.get((label, key), 0) + 1
    cats = [(label, label) for _lo, _hi, label in AGE_BUCKETS]
    return stacked_bars(str(_l("待办投诉按已过工作日分布")), cats, series, values)


def _uploads_chart(trend):
    series = [Series(k, str(STANDING_LABELS[k]), STANDING_COLORS[k]) for k in ("on_time", "zero", "late", "missing", "pending")]
    values = {(s.quarter, k): s.counts[k] for s in trend for k in STANDING_COLORS}
    cats = [(s.quarter, f"{s.quarter[2:4]}Q{s.quarter[-1]}") for s in trend]
    return stacked_bars(str(_l("各季度报送情况（机构数）")), cats, series, values)


# --- the complaint queue ------------------------------------------------------------------
@bp.get("/complaints")
def queue():
    filters = _filters()
    items = casework().queue(officer(), filters)
    institution = db_session().get(Institution, filters.institution_id) if filters.institution_id else None
    export_args = {k: v for k, v in request.args.items() if k in QUEUE_ARGS}  # never url_for's own (_external)
    items, pager = paginate(items, page_arg())
    return render_template("regulator/queue.html", items=items, filters=filters, categories=CATEGORIES,
                           statuses=STATUSES, institution=institution, export_args=export_args, pager=pager)


# the complaint's reference, never its tracking code (the complainant's secret; only its hash is stored)
QUEUE_HEADER = ["reference", "number", "institution", "authority", "category", "status", "verdict",
                "received_at", "deadline", "workdays_left", "overdue", "waiting_for_complainant"]


@bp.get("/complaints.<any(csv, xlsx):fmt>")
def queue_export(fmt: str):
    items = casework().queue(officer(), _filters())
    rows = ([i.reference, i.number, i.institution_name or i.institution_text,
             i.authority_code, i.category, i.status, i.verdict_status, i.created_at,
             i.deadline.due.isoformat() if i.deadline.due else "", i.deadline.workdays_left, i.deadline.overdue,
             i.open_question] for i in items)
    return _export(fmt, "complaints", QUEUE_HEADER, rows, sheet="complaints")


# --- one complaint's trail ------------------------------------------------------------------
@bp.get("/complaints/<int:complaint_id>")
def trail(complaint_id: int):
    t = casework().trail(officer(), complaint_id)
    chain = registry().audit_chain
    intact = chain.intact_for(db_session(), complaint_id)
    return render_template("regulator/trail.html", t=t, c=t.complaint, intact=intact, findings=FINDINGS,
                           verdict=t.complaint.verdict_json or {})


@bp.get("/complaints/<int:complaint_id>/complainant")
def complainant(complaint_id: int):
    t = casework().trail(officer(), complaint_id)
    data = casework().personal_data(officer(), complaint_id)
    return render_template("regulator/complainant.html", c=t.complaint, data=data)


@bp.get("/complaints/<int:complaint_id>/attachment")
def attachment(complaint_id: int):
    path, content_type = casework().attachment(officer(), complaint_id)
    return send_file(path, mimetype=content_type, as_attachment=True,
                     download_name=f"complaint-{complaint_id}-attachment{path.suffix}", max_age=0)


@bp.get("/complaints/<int:complaint_id>/attachments/<int:event_id>")
def answer_attachment(complaint_id: int, event_id: int):
    """A file the complainant sent with an answer (logged like the complaint's own attachment)."""
    path, content_type = casework().attachment(officer(), complaint_id, event_id)
    return send_file(path, mimetype=content_type, as_attachment=True,
                     download_name=f"complaint-{complaint_id}-answer-{event_id}{path.suffix}", max_age=0)


ACTIONS = {"accept", "reject", "transfer", "request-info", "note", "extend", "conclude"}
# What cannot be undone goes through a check page (what will change) and ends on a confirmation
# page naming the result; a question or an internal note is sent from its form at once.
CHECKED = ("accept", "reject", "transfer", "conclude", "extend")
ACTION_ORDER = ("accept", "reject", "transfer", "request-info", "conclude", "extend", "note")
ACTION_LABELS = {
    "accept": _l("受理"), "reject": _l("决定不予受理"), "transfer": _l("转办"), "request-info": _l("请投诉人补充"),
    "conclude": _l("办结"), "extend": _l("延长办理期限"), "note": _l("添加内部备注"),
}
ACTION_STATES = {
    "accept": ("received",), "reject": ("received",), "transfer": ("received",),
    "request-info": ("received", "accepted"), "conclude": ("accepted",), "extend": ("accepted",),
    "note": ("received", "accepted", "rejected", "concluded"),
}
NOTE_LABELS = {
    "accept": _l("受理说明（选填）"), "reject": _l("不予受理的理由"), "transfer": _l("转办理由"),
    "request-info": _l("请投诉人补充的内容（投诉人可在进度页看到并回答）"), "conclude": _l("办结说明"),
    "extend": _l("延长办理期限 15 个工作日（仅限一次）的理由"), "note": _l("内部备注（投诉人看不到）"),
}
DONE_TITLES = {
    "accept": _l("投诉已受理"), "reject": _l("已决定不予受理"), "transfer": _l("投诉已转办"),
    "conclude": _l("投诉已办结"), "extend": _l("办理期限已延长"),
}


def available_actions(t) -> list[str]:
    """The actions this officer may take on the complaint now, in the order of the work."""
    if not t.can_see_personal_data:
        return []
    extended = t.deadline.extended
    return [a for a in ACTION_ORDER if t.complaint.status in ACTION_STATES[a] and not (a == "extend" and extended)]


def _action_values(action: str, form) -> tuple[dict, dict]:
    """The posted answers of an action's form and the problems of each field."""
    values = {"note": (form.get("note") or "").replace("\r\n", "\n").strip()[:4000]}
    errors = {}
    if action == "transfer":
        values["authority"] = (form.get("authority") or "").strip()[:10]
    if action == "conclude":
        values["finding"] = (form.get("finding") or "").strip()[:40]
        if values["finding"] not in FINDINGS:
            errors["finding"] = str(ACTION_ERRORS["unknown_finding"])
    if action != "accept" and not values["note"]:
        errors["note"] = str(ACTION_ERRORS["reason_required"])
    return values, errors


def _pending_subject(complaint_id: int, action: str) -> str:
    return f"complaint:{complaint_id}:{action}"


def _action_page(t, action: str, values: dict | None = None, errors: dict | None = None, key: str = ""):
    targets = {a.code: a for a in t.transfer_targets}
    return render_template("regulator/action.html", t=t, c=t.complaint, action=action, values=values or {},
                           errors=errors or {}, findings=FINDINGS, targets=targets, key=key,
                           possible=action in available_actions(t), checked=action in CHECKED,
                           actions=available_actions(t))


@bp.get("/complaints/<int:complaint_id>/<action>")
def action_form(complaint_id: int, action: str):
    """One action's form, on its own page (one thing per page); `?key=` brings back answers."""
    t = casework().trail(officer(), complaint_id)
    if action not in ACTIONS:
        abort(404)
    values, errors = {}, {}
    key = (request.args.get("key") or "")[:64]
    if key:
        kept = registry().pending_forms.load(key, owner=officer().username,
                                             subject=_pending_subject(complaint_id, action))
        if kept:
            values, errors = kept.get("values") or {}, kept.get("errors") or {}
    return _action_page(t, action, values, errors, key)


@bp.post("/complaints/<int:complaint_id>/<action>/check")
def check_action(complaint_id: int, action: str):
    """Keep the answers and show what will change (303 to the check page), or the form again
    with its problems."""
    casework().trail(officer(), complaint_id)
    if action not in ACTIONS:
        abort(404)
    values, errors = _action_values(action, request.form)
    key = registry().pending_forms.save(owner=officer().username, subject=_pending_subject(complaint_id, action),
                                        values={"values": values, "errors": errors})
    # a question or a note has no check page: back to its form, answers kept
    endpoint = ".action_form" if errors or action not in CHECKED else ".action_check"
    return redirect(url_for(endpoint, complaint_id=complaint_id, action=action, key=key), code=303)


@bp.get("/complaints/<int:complaint_id>/<action>/check")
def action_check(complaint_id: int, action: str):
    """The check page: what will change, the answers with a link to change them, one confirm
    button (a POST to the action itself). Without kept answers: the form."""
    t = casework().trail(officer(), complaint_id)
    if action not in ACTIONS:
        abort(404)
    key = (request.args.get("key") or "")[:64]
    kept = registry().pending_forms.load(key, owner=officer().username,
                                         subject=_pending_subject(complaint_id, action)) if key else None
    if not kept or kept.get("errors") or action not in CHECKED:
        return _action_page(t, action, (kept or {}).get("values"), (kept or {}).get("errors"), key if kept else "")
    values = kept.get("values") or {}
    target = next((a for a in t.transfer_targets if a.code == values.get("authority")), None)
    return render_template("regulator/action_check.html", t=t, c=t.complaint, action=action, values=values,
                           target=target, key=key, possible=action in available_actions(t))


@bp.post("/complaints/<int:complaint_id>/<action>")
def act(complaint_id: int, action: str):
    if action not in ACTIONS:
        abort(404)
    form, who, service = request.form, officer(), casework()
    text = form.get("note", "")
    before = service.trail(who, complaint_id) if action in CHECKED else None
    try:
        if action == "accept":
            service.accept(who, complaint_id, text)
        elif action == "reject":
            service.reject(who, complaint_id, text)
        elif action == "transfer":
            service.transfer(who, complaint_id, form.get("authority", ""), text)
        elif action == "request-info":
            service.request_info(who, complaint_id, text)
        elif action == "note":
            service.add_note(who, complaint_id, text)
        elif action == "extend":
            service.extend(who, complaint_id, text)
        elif action == "conclude":
            service.conclude(who, complaint_id, form.get("finding", ""), text)
    except InvalidAction as exc:
        flash(str(ACTION_ERRORS.get(exc.code, exc.code)), "error")
        return redirect(url_for(".trail", complaint_id=complaint_id, _anchor="actions"), code=303)
    if form.get("key"):
        registry().pending_forms.discard(form["key"][:64])
    if before is not None:
        c = before.complaint
        target = next((a for a in before.transfer_targets if a.code == form.get("authority", "").strip()), None)
        session["regulator_done"] = {
            "action": action, "complaint_id": c.id, "number": c.number, "code": c.reference,
            "finding": form.get("finding", "") if action == "conclude" else "",
            "authority": [target.code, target.name, target.name_en] if target is not None else None,
        }
        return redirect(url_for(".action_done"), code=303)
    flash(_("已记录。"), "success")
    return redirect(url_for(".trail", complaint_id=complaint_id), code=303)


@bp.get("/done")
def action_done():
    """The confirmation page of the last checked action: what was done, to which complaint, and
    what happens next. (Not under the complaint: after a transfer it is no longer this officer's.)"""
    done = session.get("regulator_done")
    if not isinstance(done, dict) or done.get("action") not in CHECKED:
        return render_template("regulator/action_done.html", done=None)
    visible = True
    try:
        t = casework().trail(officer(), int(done["complaint_id"]))
    except (NotAllowed, LookupError):
        t, visible = None, False
    return render_template("regulator/action_done.html", done=done, t=t, visible=visible,
                           title=DONE_TITLES[done["action"]])


TRAIL_HEADER = ["event_id", "seq", "at", "kind", "actor", "public", "note"]


@bp.get("/complaints/<int:complaint_id>/trail.<any(csv, xlsx):fmt>")
def trail_export(complaint_id: int, fmt: str):
    t = casework().trail(officer(), complaint_id)
    note = event_note if _export_in_words() else (lambda e: e.note)  # a conclusion's finding, a transfer's authority
    rows = [[e.id, e.seq, e.at, e.kind, e.actor, e.public, note(e)] for e in t.events]  # notes read in this request
    return _export(fmt, f"complaint-{complaint_id}-trail", TRAIL_HEADER, rows, sheet="trail")


# --- compliance -----------------------------------------------------------------------------
@bp.get("/compliance")
def compliance_page():
    quarter = _quarter_arg() or compliance().latest_quarter().previous()
    summary = compliance().quarter(officer(), quarter)
    wanted = request.args.get("standing")
    rows = [r for r in summary.rows if r.standing == wanted] if wanted in STANDING_LABELS else summary.rows
    q = search_arg()
    if q:
        rows = [r for r in rows if q.casefold() in r.name.casefold() or q.upper() in r.uscc]
    rows, pager = paginate(rows, page_arg())
    trend = compliance().trend(officer(), count=8)
    return render_template("regulator/compliance.html", summary=summary, quarter=quarter, rows=rows,
                           standing=wanted, uploads_chart=_uploads_chart(trend), trend=trend, pager=pager, q=q,
                           previous=quarter.previous(), next=quarter.next()
                           if quarter < compliance().latest_quarter() else None)


COMPLIANCE_HEADER = ["quarter", "uscc", "institution", "standing", "numbers_registered", "batches",
                     "first_upload", "abnormal"]


@bp.get("/compliance/<quarter>.<any(csv, xlsx):fmt>")
def compliance_export(quarter: str, fmt: str):
    try:
        q = Quarter.parse(quarter)
    except ValueError:
        abort(404)
    summary = compliance().quarter(officer(), q)
    rows = ([summary.quarter, r.uscc, r.name, r.standing, r.numbers, r.batches, r.first_upload, r.abnormal]
            for r in summary.rows)
    return _export(fmt, f"compliance-{q}", COMPLIANCE_HEADER, rows, sheet=str(q))


@bp.get("/institutions")
def institutions():
    q = (request.args.get("q") or "").strip()[:100]
    found, pager = [], None
    if q:
        # the directory (in-process) finds them; one page of the officer's jurisdiction is read from the database
        matches = [i for i in registry().directory.suggest(q, limit=MAX_INSTITUTION_MATCHES)
                   if officer().national or i.review_authority_code == officer().authority_code]
        matches, pager = paginate(matches, page_arg())
        session = db_session()
        rows = {i.id: i for i in session.query(Institution).filter(Institution.id.in_([f.id for f in matches]))}
        found = [rows[f.id] for f in matches if f.id in rows and officer().oversees(rows[f.id])]
    return render_template("regulator/institutions.html", q=q, found=found, pager=pager,
                           capped=MAX_INSTITUTION_MATCHES)


MAX_INSTITUTION_MATCHES = 1000


@bp.get("/institutions/<int:institution_id>")
def institution(institution_id: int):
    timeline = compliance().timeline(officer(), institution_id)
    if timeline is None:
        abort(404)
    history = abnormal().history(officer(), institution_id)
    return render_template("regulator/institution.html", tl=timeline, inst=timeline.institution, history=history)


@bp.post("/institutions/<int:institution_id>/abnormal")
def set_abnormal(institution_id: int):
    reason = request.form.get("reason", "")
    try:
        if request.form.get("abnormal") == "1":
            abnormal().mark(officer(), institution_id, reason)
        else:
            abnormal().unmark(officer(), institution_id, reason)
    except InvalidAction as exc:
        flash(str(ACTION_ERRORS.get(exc.code, exc.code)), "error")
    else:
        registry().refresh()  # this worker shows the change at once; the others within seconds
        flash(_("已记录。"), "success")
    return redirect(url_for(".institution", institution_id=institution_id), code=303)


# --- the transparency log ------------------------------------------------------------------------
@bp.get("/log")
def log_status():
    """The log's size, its newest checkpoint, the backlog, and whether the newest checkpoints
    are signed by the published key and extend one another (docs/transparency.md)."""
    tlog = registry().tlog
    keys = tlog.keys()
    verifier = tlog.signer.verifier if tlog.signer is not None else (parse_verifier(keys[0]) if keys else None)
    return render_template("regulator/log.html", status=tlog.chain_status(verifier), key=keys[0] if keys else None)


# --- leads and the abnormal list --------------------------------------------------------------
def _min_clients() -> int:
    return max(2, min(request.args.get("min_clients", 3, type=int) or 3, 1000))


@bp.get("/leads")
def leads():
    n = _min_clients()
    return render_template("regulator/leads.html", leads=compliance().leads(officer(), min_clients=n), min_clients=n)


LEADS_HEADER = ["number", "uscc", "institution", "distinct_clients", "queries", "first_query", "last_query"]


@bp.get("/leads.<any(csv, xlsx):fmt>")
def leads_export(fmt: str):
    found = compliance().leads(officer(), min_clients=_min_clients(), limit=10_000)
    rows = ([x.number, x.uscc, x.institution_name, x.clients, x.queries, x.first, x.last] for x in found)
    return _export(fmt, "leads", LEADS_HEADER, rows, sheet="leads")


# --- platform keys (SAMR only) ------------------------------------------------------------------
def _national_only() -> None:
    """Platform keys are issued nationally: a provincial officer is refused (403)."""
    if not officer().national:
        abort(403)


@bp.route("/platforms", methods=["GET", "POST"])
def platforms():
    """SAMR issues, lists (use per day, not-found rate) and revokes platform keys, as an admin does."""
    _national_only()
    return platform_keys.keys_page("regulator/platforms.html", actor=officer().actor,
                                   revoke_endpoint="regulator.revoke_platform")


@bp.post("/platforms/<int:platform_id>/revoke")
def revoke_platform(platform_id: int):
    _national_only()
    return platform_keys.revoke(platform_id, actor=officer().actor, back_endpoint="regulator.platforms")


@bp.get("/abnormal")
def abnormal_list():
    return render_template("regulator/abnormal.html", listed=abnormal().listed(officer()),
                           history=abnormal().history(officer(), limit=50))


ABNORMAL_HEADER = ["uscc", "institution", "since", "reason", "by"]


@bp.get("/abnormal.<any(csv, xlsx):fmt>")
def abnormal_export(fmt: str):
    rows = ([e.institution.uscc, e.institution.name, e.since, e.reason, e.actor] for e in abnormal().listed(officer()))
    return _export(fmt, "abnormal-institutions", ABNORMAL_HEADER, rows, sheet="abnormal")


__all__ = ["bp"]
