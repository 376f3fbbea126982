"""Properties: any valid numbers read back unchanged from every format; memory stays constant."""
from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importers.numbers import read_report_numbers
from importers.tabular import EXCEL_ERRORS
from registry.numbers.normalize import normalize_number
from tests.importers.file_builders import csv_bytes, txt_bytes, xlsx_bytes

# Canonical characters of a report number, minus 至 (it is read as a range separator).
_ALPHABET = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/()[]_.#+检测报告第号年")
# Excel's error values (#N/A, #GETTING_DATA) are valid spellings yet rejected on purpose.
numbers_strategy = st.lists(st.text(_ALPHABET, min_size=1, max_size=64).filter(lambda s: s not in EXCEL_ERRORS),
                            min_size=1, max_size=30)
raw_strategy = st.lists(
    st.text(st.sampled_from("abcxyz0123456789-—－ 　〔〕【】\u200b检"), min_size=1, max_size=20).filter(
        lambda s: any(ch.isalnum() for ch in s)), min_size=1, max_size=20)


def _read(data: bytes, filename: str) -> list[str]:
    numbers_file = read_report_numbers(io.BytesIO(data), filename)
    numbers = list(numbers_file.numbers())
    assert numbers_file.problems == []
    return numbers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numbers=numbers_strategy, encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]),
       newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_numbers_round_trip_through_csv_and_txt(numbers, encoding, newline):
    expected = [normalize_number(n) for n in numbers]
    csv_data = csv_bytes([["序号", "报告编号"]] + [[str(i), n] for i, n in enumerate(numbers)],
                         encoding=encoding, newline=newline)
    assert _read(csv_data, "n.csv") == expected
    assert _read(txt_bytes(["报告编号", *numbers], encoding=encoding, newline=newline), "n.txt") == expected


@settings(max_examples=30, deadline=None)
@given(numbers=numbers_strategy)
def test_numbers_round_trip_through_xlsx(numbers):
    data = xlsx_bytes([["report_number"]] + [[n] for n in numbers])
    assert _read(data, "n.xlsx") == [normalize_number(n) for n in numbers]


@settings(max_examples=40, deadline=None)
@given(raw=raw_strategy)
def test_any_spelling_reads_as_its_normal_form(raw):
    assert _read(txt_bytes(["报告编号", *raw]), "n.txt") == [normalize_number(r) for r in raw]


_STREAM_AND_MEASURE = """
import resource, sys
from importers.numbers import read_report_numbers
with open(sys.argv[1], "rb") as fileobj:
    numbers_file = read_report_numbers(fileobj, "million.csv")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = sum(1 for _ in numbers_file.numbers())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(count, numbers_file.rows, len(numbers_file.problems), (after - before) * 1024)
"""


def _write_numbers_csv(path, lines: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("序号,报告编号\n")
        out.writelines(f"{i},WT2020-{i:07d}\n" for i in range(lines))


def test_a_million_line_csv_streams_in_constant_memory(tmp_path):
    """A fresh interpreter's peak resident size barely moves while a million numbers stream by."""
    path = tmp_path / "million.csv"
    _write_numbers_csv(path, 1_000_000)
    result = subprocess.run([sys.executable, "-c", _STREAM_AND_MEASURE, str(path)], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
    count, rows, problems, growth = map(int, result.stdout.split())
    assert (count, rows, problems) == (1_000_000, 1_000_000, 0)
    assert growth < 20 * 1024 * 1024, f"peak grew by {growth / 2**20:.1f} MiB"


def test_python_allocations_stay_small_while_streaming(tmp_path):
    """tracemalloc's view of the same stream (shorter: tracing slows every allocation)."""
    path = tmp_path / "numbers.csv"
    _write_numbers_csv(path, 100_000)
    tracemalloc.start()
    try:
        with path.open("rb") as fileobj:
            numbers_file = read_report_numbers(fileobj, path.name)
            count = sum(1 for _ in numbers_file.numbers())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 2 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=st.lists(st.text(st.sampled_from("abAB09-/#.()[]_+ ~NA至检"), min_size=1, max_size=12),
                      min_size=1, max_size=25))
def test_the_inline_ascii_path_agrees_with_the_cell_parser(cells):
    """NumberFile.numbers takes plain ASCII cells inline; every cell must come out exactly as
    parse_number_cell (and its rejections) would have it."""
    from importers.numbers import Rejected, parse_number_cell

    rows = [["报告编号"]] + [[c] for c in cells]
    numbers_file = read_report_numbers(io.BytesIO(csv_bytes(rows)), "cells.csv")
    got = list(numbers_file.numbers())
    expected, rejected = [], 0
    for cell in cells:
        if not cell.strip():
            continue  # blank rows are skipped before parsing
        try:
            expected.extend(parse_number_cell(cell))
        except Rejected:
            rejected += 1
    assert got == expected
    assert len(numbers_file.problems) == rejected
