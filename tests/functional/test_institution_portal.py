"""The institution portal over HTTP on both stacks: upload → check → confirm → receipt → verify,
idempotent re-upload, late flag, zero declaration, withdrawals, overview, QR codes."""
from __future__ import annotations

import datetime as dt
import io
import re

import pytest

from registry.accounts.accounts import AccountService
from registry.numbers.quarters import SHANGHAI
from tests.builders import make_institution

PASSWORD = "correct horse battery"
# 2026-10-15 in Shanghai: the first month of 2026Q4, so 2026Q3 is still inside its window.
NOW = dt.datetime(2026, 10, 15, 10, 0, tzinfo=SHANGHAI)


def fixed_clock(moment: dt.datetime = NOW):
    return lambda: moment.astimezone(dt.timezone.utc)


@pytest.fixture
def portal_app(stack, mailbox):
    """The app with a fixed clock (quarters and lateness are deterministic), sending its e-mail
    to a real SMTP server of the test's own (``mailbox``)."""
    from portal import create_app
    from tests.conftest import mail_config

    app = create_app({**stack, **mail_config(mailbox), "CLOCK": fixed_clock()})
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted()
    mailbox.drain = reg.outbox.deliver_due
    yield app
    reg.close()


@pytest.fixture
def preg(portal_app):
    return portal_app.extensions["registry"]


def make_account(reg, role: str = "institution", *, institution=None, authority: str | None = None,
                 username: str | None = None, password: str = PASSWORD):

    username = username or f"{role}-{next(_names)}"
    return AccountService(sessions=reg.sessions, clock=reg.clock).create(
        username=username, password=password, role=role,
        institution_uscc=institution.uscc if institution is not None else None, authority_code=authority)


_names = iter(range(1, 10_000_000))


def csrf_token(client, url: str) -> str:
    page = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD):
    token = csrf_token(client, "/login")
    return client.post("/login", data={"csrf_token": token, "username": username, "password": password})


def signed_in(portal_app, reg, **institution_kwargs):
    """A client signed in as a new institution's user; returns (client, institution)."""
    with reg.sessions() as session:
        inst = make_institution(session, **institution_kwargs)
    account = make_account(reg, institution=inst)
    client = portal_app.test_client()
    response = login(client, account.username)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client, inst


def upload_file(client, content: bytes, name: str = "numbers.csv", quarter: str = "2026Q3"):
    token = csrf_token(client, "/institution/upload")
    return client.post("/institution/upload", data={
        "csrf_token": token, "quarter": quarter, "file": (io.BytesIO(content), name)},
        content_type="multipart/form-data")


def confirm(client, status_url: str):
    token = csrf_token(client, status_url)
    return client.post(status_url + "/confirm", data={"csrf_token": token})


CSV = "报告编号\nWT2026-0001\nWT2026-0002~WT2026-0004\nbad§number\nWT2026-0001\n".encode("utf-8")


