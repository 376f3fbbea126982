"""Portal upload states under concurrency and faults (issue 13, item 4): every change of state is
a guarded transition, a repeat is the earlier receipt, a stuck upload can be retried or
cancelled, and a queue that cannot be reached gets a clear message, never a 500."""
from __future__ import annotations

import datetime as dt
import socket
import threading
import time

import pytest
from sqlalchemy import func, select, update

from registry.registration.models import Batch, Upload
from tests.functional.test_institution_background import _drain
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    NOW, confirm, csrf_token, fixed_clock, login, make_account, portal_app, preg, signed_in, upload_file)
from tests.builders import make_institution

CSV = ("报告编号\n" + "\n".join(f"RACE-{i:05d}" for i in range(3000)) + "\n").encode()


def _clients(app, reg, n: int):
    """``n`` clients signed in as the same institution user (tabs, browsers, double clicks)."""
    with reg.sessions() as session:
        inst = make_institution(session)
    account = make_account(reg, institution=inst)
    clients = []
    for _ in range(n):
        client = app.test_client()
        assert login(client, account.username).status_code == 302
        clients.append(client)
    return clients, inst


def _all_at_once(calls):
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test reports it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _upload(reg, upload_id: int) -> Upload:
    with reg.sessions() as session:
        return session.get(Upload, upload_id)


