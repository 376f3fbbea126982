"""Measures against institutions for their reporting duties, with the institution heard: the
regulator's list, proposal and decision (/regulator/sanctions/…) and the institution's view with
its statement (/institution/sanctions/…). The routes join the regulator and institution
blueprints (their guards and access-matrix tests cover them); the rules are the registry's
(registry/compliance/sanctions.py)."""
from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from registry.complaints.casework import InvalidAction, NotAllowed
from registry.compliance.sanctions import GROUNDS, MEASURES
from registry.institutions.models import Institution

from .errors import error_response
from .extensions import db_session, registry
from .institution import bp as institution_bp
from .regulator import bp as regulator_bp
from .regulator import officer
from .urls import int_arg

MEASURE_LABELS = {"warning": _l("警告"), "public_notice": _l("通报"), "refuse_applications": _l("不予受理新的资质认定申请"),
                  "abnormal": _l("列入异常检验检测机构名录")}
GROUND_LABELS = {"late_filing": _l("统计报表逾期报送"), "missing_filing": _l("统计报表未报送"),
                 "false_filing": _l("统计报表瞒报、错报、漏报"), "missing_uploads": _l("报告编号未按季度上传"),
                 "late_uploads": _l("报告编号逾期上传")}
SANCTION_STATUS = {"proposed": _l("拟处理，等待陈述申辩"), "confirmed": _l("已决定"), "dropped": _l("已撤回"),
                   "lifted": _l("已解除")}
SANCTION_ERRORS = {"reason_required": _l("请填写理由或说明。"), "wrong_state": _l("当前状态下不能进行此操作。"),
                   "second_officer": _l("须由提出处理意见以外的另一名工作人员决定。"),
                   "hearing_open": _l("陈述申辩期尚未届满，机构也尚未陈述申辩，暂不能决定。"),
                   "unknown_measure": _l("请选择处理措施和事由。"), "unknown_institution": _l("找不到该机构。")}


def _error(exc: InvalidAction) -> str:
    return str(SANCTION_ERRORS.get(exc.code, exc.code))


@institution_bp.context_processor
@regulator_bp.context_processor
def _sanction_labels() -> dict:
    return {"measure_labels": MEASURE_LABELS, "ground_labels": GROUND_LABELS, "sanction_status": SANCTION_STATUS}


# --- the regulator ------------------------------------------------------------------------------
@regulator_bp.get("/sanctions")
def sanctions():
    institution_id = int_arg("institution")
    inst = db_session().get(Institution, institution_id) if institution_id else None
    return render_template("regulator/sanctions.html", rows=registry().sanctions.listed(officer()), institution=inst,
                           measures=MEASURES, grounds=GROUNDS, ground=request.args.get("ground", ""),
                           year=request.args.get("year", ""))


@regulator_bp.post("/sanctions")
def propose_sanction():
    uscc = (request.form.get("uscc") or "").strip().upper()[:18]
    inst = db_session().scalar(select(Institution).where(Institution.uscc == uscc)) if uscc else None
    year_text = (request.form.get("year") or "").strip()
    try:
        if inst is None:
            raise InvalidAction("unknown_institution")
        s = registry().sanctions.propose(officer(), inst.id, measure=request.form.get("measure", ""),
                                         ground=request.form.get("ground", ""), reason=request.form.get("reason", ""),
                                         year=int(year_text) if year_text.isdigit() and len(year_text) == 4 else None)
    except NotAllowed:
        return error_response(403)
    except InvalidAction as exc:
        flash(_error(exc), "error")
        return redirect(url_for("regulator.sanctions", institution=inst.id if inst else None), 303)
    flash(_("已提出处理意见，机构可在期限内陈述申辩。"), "success")
    return redirect(url_for("regulator.sanction", sanction_id=s.id), 303)


@regulator_bp.get("/sanctions/<int:sanction_id>")
def sanction(sanction_id: int):
    try:
        s = registry().sanctions.get(officer(), sanction_id)
    except NotAllowed:
        return error_response(403)
    return render_template("regulator/sanction.html", s=s)


@regulator_bp.post("/sanctions/<int:sanction_id>/<any(confirm, drop, lift):decision>")
def decide_sanction(sanction_id: int, decision: str):
    service = registry().sanctions
    reason = request.form.get("reason", "")
    try:
        if decision == "lift":
            service.lift(officer(), sanction_id, reason)
        else:
            service.decide(officer(), sanction_id, confirm=decision == "confirm", reason=reason)
        flash(_("已记录。"), "success")
    except NotAllowed:
        return error_response(403)
    except InvalidAction as exc:
        flash(_error(exc), "error")
    return redirect(url_for("regulator.sanction", sanction_id=sanction_id), 303)


# --- the institution ----------------------------------------------------------------------------
@institution_bp.get("/sanctions")
def own_sanctions():
    rows = registry().sanctions.for_institution(g.account.institution_id)
    return render_template("institution/sanctions.html", rows=rows, today=registry().sanctions.today())


@institution_bp.post("/sanctions/<int:sanction_id>/statement")
def state_case(sanction_id: int):
    try:
        registry().sanctions.state_case(g.account.institution_id, sanction_id, request.form.get("statement", ""),
                                        actor=g.account.username)
        flash(_("陈述申辩已提交。"), "success")
    except LookupError:
        abort(404)
    except InvalidAction as exc:
        flash(_error(exc), "error")
    return redirect(url_for("institution.own_sanctions"), 303)
