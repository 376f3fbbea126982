"""The upload check page counts, before anything is registered, what the receipt will say: the
column read, a sample of the numbers, duplicates within the file, numbers this institution
registered already and new numbers; the confirm button names the new ones (issue 19)."""
from __future__ import annotations

import io
import re

from registry.registration.models import Batch
from tests.builders import make_institution
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    confirm, portal_app, preg, signed_in, upload_file)
from workflows.uploads import DistinctNumbers


def _text(html: str) -> str:
    """The page's words: tags dropped, white space folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_check_page_counts_duplicates_registered_and_new(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    first = confirm(client, upload_file(client, "报告编号\nOLD-1\nOLD-2\n".encode(), name="first.csv").headers["Location"])
    assert "/institution/batches/" in first.headers["Location"]

    content = "序号,报告编号\n1,OLD-1\n2,NEW-1\n3,NEW-1\n4,NEW-2~NEW-4\n5,bad§\n6,OLD-2\n".encode()
    status_url = upload_file(client, content).headers["Location"]
    page = _text(client.get(status_url + "?lang=zh").get_data(as_text=True))
    assert "编号取自第 1 行表头为“报告编号”的一列（第 2 列）" in page
    assert "7 个编号从文件读出" in page
    assert "1 个在文件中重复" in page
    assert "2 个本机构此前已登记" in page
    assert "4 个新编号将被登记" in page
    assert "1 行被拒绝" in page
    assert "OLD-1 NEW-1 NEW-1 NEW-2 NEW-3 NEW-4 OLD-2" in page  # the sample, in file order
    assert "确认登记 4 个编号" in page
    assert "行数据" not in page

    english = _text(client.get(status_url + "?lang=en").get_data(as_text=True))
    assert "Numbers read from the column headed “报告编号” (column 2, header on line 1)" in english
    for words in ("7 numbers read from the file", "1 repeated within the file",
                  "2 already registered by this institution", "4 new numbers to be registered",
                  "1 rows rejected", "Confirm: register 4 new numbers"):
        assert words in english, words
    assert "Row data" not in english

    receipt = confirm(client, status_url)
    batch_id = int(receipt.headers["Location"].rsplit("/", 1)[1])
    with preg.sessions() as session:
        batch = session.get(Batch, batch_id)
        assert (batch.accepted, batch.duplicates, batch.rejected) == (4, 3, 1)  # no surprise


def test_headerless_file_names_its_column(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    page = _text(client.get(upload_file(client, b"A-1\nA-2\nA-2\n").headers["Location"]).get_data(as_text=True))
    assert "文件没有表头，编号取自唯一有内容的一列（第 1 列）" in page
    assert "1 个在文件中重复" in page and "确认登记 2 个编号" in page


def test_count_registered_is_per_institution_and_chunked(preg):
    from tests.builders import register

    with preg.sessions() as session:
        mine = make_institution(session, name="甲检测")
        other = make_institution(session, name="乙检测")
    register(preg, mine, [f"C-{i}" for i in range(30)])
    register(preg, other, ["C-100"])
    numbers = [f"C-{i}" for i in range(25, 40)] + ["C-100"]
    assert preg.registration.count_registered(mine.id, numbers, chunk=4) == 5
    assert preg.registration.count_registered(other.id, iter(numbers), chunk=4) == 1
    assert preg.registration.count_registered(mine.id, []) == 0


def test_distinct_numbers_in_bounded_memory():
    with DistinctNumbers() as distinct:
        for i in range(25_000):
            distinct.add(f"D-{i % 20_000}")
        assert distinct.count() == 20_000
        assert sum(len(part) for part in distinct.slices(7_000)) == 20_000


def test_progress_of_an_import_shows_done_of_total_and_a_percentage(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    status_url = upload_file(client, b"P-1\nP-2\n").headers["Location"]
    upload_id = int(status_url.rsplit("/", 1)[1])
    upload = preg.uploads.get(upload_id)
    assert preg.uploads.transition(upload_id, "ready", "importing", report={**upload.report, "numbers": 1_200_000})
    preg.uploads.report_progress(upload, 300_000)
    page = _text(client.get(status_url + "?lang=zh").get_data(as_text=True))
    assert "正在登记：已处理 300,000 / 1,200,000 个编号（25%）" in page
    english = _text(client.get(status_url + "?lang=en").get_data(as_text=True))
    assert "Registering: 300,000 of 1,200,000 numbers done (25%)" in english


def test_check_page_counts_document_fingerprints_and_registers_them(portal_app, preg):
    """A file with a 文件摘要 column: the check says how many numbers carry a fingerprint (without
    holding the file's fingerprints in memory), and confirming stores them with their numbers."""
    import hashlib

    from sqlalchemy import select

    from registry.registration.models import ReportNumber

    client, _ = signed_in(portal_app, preg)
    digest = hashlib.sha256(b"%PDF-1.7 report FP-1").hexdigest()
    content = f"报告编号,文件摘要\nFP-1,{digest}\nFP-2,\nFP-3,{hashlib.sha256(b'FP-3').hexdigest()}\n".encode()
    status_url = upload_file(client, content, name="fingerprinted.csv").headers["Location"]
    page = _text(client.get(status_url + "?lang=zh").get_data(as_text=True))
    assert "2 个编号附有文件摘要（SHA-256）" in page
    english = _text(client.get(status_url + "?lang=en").get_data(as_text=True))
    assert "2 numbers carry a document fingerprint (SHA-256)" in english
    plain = _text(client.get(upload_file(client, "报告编号\nFP-9\n".encode(), name="plain.csv")
                             .headers["Location"]).get_data(as_text=True))
    assert "文件摘要" not in plain  # said only when the file has some

    confirm(client, status_url)
    with preg.sessions() as session:
        stored = dict(session.execute(select(ReportNumber.number, ReportNumber.sha256)
                                      .where(ReportNumber.number.in_(["FP-1", "FP-2", "FP-3"]))).all())
    assert stored == {"FP-1": digest, "FP-2": None, "FP-3": hashlib.sha256(b"FP-3").hexdigest()}


def test_the_receipt_counts_the_fingerprints_registered_and_tells_of_those_kept(portal_app, preg):
    """The receipt says how many numbers the batch registered with a fingerprint; fingerprints a
    file gave to numbers registered before (which keep theirs) are said to be not registered."""
    import hashlib

    client, _ = signed_in(portal_app, preg)
    first, second, third = (hashlib.sha256(f"%PDF-1.7 report {n}".encode()).hexdigest() for n in range(3))
    receipt = confirm(client, upload_file(client, f"报告编号,文件摘要\nKP-1,{first}\nKP-2,\nKP-3,{second}\n".encode(),
                                          name="first.csv").headers["Location"]).headers["Location"]
    page = _text(client.get(receipt + "?lang=zh").get_data(as_text=True))
    assert "附文件摘要 2" in page and "上传文件中有" not in page
    # KP-1 again with another fingerprint (kept as registered), KP-2 now with one (it had none), KP-4 new
    content = f"报告编号,文件摘要\nKP-1,{third}\nKP-2,{third}\nKP-4,{third}\nKP-5,\n".encode()
    receipt = confirm(client, upload_file(client, content, name="second.csv").headers["Location"]).headers["Location"]
    page = _text(client.get(receipt + "?lang=zh").get_data(as_text=True))
    assert "附文件摘要 1 上传文件中有 3 个；其余编号此前已登记，保留登记时的文件摘要（或无摘要）" in page, page
    english = _text(client.get(receipt + "?lang=en").get_data(as_text=True))
    assert "With a document fingerprint 1 The file carried 3; the other numbers were registered before" in english
    with preg.sessions() as session:
        assert [b.documents for b in session.query(Batch).order_by(Batch.id)] == [2, 1]
    plain = confirm(client, upload_file(client, "报告编号\nKP-9\n".encode(), name="plain.csv").headers["Location"])
    assert "文件摘要" not in _text(client.get(plain.headers["Location"]).get_data(as_text=True))
