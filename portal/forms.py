"""Forms (flask-wtf): the complaint form, with its CSRF token and a honeypot."""
from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import RadioField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from registry.complaints.service import CATEGORIES, MAX_DESCRIPTION

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
    return value.strip() if isinstance(value, str) else value


def _newlines(value):
    # browsers send CRLF; count a line break as one character, as the textarea's maxlength does
    return value.replace("\r\n", "\n").strip() if isinstance(value, str) else value


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