def _wait_done(client, status_url: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(status_url)
        if response.status_code == 302:
            return response.headers["Location"]
        time.sleep(0.1)
    raise AssertionError(client.get(status_url).get_data(as_text=True))


def test_concurrent_confirms_register_once(portal_app, preg):
    clients, _ = _clients(portal_app, preg, 3)
    status_url = upload_file(clients[0], CSV).headers["Location"]
    upload_id = int(status_url.rsplit("/", 1)[1])
    tokens = [csrf_token(c, status_url) for c in clients]
    results = _all_at_once([lambda c=c, t=t: c.post(status_url + "/confirm", data={"csrf_token": t})
                            for c, t in zip(clients, tokens)])
    assert all(not isinstance(r, Exception) and 200 <= r.status_code < 400 for r in results), results
    receipt_url = _wait_done(clients[0], status_url)
    with preg.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 1
        batch_id = session.scalar(select(Batch.id))
    upload = _upload(preg, upload_id)
    assert (upload.state, upload.batch_id, upload.error) == ("done", batch_id, None)
    assert receipt_url.endswith(f"/institution/batches/{batch_id}")


def test_same_file_uploaded_twice_and_confirmed_together_is_one_batch(portal_app, preg):
    clients, _ = _clients(portal_app, preg, 2)
    urls = [upload_file(c, CSV).headers["Location"] for c in clients]
    tokens = [csrf_token(c, u) for c, u in zip(clients, urls)]
    results = _all_at_once([lambda c=c, u=u, t=t: c.post(u + "/confirm", data={"csrf_token": t})
                            for c, u, t in zip(clients, urls, tokens)])
    assert all(not isinstance(r, Exception) and 200 <= r.status_code < 400 for r in results), results
    receipts = {_wait_done(c, u) for c, u in zip(clients, urls)}
    with preg.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 1
        batch_id = session.scalar(select(Batch.id))
    assert receipts == {f"/institution/batches/{batch_id}"}
    for url in urls:
        upload = _upload(preg, int(url.rsplit("/", 1)[1]))
        assert (upload.state, upload.batch_id) == ("done", batch_id)


def _as_if_its_worker_died(reg, upload_id: int, state: str) -> None:
    """The state a SIGKILLed worker leaves: working, no heartbeat for an hour."""
    upload = _upload(reg, upload_id)
    reg.uploads.progress_path(upload).unlink(missing_ok=True)
    with reg.sessions() as session:
        session.execute(update(Upload).where(Upload.id == upload_id).values(
            state=state, updated_at=NOW - dt.timedelta(hours=1)))
        session.commit()


def test_a_stuck_import_can_be_retried(portal_app, preg, stack):
    client, inst = signed_in(portal_app, preg)
    status_url = upload_file(client, CSV).headers["Location"]
    upload_id = int(status_url.rsplit("/", 1)[1])
    _as_if_its_worker_died(preg, upload_id, "importing")
    page = client.get(status_url).get_data(as_text=True)
    assert "处理中断" in page and "/retry" in page and "/cancel" in page and 'http-equiv="refresh"' not in page
    # confirming again does nothing while it is stuck
    assert confirm(client, status_url).headers["Location"] == status_url
    token = csrf_token(client, status_url)
    assert client.post(status_url + "/retry", data={"csrf_token": token}).status_code == 303
    _drain(portal_app, stack)
    receipt_url = _wait_done(client, status_url)
    assert "/institution/batches/" in receipt_url
    preg.refresh()
    assert client.get(f"/api/v1/verify?number=RACE-02999&institution={inst.uscc}").get_json()["status"] == "found"


def test_a_stuck_check_can_be_cancelled(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    status_url = upload_file(client, CSV).headers["Location"]
    upload_id = int(status_url.rsplit("/", 1)[1])
    token = csrf_token(client, status_url)
    _as_if_its_worker_died(preg, upload_id, "checking")
    response = client.post(status_url + "/cancel", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"].endswith("/institution/")
    upload = _upload(preg, upload_id)
    assert upload.state == "cancelled" and not preg.uploads.path(upload).exists()


def test_a_working_upload_is_neither_retried_nor_cancelled(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    status_url = upload_file(client, CSV).headers["Location"]
    upload_id = int(status_url.rsplit("/", 1)[1])
    with preg.sessions() as session:  # importing, heard of just now
        session.execute(update(Upload).where(Upload.id == upload_id).values(state="importing"))
        session.commit()
    token = csrf_token(client, status_url)
    client.post(status_url + "/retry", data={"csrf_token": token})
    client.post(status_url + "/cancel", data={"csrf_token": token})
    assert _upload(preg, upload_id).state == "importing"


def _dead_redis_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def small_threshold_app(stack):
    from portal import create_app

    app = create_app({**stack, "CLOCK": fixed_clock(), "UPLOAD_BACKGROUND_NUMBERS": 1000})
    assert app.extensions["registry"].wait_until_trusted()
    yield app
    app.extensions["registry"].close()


def test_queue_unreachable_on_a_big_upload(small_threshold_app, monkeypatch):
    import redis

    from workflows.jobs import RQQueue

    reg = small_threshold_app.extensions["registry"]
    dead = redis.Redis.from_url(_dead_redis_url(), socket_connect_timeout=0.2, socket_timeout=0.2)
    monkeypatch.setattr(reg, "_jobs", RQQueue(dead))
    client, _ = signed_in(small_threshold_app, reg)
    response = upload_file(client, CSV)
    assert response.status_code == 303  # checked on a thread of this process instead
    status_url = response.headers["Location"]
    deadline = time.monotonic() + 30
    while "确认登记 3,000 个编号" not in (page := client.get(status_url).get_data(as_text=True)):
        assert time.monotonic() < deadline, page
        time.sleep(0.1)
    response = confirm(client, status_url)
    assert response.status_code == 303 and response.headers["Location"] == status_url
    page = client.get(status_url).get_data(as_text=True)
    assert "后台登记队列暂时不可用" in page and "确认登记 3,000 个编号" in page
    assert _upload(reg, int(status_url.rsplit("/", 1)[1])).state == "ready"
    with reg.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
    dead.close()


def test_the_threshold_counts_numbers_not_bytes(small_threshold_app, stack):
    """A tiny file of ranges expanding to many numbers is not imported within the request."""
    reg = small_threshold_app.extensions["registry"]
    client, _ = signed_in(small_threshold_app, reg)
    status_url = upload_file(client, b"RANGE-00001~RANGE-05000\n").headers["Location"]
    _drain(small_threshold_app, stack)
    page = client.get(status_url).get_data(as_text=True)
    assert "确认登记 5,000 个编号" in page, page
    assert confirm(client, status_url).headers["Location"] == status_url  # queued, not registered here
    _drain(small_threshold_app, stack)
    assert "/institution/batches/" in _wait_done(client, status_url)


def test_files_of_finished_uploads_are_deleted_after_the_keeping_period(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    done_url = confirm(client, upload_file(client, CSV).headers["Location"])
    assert "/institution/batches/" in done_url.headers["Location"]
    fresh_url = upload_file(client, b"FRESH-1\n").headers["Location"]
    with preg.sessions() as session:
        done, fresh = session.scalars(select(Upload).order_by(Upload.id)).all()
        session.execute(update(Upload).where(Upload.id == done.id).values(updated_at=NOW - dt.timedelta(days=91)))
        session.commit()
    assert preg.uploads.path(done).exists()
    preg.upkeep.run_hourly(force=True)  # the per-process loop does this once an hour
    assert not preg.uploads.path(done).exists() and not preg.uploads.rejected_path(done).exists()
    assert preg.uploads.path(fresh).exists()  # within its 90 days, left alone
    assert _upload(preg, done.id).files_deleted_at is not None
    receipt = client.get(f"/institution/batches/{_upload(preg, done.id).batch_id}")
    assert receipt.status_code == 200  # the receipt stays; only the files go
    assert "确认登记 1 个编号" in client.get(fresh_url).get_data(as_text=True)
