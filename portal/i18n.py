"""Languages: 简体中文 by default, English through a visible switch (``?lang=en``, kept in a cookie).

Message ids are the Chinese text; ``translations/en`` holds the English catalogue. Its compiled
``.mo`` is committed beside the ``.po`` (a test checks they agree), so a fresh clone needs no step.
"""
from __future__ import annotations

import datetime as dt

from flask import Flask, request, url_for
from flask_babel import get_locale

from registry.infra.settings import TRANSLATIONS_DIR
from registry.numbers.quarters import SHANGHAI
from registry.statistics.survey import PROVINCE_CHOICES

from .extensions import babel

LANGUAGES = ("zh", "en")
DEFAULT = "zh"
HTML_LANG = {"zh": "zh-CN", "en": "en"}
COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600


def select_locale() -> str:
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        return asked
    kept = request.cookies.get(COOKIE)
    return kept if kept in LANGUAGES else DEFAULT


def current_language() -> str:
    locale = get_locale()
    return locale.language if locale is not None and locale.language in LANGUAGES else DEFAULT


def _remember_language(response):
    asked = request.args.get("lang")
    if asked in LANGUAGES and request.cookies.get(COOKIE) != asked:
        response.set_cookie(COOKIE, asked, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax")
    return response


def switch_url(language: str) -> str:
    """This page in ``language``: a GET keeps its arguments, anything else goes to the home page."""
    if request.method == "GET" and request.endpoint and request.url_rule is not None:
        view_args = request.view_args or {}
        # never url_for's own arguments (_external, _scheme, _anchor…): links stay relative
        args = {k: v for k, v in request.args.items() if not k.startswith("_") and k not in view_args}
        args["lang"] = language
        try:
            return url_for(request.endpoint, **view_args, **args)
        except Exception:  # noqa: BLE001 - an odd URL still gets a working switch
            pass
    return url_for("public.index", lang=language)


def local_time(moment: dt.datetime | None) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if moment else ""


def quarter_label(quarter: str | None) -> str:
    if not quarter:
        return ""
    year, q = quarter[:4], quarter[-1]
    return f"{year} Q{q}" if current_language() == "en" else f"{year}年第{q}季度"


def authority_name(authority) -> str:
    """An authority's name in the page's language (authorities have English names)."""
    if authority is None:
        return ""
    if current_language() == "en":
        return getattr(authority, "name_en", None) or authority.name
    return authority.name


def province(code) -> str:
    """A province's short name in the page's language from its two-digit code ("11" → 浙江 / Zhejiang)."""
    for known, zh, en in PROVINCE_CHOICES:
        if known == code:
            return en if current_language() == "en" else zh
    return code or ""


def number(value) -> str:
    """A count with thousands separators (1,234,567), as both languages write it here."""
    try:
        return "{:,}".format(int(value))
    except (TypeError, ValueError):
        return "" if value is None else str(value)


def _template_context() -> dict:
    lang = current_language()
    return {
        "lang": lang,
        "html_lang": HTML_LANG[lang],
        "other_lang": "en" if lang == "zh" else "zh",
        "switch_url": switch_url,
    }


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    babel.init_app(app, locale_selector=select_locale)
    app.after_request(_remember_language)
    app.context_processor(_template_context)
    app.add_template_filter(local_time)
    app.add_template_filter(quarter_label)
    app.add_template_filter(number)
    app.add_template_filter(province)
    app.add_template_global(authority_name)
