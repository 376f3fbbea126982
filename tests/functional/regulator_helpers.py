"""Shared helpers for the regulator console's functional tests: a fixed-clock app, signed-in officers."""
from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest

from registry.numbers.quarters import SHANGHAI

PASSWORD = "correct horse battery"
# 2026-10-15 in Shanghai: 2026Q3's upload window is open, 2026Q2's deadline has passed
NOW = dt.datetime(2026, 10, 15, 10, 0, tzinfo=SHANGHAI)
_names = itertools.count(1)


def fixed_clock(moment: dt.datetime = NOW):
    return lambda: moment.astimezone(dt.timezone.utc)


@pytest.fixture
def rapp(stack):
    from portal import create_app

    app = create_app({**stack, "CLOCK": fixed_clock(), "RATELIMIT_COMPLAINT": "1000/hour"})
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted()
    yield app
    reg.close()


@pytest.fixture
def rreg(rapp):
    return rapp.extensions["registry"]


def make_account(reg, role: str, *, authority: str | None = None, institution=None, username: str | None = None):
    """An account built directly (a builder: AccountService.create is the admin's path, tested there)."""
    from sqlalchemy import select

    from registry.accounts.accounts import hash_password
    from registry.accounts.models import Account
    from registry.institutions.models import Authority

    username = username or f"{role}-{authority or 'x'}-{next(_names)}"
    from registry.institutions.authorities import seed_authorities

    with reg.sessions() as session:
        seed_authorities(session)
        authority_id = session.scalar(select(Authority.id).where(Authority.code == authority)) if authority else None
        account = Account(username=username, password_hash=hash_password(PASSWORD), role=role, active=True,
                          failed_logins=0, session_version=1, created_at=reg.clock(), authority_id=authority_id,
                          institution_id=institution.id if institution is not None else None)
        session.add(account)
        session.commit()
        session.expunge(account)
    return account


def token_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token"
    return match.group(1)


def csrf(client, url: str = "/login") -> str:
    return token_from(client.get(url).get_data(as_text=True))


def sign_in(app, reg, role: str = "regulator", **kwargs):
    account = make_account(reg, role, **kwargs)
    client = app.test_client()
    response = client.post("/login", data={"csrf_token": csrf(client), "username": account.username,
                                           "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def officer_client(app, reg, code: str):
    return sign_in(app, reg, "regulator", authority=code)


def institution(reg, **kw):
    from tests.builders import make_institution

    with reg.sessions() as session:
        inst = make_institution(session, **kw)
        session.expunge(inst)
    reg.refresh()
    return inst


def complaint(reg, **kw):
    from tests.regulator_builders import make_complaint

    with reg.sessions() as session:
        row = make_complaint(session, **kw)
        session.expunge(row)
    return row


def act(client, complaint_id: int, action: str, **data):
    token = csrf(client, f"/regulator/complaints/{complaint_id}")
    return client.post(f"/regulator/complaints/{complaint_id}/{action}", data={"csrf_token": token, **data})
