"""Normalisation and validation of report numbers, institution names, USCCs and certificate numbers.

These are the public contract's rules (docs/contract.md, "Report numbers"); every rejection
carries a reason code so that importers and the API can say exactly what was wrong.
"""
from __future__ import annotations

import re
import unicodedata

MAX_NUMBER_LENGTH = 64

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff"), None)
_BRACKETS = str.maketrans({"〔": "(", "〕": ")", "【": "[", "】": "]"})
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d", "-"))
_WHITESPACE = re.compile(r"\s+")
_ALLOWED = re.compile(
    r"[A-Z0-9\-/()\[\]_.#+"
    r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef\U00030000-\U0003134f]+"
)
_ASCII_LOWER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class InvalidValue(ValueError):
    """A value that cannot be normalised; ``code`` is machine-readable, ``args[0]`` a sentence."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# Text already in canonical form but for ASCII case, which the general steps would only upper-case:
# most numbers, on the verify path and in files. (A property test holds the two paths equal.)
PLAIN_ASCII_NUMBER = re.compile(r"[A-Za-z0-9\-/()\[\]_.#+]{1,%d}" % MAX_NUMBER_LENGTH)
_plain = PLAIN_ASCII_NUMBER.fullmatch


def normalize_number(raw: str) -> str:
    """Return the canonical form of a report number, or raise :class:`InvalidValue`."""
    if isinstance(raw, str) and _plain(raw):
        return raw.upper()
    return _normalize_number(raw)


def _normalize_number(raw: str) -> str:
    if not isinstance(raw, str):
        raise InvalidValue("not_text", "report number must be text")
    text = raw.translate(_ZERO_WIDTH)
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_BRACKETS).translate(_DASHES).translate(_ASCII_LOWER)
    text = _WHITESPACE.sub("", text)
    if not text:
        raise InvalidValue("empty", "report number is empty")
    if len(text) > MAX_NUMBER_LENGTH:
        raise InvalidValue("too_long", f"report number is longer than {MAX_NUMBER_LENGTH} characters")
    if not _ALLOWED.fullmatch(text):
        bad = next(ch for ch in text if not _ALLOWED.fullmatch(ch))
        raise InvalidValue("bad_character", f"report number contains a character that is not allowed: {bad!r}")
    return text


def name_key(name: str) -> str:
    """The comparison key of an institution name: NFKC, whitespace removed, 〔〕【】 as () []."""
    text = unicodedata.normalize("NFKC", name or "").translate(_ZERO_WIDTH).translate(_BRACKETS)
    return _WHITESPACE.sub("", text)


# --- free text -----------------------------------------------------------------------------
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls and DEL, but tab, CR, LF
_LINE_BREAKS = re.compile(r"[\t\r\n]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def clean_text(value: str | None, max_len: int | None = None, *, multiline: bool = False) -> str:
    """Free text as it may be stored and shown: C0 controls (NUL first) and DEL removed, lone
    surrogates replaced by U+FFFD, cut to ``max_len`` characters.

    Single-line text also turns tab, CR and LF into spaces; ``multiline`` keeps them. Neither
    PostgreSQL (no NUL in text) nor UTF-8 (no surrogates) can store what this removes, and no
    person types it.
    """
    if not value:
        return ""
    if not value.isprintable():  # the common case, plain text, costs one scan
        value = _CONTROLS.sub("", value)
        if not multiline:
            value = _LINE_BREAKS.sub(" ", value)
        value = _SURROGATES.sub("\ufffd", value)
    return value if max_len is None else value[:max_len]


def has_controls(value: str | None, *, multiline: bool = False) -> bool:
    """Whether ``value`` holds something :func:`clean_text` would remove or change."""
    return bool(value) and clean_text(value, multiline=multiline) != value


# --- USCC (统一社会信用代码, GB 32100-2015) -------------------------------------------------
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {ch: i for i, ch in enumerate(USCC_CHARSET)}
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]


def uscc_check_character(first17: str) -> str:
    total = sum(_USCC_VALUE[ch] * w for ch, w in zip(first17, _USCC_WEIGHTS))
    return USCC_CHARSET[(31 - total % 31) % 31]


def normalize_uscc(raw: str) -> str:
    """Upper-case and validate a USCC (18 characters, check character last)."""
    text = _WHITESPACE.sub("", unicodedata.normalize("NFKC", raw or "")).upper()
    if len(text) != 18:
        raise InvalidValue("uscc_length", "a unified social credit code has 18 characters")
    bad = [ch for ch in text if ch not in _USCC_VALUE]
    if bad:
        raise InvalidValue("uscc_character", f"character {bad[0]!r} is not used in unified social credit codes")
    if uscc_check_character(text[:17]) != text[17]:
        raise InvalidValue("uscc_check", "the check character of the unified social credit code is wrong")
    return text


def make_uscc(body17: str) -> str:
    """Complete 17 characters with their check character (for demo data and tests)."""
    return body17 + uscc_check_character(body17)


# --- CMA certificate numbers ----------------------------------------------------------------
_CERT = re.compile(r"\d{12}")


def normalize_certificate_number(raw: str) -> str:
    """Validate a CMA certificate number: 12 digits, issuing authority code 00–32 in digits 3–4."""
    text = _WHITESPACE.sub("", unicodedata.normalize("NFKC", raw or ""))
    if not _CERT.fullmatch(text):
        raise InvalidValue("certificate_format", "a CMA certificate number has 12 digits")
    if int(text[2:4]) > 32:
        raise InvalidValue("certificate_authority", f"issuing authority code {text[2:4]} does not exist (00–32)")
    return text


def certificate_authority_code(number: str) -> str:
    return number[2:4]


# --- document fingerprints ------------------------------------------------------------------
# The SHA-256 of an issued report file, registered with its number (docs/contract.md): 64
# hexadecimal digits, kept and compared in lowercase.
DOCUMENT_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def normalize_document_sha256(raw) -> str:
    """A document fingerprint in its one form, 64 lowercase hex digits (surrounding white space
    dropped); anything else raises :class:`InvalidValue` ``bad_sha256``."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not DOCUMENT_SHA256.fullmatch(text):
        raise InvalidValue("bad_sha256", "a document fingerprint is the file's SHA-256: 64 hexadecimal digits")
    return text.lower()
