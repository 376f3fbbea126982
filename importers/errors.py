"""What importers report: a refused file, a rejected row, a warning about the whole file.

Every message exists in Chinese (shown to institutions) and English (logs, CLI with an English
locale); the ``code`` is what programs and tests compare.
"""
from __future__ import annotations

from dataclasses import dataclass

from registry.numbers.normalize import MAX_NUMBER_LENGTH, InvalidValue


class FileRefused(Exception):
    """The whole file is refused and nothing may change (CLI exit status 2, API ``invalid_file``)."""

    def __init__(self, code: str, message_zh: str, message_en: str, *, filename: str | None = None):
        if filename:
            message_zh = f"{filename}：{message_zh}"
            message_en = f"{filename}: {message_en}"
        super().__init__(message_en)
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en
        self.filename = filename

    def __str__(self) -> str:
        return self.message_en


@dataclass(frozen=True)
class RowProblem:
    """One rejected row (or one rejected value of a row); the other rows still count."""

    line: int | None  # 1-based physical line (CSV/TXT) or row number (XLSX)
    location: str | None  # XLSX "Sheet1!B7"; None for text files
    raw: str  # the raw cell value as read
    code: str
    message_zh: str
    message_en: str


@dataclass(frozen=True)
class FileWarning:
    """Something about the whole file worth telling the uploader; the file is still read."""

    code: str
    message_zh: str
    message_en: str


# Chinese wording for the reason codes of registry.numbers.normalize.InvalidValue.
_INVALID_VALUE_ZH = {
    "not_text": "报告编号必须是文本",
    "empty": "报告编号为空",
    "too_long": f"报告编号超过 {MAX_NUMBER_LENGTH} 个字符",
    "bad_character": "报告编号含有不允许的字符",
    "uscc_length": "统一社会信用代码应为 18 位",
    "uscc_character": "统一社会信用代码含有不使用的字符",
    "uscc_check": "统一社会信用代码的校验码不正确",
    "certificate_format": "资质认定证书编号应为 12 位数字",
    "certificate_authority": "资质认定证书编号第 3–4 位的发证机关代码不存在（应为 00–32）",
    "bad_sha256": "文件摘要应为报告文件的 SHA-256：64 位十六进制数字",
}


def invalid_value_messages(exc: InvalidValue) -> tuple[str, str]:
    """Chinese and English sentences for a normalisation failure."""
    english = str(exc)
    chinese = _INVALID_VALUE_ZH.get(exc.code, english)
    # The offending character (or code) is quoted after ": " in the English message; repeat it.
    if exc.code in {"bad_character", "uscc_character"} and ": " in english:
        chinese += "：" + english.split(": ", 1)[1]
    elif exc.code == "uscc_character" and "character " in english:
        chinese += "：" + english.split("character ", 1)[1].split(" ", 1)[0]
    return chinese, english
