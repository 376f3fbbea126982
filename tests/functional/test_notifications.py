"""E-mail notifications on both stacks, received by a real SMTP server the test starts
(aiosmtpd): the right recipient, Chinese with English below, plain text and HTML, the content —
and the outbox's promises: secrets encrypted until sent, then gone; retried with a growing
delay; nothing sent twice, not even after a worker restart."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select, update

from registry.complaints.casework import Officer
from registry.complaints.models import Complaint
from registry.notifications.models import OutboxMessage
from registry.verification.models import QueryLog
from tests.builders import make_institution
from tests.conftest import mail_config
from tests.functional.test_complaints import complaint_data
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    CSV, PASSWORD, confirm, csrf_token, login, portal_app, preg, upload_file)
from tests.mailbox import html_of, link_in, text_of

LAB = "lab.manager@lab.example.cn"
OFFICER = "officer@amr.example.gov.cn"
COMPLAINANT = "wang.wu@example.com"
WITHDRAWN = ["WT2026-0001", "WT2026-0002"]


def account(reg, role, email, **kwargs):
    return reg.accounts.create(username=email.split("@")[0] + "-" + role, password=PASSWORD, role=role,
                               email=email, email_verified=True, **kwargs)


def bilingual(message, zh: str, en: str) -> str:
    text = text_of(message)
    assert zh in text and en in text and text.index(zh) < text.index(en), text  # Chinese first, English below
    assert zh in html_of(message) and en in html_of(message)
    return text


def outbox_row(reg, kind):
    with reg.sessions() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)).one()
        session.expunge(row)
        return row


def eventually(fetch, done, timeout: float = 15.0):
    """``fetch()`` once ``done`` holds for it; the last value is asserted on at the deadline."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = fetch()
    assert done(value), value
    return value


def officer_of(reg, complaint_id):
    with reg.sessions() as session:
        c = session.get(Complaint, complaint_id)
        return Officer(username="tester", authority_id=c.authority_id, authority_code=c.authority.code)


def test_the_complainant_gets_the_code_each_public_change_and_the_conclusion(portal_app, preg, mailbox):
    with preg.sessions() as session:
        inst = make_institution(session)
    preg.refresh()
    preg.notices.sweep()  # the first sweep only sets its marks
    client = portal_app.test_client()
    response = client.post("/complaints", data=complaint_data(client, contact=COMPLAINANT, institution=inst.name),
                           content_type="multipart/form-data")
    assert response.status_code == 303
    code = response.headers["Location"].rsplit("/", 1)[1]
    receipt = mailbox.wait_for(COMPLAINANT)[0]
    assert receipt["To"] == COMPLAINANT and receipt["From"] == "registry@test.example"
    text = bilingual(receipt, "您的查询码", "Your tracking code")
    assert code in text and "WT2026-0001" in text
    # in the outbox the code never stood in clear, and once sent it is gone with the address (the
    # server has the message a moment before the sender commits "sent": wait for that commit)
    row = eventually(lambda: outbox_row(preg, "complaint_received"), lambda r: r.status == "sent")
    with preg.sessions() as session:
        complaint = session.scalars(select(Complaint)).one()
    assert row.sealed is None and row.body_text is None
    assert COMPLAINANT not in row.recipient and code not in (row.subject or "")
    # an officer of the handling authority with a verified address hears of it
    with preg.sessions() as session:
        authority_code = session.get(Complaint, complaint.id).authority.code
    officer = account(preg, "regulator", OFFICER, authority_code=authority_code)
    preg.notices.sweep()
    new = mailbox.wait_for(OFFICER)[0]
    assert "新投诉" in new["Subject"] and f"/regulator/complaints/{complaint.id}" in text_of(new)
    # each public change, then the conclusion: never the code again
    who = officer_of(preg, complaint.id)
    preg.casework.accept(who, complaint.id, "受理")
    preg.notices.sweep()
    update_mail = mailbox.wait_for(COMPLAINANT, 2)[1]
    assert "已受理" in bilingual(update_mail, "有新进展", "There is news") and code not in text_of(update_mail)
    preg.casework.add_note(who, complaint.id, "内部备注")  # not public: nobody is told
    preg.casework.conclude(who, complaint.id, "forged", "办结说明")
    preg.notices.sweep()
    concluded = mailbox.wait_for(COMPLAINANT, 3)[2]
    assert "已办结" in concluded["Subject"] and "Complaint concluded" in concluded["Subject"]
    preg.notices.sweep()
    assert len(mailbox.to(COMPLAINANT)) == 3 and len(mailbox.to(OFFICER)) == 1
    # the admins' outbox page: kinds and masked recipients, never the code nor the complainant's address
    admin = preg.accounts.create(username="root-admin", password=PASSWORD, role="admin")
    admin_client = portal_app.test_client()
    assert login(admin_client, admin.username).status_code == 302
    page = admin_client.get("/admin/outbox").get_data(as_text=True)
    assert "complaint_received" in page and "w***@e***.com" in page and "o***@a***.cn" in page
    assert code not in page and COMPLAINANT not in page and OFFICER not in page
    assert officer.id  # (used)


