"""Retention of personal data on both stacks: contacts of complaints closed long ago erased as
sealed events (the chain still verifies, the casework pages still count them), the query log
trimmed to QUERY_LOG_DAYS, by the CLI and by the upkeep's daily chore."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

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
