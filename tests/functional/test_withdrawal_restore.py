"""Withdrawals are checked before they happen and can be undone (issue 13, item 5): the portal's
check page → confirm, a cap on a range typed in the form, an audited restore in the portal, the
CLI (``restore-numbers``, ``--dry-run``) and the API (``POST /api/v1/restorations``)."""
from __future__ import annotations

import io

from sqlalchemy import func, select

from registry.registration.models import NumberEvent, ReportNumber
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    confirm, confirm_change, csrf_token, portal_app, preg, signed_in, upload_file)
from tests.functional.test_upload_api import bearer, create_token

NUMBERS = "报告编号\nRACEA-00001~RACEA-00020\n".encode()


def _withdrawn(reg) -> int:
    with reg.sessions() as session:
        return session.scalar(select(func.count()).select_from(ReportNumber).where(ReportNumber.withdrawn_at.is_not(None)))


def _status(client, number: str, uscc: str) -> str:
    return client.get(f"/api/v1/verify?number={number}&institution={uscc}").get_json()["status"]


def test_a_typed_range_too_big_is_refused_above_its_field(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    confirm(client, upload_file(client, NUMBERS).headers["Location"])
    token = csrf_token(client, "/institution/withdrawals")
    response = client.post("/institution/withdrawals", data={
        "csrf_token": token, "number": "RACEA-00001~09999", "reason": "作废"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "9,999 个编号" in page and "最多处理 1,000 个" in page
    assert 'href="#number"' in page and 'id="number-error"' in page  # the summary links to the field
    assert _withdrawn(preg) == 0


def test_a_withdrawal_is_checked_then_confirmed_once(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    confirm(client, upload_file(client, NUMBERS).headers["Location"])
    token = csrf_token(client, "/institution/withdrawals")
    check = client.post("/institution/withdrawals", data={
        "csrf_token": token, "number": "RACEA-00018~RACEA-00025", "reason": "作废"})
    page = check.get_data(as_text=True)
    assert check.status_code == 200 and "确认撤销 3 个编号" in page
    assert "RACEA-00018" in page and "RACEA-00020" in page and "RACEA-00025" in page  # listed, the unregistered named
    assert "5</strong> 个编号本机构未登记" in page
    assert _withdrawn(preg) == 0 and _status(client, "RACEA-00019", inst.uscc) == "found"  # nothing yet
    assert "已撤销 3 个" in confirm_change(client, check).get_data(as_text=True)
    assert _status(client, "RACEA-00019", inst.uscc) == "withdrawn"
    again = confirm_change(client, check)  # the same confirmation again: nothing more happens
    assert again.status_code == 303 and _withdrawn(preg) == 3


def test_an_institution_cannot_confirm_another_ones_withdrawal(portal_app, preg):
    client, _ = signed_in(portal_app, preg)
    confirm(client, upload_file(client, NUMBERS).headers["Location"])
    check = client.post("/institution/withdrawals", data={
        "csrf_token": csrf_token(client, "/institution/withdrawals"), "number": "RACEA-00001", "reason": "x"})
    other, _ = signed_in(portal_app, preg)
    html = check.get_data(as_text=True)
    key = html.split('name="key" value="', 1)[1].split('"', 1)[0]
    response = other.post("/institution/withdrawals/confirm", data={
        "csrf_token": csrf_token(other, "/institution/withdrawals"), "key": key})
    assert response.status_code == 303 and _withdrawn(preg) == 0


def test_restore_in_the_portal_keeps_the_story(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    confirm(client, upload_file(client, NUMBERS).headers["Location"])
    check = client.post("/institution/withdrawals", data={
        "csrf_token": csrf_token(client, "/institution/withdrawals"), "number": "RACEA-00001~00009", "reason": "打错了"})
    confirm_change(client, check)
    assert _status(client, "RACEA-00005", inst.uscc) == "withdrawn"
    check = client.post("/institution/restorations", data={
        "csrf_token": csrf_token(client, "/institution/restorations"), "number": "RACEA-00001~00010",
        "reason": "误撤销"})
    page = check.get_data(as_text=True)
    assert "确认恢复 9 个编号" in page and "未处于撤销状态" in page
    done = confirm_change(client, check).get_data(as_text=True)
    assert "已恢复 9 个" in done
    assert _status(client, "RACEA-00005", inst.uscc) == "found"
    story = preg.registration.history(number="RACEA-00005", institution_id=inst.id)
    assert [(e.kind, e.reason, e.source) for e in story] == [("withdrawn", "打错了", "portal"),
                                                               ("restored", "误撤销", "portal")]
    assert all(e.actor and e.actor.startswith("institution-") and e.at for e in story)


def test_restorations_api(portal_app, preg):
    client, inst = signed_in(portal_app, preg)
    confirm(client, upload_file(client, NUMBERS).headers["Location"])
    token = create_token(client)
    client.post("/api/v1/withdrawals", json={"numbers": ["RACEA-00001", "RACEA-00002"], "reason": "作废"},
                headers=bearer(token))
    body = client.post("/api/v1/restorations", json={"numbers": ["RACEA-00001", "RACEA-00003", "NOPE-1"]},
                       headers=bearer(token)).get_json()
    assert body == {"restored": 1, "not_withdrawn": 1, "rejected": 1, "problems": [
        {"line": None, "value": "NOPE-1", "code": "not_registered",
         "reason": "this institution has not registered this number"}]}
    file = client.post("/api/v1/restorations", headers=bearer(token), content_type="multipart/form-data",
                       data={"file": (io.BytesIO("报告编号\nRACEA-00002\n".encode()), "r.csv")}).get_json()
    assert file["restored"] == 1
    assert _status(client, "RACEA-00002", inst.uscc) == "found"
    assert client.post("/api/v1/restorations", json={"numbers": ["RACEA-00001"]}).status_code == 401
    with preg.sessions() as session:
        sources = session.scalars(select(NumberEvent.source).where(NumberEvent.number == "RACEA-00001")).all()
    assert sources == ["api", "api"]


def test_cli_dry_run_and_restore(portal_app, preg, tmp_path):
    client, inst = signed_in(portal_app, preg)
    confirm(client, upload_file(client, NUMBERS).headers["Location"])
    runner = portal_app.test_cli_runner()
    path = tmp_path / "w.csv"
    path.write_text("报告编号,撤销原因\nRACEA-00001~00003,作废\nRACEA-09999,错号\n")
    dry = runner.invoke(args=["withdraw-numbers", str(path), "--institution", inst.uscc, "--dry-run"])
    assert dry.exit_code == 1 and "would withdraw 3" in dry.output and "RACEA-09999" in dry.output, dry.output
    assert _withdrawn(preg) == 0
    assert runner.invoke(args=["withdraw-numbers", str(path), "--institution", inst.uscc]).exit_code == 1
    assert _withdrawn(preg) == 3
    back = tmp_path / "r.csv"
    back.write_text("报告编号\nRACEA-00001~00002\n")
    dry = runner.invoke(args=["restore-numbers", str(back), "--institution", inst.uscc, "--dry-run"])
    assert dry.exit_code == 0 and "would restore 2" in dry.output and _withdrawn(preg) == 3
    result = runner.invoke(args=["restore-numbers", str(back), "--institution", inst.uscc])
    assert result.exit_code == 0 and "restored 2" in result.output, result.output
    assert _withdrawn(preg) == 1 and _status(client, "RACEA-00002", inst.uscc) == "found"
    rejected = tmp_path / "rejected.csv"
    result = runner.invoke(args=["restore-numbers", str(back), "--institution", inst.uscc,
                                 "--rejected-csv", str(rejected)])
    assert result.exit_code == 0 and "not withdrawn 2" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("something,else\n1,2\n")
    assert runner.invoke(args=["restore-numbers", str(bad), "--institution", inst.uscc]).exit_code == 2
    missing = runner.invoke(args=["restore-numbers", str(tmp_path / "nope.csv"), "--institution", inst.uscc])
    assert missing.exit_code == 2