def test_institutions_hear_of_batches_tokens_withdrawals_and_claims_on_their_name(portal_app, preg, mailbox):
    with preg.sessions() as session:
        inst = make_institution(session)
    preg.refresh()
    preg.notices.sweep()
    lab = account(preg, "institution", LAB, institution_uscc=inst.uscc)
    client = portal_app.test_client()
    assert login(client, lab.username).status_code == 302
    confirm(client, upload_file(client, CSV).headers["Location"])
    token = csrf_token(client, "/institution/tokens")
    client.post("/institution/tokens", data={"csrf_token": token, "name": "LIMS"})
    preg.notices.sweep()
    received = mailbox.wait_for(LAB, 2)
    kinds = sorted(m["Subject"].split(" / ")[0] for m in received)
    assert any("登记回执" in k for k in kinds) and any("新的 API 令牌" in k for k in kinds), kinds
    receipt = next(m for m in received if "登记回执" in m["Subject"])
    assert "新登记" in bilingual(receipt, "已登记", "is registered")
    assert "List-Unsubscribe" in receipt  # a receipt may be turned off; a token alert may not
    assert "List-Unsubscribe" not in next(m for m in received if "API" in m["Subject"])

    # withdrawals: one message for the lot, naming the numbers
    preg.registration.withdraw(institution_id=inst.id, items=[(None, n, "作废") for n in WITHDRAWN],
                               actor=lab.username, source="portal")
    preg.notices.sweep()
    withdrawn = mailbox.wait_for(LAB, 3)[-1]
    text = bilingual(withdrawn, "个报告编号已撤销", "report numbers were withdrawn")
    assert all(n in text for n in WITHDRAWN) and "编号已撤销" in withdrawn["Subject"]

    # public checks naming the lab with numbers it never registered, yesterday: numbers, counts, times, no client
    yesterday = dt.datetime(2026, 10, 14, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with preg.sessions() as session:
        for i, number in enumerate(["FAKE-001", "FAKE-001", "FAKE-001", "FAKE-002"]):
            session.add(QueryLog(at=yesterday + dt.timedelta(minutes=i), number=number, institution_text=inst.name,
                                 institution_id=inst.id, status="not_found", client="client-hmac-secret"))
        session.commit()
    before = len(mailbox.to(LAB))
    preg.notices.name_claims()
    preg.notices.name_claims()  # a day run twice tells once
    alert = mailbox.wait_for(LAB, before + 1)[-1]
    text = bilingual(alert, "从未登记的报告编号", "never registered")
    assert "FAKE-001  3 次  09:30–09:32" in text and "FAKE-002" in text and "client-hmac-secret" not in text
    assert len(mailbox.to(LAB)) == before + 1

    # the unsubscribe link of the receipt turns receipts off (one click, no sign-in)
    link = link_in(receipt, "/unsubscribe/")
    anonymous = portal_app.test_client()
    assert anonymous.get(link[link.index("/unsubscribe/"):]).status_code == 200  # a page; nothing changed yet
    assert anonymous.post(link[link.index("/unsubscribe/"):]).status_code == 200
    assert anonymous.post(link[link.index("/unsubscribe/"):-2] + "xx").status_code == 404
    assert preg.notifier.choices(lab.id)["batch_receipt"] is False
    confirm(client, upload_file(client, CSV.replace(b"0004", b"0009")).headers["Location"])
    preg.notices.sweep()
    preg.outbox.deliver_due()
    assert not any("登记回执" in m["Subject"] for m in mailbox.to(LAB)[len(received):] if "#2" in m["Subject"])


def settle(reg) -> None:
    """Wait for the embedded stack's job threads (the RQ stack's jobs wait for a worker)."""
    for thread in list(getattr(reg.jobs, "threads", [])):
        thread.join(10)


def test_retried_with_backoff_and_never_sent_twice_after_a_worker_restart(portal_app, preg, mailbox, stack):
    from portal import create_app

    to = "someone@lab.example.cn"
    mailbox.refuse = True  # the server answers 451: try again later
    mailbox.drain = None
    message_id = preg.notifier.send("password_changed", to, username="someone", when="2026-10-15 10:00")
    settle(preg)  # the embedded stack's job thread tries it at once
    preg.outbox.deliver(message_id)  # the RQ stack's job, as a worker would run it (a second call does nothing)
    with preg.sessions() as session:
        row = session.get(OutboxMessage, message_id)
        assert row.status == "pending" and row.attempts >= 1 and "451" in row.last_error
        assert row.next_attempt_at > preg.clock()  # backing off
    assert preg.outbox.deliver(message_id) is False  # not due yet
    mailbox.refuse = False
    with preg.sessions() as session:  # the delay has passed
        session.execute(update(OutboxMessage).values(next_attempt_at=preg.clock()))
        session.commit()
    others = [preg.notifier.send("password_changed", to, username="someone", when="x") for _ in range(3)]
    settle(preg)
    preg.outbox.deliver_due()
    # a worker restart: a new process's services, the same jobs again, the sweep again
    restarted = create_app({**stack, **mail_config(mailbox), "CLOCK": lambda: preg.clock()})
    again = restarted.extensions["registry"]
    try:
        for mid in [message_id, *others]:
            again.outbox.deliver(mid)
        again.outbox.deliver_due()
        # one claimed by a sender that died mid-send is not sent again: it is marked failed
        with again.sessions() as session:  # queued, then claimed by a sender that died an hour ago
            row = again.outbox.add(session, kind="password_changed", to=to,
                                   message=again.notifier.render("password_changed", username="someone", when="y"))
            row.status, row.claimed_at = "sending", preg.clock() - dt.timedelta(hours=1)
            session.commit()
            stuck = row.id
        assert again.outbox.deliver(stuck) is False
        assert again.outbox.abandon_stale() == 1
        again.outbox.deliver_due()
    finally:
        again.close()
    settle(preg)
    settle(again)
    assert len(mailbox.to(to)) == 4  # each message once: the first after its retry, and three more
    with preg.sessions() as session:
        states = dict(session.execute(select(OutboxMessage.id, OutboxMessage.status)).all())
    assert states[message_id] == "sent" and states[stuck] == "failed"
    assert all("密码已更改" in m["Subject"] for m in mailbox.to(to))


def test_a_real_worker_sends_each_message_once_across_restarts(portal_app, preg, mailbox, stack):
    """RQ on the PostgreSQL/Redis stack (``rq`` workers in burst mode, each job in a forked work
    horse building its services from the environment, as ``rq worker`` does), the thread runner
    on the embedded one: each job queued twice, a second worker after the first — one message each."""
    from tests.functional.test_institution_background import WORKER_SETTINGS

    to = "worker@lab.example.cn"
    mailbox.drain = None
    ids = [preg.notifier.send("password_changed", to, username="w", when=str(i)) for i in range(3)]
    for message_id in ids:
        preg.jobs.enqueue_mail(message_id)  # queued a second time (a retried request, a restored job)
    if stack["STACK"] == "postgres-redis":
        import rq

        with pytest.MonkeyPatch.context() as env:
            for name in WORKER_SETTINGS:
                env.setenv(name, str(stack[name]))
            for name, value in mail_config(mailbox).items():
                env.setenv(name, str(value))
            for _restart in range(2):
                rq.Worker([preg.jobs.queue], connection=preg.jobs.queue.connection).work(burst=True)
                for message_id in ids:  # the restarted worker finds the jobs again
                    preg.jobs.enqueue_mail(message_id)
            rq.Worker([preg.jobs.queue], connection=preg.jobs.queue.connection).work(burst=True)
    else:
        settle(preg)
        for message_id in ids:
            preg.jobs.enqueue_mail(message_id)
        settle(preg)
    received = mailbox.wait_for(to, 3)
    assert sorted(text_of(m).split("（北京时间）")[0][-1] for m in received) == ["0", "1", "2"]
    assert len(mailbox.to(to)) == 3


def test_officers_hear_of_deadlines_two_working_days_ahead_and_on_the_first_day_overdue(portal_app, preg, mailbox):
    from registry.complaints.casework import QueueFilters
    from tests.regulator_builders import make_complaint

    now = preg.clock()
    with preg.sessions() as session:
        make_complaint(session, province="11", created_at=now)  # (seeds the authorities)
    officer = account(preg, "regulator", OFFICER, authority_code="11")
    with preg.sessions() as session:
        for days in range(1, 40):
            make_complaint(session, province="11", created_at=now - dt.timedelta(days=days))
    who = Officer(username=officer.username, authority_id=officer.authority_id, authority_code="11")
    items = preg.casework.queue(who, QueueFilters(status="open"))
    soon = [i for i in items if i.deadline.workdays_left == 2]
    overdue = [i for i in items if i.deadline.overdue and preg.notices._first_overdue_day(i.deadline.due, now.date())]
    assert soon and overdue and len(soon) + len(overdue) <= 5, (len(soon), len(overdue))
    preg.notices.officer_deadlines()
    preg.notices.officer_deadlines()  # the day's run twice: told once
    got = mailbox.wait_for(OFFICER, len(soon) + len(overdue))
    assert len(mailbox.to(OFFICER)) == len(soon) + len(overdue)
    subjects = " ".join(m["Subject"] for m in got)
    assert all(i.reference in subjects for i in soon + overdue)
    assert subjects.count("投诉已逾期 / Complaint overdue") == len(overdue)
    # many in one day: one digest instead
    with preg.sessions() as session:
        for _ in range(6):
            make_complaint(session, province="11", created_at=soon[0].created_at)
    preg.notices.officer_deadlines()
    digest = mailbox.wait_for(OFFICER, len(got) + 1)[-1]
    assert "投诉期限汇总" in digest["Subject"] and len(mailbox.to(OFFICER)) == len(got) + 1
    assert text_of(digest).count("/regulator/complaints/") >= 7 * 2 - 2  # each listed in both languages
