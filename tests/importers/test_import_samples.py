"""The committed sample files under tests/data read as documented, and match their generator."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from importers.certificates import read_certificates
from importers.numbers import read_report_numbers
from importers.withdrawals import read_withdrawals

DATA = Path(__file__).resolve().parents[1] / "data"


def _generator():
    spec = importlib.util.spec_from_file_location("make_samples", DATA / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(_generator().samples()))
def test_committed_samples_match_their_generator(name):
    assert (DATA / name).read_bytes() == _generator().samples()[name], "run tests/data/make_samples.py"


@pytest.mark.parametrize("name", ["numbers_gbk.csv", "numbers_bom.csv"])
def test_number_samples(name):
    with (DATA / name).open("rb") as fileobj:
        numbers_file = read_report_numbers(fileobj, name)
        assert list(numbers_file.numbers()) == [f"GDJC2020-{i:04d}" for i in range(1, 11)]
    assert numbers_file.problems == []


def test_xlsx_and_ranges_samples():
    with (DATA / "numbers.xlsx").open("rb") as fileobj:
        numbers_file = read_report_numbers(fileobj, "numbers.xlsx")
        assert list(numbers_file.numbers()) == ["20200001", "20200002", "GDJC2020-0003"] + [
            f"WT2020-{n:04d}" for n in range(98, 103)]
    with (DATA / "ranges.txt").open("rb") as fileobj:
        numbers_file = read_report_numbers(fileobj, "ranges.txt")
        assert len(list(numbers_file.numbers())) == 10
    assert [(p.line, p.code) for p in numbers_file.problems] == [(5, "range_reversed")]


def test_certificate_and_withdrawal_samples():
    with (DATA / "certificates.csv").open("rb") as fileobj:
        certificate_file = read_certificates(fileobj, "certificates.csv")
        assert [row.status for row in certificate_file.rows()] == ["valid", "suspended"]
    assert [(p.line, p.code) for p in certificate_file.problems] == [(4, "uscc_check")]
    with (DATA / "withdrawals.csv").open("rb") as fileobj:
        withdrawal_file = read_withdrawals(fileobj, "withdrawals.csv")
        assert [w.number for w in withdrawal_file.rows()] == ["GDJC2020-0003", "GDJC2020-0005", "GDJC2020-0006"]
    assert [(p.line, p.code) for p in withdrawal_file.problems] == [(4, "reason_missing")]
