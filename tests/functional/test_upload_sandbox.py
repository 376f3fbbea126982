"""A file that makes the reader allocate beyond PARSE_MEMORY_MB (issue 13, item 1) kills only the
child interpreter parsing it: the portal upload ends "refused" with a clear message (never stuck in
"checking", never a 500), the upload API and the withdrawal forms answer a refused file, and the
web process goes on serving."""
from __future__ import annotations

import io
import resource

import pytest

from registry.registration.models import Upload
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    csrf_token, portal_app, preg, signed_in, upload_file)
from tests.functional.test_upload_api import bearer, create_token

CSV = ("报告编号\n" + "\n".join(f"MEM-{i:05d}" for i in range(200)) + "\n").encode()
HUNGRY = "tests.workflows.hostile_readers:allocate"


@pytest.fixture
def hungry(preg, monkeypatch):
    """Every kind of file read by a reader that asks for ever more memory, under a 512 MiB limit."""
    monkeypatch.setattr(preg.sandbox, "memory_mb", 512)
    for kind in ("numbers", "withdrawals", "certificates"):
        monkeypatch.setitem(preg.sandbox.readers, kind, HUNGRY)
    return preg.sandbox


def test_portal_upload_of_a_memory_bomb_is_refused_and_the_worker_lives_on(portal_app, preg, hungry):
    client, inst = signed_in(portal_app, preg)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = upload_file(client, CSV, name="bomb.xlsx")
    assert response.status_code == 303
    status_url = response.headers["Location"]
    page = client.get(status_url)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "文件无法处理" in text and "bomb.xlsx：文件无法解析" in text
    with preg.sessions() as session:
        upload = session.query(Upload).one()
        assert upload.state == "refused" and upload.report["refused"]["code"] == "unparseable"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # the child grew, not us
    # the same process goes on: the status page, a verification, and a good file once the reader is sound
    assert client.get(f"/api/v1/verify?number=MEM-00001&institution={inst.uscc}").status_code == 200
    hungry.readers["numbers"] = "importers.numbers:read_report_numbers"
    response = upload_file(client, CSV, name="good.csv")
    assert "确认登记 200 个编号" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_upload_api_and_withdrawal_files_answer_a_refused_file(portal_app, preg, hungry):
    client, inst = signed_in(portal_app, preg)
    token = create_token(client)
    batch = client.post("/api/v1/batches", data={"quarter": "2026Q3", "file": (io.BytesIO(CSV), "bomb.csv")},
                        headers=bearer(token), content_type="multipart/form-data")
    assert batch.status_code == 422
    assert batch.get_json()["error"]["code"] == "invalid_file"
    assert "could not be parsed" in batch.get_json()["error"]["message"]
    withdrawal = client.post("/api/v1/withdrawals", data={"file": (io.BytesIO(CSV), "bomb.csv")},
                             headers=bearer(token), content_type="multipart/form-data")
    assert withdrawal.status_code == 422 and "could not be parsed" in withdrawal.get_json()["error"]["message"]
    form = client.post("/institution/withdrawals", data={
        "csrf_token": csrf_token(client, "/institution/withdrawals"), "file": (io.BytesIO(CSV), "bomb.csv")},
        content_type="multipart/form-data")
    assert form.status_code == 400 and "bomb.csv：文件无法解析" in form.get_data(as_text=True)
    assert client.get("/institution/").status_code == 200
