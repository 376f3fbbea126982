"""Accounts, lockout and tokens on both databases (no Flask)."""
from __future__ import annotations

import datetime as dt

import pytest

from registry.accounts.accounts import AccountError, AccountService
from registry.accounts.idempotency import IdempotencyStore
from registry.accounts.tokens import TokenService
from registry.complaints.holidays import HolidayService
from registry.infra.db import make_session_factory
from tests.builders import make_institution

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self):
        self.now = dt.datetime(2026, 10, 15, 2, 0, tzinfo=dt.timezone.utc)

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def accounts(engine, clock):
    return AccountService(sessions=make_session_factory(engine), clock=clock)


def test_passwords_are_scrypt_hashes(accounts):
    account = accounts.create(username="admin1", password=PASSWORD, role="admin")
    assert account.password_hash.startswith("scrypt:") and PASSWORD not in account.password_hash
    assert accounts.authenticate("admin1", PASSWORD).account.id == account.id
    assert accounts.authenticate("admin1", "nope").reason == "bad_credentials"
    assert accounts.authenticate("nobody", PASSWORD).reason == "bad_credentials"


def test_lockout_after_five_failures_in_fifteen_minutes(accounts, clock):
    accounts.create(username="lab1", password=PASSWORD, role="admin")
    for _ in range(4):
        accounts.authenticate("lab1", "wrong")
    clock.now += dt.timedelta(minutes=16)  # the window restarts
    for _ in range(4):
        assert accounts.authenticate("lab1", "wrong").reason == "bad_credentials"
    assert accounts.authenticate("lab1", PASSWORD).account is not None  # success resets the count
    for _ in range(5):
        accounts.authenticate("lab1", "wrong")
    assert accounts.authenticate("lab1", PASSWORD).reason == "locked"
    clock.now += dt.timedelta(minutes=16)
    assert accounts.authenticate("lab1", PASSWORD).account is not None


def test_bindings(accounts, session):
    inst = make_institution(session)
    lab = accounts.create(username="lab2", password=PASSWORD, role="institution", institution_uscc=inst.uscc.lower())
    assert lab.institution_id == inst.id and lab.authority_id is None
    bureau = accounts.create(username="bureau", password=PASSWORD, role="regulator", authority_code="11")
    assert bureau.authority.code == "11"
    for kwargs in ({"role": "institution"}, {"role": "regulator", "authority_code": "77"},
                   {"role": "admin", "institution_uscc": inst.uscc}, {"role": "nobody"}):
        with pytest.raises(AccountError):
            accounts.create(username="x-user", password=PASSWORD, **kwargs)
    with pytest.raises(AccountError, match="taken"):
        accounts.create(username="lab2", password=PASSWORD, role="admin")
    with pytest.raises(AccountError, match="at least"):
        accounts.create(username="weak", password="short", role="admin")


def test_disable_reset_and_change_bump_the_session_version(accounts):
    account = accounts.create(username="lab3", password=PASSWORD, role="admin")
    assert accounts.set_active(account.id, False).session_version == 2
    assert accounts.authenticate("lab3", PASSWORD).reason == "disabled"
    accounts.set_active(account.id, True)
    temporary = accounts.reset_password(account.id)
    assert accounts.authenticate("lab3", temporary).account.session_version == 4
    with pytest.raises(AccountError):
        accounts.change_password(account.id, "wrong", "another long secret")
    assert accounts.change_password(account.id, temporary, "another long secret").session_version == 5


def test_tokens_hashed_revocable_and_scoped(engine, session, clock):
    inst = make_institution(session)
    other = make_institution(session)
    tokens = TokenService(sessions=make_session_factory(engine), clock=clock)
    token, plaintext = tokens.create(institution_id=inst.id, name="LIMS", created_by="lab")
    assert plaintext.startswith("rnr_") and token.token_hash != plaintext
    assert tokens.authenticate(plaintext).id == token.id
    assert tokens.authenticate(plaintext + "x") is None and tokens.authenticate("") is None
    assert tokens.revoke(institution_id=other.id, token_id=token.id) is False
    assert tokens.revoke(institution_id=inst.id, token_id=token.id) is True
    assert tokens.authenticate(plaintext) is None
    with pytest.raises(AccountError):
        tokens.create(institution_id=inst.id, name="  ", created_by="lab")


def test_idempotency_store_keeps_the_first_answer(engine, session, clock):
    inst = make_institution(session)
    sessions = make_session_factory(engine)
    token, _ = TokenService(sessions=sessions, clock=clock).create(institution_id=inst.id, name="t", created_by=None)
    store = IdempotencyStore(sessions=sessions, clock=clock)
    first = store.save(token_id=token.id, key="k", request_sha256="a" * 64, status=200, body={"n": 1})
    second = store.save(token_id=token.id, key="k", request_sha256="b" * 64, status=200, body={"n": 2})
    assert first.body == second.body == {"n": 1}
    assert store.find(token_id=token.id, key="other") is None


def test_holidays(engine):
    holidays = HolidayService(sessions=make_session_factory(engine))
    holidays.add(day=dt.date(2027, 2, 6), name="春节")
    holidays.add(day=dt.date(2027, 2, 14), name="调休", is_workday=True)
    with pytest.raises(AccountError):
        holidays.add(day=dt.date(2027, 2, 6), name="again")
    assert [(h.day.day, h.is_workday) for h in holidays.list()] == [(6, False), (14, True)]
