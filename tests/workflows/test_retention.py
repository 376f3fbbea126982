"""Retention of personal data on both stacks: contacts of complaints closed long ago erased as
sealed events (the chain still verifies, the casework pages still count them), the query log
trimmed to QUERY_LOG_DAYS, by the CLI and by the upkeep's daily chore."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from registry.complaints.models import Complaint, ComplaintEvent
from tests.functional.regulator_helpers import (  # noqa: F401
    NOW, act, complaint, fixed_clock, officer_client, rapp, rreg,
)


def later_app(stack, days: int, **settings):
    from portal import create_app

    app = create_app({**stack, "CLOCK": fixed_clock(NOW + dt.timedelta(days=days)), **settings})
    assert app.extensions["registry"].wait_until_trusted()
    return app


def contacts(reg) -> dict[str, tuple]:
    with reg.sessions() as s:
        return {c.number: (c.complainant_name, c.complainant_contact, c.status)
                for c in s.scalars(select(Complaint))}


def test_contacts_of_complaints_closed_three_years_ago_are_erased_as_sealed_events(stack, rapp, rreg):
    concluded = complaint(rreg, province="15", number="R-CONCLUDED")
    rejected = complaint(rreg, province="15", number="R-REJECTED")
    complaint(rreg, province="15", number="R-OPEN")
    officer = officer_client(rapp, rreg, "15")
    assert act(officer, concluded.id, "accept", note="").status_code == 303
    assert act(officer, concluded.id, "conclude", finding="forged", note="伪造").status_code == 303
    assert act(officer, rejected.id, "reject", note="不属于受理范围").status_code == 303

    early = later_app(stack, 1094)  # not yet three years (1095 days) after they were closed
    result = early.test_cli_runner().invoke(args=["retention", "run"])
    assert result.exit_code == 0 and "erased from 0 complaints" in result.output, result.output
    early.extensions["registry"].close()

    app = later_app(stack, 1096)
    reg = app.extensions["registry"]
    try:
        result = app.test_cli_runner().invoke(args=["retention", "run"])
        assert result.exit_code == 0 and "erased from 2 complaints" in result.output, result.output
        assert contacts(reg) == {"R-CONCLUDED": (None, None, "concluded"), "R-REJECTED": (None, None, "rejected"),
                                 "R-OPEN": ("张三", "13800138000", "received")}
        with reg.sessions() as s:
            redactions = s.scalars(select(ComplaintEvent).where(ComplaintEvent.kind == "personal_data_redacted")).all()
        assert sorted(e.complaint_id for e in redactions) == sorted([concluded.id, rejected.id])
        assert {e.actor for e in redactions} == {"retention"} and not any(e.public for e in redactions)
        verify = app.test_cli_runner().invoke(args=["audit", "verify"])
        assert verify.exit_code == 0 and "audit chain intact" in verify.output, verify.output
        # a second run finds nothing left; casework still lists and counts the closed complaints
        assert "erased from 0 complaints" in app.test_cli_runner().invoke(args=["retention", "run"]).output
        page = officer_client(app, reg, "15").get("/regulator/complaints?status=concluded")
        assert page.status_code == 200 and "R-CONCLUDED" in page.get_data(as_text=True)
        assert "13800138000" not in officer_client(app, reg, "15").get(
            f"/regulator/complaints/{concluded.id}").get_data(as_text=True)
    finally:
        reg.close()


def test_the_daily_chore_trims_the_query_log_to_its_days(stack, rapp, rreg):
    for at, number in ((NOW - dt.timedelta(days=200), "LONG-AGO"), (NOW - dt.timedelta(days=10), "RECENT")):
        rreg.query_log.record(at=at, number=number, institution_text=None, institution_id=None, status="found",
                              client_address="192.0.2.7")
    assert rreg.query_log.flush() == 2
    rreg.upkeep.run_daily(force=True)  # the per-process loop does this once a day
    from registry.verification.models import QueryLog

    with rreg.sessions() as s:
        assert s.scalars(select(QueryLog.number)).all() == ["RECENT"]
    app = later_app(stack, 0, QUERY_LOG_DAYS="5")
    try:
        result = app.test_cli_runner().invoke(args=["retention", "run"])
        assert result.exit_code == 0 and "keeping 5 days" in result.output
        with rreg.sessions() as s:
            assert s.scalars(select(QueryLog.number)).all() == []
    finally:
        app.extensions["registry"].close()


def test_old_e_mails_and_ended_sessions_are_deleted_and_nothing_live(stack, rapp, rreg):
    from registry.accounts.models import LoginSession, LoginThrottle
    from registry.notifications.models import OutboxMessage
    from tests.functional.regulator_helpers import make_account

    utc = NOW.astimezone(dt.timezone.utc)
    day = dt.timedelta(days=1)
    account = make_account(rreg, "admin")
    live = rreg.accounts.start_session(account.id)
    ended = rreg.accounts.start_session(account.id)
    rreg.accounts.end_session(ended)
    with rreg.sessions() as s:
        s.add(LoginSession(token_hash="e" * 64, account_id=account.id, created_at=utc - 40 * day,
                           last_seen=utc - 10 * day))  # past SESSION_LIFETIME: opens nothing
        s.add_all([LoginThrottle(key="a" * 64, failures=3, last_failure_at=utc - 2 * day),
                   LoginThrottle(key="b" * 64, failures=3, last_failure_at=utc - dt.timedelta(minutes=5))])
        for status, age in (("sent", 91), ("failed", 120), ("pending", 100), ("sent", 30), ("sending", 95)):
            s.add(OutboxMessage(kind="password_changed", recipient=f"{status}{age}@lab.example.cn", subject="x",
                                body_text="y", status=status, attempts=1, next_attempt_at=utc - age * day,
                                created_at=utc - age * day))
        s.commit()
    result = rapp.test_cli_runner().invoke(args=["retention", "run"])
    assert result.exit_code == 0, result.output
    assert "outbox: 2 sent or failed e-mails older than 90 days deleted" in result.output
    assert "sign-in: 3 ended sessions and stale failure counts deleted" in result.output
    with rreg.sessions() as s:
        # a message not yet sent is never dropped, whatever its age
        assert sorted(s.scalars(select(OutboxMessage.recipient))) == [
            "pending100@lab.example.cn", "sending95@lab.example.cn", "sent30@lab.example.cn"]
        assert s.scalars(select(LoginThrottle.key)).all() == ["b" * 64]
        assert s.scalar(select(func.count()).select_from(LoginSession)) == 1
    assert rreg.accounts.session_account(live).id == account.id  # the live session still opens
    assert "outbox: 0 sent" in rapp.test_cli_runner().invoke(args=["retention", "run"]).output
