"""The survey form as data: one schema file per version (schemas/<version>.json: fields, types,
units, required, limits, labels and help in Chinese and English), and its validation.

A year uses the newest schema whose version is not after it (2025 added 专精特新). Answers are
kept as typed (strings, lists of strings for several choices); :func:`validate` turns them into
typed values and names each field's problem by a code the portal puts in words
(``required``, ``not_a_number``, ``not_whole``, ``too_small``, ``too_large``, ``unknown_choice``,
``too_long``, ``too_many``, ``duplicate``).
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

from registry.institutions.authorities import PROVINCES

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
TYPES = {"choice", "multichoice", "boolean", "integer", "decimal", "text", "lines", "province"}
PROVINCE_CHOICES = [(code, short, en) for code, short, en in PROVINCES] + [("32", "兵团", "XPCC")]
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass(frozen=True)
class Field:
    key: str
    type: str
    required: bool
    label: tuple[str, str]
    help: tuple[str, str] = ("", "")
    unit: tuple[str, str] | None = None
    choices: tuple[tuple[str, str, str], ...] = ()
    min: Decimal | None = None
    max: Decimal | None = None
    max_length: int | None = None
    max_items: int | None = None

    def text(self, pair: tuple[str, str], language: str) -> str:
        return pair[1] if language == "en" and pair[1] else pair[0]

    def choice_label(self, value: str, language: str) -> str:
        for code, zh, en in self.choices:
            if code == value:
                return en if language == "en" else zh
        return value


@dataclass(frozen=True)
class Schema:
    version: str
    fields: tuple[Field, ...]
    by_key: dict[str, Field] = field(default_factory=dict, compare=False)

    def __getitem__(self, key: str) -> Field:
        return self.by_key[key]


@dataclass(frozen=True)
class FieldError:
    code: str
    params: dict[str, Any] = field(default_factory=dict)


def _field(spec: Mapping[str, Any]) -> Field:
    kind = spec["type"]
    if kind not in TYPES:
        raise ValueError(f"unknown field type {kind!r} of {spec.get('key')!r}")
    choices = PROVINCE_CHOICES if kind == "province" else [tuple(c) for c in spec.get("choices", ())]
    return Field(key=spec["key"], type=kind, required=bool(spec.get("required")), label=tuple(spec["label"]),
                 help=tuple(spec.get("help", ("", ""))), unit=tuple(spec["unit"]) if spec.get("unit") else None,
                 choices=tuple(choices),
                 min=Decimal(str(spec["min"])) if "min" in spec else None,
                 max=Decimal(str(spec["max"])) if "max" in spec else None,
                 max_length=spec.get("max_length"), max_items=spec.get("max_items"))


@functools.lru_cache(maxsize=None)
def load_schema(version: str) -> Schema:
    data = json.loads((SCHEMAS_DIR / f"{version}.json").read_text(encoding="utf-8"))
    fields = tuple(_field(spec) for spec in data["fields"])
    return Schema(version=data["version"], fields=fields, by_key={f.key: f for f in fields})


def versions() -> list[str]:
    return sorted(p.stem for p in SCHEMAS_DIR.glob("*.json"))


def version_for_year(year: int) -> str:
    """The newest schema version not after ``year`` (the oldest one for a year before them all)."""
    known = versions()
    fitting = [v for v in known if int(v) <= year]
    return fitting[-1] if fitting else known[0]


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple)):
        return not [v for v in value if str(v).strip()]
    return not str(value).strip()


def _lines(value: Any) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else str(value).splitlines()
    return [str(v).strip() for v in items if str(v).strip()]


def clean_value(f: Field, value: Any) -> tuple[Any, FieldError | None]:
    """One answer as its typed value, or the problem with it."""
    if _blank(value) and f.type != "boolean":
        return None, (FieldError("required") if f.required else None)
    if f.type == "boolean":
        text = str(value or "").strip().lower()
        if text in ("1", "true", "yes", "y", "是"):
            return True, None
        if text in ("0", "false", "no", "n", "否"):
            return False, None
        return None, (FieldError("required") if f.required else None)
    if f.type in ("choice", "province"):
        text = str(value).strip()
        if text not in {c[0] for c in f.choices}:
            return None, FieldError("unknown_choice")
        return text, None
    if f.type == "multichoice":
        chosen = _lines(value)
        known = {c[0] for c in f.choices}
        if any(v not in known for v in chosen):
            return None, FieldError("unknown_choice")
        return sorted(set(chosen), key=[c[0] for c in f.choices].index), None
    if f.type in ("integer", "decimal"):
        text = str(value).strip().replace(",", "").replace("，", "")
        if not _NUMBER.match(text):
            return None, FieldError("not_a_number")
        number = Decimal(text)
        if f.type == "integer" and number != number.to_integral_value():
            return None, FieldError("not_whole")
        if f.min is not None and number < f.min:
            return None, FieldError("too_small", {"min": _plain(f.min)})
        if f.max is not None and number > f.max:
            return None, FieldError("too_large", {"max": _plain(f.max)})
        return (int(number) if f.type == "integer" else float(number)), None
    if f.type == "text":
        text = str(value).strip()
        if f.max_length and len(text) > f.max_length:
            return None, FieldError("too_long", {"max": f.max_length})
        return text, None
    items = _lines(value)  # lines
    if f.max_items and len(items) > f.max_items:
        return None, FieldError("too_many", {"max": f.max_items})
    if f.max_length and any(len(i) > f.max_length for i in items):
        return None, FieldError("too_long", {"max": f.max_length})
    if len(set(items)) != len(items):
        return None, FieldError("duplicate")
    return items, None


def _plain(number: Decimal) -> int | float:
    return int(number) if number == number.to_integral_value() else float(number)


def validate(schema: Schema, answers: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, FieldError]]:
    """Every field's typed value and every field's problem (an empty dict: the form may be submitted)."""
    values: dict[str, Any] = {}
    errors: dict[str, FieldError] = {}
    for f in schema.fields:
        value, error = clean_value(f, answers.get(f.key))
        if error is not None:
            errors[f.key] = error
        else:
            values[f.key] = value
    return values, errors


def keep_answers(schema: Schema, form: Mapping[str, Any]) -> dict[str, Any]:
    """The answers of a submitted form as typed, limited to the schema's fields and sizes (what a
    draft keeps, valid or not)."""
    kept: dict[str, Any] = {}
    for f in schema.fields:
        raw = form.get(f.key)
        if f.type == "multichoice":
            kept[f.key] = [str(v)[:40] for v in (raw or [])][:len(f.choices)]
        elif f.type == "lines":
            kept[f.key] = "\n".join(_lines(raw or ""))[:20000]
        else:
            kept[f.key] = str(raw or "").strip()[:200]
    return kept