def test_upload_preview_confirm_receipt_and_verify(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    response = upload_file(client, CSV)
    assert response.status_code == 303
    status_url = response.headers["Location"]
    page = client.get(status_url).get_data(as_text=True)
    # the validation report comes before anything is registered
    # five numbers read, WT2026-0001 twice: four new numbers, and the button says so (issue 19)
    assert "检查结果" in page and "bad§number" in page and "确认登记 4 个编号" in page
    assert client.get(f"/api/v1/verify?number=WT2026-0001&institution={inst.uscc}").get_json()["status"] == "not_found"

    response = confirm(client, status_url)
    assert response.status_code == 303 and "/institution/batches/" in response.headers["Location"]
    receipt_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "登记回执" in receipt_page and "numbers.csv" in receipt_page and "已按时登记" in receipt_page
    batch_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with client.get(f"/institution/batches/{batch_id}/rejected.csv") as download:
        csv_text = download.get_data().decode("utf-8-sig")
    assert "bad§number" in csv_text.splitlines()[1]

    verdict = client.get(f"/api/v1/verify?number=wt2026-0003&institution={inst.uscc}").get_json()
    assert verdict["status"] == "found" and verdict["quarter"] == "2026Q3"
    overview = client.get("/institution/").get_data(as_text=True)
    assert f"#{batch_id}" in overview and "按时" in overview


def test_same_file_again_is_idempotent(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    first = confirm(client, upload_file(client, CSV).headers["Location"]).headers["Location"]
    status_url = upload_file(client, CSV).headers["Location"]
    assert "此前已为该季度登记" in client.get(status_url).get_data(as_text=True)
    again = confirm(client, status_url)
    assert again.headers["Location"] == first
    from registry.registration.models import Batch

    with preg.sessions() as session:
        assert session.query(Batch).count() == 1


def test_late_upload_is_flagged(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    location = confirm(client, upload_file(client, CSV, quarter="2026Q1").headers["Location"]).headers["Location"]
    page = client.get(location).get_data(as_text=True)
    assert "逾期报送" in page
    assert client.get("/institution/?lang=en").status_code == 200
    overview = client.get("/institution/?lang=zh").get_data(as_text=True)
    assert re.search(r"2026年第1季度</th>\s*<td><span class=\"pill pill-late\">", overview)


def test_quarter_not_started_is_refused(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    response = upload_file(client, CSV, quarter="2027Q1")
    assert response.status_code == 400


def test_zero_declaration_counts_as_on_time(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    token = csrf_token(client, "/institution/")
    response = client.post("/institution/declare-zero", data={"csrf_token": token, "quarter": "2026Q3"})
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "本季度无报告声明" in page and "已按时登记" in page
    overview = client.get("/institution/").get_data(as_text=True)
    assert re.search(r"2026年第3季度</th>\s*<td><span class=\"pill pill-on_time\">", overview)
    # earlier quarters with nothing are missing; the current one is open
    assert re.search(r"2026年第2季度</th>\s*<td><span class=\"pill pill-missing\">", overview)
    assert re.search(r"2026年第4季度</th>\s*<td><span class=\"pill pill-open\">", overview)


def test_overview_starts_at_the_first_certificate(portal_app, preg):
    client, inst = signed_in(portal_app, preg)  # the builder's certificate was issued 2020-01-01
    overview = client.get("/institution/").get_data(as_text=True)
    assert "2020年第1季度" in overview and "2019年第4季度" not in overview


def confirm_change(client, check_page):
    """Press the confirm button of a withdrawal's (restore's) check page."""
    html = check_page.get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+/confirm)"', html).group(1)
    key = re.search(r'name="key" value="([^"]+)"', html).group(1)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    return client.post(action, data={"csrf_token": token, "key": key})


def test_withdraw_one_number_and_a_file(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    confirm(client, upload_file(client, CSV).headers["Location"])
    token = csrf_token(client, "/institution/withdrawals")
    check = client.post("/institution/withdrawals", data={
        "csrf_token": token, "number": "WT2026-0001", "reason": "报告作废"})
    assert check.status_code == 200 and "确认撤销 1 个编号" in check.get_data(as_text=True)
    response = confirm_change(client, check)
    assert response.status_code == 200 and "已撤销 1 个" in response.get_data(as_text=True)
    verdict = client.get(f"/api/v1/verify?number=WT2026-0001&institution={inst.uscc}").get_json()
    assert verdict["status"] == "withdrawn" and verdict["withdrawn_at"]

    file = "报告编号,撤销原因\nWT2026-0002,重新出具\nWT2026-9999,错号\n".encode()
    token = csrf_token(client, "/institution/withdrawals")
    check = client.post("/institution/withdrawals", data={
        "csrf_token": token, "file": (io.BytesIO(file), "w.csv")}, content_type="multipart/form-data")
    assert "WT2026-9999" in check.get_data(as_text=True)  # named on the check page already
    page = confirm_change(client, check).get_data(as_text=True)
    assert "已撤销 1 个" in page and "WT2026-9999" in page
    assert client.get("/api/v1/verify?number=WT2026-0002").get_json()["status"] == "withdrawn"

    token = csrf_token(client, "/institution/withdrawals")
    response = client.post("/institution/withdrawals", data={"csrf_token": token, "number": "WT2026-0003"})
    assert response.status_code == 400  # a reason is required


def test_qr_codes_encode_the_percent_encoded_link(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    page = client.get("/institution/qr?number=WT/2026 01").get_data(as_text=True)
    assert f"/v/{inst.uscc}/WT%2F202601" in page and "<svg" in page
    svg = client.get("/institution/qr.svg?number=WT/2026-01")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml" and b"<svg" in svg.data
    png = client.get("/institution/qr.png?number=WT/2026-01")
    assert png.mimetype == "image/png" and png.data.startswith(b"\x89PNG")
    sheet = client.get("/institution/qr/sheet?numbers=A-1%0AB-2%0A§").get_data(as_text=True)
    assert sheet.count("<svg") == 2 and "§" in sheet
    assert client.get("/institution/qr.svg?number=§").status_code == 400
    # the deep link the code carries resolves to the verdict page
    assert client.get(f"/v/{inst.uscc}/WT%2F2026-01").status_code == 200
