"""Regenerate the sample import files beside this script (try them with the CLI).

    .venv/bin/python tests/data/make_samples.py
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from registry.numbers.normalize import make_uscc  # noqa: E402
from tests.importers.file_builders import (  # noqa: E402
    CERTIFICATE_HEADER,
    cell_xml,
    csv_bytes,
    make_certificate_row,
    raw_xlsx,
    txt_bytes,
)


def samples() -> dict[str, bytes]:
    numbers = [[str(i), f"GDJC2020-{i:04d}"] for i in range(1, 11)]
    return {
        "numbers_gbk.csv": csv_bytes([["XX检测中心2020年第四季度报告编号清单"], [], ["序号", "报告编号"], *numbers],
                                     encoding="gbk", newline="\r\n"),
        "numbers_bom.csv": csv_bytes([["序号", "报告编号(必填)", "备注"], *[[*row, ""] for row in numbers]],
                                     encoding="utf-8-sig"),
        "numbers.xlsx": raw_xlsx({
            1: [cell_xml("A1", "XX检测中心2020年第四季度报告编号清单")],
            3: [cell_xml("A3", "序号"), cell_xml("B3", "报告编号")],
            4: [cell_xml("A4", 1), cell_xml("B4", 20200001.0)],
            5: [cell_xml("A5", 2), cell_xml("B5", 2.0200002e07)],
            6: [cell_xml("A6", 3), cell_xml("B6", "GDJC2020-0003", formula='"GDJC2020-"&TEXT(A6,"0000")')],
            7: [cell_xml("A7", 4), cell_xml("B7", "WT2020-0098~WT2020-0102")],
        }),
        "ranges.txt": txt_bytes(["报告编号", "WT2020-0098~WT2020-0102", "WT2020-0200至WT2020-0203", "WT2020-0300",
                                 "WT2020-0310~WT2020-0305"], newline="\r\n"),
        "certificates.csv": csv_bytes([
            CERTIFICATE_HEADER,
            make_certificate_row(),
            make_certificate_row(number="201909000456", name="上海某某检验检测有限公司",
                                 uscc=make_uscc("91310000MA1FXXXX1"), issued_on="2019/3/5", expires_on="2025年3月4日",
                                 status="暂停", address="上海市浦东新区某路3号", review_authority="09"),
            make_certificate_row(number="201919000789", uscc="91440101MA5CXXXX00", status="有效"),  # bad check char
        ], encoding="utf-8-sig"),
        "withdrawals.csv": csv_bytes([["报告编号", "撤销原因"], ["GDJC2020-0003", "报告信息录入错误，已重新出具"],
                                      ["GDJC2020-0005~GDJC2020-0006", "委托方撤回"], ["GDJC2020-0007", ""]],
                                     encoding="utf-8-sig"),
    }


def main() -> None:
    for name, data in samples().items():
        (HERE / name).write_bytes(data)
        print(f"wrote tests/data/{name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
