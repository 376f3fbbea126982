"""The admin area, signing in and out, lockout, password change, cookies and the CLI
``create-account`` on both stacks."""
from __future__ import annotations

import re

from registry.accounts.models import Account

from registry.complaints.models import Holiday
from tests.builders import make_institution
from tests.mailbox import link_in, text_of
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    PASSWORD, csrf_token, login, make_account, portal_app, preg)


def _admin_client(portal_app, preg):
    admin = make_account(preg, "admin")
    client = portal_app.test_client()
    assert login(client, admin.username).status_code == 302
    return client


def verify_address(client, mailbox, address: str) -> None:
    """The signed-in owner gives ``address`` and follows the link e-mailed to it."""
    token = csrf_token(client, "/account/")
    assert client.post("/account/", data={"csrf_token": token, "email": address}).status_code == 303
    mail = mailbox.wait_for(address)[-1]
    assert "请验证电子邮件地址" in mail["Subject"]
    link = link_in(mail, "/account/email/verify/")
    assert client.get(link[link.index("/account/"):]).status_code == 200
    assert "已验证" in client.get("/account/").get_data(as_text=True)


def test_admin_creates_disables_and_resets_accounts(portal_app, preg, mailbox):
    with preg.sessions() as session:
        inst = make_institution(session)
    client = _admin_client(portal_app, preg)
    token = csrf_token(client, "/admin/")
    created = client.post("/admin/", data={"csrf_token": token, "username": "lab-manager", "role": "institution",
                                           "institution": inst.uscc.lower(), "password": PASSWORD})
    assert created.status_code == 303
    assert "lab-manager" in client.get("/admin/").get_data(as_text=True)
    bad = client.post("/admin/", data={"csrf_token": token, "username": "x-lab", "role": "institution",
                                       "institution": "", "password": PASSWORD})
    assert bad.status_code == 400
    with preg.sessions() as session:
        account = session.query(Account).filter_by(username="lab-manager").one()
    user = portal_app.test_client()
    assert login(user, "lab-manager").status_code == 302

    client.post(f"/admin/accounts/{account.id}/disable", data={"csrf_token": token})
    assert user.get("/institution/").status_code == 302  # signed out everywhere
    assert "已停用" in login(user, "lab-manager").get_data(as_text=True)
    client.post(f"/admin/accounts/{account.id}/enable", data={"csrf_token": token})

    # without a verified address there is nowhere to send a reset link: refused, nothing changed
    refused = client.post(f"/admin/accounts/{account.id}/reset", data={"csrf_token": token})
    assert refused.status_code == 400 and 'id="no-email"' in refused.get_data(as_text=True)
    assert login(user, "lab-manager").status_code == 302  # the password still works
    verify_address(user, mailbox, "lab.manager@lab.example.cn")

    # a reset sends the owner a link (the admin sees neither it nor a password); the owner sets one
    response = client.post(f"/admin/accounts/{account.id}/reset", data={"csrf_token": token})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "l***@l***.cn" in page and "/account/reset/" not in page
    mail = mailbox.wait_for("lab.manager@lab.example.cn", 2)[-1]
    assert "管理员已重置" in text_of(mail) and "An administrator has reset" in text_of(mail)
    link = link_in(mail, "/account/reset/")
    path = link[link.index("/account/reset/"):]
    assert login(user, "lab-manager", PASSWORD).status_code == 400  # the old password is dead
    owner = portal_app.test_client()
    form = owner.get(path)
    assert form.status_code == 200 and "lab-manager" in form.get_data(as_text=True)
    reset_token = csrf_token(owner, path)
    assert owner.post(path, data={"csrf_token": reset_token, "new": "short", "confirm": "short"}).status_code == 400
    done = owner.post(path, data={"csrf_token": reset_token, "new": "the owner's own secret",
                                  "confirm": "the owner's own secret"})
    assert done.status_code == 303 and done.headers["Location"].endswith("/login")
    assert owner.get(path).status_code == 404  # single use
    changed = mailbox.wait_for("lab.manager@lab.example.cn", 3)[-1]  # the owner is told
    assert "密码已更改" in changed["Subject"] and "/account/reset/" not in text_of(changed)
    signed_in = login(owner, "lab-manager", "the owner's own secret")
    assert signed_in.status_code == 302
    told = owner.get(signed_in.headers["Location"]).get_data(as_text=True)
    admin_name = re.search(r'<span class="who">([^<]+)</span>', client.get("/admin/").get_data(as_text=True)).group(1)
    assert "重置" in told and admin_name in told  # who reset it (and when)
    assert admin_name not in owner.get("/institution/").get_data(as_text=True).split('class="who"')[0]  # once

    # every action is in the sealed admin log, listed on its page and checked by audit verify
    log = client.get("/admin/log").get_data(as_text=True)
    for action in ("创建账号", "停用账号", "启用账号", "重置密码"):
        assert action in log
    result = portal_app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "admin log intact: 4 entries" in result.output


