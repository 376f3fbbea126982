"""``statistics remind YEAR`` lists who has not filed (output and exit status as before) and queues
an e-mail to each such institution's verified addresses, Chinese first with English below, plain
text and HTML — once a day, however often it runs. Received by a real SMTP server (aiosmtpd) on
both stacks."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from registry.notifications.models import OutboxMessage
from tests.builders import make_institution
from tests.functional.test_institution_portal import PASSWORD, portal_app, preg  # noqa: F401 - fixtures
from tests.functional.test_notifications import bilingual
from tests.functional.test_statistics import GOOD, REPORT
from tests.mailbox import html_of

LATE = "stats.late@lab.example.cn"
DONE = "stats.done@lab.example.cn"


def _reminders(reg):
    with reg.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "statistics_reminder")))


def test_remind_lists_who_has_not_filed_and_mails_each_once_a_day(portal_app, preg, mailbox):
    with preg.sessions() as session:
        late = make_institution(session, name="迟报统计检测公司", province="15")
        done = make_institution(session, name="已报统计检测公司", province="15")
        silent = make_institution(session, name="无邮箱统计检测公司", province="15")
    preg.refresh()
    for email, inst in ((LATE, late), (DONE, done)):
        preg.accounts.create(username=email.split("@")[0], password=PASSWORD, role="institution", email=email,
                             email_verified=True, institution_uscc=inst.uscc)
    preg.accounts.create(username="stats-unverified", password=PASSWORD, role="institution",
                         email="unverified@lab.example.cn", institution_uscc=late.uscc)  # never verified: not mailed
    preg.statistics.open_year(2026, actor="t", file_by=dt.date(2026, 9, 30), review_by=dt.date(2026, 11, 30))
    preg.statistics.filing_for(late.id, 2026, actor="t")  # a draft begun
    with preg.sessions() as session:
        from registry.institutions.models import Certificate

        certs = "\n".join(session.scalars(select(Certificate.number).where(Certificate.institution_id == done.id)))
    preg.statistics.save(done.id, 2026, {**GOOD, "certificates": certs}, actor="t", report=REPORT)
    preg.statistics.submit(done.id, 2026, actor="t")

    runner = portal_app.test_cli_runner()
    result = runner.invoke(args=["statistics", "remind", "2026"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert sorted(lines) == sorted([f"{late.uscc}\tdraft\t迟报统计检测公司", f"{silent.uscc}\tnot_started\t无邮箱统计检测公司"])
    [message] = mailbox.wait_for(LATE)
    text = bilingual(message, "尚未提交 2026 年度检验检测统计直报", "has not submitted its 2026 annual statistics")
    assert "草稿已保存但未提交" in text and "2026-09-30" in text and "现已逾期" in text  # the clock: 2026-10-15
    assert "/institution/statistics/2026" in text and 'href="http' in html_of(message)
    assert message["Subject"].startswith("2026 年度统计直报已逾期")
    # the same day again: listed again, nobody mailed twice
    again = runner.invoke(args=["statistics", "remind", "2026"])
    assert again.exit_code == 0 and sorted(again.output.splitlines()) == sorted(lines)
    [row] = _reminders(preg)
    assert row.recipient == LATE and row.dedupe.startswith("statistics:2026:remind:2026-10-15:")  # once a day
    mailbox.drain()
    assert len(mailbox.to(LATE)) == 1 and mailbox.to(DONE) == [] and mailbox.to("unverified@lab.example.cn") == []
    assert runner.invoke(args=["statistics", "remind", "2031"]).exit_code == 2
