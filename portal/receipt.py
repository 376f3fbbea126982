"""The printable verification receipt: one A4 PDF page (or more, with long proofs) stating what the
registry answered — number, institution, verdict, time of check — with the transparency log's
signed checkpoint and each named registration's inclusion proof, and a QR code back to the verdict.

For the buyer or tender reviewer who must file proof of the check. It is bilingual whatever the
page's language (Chinese, English below), built with fpdf2 and the Noto Sans CJK font (Debian's
``fonts-noto-cjk``; ``RECEIPT_FONT`` names another file). It records what the registry said at that
moment; it does not prove the report's content true (docs/transparency.md).
"""
from __future__ import annotations

import functools
import os

import segno

from registry.numbers.quarters import iso_local

#: Where Debian, Ubuntu, Fedora and Arch put Noto Sans CJK (a collection: Simplified Chinese is its third face).
FONT_CANDIDATES = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf", 0),
)

VERDICTS = {
    "found": ("已登记", "Registered"),
    "unchecked": ("无法核对出具机构", "The institution could not be matched"),
    "abnormal": ("已登记，但出具机构已列入异常名录", "Registered, but the institution is listed as abnormal"),
    "withdrawn": ("已撤销", "Withdrawn by the institution"),
    "mismatch": ("与所填机构不符", "Registered, but not by the institution given"),
    "ambiguous": ("多家机构登记了此编号", "Registered by more than one institution"),
    "not_found": ("未查到登记", "Not registered"),
}


class FontMissing(RuntimeError):
    """No CJK font to write the receipt with."""


def find_font(setting: str | None) -> tuple[str, int]:
    """(file, face index) of the font: ``RECEIPT_FONT`` (``path`` or ``path:index``) or a known place."""
    if setting:
        path, _, index = setting.rpartition(":") if setting.rpartition(":")[2].isdigit() else (setting, "", "0")
        if not os.path.isfile(path):
            raise FontMissing(f"RECEIPT_FONT names {path}, which is not a file")
        return path, int(index or 0)
    for path, index in FONT_CANDIDATES:
        if os.path.isfile(path):
            return path, index
    raise FontMissing("no Noto Sans CJK font is installed (Debian: apt-get install fonts-noto-cjk), "
                      "and RECEIPT_FONT names none")


def verdict_state(verdict) -> str:
    """What the verdict page shows (a found number of an unmatched or abnormal institution is no success)."""
    if verdict.institution_resolved is False and verdict.status in ("found", "ambiguous"):
        return "unchecked"
    if verdict.status == "found" and verdict.institution is not None and verdict.institution.abnormal:
        return "abnormal"
    return verdict.status


@functools.cache
def _receipt_class():
    """The receipt's PDF class. fpdf2 is imported on the first receipt, not with the app: it is
    half a second of every process's start-up (an ``import-numbers`` run, an RQ work-horse)
    that only the receipt route needs."""
    from fpdf import FPDF

    class _Receipt(FPDF):
        def __init__(self, font: tuple[str, int]) -> None:
            super().__init__(format="A4")
            path, index = font
            self.add_font("cjk", fname=path, collection_font_number=index)
            self.set_auto_page_break(auto=True, margin=18)
            self.set_margins(18, 16, 18)
            self.set_title("检验检测报告编号查询凭证 Verification receipt")
            self.set_creator("Report Number Registry")

        def footer(self) -> None:
            self.set_y(-13)
            self.set_font("cjk", size=7)
            self.set_text_color(110)
            self.cell(0, 5, f"{self.page_no()}/{{nb}}", align="R")

        def heading(self, zh: str, en: str) -> None:
            self.ln(3)
            self.set_font("cjk", size=11)
            self.set_text_color(20)
            self.cell(0, 6, f"{zh}  {en}", new_x="LMARGIN", new_y="NEXT")
            self.set_draw_color(180)
            self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
            self.ln(1.5)

        def field(self, zh: str, en: str, value: str, *, width: float = 0) -> None:
            label_w = 42
            self.set_font("cjk", size=8)
            self.set_text_color(90)
            y = self.get_y()
            self.multi_cell(label_w, 4.2, f"{zh}\n{en}", new_x="RIGHT", new_y="TOP")
            self.set_font("cjk", size=10)
            self.set_text_color(10)
            self.multi_cell(width or (self.w - self.r_margin - self.get_x()), 5, value or "—",
                            new_x="LMARGIN", new_y="NEXT")
            self.set_y(max(self.get_y(), y + 9))

        def small(self, text: str, size: float = 6.5) -> None:
            self.set_font("cjk", size=size)
            self.set_text_color(40)
            self.multi_cell(0, size * 0.5, text, new_x="LMARGIN", new_y="NEXT", wrapmode="CHAR")

        def qr(self, link: str, x: float, y: float, size: float) -> None:
            code = segno.make(link, error="m", micro=False)
            matrix = [list(row) for row in code.matrix]
            cell = size / (len(matrix) + 4)
            self.set_fill_color(0)
            for r, row in enumerate(matrix):
                for c, dark in enumerate(row):
                    if dark:
                        self.rect(x + (c + 2) * cell, y + (r + 2) * cell, cell, cell, style="F")

    return _Receipt