def test_admin_extends_the_holiday_table(portal_app, preg):
    client = _admin_client(portal_app, preg)
    token = csrf_token(client, "/admin/holidays")
    assert client.post("/admin/holidays", data={"csrf_token": token, "day": "2027-02-06", "name": "春节"}).status_code == 303
    assert client.post("/admin/holidays", data={"csrf_token": token, "day": "2027-02-14", "name": "春节调休",
                                                 "is_workday": "y"}).status_code == 303
    assert client.post("/admin/holidays", data={"csrf_token": token, "day": "2027-02-06", "name": "x"}).status_code == 400
    with preg.sessions() as session:
        days = {(h.day.isoformat(), h.is_workday) for h in session.query(Holiday)}
        first = session.query(Holiday).filter_by(name="春节").one()
    assert days == {("2027-02-06", False), ("2027-02-14", True)}
    assert client.post(f"/admin/holidays/{first.id}/delete", data={"csrf_token": token}).status_code == 303
    assert "2027-02-06" not in client.get("/admin/holidays").get_data(as_text=True)
    log = client.get("/admin/log").get_data(as_text=True)
    assert log.count("添加节假日") == 2 and "删除节假日" in log and "2027-02-06" in log


def test_admin_log_is_paged_and_an_edit_breaks_audit_verify(portal_app, preg):
    from sqlalchemy import update

    from registry.accounts.models import AdminLogEntry

    client = _admin_client(portal_app, preg)
    for n in range(55):
        preg.holidays.add(day=__import__("datetime").date(2030, 1, 1) + __import__("datetime").timedelta(days=n),
                          name=f"day {n}", actor="root")
    first = client.get("/admin/log").get_data(as_text=True)
    assert "第 1 / 2 页" in first and "2030-02-24" in first and "2030-01-01" not in first
    second = client.get("/admin/log?page=2").get_data(as_text=True)
    assert "2030-01-01" in second
    assert client.get("/admin/log?page=x").status_code == 400
    assert client.get("/admin/log?page=99999999999999999999").status_code == 400
    assert "2030-01-01" in client.get("/admin/log?page=7").get_data(as_text=True)  # past the end: the last page
    with preg.sessions() as session:
        session.execute(update(AdminLogEntry).where(AdminLogEntry.seq == 3).values(target="2031-01-01"))
        session.commit()
    result = portal_app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and "admin log BROKEN" in result.output and "seq 3" in result.output
    assert "audit chain intact" in result.output  # the complaint chain's line keeps its format


def test_audit_verify_follows_the_admin_log_across_key_rotations(stack):
    """Issue 13 item 11 for the admin log: with only AUDIT_KEYS set (no AUDIT_KEY) the admin log
    works; after a rotation (new key first, old kept) old entries still verify and new ones are
    sealed with the new key; with the old key removed `audit verify` names it and exits 1."""
    import datetime as dt

    from sqlalchemy import select

    from portal import create_app
    from registry.accounts.models import AdminLogEntry

    def run(keys: str, day: int | None):
        app = create_app({**stack, "AUDIT_KEY": "", "AUDIT_KEYS": keys})
        reg = app.extensions["registry"]
        try:
            if day is not None:
                reg.holidays.add(day=dt.date(2032, 1, day), name=f"day {day}", actor="root")
            with reg.sessions() as session:
                kids = list(session.scalars(select(AdminLogEntry.key_id).order_by(AdminLogEntry.seq)))
            return app.test_cli_runner().invoke(args=["audit", "verify"]), kids
        finally:
            reg.close()

    result, kids = run("k1:first-secret", 1)
    assert result.exit_code == 0 and "admin log intact: 1 entries" in result.output and kids == ["k1"]
    result, kids = run("k2:second-secret,k1:first-secret", 2)
    assert result.exit_code == 0 and "admin log intact: 2 entries" in result.output and kids == ["k1", "k2"]
    result, _ = run("k2:second-secret", None)
    assert result.exit_code == 1 and "audit chain intact" in result.output
    assert "admin log BROKEN" in result.output and "'k1'" in result.output and "AUDIT_KEYS" in result.output


