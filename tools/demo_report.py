"""The demo's sample report file: ``portal/static/demo/sample-report.pdf``, a one-page test report
of the first demo laboratory whose SHA-256 the demo data registers with its number
(``workflows/demo.py``: ``SAMPLE_NUMBER``), so that the verify page's 核对报告文件 (document check)
can be tried on a fresh ``make run``: choose this file on that number's page and it answers
"文件一致"; change one byte (or choose any other file) and it answers "文件不一致".

The file is in the repository; this tool made it and makes it again, byte for byte (fixed
creation date), when its content has to change:

    .venv/bin/python -m tools.demo_report

It needs the Noto Sans CJK font (Debian: ``fonts-noto-cjk``), as the verification receipt does.
"""
from __future__ import annotations

import datetime as dt
import sys

from portal.receipt import find_font
from registry.infra.settings import DEMO_REPORT
from workflows.demo import SAMPLE_NUMBER

OUT = DEMO_REPORT
LAB = "北京产品质量检验所（演示）"

ROWS = (
    ("样品名称", "电线电缆（演示样品）"),
    ("规格型号", "BV 2.5 mm²"),
    ("委托单位", "演示电器有限公司"),
    ("检验类别", "委托检验"),
    ("检验依据", "GB/T 5023.3-2008"),
    ("检验项目", "导体电阻、绝缘厚度、耐电压"),
    ("检验结论", "所检项目符合标准要求"),
    ("签发日期", "2026年10月15日"),
)


def build() -> bytes:
    from fpdf import FPDF

    path, index = find_font(None)
    pdf = FPDF(format="A4")
    pdf.set_creation_date(dt.datetime(2026, 10, 15, 9, 0, tzinfo=dt.timezone.utc))
    pdf.set_title("检验报告（演示样本） Sample test report")
    pdf.set_creator("Report Number Registry demo data")
    pdf.add_font("cjk", fname=path, collection_font_number=index)
    pdf.add_page()
    pdf.set_margins(22, 20, 22)
    pdf.set_font("cjk", size=20)
    pdf.cell(0, 14, "检 验 报 告", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    pdf.cell(0, 7, f"报告编号：{SAMPLE_NUMBER}", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for label, value in ROWS:
        pdf.set_font("cjk", size=10)
        pdf.cell(34, 10, label, border=1, align="C")
        pdf.cell(0, 10, "  " + value, border=1, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(10)
    pdf.set_font("cjk", size=11)
    pdf.cell(0, 8, LAB, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=8)
    pdf.set_text_color(110)
    pdf.ln(20)
    pdf.multi_cell(0, 5, "演示样本：本文件由报告编号登记系统的演示数据生成，不是真实的检验报告。"
                         "Demo sample generated with the registry's demo data; not a real test report.")
    return bytes(pdf.output())


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(build())
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