def build_receipt(*, verdict, institution_text: str | None, link: str, log: dict | None,
                  font: tuple[str, int]) -> bytes:
    """The receipt's PDF bytes. ``log`` is the transparency log's evidence for the registrations the
    answer names (``TransparencyLog.evidence``), or None when it could not be read."""
    pdf = _receipt_class()(font)
    pdf.add_page()
    top = pdf.get_y()
    pdf.set_font("cjk", size=16)
    pdf.set_text_color(10)
    pdf.cell(0, 9, "检验检测报告编号查询凭证", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    pdf.set_text_color(60)
    pdf.cell(0, 6, "Report number verification receipt", new_x="LMARGIN", new_y="NEXT")
    pdf.qr(link, pdf.w - pdf.r_margin - 34, top - 2, 34)
    pdf.ln(4)

    zh, en = VERDICTS[verdict_state(verdict)]
    content = pdf.w - pdf.l_margin - pdf.r_margin - 42 - 38  # beside the QR code
    pdf.field("查询结论", "Verdict", f"{zh}\n{en}", width=content)
    pdf.field("报告编号", "Report number", verdict.number, width=content)
    pdf.field("报告上的机构", "Institution given", institution_text or "（未填写 / not given）")
    if verdict.status in ("found", "withdrawn") and verdict.institution is not None:
        pdf.field("登记机构", "Registered by", f"{verdict.institution.name}\n{verdict.institution.uscc}")
        pdf.field("登记季度", "Quarter", verdict.quarter or "")
        pdf.field("登记时间", "Registered at", iso_local(verdict.registered_at) or "")
    if verdict.status == "withdrawn":
        pdf.field("撤销时间", "Withdrawn at", iso_local(verdict.withdrawn_at) or "")
    if verdict.status == "ambiguous":
        pdf.field("登记机构", "Registered by", "\n".join(f"{c.name}  {c.uscc}" for c in verdict.candidates))
    if verdict.status == "not_found" and verdict.pending_until is not None:
        pdf.field("登记期限", "Upload window",
                  f"{verdict.pending_since.isoformat()} – {verdict.pending_until.isoformat()}：报告若出具于此期间，"
                  "机构可能尚未登记 / a report issued in this window may not be registered yet")
    pdf.field("查询时间", "Checked at", iso_local(verdict.checked_at) or "")
    pdf.field("核对链接", "Check again", link)

    pdf.heading("透明日志", "Transparency log")
    if log is None:
        pdf.small("透明日志暂时无法读取，本凭证不含收录证明。 The transparency log could not be read; this receipt "
                  "carries no inclusion proof.", 8)
    else:
        entries = log.get("entries") or []
        if not entries:
            pdf.small("本结论未指明任何登记，无收录证明。 The verdict names no registration, so there is no "
                      "inclusion proof.", 8)
        if log.get("checkpoint"):
            pdf.small("签名检查点 Signed checkpoint (C2SP signed-note):", 8)
            pdf.small(log["checkpoint"])
        for item in entries:
            pdf.ln(1)
            if item.get("pending"):
                pdf.small(f"条目 Entry (尚待收录 pending integration): {item['entry']}", 7)
                continue
            pdf.small(f"条目 Entry #{item['leaf_index']}: {item['entry']}", 7)
            pdf.small(f"机构 USCC {item['uscc']} · 编号 number {item['number']} · salt {item['salt']}")
            pdf.small("收录证明 Inclusion proof: " + (" ".join(item["inclusion"]) if item.get("inclusion") else
                      "（树中仅此一条：根哈希即其叶哈希 / the only entry: the root is its leaf hash）"))
    pdf.ln(3)
    pdf.small("本凭证记录本系统在上述时间给出的查询结论，不证明报告内容真实。任何人均可用检查点、条目与收录证明独立核验"
              "（见 /docs/api 与 tools/tlog_verify.py）。 This receipt records what the registry answered at the time "
              "above; it does not prove the report's content true. Anyone can check the entry against the signed "
              "checkpoint with the inclusion proof (see /docs/api and tools/tlog_verify.py).", 7.5)
    return bytes(pdf.output())


def font_from(app_config) -> tuple[str, int]:
    return find_font(app_config.get("RECEIPT_FONT") or None)


__all__ = ["FontMissing", "build_receipt", "find_font", "font_from", "verdict_state"]