def test_another_address_cannot_lock_the_owner_out(portal_app, preg):
    """Issue 13 item 8: failures are throttled per (username, address), never per account."""
    account = make_account(preg, "admin")
    attacker = portal_app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    for _ in range(8):
        assert login(attacker, account.username, "wrong password!").status_code == 400
    assert login(attacker, account.username).status_code == 400  # that address waits
    owner = portal_app.test_client()
    owner.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert login(owner, account.username).status_code == 302


def test_failures_answer_identically_for_unknown_wrong_and_throttled(portal_app, preg, monkeypatch):
    """No reply tells whether an account exists or is being throttled; each costs one scrypt."""
    import registry.accounts.accounts as module

    calls = []
    real = module.check_password_hash
    monkeypatch.setattr(module, "check_password_hash", lambda h, p: calls.append(h) or real(h, p))
    account = make_account(preg, "admin")
    client = portal_app.test_client()
    for _ in range(6):
        login(client, account.username, "wrong password!")
    replies = {}
    for case, (name, password) in {"unknown": ("no-such-user", PASSWORD), "wrong": (account.username, "nope nope!"),
                                   "throttled": (account.username, PASSWORD)}.items():
        calls.clear()
        other = portal_app.test_client() if case != "throttled" else client
        response = login(other, name, password)
        assert len(calls) == 1, case
        page = response.get_data(as_text=True)
        page = re.sub(r'value="[^"]*"', "", page)  # the CSRF token and the typed username differ
        replies[case] = (response.status_code, re.search(r'<div class="error-summary"[^>]*>.*?<a href="#username">([^<]+)</a>', page, re.S).group(1))
    assert len(set(replies.values())) == 1, replies
    assert "锁定" not in replies["unknown"][1]


def test_logout_ends_the_session_on_the_server(portal_app, preg):
    """Issue 13 item 7: a copied session cookie opens nothing after POST /logout."""
    with preg.sessions() as session:
        inst = make_institution(session)
    account = make_account(preg, institution=inst)
    client = portal_app.test_client()
    assert login(client, account.username).status_code == 302
    cookie = client.get_cookie("session")
    thief = portal_app.test_client()
    thief.set_cookie("session", cookie.value)
    assert thief.get("/institution/").status_code == 200  # the copy works while the session lives
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/institution/")}).status_code == 302
    assert thief.get("/institution/").status_code == 302  # and is worthless once it ended
    # disabling the account, or changing its password, ends every other session the same way
    other = portal_app.test_client()
    login(other, account.username)
    copy = portal_app.test_client()
    copy.set_cookie("session", other.get_cookie("session").value)
    token = csrf_token(other, "/account/password")
    assert other.post("/account/password", data={"csrf_token": token, "current": PASSWORD, "new": "a new long secret",
                                                 "confirm": "a new long secret"}).status_code == 302
    assert other.get("/institution/").status_code == 200 and copy.get("/institution/").status_code == 302


def test_logout_and_password_change(portal_app, preg):
    account = make_account(preg, "admin")
    client = portal_app.test_client()
    login(client, account.username)
    token = csrf_token(client, "/account/password")
    short = client.post("/account/password", data={"csrf_token": token, "current": PASSWORD, "new": "short",
                                                    "confirm": "short"})
    assert short.status_code == 400
    changed = client.post("/account/password", data={"csrf_token": token, "current": PASSWORD,
                                                     "new": "a much longer secret", "confirm": "a much longer secret"})
    assert changed.status_code == 302
    assert client.get("/admin/").status_code == 200  # this browser stays signed in
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")}).status_code == 302
    assert client.get("/admin/").status_code == 302
    assert login(client, account.username).status_code == 400
    assert login(client, account.username, "a much longer secret").status_code == 302


