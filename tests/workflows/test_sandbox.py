"""Uploaded files are parsed in a limited child interpreter (issue 13, item 1): a file that makes a
reader allocate without bound, crash or spin kills only the child, and the caller gets a clear
refusal; a good file reads exactly as the importers read it in-process."""
from __future__ import annotations

import datetime as dt
import io
import os
import resource
import time

import pytest

from importers.certificates import read_certificates
from importers.errors import FileRefused
from importers.numbers import read_report_numbers
from importers.withdrawals import read_withdrawals
from tests.builders import uscc_for
from workflows.sandbox import Sandbox

HOSTILE = "tests.workflows.hostile_readers"
NUMBERS = ("报告编号\n" + "\n".join(f"SB-{i:06d}" for i in range(50_000)) + "\nbad§one\nSB-1~SB-9\n\n").encode()


def _children() -> set[int]:
    """This process's children (a session may keep servers of its own running: compare, never expect none)."""
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as fh:
            return {int(pid) for pid in fh.read().split()}
    except OSError:
        return set()


def test_numbers_read_as_in_process(tmp_path):
    path = tmp_path / "n.csv"
    path.write_bytes(NUMBERS)
    expected = read_report_numbers(io.BytesIO(NUMBERS), "n.csv")
    expected_numbers = list(expected.numbers())
    for source in (open(path, "rb"), io.BytesIO(NUMBERS)):  # a file on disk, an in-memory upload
        with source:
            source.read(7)
            source.seek(0)
            with Sandbox().report_numbers(source, "n.csv") as parsed:
                assert list(parsed.numbers()) == expected_numbers
            assert parsed.problems == expected.problems and parsed.rows == expected.rows
            assert source.read(4) == NUMBERS[:4]  # the caller's file object is where it was


def test_withdrawals_and_certificates_read_as_in_process():
    withdrawals = "报告编号,撤销原因\nW-01~W-03,写错\nW-9,\n".encode()
    with Sandbox().withdrawals(io.BytesIO(withdrawals), "w.csv") as parsed:
        rows = list(parsed.rows())
    expected = read_withdrawals(io.BytesIO(withdrawals), "w.csv")
    assert rows == list(expected.rows()) and parsed.problems == expected.problems and len(rows) == 3

    certificates = ("证书编号,机构名称,统一社会信用代码,发证日期,有效期至,状态,地址\n"
                    f"210012345678,甲检测有限公司,{uscc_for(7)},2020-01-02,2026-01-01,有效,北京;上海\n"
                    "bad,乙,x,2020-01-02,2026-01-01,有效,\n").encode()
    with Sandbox().certificates(io.BytesIO(certificates), "c.csv") as parsed:
        rows = list(parsed.rows())
    expected = read_certificates(io.BytesIO(certificates), "c.csv")
    assert rows == list(expected.rows()) and parsed.problems == expected.problems
    assert rows and rows[0].issued_on == dt.date(2020, 1, 2) and rows[0].addresses == ("北京", "上海")


def test_a_refused_file_is_refused_with_the_importers_message():
    with pytest.raises(FileRefused) as refused:
        Sandbox().report_numbers(io.BytesIO("名称\n甲,乙\n丙,丁\n".encode()), "x.csv")
    assert refused.value.code == "missing_column" and refused.value.message_zh.startswith("x.csv：")
    assert refused.value.filename == "x.csv"
    # a refusal in the middle of the stream comes where the importer raises it
    parsed = Sandbox().report_numbers(io.BytesIO(NUMBERS), "n.csv", max_numbers=1000)
    with pytest.raises(FileRefused) as refused:
        list(parsed.numbers())
    assert refused.value.code == "too_many_numbers"


@pytest.mark.parametrize("reader", ["allocate", "crash", "spin", "allocate_midway"])
def test_a_reader_that_dies_refuses_the_file_and_only_the_child_dies(reader):
    sandbox = Sandbox(memory_mb=512, seconds=2, readers={"numbers": f"{HOSTILE}:{reader}"})
    children = _children()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(FileRefused) as refused:
        parsed = sandbox.report_numbers(io.BytesIO(NUMBERS), "bomb.xlsx")
        list(parsed.numbers())
    assert time.monotonic() - started < 30
    assert refused.value.code == "unparseable"
    assert refused.value.message_zh.startswith("bomb.xlsx：文件无法解析")
    assert refused.value.message_en.startswith("bomb.xlsx: the file could not be parsed")
    # this process neither grew nor kept a child
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024
    assert _children() <= children


def test_an_abandoned_read_stops_the_child():
    children = _children()
    parsed = Sandbox().report_numbers(io.BytesIO(NUMBERS), "n.csv")
    numbers = parsed.numbers()
    assert next(numbers) == "SB-000000"
    parsed.close()
    assert _children() <= children


def test_the_child_sees_no_secret(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:secret@db/registry")
    sandbox = Sandbox(readers={"numbers": "tests.workflows.test_sandbox:environment_reader"})
    with sandbox.report_numbers(io.BytesIO(b"x"), "env.csv") as parsed:
        seen = list(parsed.numbers())
    assert seen and not any("SECRET" in name or "DATABASE" in name for name in seen)


def environment_reader(fileobj, filename, **options):
    """A reader that reports the names in its environment as numbers (test of the child's environment)."""
    names = [name.upper().replace("_", "-") for name in os.environ]

    class Names:
        problems, warnings, rows = [], [], len(names)

        def numbers(self):
            yield from names or ["NONE"]

    return Names()


def test_document_fingerprints_travel_before_their_numbers():
    digest = "ab" * 32
    data = ("报告编号,文件摘要\n" + "".join(f"FP-{i:05d},{digest if i % 3 == 0 else ''}\n" for i in range(9000))).encode()
    with Sandbox().report_numbers(io.BytesIO(data), "fp.csv") as parsed:
        taken = {}
        for number in parsed.numbers():
            if int(number[3:]) % 3 == 0:
                assert parsed.documents.get(number, taken.get(number)) == digest  # there before the number
            taken.update(parsed.documents)
            parsed.documents.clear()
    assert len(taken) == 3000 and set(taken.values()) == {digest}


def test_a_forged_fingerprint_record_refuses_the_file():
    sandbox = Sandbox(readers={"numbers": f"{HOSTILE}:forged_documents"})
    with pytest.raises(FileRefused) as refused:
        with sandbox.report_numbers(io.BytesIO(b"A-1\n"), "x.csv") as parsed:
            list(parsed.numbers())
    assert refused.value.code == "unparseable"
