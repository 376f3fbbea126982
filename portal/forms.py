"""Forms (flask-wtf): the complaint form, with its CSRF token and a honeypot; clean free text.

No person types a NUL or another C0 control character, and PostgreSQL cannot store a NUL: free
text is cleaned by the fields' filters (:func:`registry.numbers.normalize.clean_text`), and
:func:`init_app` refuses (400) any request to the pages' blueprints whose query or form values
hold such characters (tab, CR and LF allowed in values), before a view sees it. The verify
endpoints (blueprints ``api`` and ``public``) clean their own text on the hot path.
"""
from __future__ import annotations

import re

from flask import Flask, abort, request
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import RadioField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from registry.complaints.service import CATEGORIES, MAX_DESCRIPTION
from registry.numbers.normalize import clean_text, has_controls

try:  # WTForms 3.3 deprecates (value, label) tuples
    from wtforms import SelectChoice as _Choice
except ImportError:  # pragma: no cover - older WTForms
    def _Choice(value, label):
        return (value, label)

CATEGORY_LABELS = {
    "not_found": _l("查不到该报告编号"),
    "wrong_institution": _l("登记的机构与报告上的不一致"),
    "altered": _l("报告内容疑似被篡改"),
    "other": _l("其他问题"),
}

# The category a verdict suggests when the form is opened from the verdict page.
CATEGORY_FOR_STATUS = {
    "not_found": "not_found",
    "mismatch": "wrong_institution",
    "ambiguous": "wrong_institution",
    "withdrawn": "other",
    "found": "altered",
}

_PHONE = re.compile(r"^(?:\+?86)?(?:1[3-9]\d{9}|0\d{2,3}\d{7,8}(?:\d{1,6})?)$")
_EMAIL = re.compile(r"^[^@\s<>\"']+@[^@\s<>\"']+\.[A-Za-z]{2,}$")


def _strip(value):
    return clean_text(value).strip() if isinstance(value, str) else value


def _newlines(value):
    # browsers send CRLF; count a line break as one character, as the textarea's maxlength does
    return clean_text(value, multiline=True).replace("\r\n", "\n").strip() if isinstance(value, str) else value


def form_text(name: str, max_len: int | None = None, *, multiline: bool = False) -> str:
    """A free-text value of the posted form, cleaned and stripped ("" when absent)."""
    value = request.form.get(name) or ""
    value = clean_text(value, multiline=multiline)
    if multiline:
        value = value.replace("\r\n", "\n")
    return value.strip()[:max_len] if max_len is not None else value.strip()


# Blueprints that take care of their own text: the verify path (hot) and the probes.
UNGUARDED_BLUEPRINTS = frozenset({"api", "public", "health"})
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def refuse_control_characters() -> None:
    """400 before the view when a query or form value (or name) holds a C0 control character."""
    if any(has_controls(key) or has_controls(value, multiline=True) for key, value in request.args.items(multi=True)):
        abort(400)
    if request.method != "GET" and request.mimetype in _FORM_TYPES:
        if any(has_controls(key) or has_controls(value, multiline=True)
               for key, value in request.form.items(multi=True)):
            abort(400)


def init_app(app: Flask) -> None:
    """Guard every registered blueprint but the unguarded ones (call after registering them)."""
    app.add_template_global(field_attrs, "field_aria")
    for name in app.blueprints:
        if name not in UNGUARDED_BLUEPRINTS:
            app.before_request_funcs.setdefault(name, []).insert(0, refuse_control_characters)


def _contact(form, field) -> None:
    value = field.data or ""
    if "@" in value:
        if not _EMAIL.match(value):
            raise ValidationError(_l("请填写有效的电子邮箱地址。"))
        return
    digits = re.sub(r"[\s()\-]", "", value)
    if not _PHONE.match(digits):
        raise ValidationError(_l("请填写有效的手机号、固定电话或电子邮箱。"))


class ComplaintForm(FlaskForm):
    number = StringField(_l("报告编号"), filters=[_strip],
                         validators=[DataRequired(_l("请填写报告编号。")), Length(max=200)])
    institution = StringField(_l("报告上的出具机构"), filters=[_strip], validators=[Optional(), Length(max=200)])
    category = RadioField(_l("问题类型"), choices=[_Choice(c, CATEGORY_LABELS[c]) for c in CATEGORIES],
                          validators=[InputRequired(_l("请选择问题类型。"))])
    description = TextAreaField(
        _l("问题描述"), filters=[_newlines],
        validators=[DataRequired(_l("请描述您发现的问题。")),
                    Length(max=MAX_DESCRIPTION, message=_l("问题描述不能超过 2000 个字符。"))])
    name = StringField(_l("姓名（选填）"), filters=[_strip], validators=[Optional(), Length(max=100)])
    contact = StringField(_l("联系方式（选填，手机号或电子邮箱）"), filters=[_strip],
                          validators=[Optional(), Length(max=200), _contact])
    attachment = FileField(_l("附件（选填，JPEG、PNG 或 PDF，不超过 5 MB）"))
    # A honeypot: hidden from people (and from assistive technology); bots fill it in.
    website = StringField("website", filters=[_strip])


def field_attrs(field, hint: str | None = None) -> dict:
    """ARIA attributes tying an input to its hint and its error messages."""
    described = [hint] if hint else []
    attrs = {}
    if field.errors:
        described.append(f"{field.id}-error")
        attrs["aria-invalid"] = "true"
    if described:
        attrs["aria-describedby"] = " ".join(described)
    return attrs


class TrackForm(FlaskForm):
    """The tracking code of a complaint, as the complainant typed it (dashes and case do not matter)."""
    code = StringField(_l("查询码"), filters=[_strip],
                       validators=[DataRequired(_l("请输入查询码。")), Length(max=100, message=_l("查询码过长。"))])
