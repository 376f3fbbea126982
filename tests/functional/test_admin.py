"""The admin area, signing in and out, lockout, password change, cookies and the CLI
``create-account`` on both stacks."""
from __future__ import annotations

import re

from registry.accounts.models import Account

from registry.complaints.models import Holiday
from tests.builders import make_institution
from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    PASSWORD, csrf_token, login, make_account, portal_app, preg)


def _admin_client(portal_app, preg):
    admin = make_account(preg, "admin")
    client = portal_app.test_client()
    assert login(client, admin.username).status_code == 302
    return client


def test_admin_creates_disables_and_resets_accounts(portal_app, preg):
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

    page = client.post(f"/admin/accounts/{account.id}/reset", data={"csrf_token": token}).get_data(as_text=True)
    temporary = re.search(r'<p class="mono token">([^<]+)</p>', page).group(1)
    assert login(user, "lab-manager", PASSWORD).status_code == 400
    assert login(user, "lab-manager", temporary).status_code == 302


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


def test_lockout_after_five_failures(portal_app, preg):
    account = make_account(preg, "admin")
    client = portal_app.test_client()
    for _ in range(5):
        assert login(client, account.username, "wrong password!").status_code == 400
    locked = login(client, account.username)
    assert locked.status_code == 400 and "锁定" in locked.get_data(as_text=True)


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