def test_forms_need_csrf_and_cookies_are_safe(portal_app, preg):
    account = make_account(preg, "admin")
    client = portal_app.test_client()
    assert client.post("/login", data={"username": account.username, "password": PASSWORD}).status_code == 400
    response = login(client, account.username)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert portal_app.config["SESSION_COOKIE_SECURE"] is False  # testing; True in production

    from portal import create_app

    production = create_app({k: v for k, v in portal_app.config.items() if k in (
        "DATABASE_URL", "REDIS_URL", "INSTANCE_DIR", "FILES_DIR", "SECRET_KEY", "BLOOM_CAPACITY", "BLOOM_SHARDS",
        "BACKGROUND_INTERVAL")})
    try:
        assert production.config["SESSION_COOKIE_SECURE"] is True
    finally:
        production.extensions["registry"].close()


def test_create_account_cli(portal_app, preg):
    runner = portal_app.test_cli_runner()
    with preg.sessions() as session:
        inst = make_institution(session)
    ok = runner.invoke(args=["create-account", "cli-lab", "--role", "institution", "--institution", inst.uscc,
                             "--password-stdin"], input=PASSWORD + "\n")
    assert ok.exit_code == 0, ok.output
    assert login(portal_app.test_client(), "cli-lab").status_code == 302
    regulator = runner.invoke(args=["create-account", "bj-bureau", "--role", "regulator", "--authority", "01"],
                              input=f"{PASSWORD}\n{PASSWORD}\n")
    assert regulator.exit_code == 0, regulator.output
    for args in (["x1", "--role", "institution"],
                 ["x2", "--role", "institution", "--institution", "91110000000000000X"],
                 ["x3", "--role", "regulator", "--authority", "99"],
                 ["x4", "--role", "admin", "--authority", "01"],
                 ["cli-lab", "--role", "admin"],
                 ["x5", "--role", "root"]):
        result = runner.invoke(args=["create-account", *args, "--password-stdin"], input=PASSWORD + "\n")
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    weak = runner.invoke(args=["create-account", "x6", "--role", "admin", "--password-stdin"], input="short\n")
    assert weak.exit_code == 2 and len(weak.output.strip().splitlines()) == 1


def test_disabling_and_resetting_go_through_a_check_page_and_end_on_a_confirmation(portal_app, preg):
    """Issue 19 part 3: what cannot be undone is checked first (nothing changes on the check page)
    and confirmed on a page naming the result."""
    with preg.sessions() as session:
        inst = make_institution(session)
    owner = make_account(preg, institution=inst)
    client = _admin_client(portal_app, preg)
    index = client.get("/admin/").get_data(as_text=True)
    assert f"/admin/accounts/{owner.id}/disable" in index and f"/admin/accounts/{owner.id}/reset" in index
    check = client.get(f"/admin/accounts/{owner.id}/disable")
    page = check.get_data(as_text=True)
    assert check.status_code == 200 and owner.username in page and 'id="will-change"' in page
    assert "API 令牌" in page and "尚未作任何更改" in page
    with preg.sessions() as session:
        assert session.get(Account, owner.id).active  # a check page changes nothing
    token = csrf_token(client, f"/admin/accounts/{owner.id}/disable")
    done = client.post(f"/admin/accounts/{owner.id}/disable", data={"csrf_token": token})
    assert done.status_code == 303
    confirmation = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'id="confirmation"' in confirmation and "账号已停用" in confirmation and owner.username in confirmation
    english = client.get(done.headers["Location"] + "&lang=en").get_data(as_text=True)
    assert "Account disabled" in english
    reset_check = client.get(f"/admin/accounts/{owner.id}/reset?lang=zh").get_data(as_text=True)
    assert "重置" in reset_check and "24 小时" in reset_check and 'id="confirm-action"' in reset_check
    assert client.get("/admin/accounts/999999/reset").status_code == 404
    assert client.get("/admin/accounts/999999/disable").status_code == 404
