"""The annual report (年度报告) and the social responsibility report (社会责任报告) filed with the
survey: sections of text an admin defines per year, each with PDF attachments.

The official section formats are annexes of SAMR's notice we do not have, so the sections are
data: a year keeps its list in ``statistics_years.sections`` (None: :data:`DEFAULT_SECTIONS`).
A section belongs to one report (``annual`` or ``social``) and applies to every institution or
only to those owning a 国家质检中心 (``national_center``); the social responsibility report's
default sections apply only to those.

Attachments are PDF only, judged by their content (the ``%PDF-`` header, an ``%%EOF`` marker near
the end, and pypdf able to read the page tree), kept in the files directory the way complaint
attachments are (:func:`registry.complaints.service.store_attachment`, folder ``statistics``).
Flask-free.
"""
from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

from registry.complaints.service import AttachmentRefused, StoredAttachment, store_attachment

REPORTS = ("annual", "social")
APPLIES = ("all", "national_center")
MAX_SECTIONS = 40
MAX_SECTION_CHARS = 20_000
MAX_TITLE = 100
MAX_HELP = 500
ATTACHMENT_FOLDER = "statistics"
_KEY = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
RESERVED_KEYS = frozenset({"reviewer", "step", "remove", "csrf_token"})


class SectionsRefused(ValueError):
    """The admin's section list does not fit; ``code`` is ``bad_key``, ``duplicate_key``,
    ``title_required``, ``too_long``, ``too_many``, ``bad_choice`` or ``key_taken`` (a survey
    field's key), ``row`` the 1-based row."""

    def __init__(self, code: str, row: int = 0):
        super().__init__(code)
        self.code = code
        self.row = row


@dataclass(frozen=True)
class Section:
    key: str
    report: str  # annual | social
    title_zh: str
    title_en: str
    help_zh: str = ""
    help_en: str = ""
    required: bool = True
    applies: str = "all"  # all | national_center

    def title(self, language: str) -> str:
        return self.title_en if language == "en" and self.title_en else self.title_zh

    def help(self, language: str) -> str:
        return self.help_en if language == "en" and self.help_en else self.help_zh

    def applies_to(self, national_center: bool) -> bool:
        return self.applies == "all" or national_center


def _s(key, report, zh, en, help_zh, help_en, applies="all") -> Section:
    return Section(key=key, report=report, title_zh=zh, title_en=en, help_zh=help_zh, help_en=help_en,
                   required=True, applies=applies)


DEFAULT_SECTIONS: tuple[Section, ...] = (
    _s("basic_info", "annual", "机构基本情况", "Basic information",
       "法人、场所、资质证书与检验检测能力的概况及本年度的变化。",
       "The legal entity, its sites, certificates and testing capabilities, and this year's changes."),
    _s("certification_compliance", "annual", "遵守资质认定要求情况", "Compliance with certification requirements",
       "本年度遵守资质认定条件和要求的情况，监督检查发现的问题及整改。",
       "How the institution kept to the conditions of its CMA certificate this year; findings of inspections and their correction."),
    _s("personnel_equipment", "annual", "人员和设备变化情况", "Changes in personnel and equipment",
       "授权签字人、技术负责人等关键人员及主要仪器设备的增减与变更。",
       "Changes in authorised signatories, technical managers and other key staff, and in the main instruments."),
    _s("quality_management", "annual", "质量管理体系运行情况", "Quality management",
       "内部审核、管理评审、质量控制活动及其结果。",
       "Internal audits, management reviews, quality control activities and their results."),
    _s("proficiency_testing", "annual", "参加能力验证情况", "Participation in proficiency testing",
       "参加的能力验证、测量审核和实验室间比对，结果及不满意结果的处理。",
       "Proficiency tests, measurement audits and inter-laboratory comparisons taken part in, their results and the handling of unsatisfactory ones."),
    _s("complaints_handled", "annual", "投诉处理情况", "Complaints handled",
       "收到的投诉和申诉、处理结果及采取的纠正措施。",
       "Complaints and appeals received, how they were resolved and the corrective actions taken."),
    _s("integrity_statement", "annual", "诚信承诺", "Integrity statement",
       "对所报数据和报告内容真实、准确、完整的承诺（可附盖章的 PDF）。",
       "A statement that the figures and this report are true, accurate and complete (a stamped PDF may be attached)."),
    _s("sr_center_overview", "social", "国家质检中心概况", "The national quality inspection centre",
       "中心的领域、能力、人员和本年度承担的主要任务。",
       "The centre's field, capabilities and staff, and its main tasks this year.", "national_center"),
    _s("sr_public_service", "social", "公益服务与技术支撑", "Public-interest services and technical support",
       "为政府监管、产品质量监督抽查、标准制修订、中小企业和公众提供的服务。",
       "Services to regulators, product quality sampling, standard-setting, small enterprises and the public.",
       "national_center"),
    _s("sr_impartiality", "social", "公正诚信与依法执业", "Impartiality, integrity and lawful practice",
       "保证检验检测公正独立、防范利益冲突的措施和本年度的执行情况。",
       "Measures ensuring impartial and independent testing and preventing conflicts of interest, and how they worked this year.",
       "national_center"),
    _s("sr_safety_environment", "social", "安全、环境与员工权益", "Safety, environment and staff",
       "实验室安全、废弃物处置、节能环保与员工培训和权益保障。",
       "Laboratory safety, waste disposal, energy and environment, staff training and rights.", "national_center"),
    _s("sr_commitment", "social", "社会责任承诺", "Social responsibility commitment",
       "对履行社会责任的承诺和下一年度的计划。",
       "The centre's commitment to its social responsibility and its plans for the next year.", "national_center"),
)


