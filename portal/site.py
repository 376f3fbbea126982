"""Who runs the site: the operator, contact, help line and filing numbers of the footer (from the
settings, docs/contract.md "Settings"), the privacy notice at /privacy and the API guide at
/docs/api."""
from __future__ import annotations

from flask import Blueprint, Flask, current_app, render_template

from registry.infra.settings import DEMO_OPERATOR, DEMO_OPERATOR_EN, is_demo_site
from registry.verification.querylog import ROTATION_DAYS

from .i18n import current_language

bp = Blueprint("site", __name__)


def site_info() -> dict:
    """The footer's facts in the page's language (an English variant falls back to the Chinese)."""
    config = current_app.config
    en = current_language() == "en"
    demo = is_demo_site(config)

    def pick(name: str) -> str:
        zh = config.get(name) or ""
        if not en:
            return zh
        english = config.get(f"{name}_EN") or ""
        if name == "SITE_OPERATOR" and english == DEMO_OPERATOR_EN and not demo:
            english = ""  # an operator set in Chinese only: not the demo's English
        return english or zh

    return {
        "demo": demo,
        "operator": pick("SITE_OPERATOR") or (DEMO_OPERATOR_EN if en else DEMO_OPERATOR),
        "contact": pick("SITE_CONTACT"),
        "helpline": pick("SITE_HELPLINE"),
        "icp": config.get("SITE_ICP") or "",
        "psb": config.get("SITE_PSB") or "",
    }


@bp.get("/privacy")
def privacy():
    response = current_app.make_response(render_template(
        "privacy.html", rotation_days=ROTATION_DAYS,
        max_mb=5, kept_minutes=60, query_log_days=current_app.config["QUERY_LOG_DAYS"],
        contact_days=current_app.config["COMPLAINT_CONTACT_DAYS"], backup_days=current_app.config["BACKUP_KEEP_DAYS"],
        outbox_days=current_app.config["OUTBOX_DAYS"]))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/docs/api")
def api_docs():
    """The guide to the public and integration API (the reference: /api/v1/openapi.json)."""
    base = current_app.config.get("PUBLIC_BASE_URL", "").rstrip("/")
    response = current_app.make_response(render_template("api_docs.html", base=base))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def init_app(app: Flask) -> None:
    app.context_processor(lambda: {"site": site_info()})
    app.register_blueprint(bp)


__all__ = ["api_docs", "bp", "init_app", "site_info"]
