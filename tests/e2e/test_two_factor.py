"""In Debian's Chromium, for a regulator (REQUIRE_2FA on): two-factor set-up with the QR page,
signing in with a code, a recovery code that works once, and a password-reset link (e-mailed to
the verified address, read from a real SMTP server) that works once and then expires."""
from __future__ import annotations

import datetime as dt

import pyotp
import pytest

from registry.institutions.authorities import seed_authorities
from tests.conftest import mail_config
from tests.e2e.live import DESKTOP, live_server, new_page
from tests.functional.test_institution_portal import PASSWORD, make_account
from tests.mailbox import link_in, text_of

pytestmark = pytest.mark.browser

ADDRESS = "officer@amr.example.gov.cn"


class MovableClock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock():
    return MovableClock()


@pytest.fixture
def app2fa(stack, mailbox, clock):
    from portal import create_app

    app = create_app({**stack, **mail_config(mailbox), "REQUIRE_2FA": True, "CLOCK": clock})
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted()
    with reg.sessions() as session:
        seed_authorities(session)
        session.commit()
    mailbox.drain = reg.outbox.deliver_due
    yield app
    reg.close()


def sign_in(page, server, username, password=PASSWORD):
    page.goto(f"{server}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form:has(#password) button[type=submit]")


def local(link: str, server: str) -> str:
    """A link of an e-mail (PUBLIC_BASE_URL) on the test's server."""
    return server + link[link.index("/", link.index("//") + 2):]


def enter_code(page, code):
    page.fill("#code", code)
    page.click("form:has(#code) button[type=submit]")


def test_regulator_two_factor_recovery_code_and_reset_link(browser, app2fa, mailbox, clock):
    reg = app2fa.extensions["registry"]
    officer = make_account(reg, "regulator", authority="11", username="bj-officer")
    with live_server(app2fa, "e2e-2fa") as server:
        context, page = new_page(browser, DESKTOP)
        # signing in with the password alone leads to the set-up page: nothing else opens
        sign_in(page, server, officer.username)
        page.wait_for_url("**/account/2fa")
        page.goto(f"{server}/regulator/")
        page.wait_for_url("**/account/2fa")
        assert page.locator(".qr-box svg").count() == 1
        secret = page.inner_text("#totp-secret").strip()
        totp = pyotp.TOTP(secret)
        enter_code(page, totp.at(clock.now))
        page.wait_for_selector("#recovery-codes")
        codes = page.locator("#recovery-codes li").all_inner_texts()
        assert len(codes) == 10
        # an address, verified by the link e-mailed to it
        page.goto(f"{server}/account/")
        page.fill("#email", ADDRESS)
        page.click("form:has(#email) button[type=submit]")
        verify = mailbox.wait_for(ADDRESS)[-1]
        page.goto(local(link_in(verify, "/account/email/verify/"), server))
        assert "电子邮件地址已验证" in page.inner_text("main")
        page.goto(f"{server}/account/")
        assert "剩余恢复码：10" in page.inner_text("#two-factor-status")
        page.click("#sign-out-everywhere")
        page.wait_for_url("**/login")

        # the password, then a code from the app (the next time step: the enrolment code is spent)
        clock.now += dt.timedelta(seconds=30)
        sign_in(page, server, officer.username)
        page.wait_for_url("**/login/code")
        enter_code(page, "000000" if totp.at(clock.now) != "000000" else "111111")
        assert "验证码不正确" in page.inner_text("main")
        enter_code(page, totp.at(clock.now))
        page.wait_for_url("**/regulator/")
        page.click(".logout button")

        # a recovery code signs in once
        sign_in(page, server, officer.username)
        page.wait_for_url("**/login/code")
        enter_code(page, codes[0])
        page.wait_for_url("**/regulator/")
        page.click(".logout button")
        sign_in(page, server, officer.username)
        page.wait_for_url("**/login/code")
        enter_code(page, codes[0])
        assert "验证码不正确或已使用" in page.inner_text("main")

        # forgot password: the link arrives at the verified address, works once
        page.goto(f"{server}/login")
        page.click("text=忘记密码？")
        page.fill("#who", officer.username)
        page.click("button[type=submit]")
        page.wait_for_selector("#confirmation")
        mail = mailbox.wait_for(ADDRESS, 2)[-1]
        assert mail["To"] == ADDRESS and "重置密码" in mail["Subject"] and "Reset your password" in mail["Subject"]
        assert "有人为账号 bj-officer 申请了重置密码" in text_of(mail) and "Someone asked to reset" in text_of(mail)
        link = local(link_in(mail, "/account/reset/"), server)
        page.goto(link)
        page.fill("#new", "a brand new passphrase")
        page.fill("#confirm", "a brand new passphrase")
        page.click("form:has(#confirm) button[type=submit]")
        page.wait_for_url("**/login")
        page.goto(link)
        assert "该重置链接无效、已使用或已过期" in page.inner_text("main")  # used once
        sign_in(page, server, officer.username, "a brand new passphrase")
        page.wait_for_url("**/login/code")  # a new password does not skip the second step
        clock.now += dt.timedelta(seconds=30)
        enter_code(page, totp.at(clock.now))
        page.wait_for_url("**/regulator/")
        page.click(".logout button")

        # a second link, unused for more than an hour, has expired
        page.goto(f"{server}/password/forgot")
        page.fill("#who", ADDRESS)
        page.click("button[type=submit]")
        page.wait_for_selector("#confirmation")
        late = local(link_in(mailbox.wait_for(ADDRESS, 4)[-1], "/account/reset/"), server)
        clock.now += dt.timedelta(hours=1, minutes=1)
        page.goto(late)
        assert "该重置链接无效、已使用或已过期" in page.inner_text("main")
        assert page.problems == []
        context.close()
