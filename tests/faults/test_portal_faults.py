"""Drills (g), (h), (i): portal uploads under faults — concurrent confirms of one upload against a
real gunicorn, an RQ worker SIGKILLed mid-import, and a disk that fills while an upload is stored
(docs/faults.md)."""
from __future__ import annotations

import pytest

from tests.faults.conftest import Browser, all_at_once

pytestmark = pytest.mark.slow


def _csv(numbers: list[str]) -> bytes:
    return ("报告编号\n" + "\n".join(numbers) + "\n").encode()


def _assert_whole(drill, *, batches: int, numbers: int) -> None:
    integrity = drill.integrity()
    assert integrity == {"batches": batches, "numbers": numbers, "empty_batches": 0, "orphans": 0,
                         "duplicates": 0}, integrity


def _signed_in(drill, server) -> tuple[str, Browser]:
    uscc = drill.institution()
    browser = Browser(server.base)
    browser.login(*drill.account(uscc))
    return uscc, browser


CONFIRMS = 8
#: seconds within which each confirm is answered (one of them registers 20,000 numbers in the
#: request; the others wait for a worker of gunicorn -w 3 on a loaded 2-core machine)
CONFIRM_BOUND = 25.0


def test_concurrent_confirms_of_one_upload(drill):
    """(g) one portal upload confirmed by 8 requests at once (the same signed-in session on 8
    connections: double clicks, tabs) against gunicorn -w 3: every request answered 303 within the
    bound, exactly one registers (its answer is the receipt), the others go to the upload's page;
    one batch, every number once, the upload done with that batch; the numbers are found."""
    server = drill.gunicorn(workers=3)
    uscc, browser = _signed_in(drill, server)
    numbers = [f"CNF-{i:06d}" for i in range(20_000)]
    upload_id = browser.upload(_csv(numbers))
    status_page = f"/institution/uploads/{upload_id}"
    assert drill.upload_row(upload_id)["state"] == "ready"
    token = browser.csrf(status_page)
    tabs = [browser.twin() for _ in range(CONFIRMS)]
    answers = all_at_once([lambda tab=tab: tab.post(status_page + "/confirm", {}, token=token) for tab in tabs])
    assert not [a for a in answers if isinstance(a, Exception)], answers
    assert all(a.status == 303 for a in answers), [(a.status, a.body[:300]) for a in answers]
    assert max(a.seconds for a in answers) <= CONFIRM_BOUND, [round(a.seconds, 2) for a in answers]
    receipts = [a.location for a in answers if a.location.startswith("/institution/batches/")]
    assert len(receipts) == 1, [a.location for a in answers]
    assert sorted(a.location for a in answers if a.location != receipts[0]) == [status_page] * (CONFIRMS - 1)
    batch_id = int(receipts[0].rsplit("/", 1)[1])
    row = drill.upload_row(upload_id)
    assert (row["state"], row["batch_id"]) == ("done", batch_id), row
    _assert_whole(drill, batches=1, numbers=len(numbers))
    assert browser.request(status_page).location == receipts[0]  # the page now leads to the receipt
    for number in numbers[:: len(numbers) // 20]:
        status, body, _ = server.verify(number, institution=uscc)
        assert status == 200 and body["status"] == "found", (number, status, body)
    print(f"\ndrill (g): confirm answers in {sorted(round(a.seconds, 2) for a in answers)} s")