def sections_from(stored: Iterable[Mapping[str, Any]] | None) -> list[Section]:
    """A year's sections as stored (None: the default set)."""
    if stored is None:
        return list(DEFAULT_SECTIONS)
    fields = set(Section.__dataclass_fields__)
    return [Section(**{k: v for k, v in row.items() if k in fields}) for row in stored]


def sections_to_store(sections: Iterable[Section]) -> list[dict]:
    return [asdict(s) for s in sections]


def clean_sections(rows: Iterable[Mapping[str, Any]], *, taken: Iterable[str] = ()) -> list[Section]:
    """An admin's rows (key, report, titles, help, required, applies) checked into sections; rows
    with neither key nor title are skipped. Raises :class:`SectionsRefused`."""
    taken = set(taken) | RESERVED_KEYS
    out: list[Section] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        text = {k: " ".join(str(row.get(k) or "").split()) for k in ("key", "title_zh", "title_en", "help_zh", "help_en")}
        if not text["key"] and not text["title_zh"] and not text["title_en"]:
            continue
        if not _KEY.match(text["key"]):
            raise SectionsRefused("bad_key", number)
        if text["key"] in taken:
            raise SectionsRefused("key_taken", number)
        if text["key"] in seen:
            raise SectionsRefused("duplicate_key", number)
        if not text["title_zh"] or not text["title_en"]:
            raise SectionsRefused("title_required", number)
        if max(len(text["title_zh"]), len(text["title_en"])) > MAX_TITLE or \
                max(len(text["help_zh"]), len(text["help_en"])) > MAX_HELP:
            raise SectionsRefused("too_long", number)
        report, applies = str(row.get("report") or "annual"), str(row.get("applies") or "all")
        if report not in REPORTS or applies not in APPLIES:
            raise SectionsRefused("bad_choice", number)
        seen.add(text["key"])
        out.append(Section(key=text["key"], report=report, title_zh=text["title_zh"], title_en=text["title_en"],
                           help_zh=text["help_zh"], help_en=text["help_en"], required=bool(row.get("required")),
                           applies=applies))
    if len(out) > MAX_SECTIONS:
        raise SectionsRefused("too_many", MAX_SECTIONS + 1)
    return out


# --- attachments ---------------------------------------------------------------------------------
class PdfRefused(ValueError):
    """``empty``, ``too_large``, ``wrong_type`` (not a PDF by its content), ``broken`` (a PDF
    header but no readable document), ``encrypted``, ``too_many`` (the section's cap)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_pdf(data: bytes) -> int:
    """The number of pages of a well-formed, unencrypted PDF; raises :class:`PdfRefused`."""
    if not data:
        raise PdfRefused("empty")
    if not data.startswith(b"%PDF-"):
        raise PdfRefused("wrong_type")
    if b"%%EOF" not in data[-2048:]:
        raise PdfRefused("broken")
    from pypdf import PdfReader  # imported here: only an upload needs it

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise PdfRefused("encrypted")
        pages = len(reader.pages)
    except PdfRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
        raise PdfRefused("broken") from exc
    if pages < 1:
        raise PdfRefused("broken")
    return pages


def store_pdf(stream: BinaryIO, files_dir: Path, *, max_bytes: int) -> tuple[StoredAttachment, bytes]:
    """Read at most ``max_bytes`` (+1 to notice more), check it is a PDF and keep it beside the
    other uploads (the complaint attachments' storage, folder ``statistics``). Returns the stored
    file and its bytes; nothing is left on disk when it raises :class:`PdfRefused`."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PdfRefused("too_large")
    check_pdf(data)
    try:
        stored = store_attachment(io.BytesIO(data), files_dir, max_bytes=max_bytes, folder_name=ATTACHMENT_FOLDER)
    except AttachmentRefused as exc:  # the same checks, passed above
        raise PdfRefused(exc.reason) from exc
    return stored, data


def clean_filename(name: str | None) -> str:
    """What is kept of an uploaded file's name: its last part, ≤ 100 characters, ending in .pdf."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"<>|:*?').strip() or "attachment.pdf"
    if not base.lower().endswith(".pdf"):
        base += ".pdf"
    return base[-100:]


__all__ = ["APPLIES", "DEFAULT_SECTIONS", "MAX_SECTION_CHARS", "PdfRefused", "REPORTS", "Section",
           "SectionsRefused", "check_pdf", "clean_filename", "clean_sections", "sections_from", "sections_to_store",
           "store_pdf"]
