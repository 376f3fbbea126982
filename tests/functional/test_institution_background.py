"""Big uploads are checked and imported in the background: by an RQ worker on the Redis stack,
by a thread in embedded mode; the status page shows progress, then the receipt."""
from __future__ import annotations

import time

import pytest

from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    confirm, fixed_clock, signed_in, upload_file)


@pytest.fixture
def bg_app(stack):
    from portal import create_app

    app = create_app({**stack, "CLOCK": fixed_clock(), "UPLOAD_BACKGROUND_NUMBERS": 1000})
    assert app.extensions["registry"].wait_until_trusted()
    yield app
    app.extensions["registry"].close()


WORKER_SETTINGS = ("INSTANCE_DIR", "FILES_DIR", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "BLOOM_CAPACITY",
                   "BLOOM_SHARDS")


def _drain(app, stack) -> None:
    """Run whatever the job queue holds: an RQ worker in burst mode, or wait for the threads.
    The worker reads its settings from its environment, as `rq worker` does in production."""
    from portal.institution import job_queue

    with app.app_context():
        queue = job_queue()
    if hasattr(queue, "queue"):
        import rq

        with pytest.MonkeyPatch.context() as env:
            for name in WORKER_SETTINGS:
                env.setenv(name, str(stack[name]))
            rq.Worker([queue.queue], connection=queue.queue.connection).work(burst=True)
    else:
        for thread in list(queue.threads):
            thread.join(timeout=60)


def test_big_file_checked_and_imported_in_the_background(bg_app, stack):
    reg = bg_app.extensions["registry"]
    client, inst = signed_in(bg_app, reg)
    content = ("报告编号\n" + "\n".join(f"BG2026-{i:06d}" for i in range(20_000)) + "\n§\n").encode()
    status_url = upload_file(client, content, name="big.csv").headers["Location"]
    page = client.get(status_url).get_data(as_text=True)
    if stack["STACK"] == "postgres-redis":
        assert "正在检查文件" in page and 'http-equiv="refresh"' in page  # nothing ran yet: the worker does
    _drain(bg_app, stack)
    page = client.get(status_url).get_data(as_text=True)
    assert "确认登记 20,000 个编号" in page, page

    response = confirm(client, status_url)
    assert response.headers["Location"] == status_url  # queued: the page shows progress
    _drain(bg_app, stack)
    deadline = time.monotonic() + 30
    while (done := client.get(status_url)).status_code != 302 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert done.status_code == 302 and "/institution/batches/" in done.headers["Location"]
    receipt = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "big.csv" in receipt and "20,000" in receipt
    reg.refresh()
    verdict = client.get(f"/api/v1/verify?number=BG2026-019999&institution={inst.uscc}").get_json()
    assert verdict["status"] == "found"


def test_the_queue_matches_the_stack(bg_app, stack):
    from portal.institution import job_queue
    from workflows.jobs import RQQueue, ThreadQueue

    with bg_app.app_context():
        queue = job_queue()
    assert isinstance(queue, RQQueue if stack["STACK"] == "postgres-redis" else ThreadQueue)
