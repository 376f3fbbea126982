"""Accounts, lockout and tokens on both databases (no Flask)."""
from __future__ import annotations

import datetime as dt

import pytest

from registry.accounts.accounts import AccountError, AccountService
from registry.accounts.idempotency import IdempotencyStore
from registry.accounts.tokens import TokenService
from registry.complaints.holidays import HolidayService
from registry.infra.db import make_session_factory
from registry.infra.sealing import Sealer
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
    return AccountService(sessions=make_session_factory(engine), clock=clock, sealer=Sealer(secret_key="test"))


def test_passwords_are_scrypt_hashes(accounts):
    account = accounts.create(username="admin1", password=PASSWORD, role="admin")
    assert account.password_hash.startswith("scrypt:") and PASSWORD not in account.password_hash
    assert accounts.authenticate("admin1", PASSWORD).account.id == account.id
    assert accounts.authenticate("admin1", "nope").reason == "bad_credentials"
    assert accounts.authenticate("nobody", PASSWORD).reason == "bad_credentials"


def test_failures_are_throttled_per_username_and_client_never_locking_the_owner(accounts, clock):
    """Issue 13 item 8: five (or fifty) wrong passwords from one address do not lock the account
    for its owner elsewhere; that address waits, doubling, while the owner signs in."""
    accounts.create(username="lab1", password=PASSWORD, role="admin")
    for _ in range(50):
        assert accounts.authenticate("lab1", "wrong", client="203.0.113.9").reason == "bad_credentials"
    assert accounts.authenticate("lab1", PASSWORD, client="198.51.100.7").account is not None  # the owner
    # the attacking address waits: even the right password is refused there, with the same answer
    assert accounts.authenticate("lab1", PASSWORD, client="203.0.113.9").reason == "bad_credentials"
    clock.now += dt.timedelta(minutes=16)  # the wait is capped at 15 minutes
    assert accounts.authenticate("lab1", PASSWORD, client="203.0.113.9").account is not None


def test_backoff_doubles_after_five_free_failures(accounts, clock):
    accounts.create(username="lab1b", password=PASSWORD, role="admin")
    for _ in range(4):
        accounts.authenticate("lab1b", "wrong", client="a")
    assert accounts.authenticate("lab1b", PASSWORD, client="a").account is not None  # success clears the count
    for _ in range(5):
        accounts.authenticate("lab1b", "wrong", client="a")
    assert accounts.authenticate("lab1b", PASSWORD, client="a").reason == "bad_credentials"  # waiting 1 s
    clock.now += dt.timedelta(seconds=1, milliseconds=1)
    accounts.authenticate("lab1b", "wrong", client="a")  # 6th failure: 2 s
    clock.now += dt.timedelta(seconds=1)
    assert accounts.authenticate("lab1b", PASSWORD, client="a").reason == "bad_credentials"
    clock.now += dt.timedelta(seconds=1, milliseconds=1)
    assert accounts.authenticate("lab1b", PASSWORD, client="a").account is not None


def test_every_failure_answers_alike_after_one_scrypt(accounts, monkeypatch):
    """Unknown name, wrong password and a throttled pair: the same reason, one hash each."""
    import registry.accounts.accounts as module

    calls = []
    real = module.check_password_hash
    monkeypatch.setattr(module, "check_password_hash", lambda h, p: calls.append(h) or real(h, p))
    accounts.create(username="lab1c", password=PASSWORD, role="admin")
    for _ in range(6):
        accounts.authenticate("lab1c", "wrong", client="x")  # now throttled for "x"
    outcomes = {}
    for case, (name, client) in {"unknown": ("nobody-here", "y"), "wrong": ("lab1c", "y"),
                                 "throttled": ("lab1c", "x")}.items():
        calls.clear()
        outcomes[case] = accounts.authenticate(name, "wrong" if case == "wrong" else PASSWORD, client=client)
        assert len(calls) == 1 and calls[0].startswith("scrypt:"), case
    assert {o.reason for o in outcomes.values()} == {"bad_credentials"}
    assert all(o.account is None for o in outcomes.values())


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


def test_disable_and_change_bump_the_session_version(accounts):
    account = accounts.create(username="lab3", password=PASSWORD, role="admin")
    assert accounts.set_active(account.id, False).session_version == 2
    assert accounts.authenticate("lab3", PASSWORD).reason == "disabled"
    assert accounts.authenticate("lab3", "wrong").reason == "bad_credentials"  # "disabled" needs the password
    accounts.set_active(account.id, True)
    with pytest.raises(AccountError):
        accounts.change_password(account.id, "wrong", "another long secret")
    assert accounts.change_password(account.id, PASSWORD, "another long secret").session_version == 4


def test_sessions_end_on_sign_out_disable_reset_and_password_change(accounts):
    """Issue 13 item 7: a session id lives in the database; ending it makes the cookie worthless."""
    account = accounts.create(username="lab4", password=PASSWORD, role="admin", email="lab4@lab.example.cn",
                              email_verified=True)
    first = accounts.start_session(account.id, user_agent="Mozilla/5.0 " + "x" * 300)
    second = accounts.start_session(account.id)
    assert accounts.session_account(first).id == account.id
    accounts.end_session(first)
    assert accounts.session_account(first) is None and accounts.session_account(second).id == account.id
    assert accounts.session_account("") is None and accounts.session_account("forged") is None
    accounts.set_active(account.id, False, actor="root")
    accounts.set_active(account.id, True, actor="root")
    assert accounts.session_account(second) is None  # disabling ended every session
    third = accounts.start_session(account.id)
    accounts.change_password(account.id, PASSWORD, "another long secret")
    assert accounts.session_account(third) is None
    fourth = accounts.start_session(account.id)
    accounts.reset_password(account.id, actor="root")
    assert accounts.session_account(fourth) is None


def test_sessions_expire_after_31_days(accounts, clock):
    account = accounts.create(username="lab5", password=PASSWORD, role="admin")
    token = accounts.start_session(account.id)
    clock.now += dt.timedelta(days=30)
    assert accounts.session_account(token) is not None
    clock.now += dt.timedelta(days=2)
    assert accounts.session_account(token) is None


def test_reset_locks_the_account_until_the_owner_uses_the_single_use_link(accounts, clock):
    """Issue 13 item 10: the admin never gets a usable password."""
    account = accounts.create(username="lab6", password=PASSWORD, role="admin", email="lab6@lab.example.cn",
                              email_verified=True)
    _, link = accounts.reset_password(account.id, actor="root")
    assert accounts.authenticate("lab6", PASSWORD).account is None  # the old password is dead
    assert accounts.reset_account(link).id == account.id and accounts.reset_account(link + "x") is None
    with pytest.raises(AccountError):
        accounts.complete_reset(link, "short")
    accounts.complete_reset(link, "the owner's new secret")
    assert accounts.reset_account(link) is None  # single use
    with pytest.raises(AccountError):
        accounts.complete_reset(link, "yet another secret")
    assert accounts.authenticate("lab6", "the owner's new secret").account is not None
    notice = accounts.take_reset_notice(account.id)
    assert notice.by == "root" and notice.at == clock.now
    assert accounts.take_reset_notice(account.id) is None  # told once
    _, late = accounts.reset_password(account.id, actor="root")
    clock.now += dt.timedelta(hours=24, seconds=1)
    assert accounts.reset_account(late) is None  # expired
    _, newer = accounts.reset_password(account.id, actor="root")
    _, older = accounts.reset_password(account.id, actor="root")
    assert accounts.reset_account(newer) is None and accounts.reset_account(older) is not None  # a new reset voids the old link


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


def test_tokens_expire_and_die_with_their_account(engine, session, clock, accounts):
    """Issue 13 item 12."""
    inst = make_institution(session)
    owner = accounts.create(username="lab7", password=PASSWORD, role="institution", institution_uscc=inst.uscc)
    tokens = TokenService(sessions=make_session_factory(engine), clock=clock, days=30)
    token, plaintext = tokens.create(institution_id=inst.id, name="LIMS", created_by="lab7", account_id=owner.id)
    assert token.account_id == owner.id and token.expires_at == clock.now + dt.timedelta(days=30)
    assert tokens.check(plaintext).token.id == token.id
    clock.now += dt.timedelta(days=30)
    assert tokens.check(plaintext).reason == "expired" and tokens.authenticate(plaintext) is None
    clock.now -= dt.timedelta(days=1)
    assert tokens.authenticate(plaintext) is not None
    accounts.set_active(owner.id, False, actor="root")
    assert tokens.check(plaintext).reason == "unknown"
    accounts.set_active(owner.id, True, actor="root")
    assert tokens.authenticate(plaintext) is None  # revoked for good, not merely hidden
    other, other_text = tokens.create(institution_id=inst.id, name="other", created_by=None)
    assert tokens.revoke_institution(inst.id) == 1 and tokens.authenticate(other_text) is None


def test_admin_log_seals_admin_actions(engine, session, clock, tmp_path):
    """Issue 13 item 10: create, disable, enable, reset and holiday edits are sealed entries; an
    edit, a deletion or a truncation is found."""
    from sqlalchemy import delete, select, update

    from registry.accounts.adminlog import AdminLog
    from registry.accounts.models import AdminLogEntry
    from registry.complaints.audit import FileChainHead

    sessions = make_session_factory(engine)
    log = AdminLog(key=b"k" * 32, head=FileChainHead(tmp_path / "admin-log"), clock=clock)
    log.install(sessions)
    accounts = AccountService(sessions=sessions, clock=clock, admin_log=log)
    holidays = HolidayService(sessions=sessions, admin_log=log)
    account = accounts.create(username="lab8", password=PASSWORD, role="admin", actor="root",
                              email="lab8@lab.example.cn", email_verified=True)
    accounts.set_active(account.id, False, actor="root")
    accounts.set_active(account.id, True, actor="root")
    accounts.reset_password(account.id, actor="root")
    day = holidays.add(day=dt.date(2027, 2, 6), name="春节", actor="root")
    holidays.delete(day.id, actor="root")
    accounts.create(username="lab9", password=PASSWORD, role="admin")  # no actor (CLI, demo): not an admin action
    with sessions() as s:
        check = log.verify(s)
        assert check.ok and check.checked == 6 and check.head[0] == 6
        actions = [(e.action, e.target) for e in s.scalars(select(AdminLogEntry).order_by(AdminLogEntry.seq))]
        assert actions == [("create", "lab8"), ("disable", "lab8"), ("enable", "lab8"), ("reset", "lab8"),
                           ("holiday_add", "2027-02-06"), ("holiday_delete", "2027-02-06")]
        assert log.page(s, 1, per_page=4).pages == 2 and log.page(s, 2, per_page=4).entries[-1].seq == 1
        s.execute(update(AdminLogEntry).where(AdminLogEntry.seq == 4).values(actor="somebody else"))
        s.commit()
        assert "seq 4" in log.verify(s).problems[0].message
        s.execute(update(AdminLogEntry).where(AdminLogEntry.seq == 4).values(actor="root"))
        s.execute(delete(AdminLogEntry).where(AdminLogEntry.seq == 2))
        s.commit()
        assert "seq 2" in log.verify(s).problems[0].message
        s.execute(delete(AdminLogEntry).where(AdminLogEntry.seq >= 5))
        s.commit()
        assert any("truncated" in p.message for p in log.verify(s).problems)


def test_admin_log_keys_rotate_and_are_picked_by_id(engine, clock, tmp_path):
    """Issue 13 items 10-11: the admin log is on the audit key ring. After a rotation (the new key
    first in AUDIT_KEYS, the old one kept) old entries still verify and new ones are sealed with the
    new key; a key removed from the ring is named by its id."""
    from sqlalchemy import select

    from registry.accounts.adminlog import AdminLog, admin_log_key, entry_mac
    from registry.accounts.models import AdminLogEntry
    from registry.complaints.audit import FileChainHead, keyring

    sessions = make_session_factory(engine)
    head = FileChainHead(tmp_path / "admin-log")
    old = AdminLog(keys=keyring(secret_key="", audit_keys="k1:first-secret"), head=head, clock=clock)
    new = AdminLog(keys=keyring(secret_key="", audit_keys="k2:second-secret,k1:first-secret"), head=head,
                   clock=clock)
    only_new = AdminLog(keys=keyring(secret_key="", audit_keys="k2:second-secret"), head=head, clock=clock)
    for log, day in ((old, 1), (old, 2), (new, 3)):
        factory = make_session_factory(engine)
        log.install(factory)
        HolidayService(sessions=factory, admin_log=log).add(day=dt.date(2027, 3, day), name="x", actor="root")
    assert new.key_id == "k2" and old.key_id == "k1"
    with sessions() as s:
        entries = list(s.scalars(select(AdminLogEntry).order_by(AdminLogEntry.seq)))
        assert [e.key_id for e in entries] == ["k1", "k1", "k2"]
        # sealed with the admin log's own subkey, never with the chain key itself (no MAC replay)
        first = entries[0]
        fields = dict(seq=first.seq, at=first.at, actor=first.actor, action=first.action, target=first.target,
                      detail=first.detail, prev_mac="", key_id="k1")
        assert first.mac == entry_mac(admin_log_key(b"first-secret"), **fields)
        assert first.mac != entry_mac(b"first-secret", **fields)
        check = new.verify(s)
        assert check.ok and check.checked == 3
        broken = only_new.verify(s)
        assert not broken.ok and len(broken.problems) == 2
        assert all("'k1'" in p.message and "AUDIT_KEYS" in p.message for p in broken.problems)
        assert "seq 1" in broken.problems[0].message


def test_admin_log_entries_without_a_key_id_verify_with_the_ring(engine, clock, tmp_path):
    """Entries sealed before migration 0010 (no key id, sealed with admin_log_key(derive_key(...)))
    verify against every key of the ring, e.g. after AUDIT_KEYS is set; new entries chain on them."""
    from sqlalchemy import select, update

    from registry.accounts.adminlog import AdminLog, admin_log_key, entry_mac
    from registry.accounts.models import AdminLogEntry
    from registry.complaints.audit import FileChainHead, derive_key, keyring

    sessions = make_session_factory(engine)
    head = FileChainHead(tmp_path / "admin-log")
    legacy_key = admin_log_key(derive_key(secret_key="s1", audit_key=""))
    legacy = AdminLog(key=legacy_key, head=head, clock=clock)
    legacy.install(sessions)
    holidays = HolidayService(sessions=sessions, admin_log=legacy)
    holidays.add(day=dt.date(2027, 4, 1), name="x", actor="root")
    holidays.add(day=dt.date(2027, 4, 2), name="y", actor="root")
    with sessions() as s:  # as the version before key ids sealed them
        prev = ""
        for entry in s.scalars(select(AdminLogEntry).order_by(AdminLogEntry.seq)).all():
            mac = entry_mac(legacy_key, seq=entry.seq, at=entry.at, actor=entry.actor, action=entry.action,
                            target=entry.target, detail=entry.detail, prev_mac=prev)
            s.execute(update(AdminLogEntry).where(AdminLogEntry.id == entry.id).values(mac=mac, key_id=None))
            prev = mac
        s.commit()
    head.advance(2, prev)
    ring = AdminLog(keys=keyring(secret_key="s1", audit_keys="k2:new-secret"), head=head, clock=clock)
    factory = make_session_factory(engine)
    ring.install(factory)
    HolidayService(sessions=factory, admin_log=ring).add(day=dt.date(2027, 4, 3), name="z", actor="root")
    with sessions() as s:
        assert [e.key_id for e in s.scalars(select(AdminLogEntry).order_by(AdminLogEntry.seq))] == [None, None, "k2"]
        assert ring.verify(s).ok
        rotated = AdminLog(keys=keyring(secret_key="s2", audit_keys="k2:new-secret"), head=head).verify(s)
        assert [p.seq for p in rotated.problems] == [1, 2]
        assert "sealed before key ids" in rotated.problems[0].message


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


# --- issue 18: accounts that hold -------------------------------------------------------------
def test_common_passwords_are_refused_whatever_their_length(accounts):
    for weak in ("password1234", "1qaz2wsx3edc", "Password2026!", "aaaaaaaaaaaa", "qwertyuiop12", "lab10-is-my-name"):
        with pytest.raises(AccountError) as refused:
            accounts.create(username="lab10", password=weak, role="admin")
        assert refused.value.code == "common_password", weak
    assert accounts.create(username="lab10", password=PASSWORD, role="admin").username == "lab10"
    with pytest.raises(AccountError):
        accounts.change_password(accounts.authenticate("lab10", PASSWORD).account.id, PASSWORD, "iloveyou2026")


def test_totp_enrolment_codes_once_and_recovery_codes_once(accounts, clock):
    import pyotp

    account = accounts.create(username="lab11", password=PASSWORD, role="regulator", authority_code="11")
    secret = accounts.begin_2fa(account.id)
    assert accounts.get(account.id).totp_secret != secret  # kept encrypted
    assert accounts.pending_2fa_secret(account.id) == secret
    totp = pyotp.TOTP(secret)
    with pytest.raises(AccountError):
        accounts.confirm_2fa(account.id, "000000" if totp.at(clock.now) != "000000" else "111111")
    codes = accounts.confirm_2fa(account.id, totp.at(clock.now))
    assert len(codes) == 10 and len(set(codes)) == 10 and accounts.get(account.id).has_2fa
    # the code that confirmed cannot sign in again; the next one can, once
    assert accounts.second_factor(account.id, totp.at(clock.now), client="a") is None
    clock.now += dt.timedelta(seconds=30)
    assert accounts.second_factor(account.id, totp.at(clock.now), client="a") is not None
    assert accounts.second_factor(account.id, totp.at(clock.now), client="a") is None
    # a recovery code works once, with or without its dash, in any case
    assert accounts.second_factor(account.id, codes[0].upper().replace("-", ""), client="a") is not None
    assert accounts.second_factor(account.id, codes[0], client="a") is None
    assert accounts.recovery_codes_left(account.id) == 9
    fresh = accounts.new_recovery_codes(account.id)
    assert accounts.second_factor(account.id, codes[1], client="a") is None  # the old set is void
    assert accounts.second_factor(account.id, fresh[0], client="a") is not None
    with pytest.raises(AccountError):
        accounts.disable_2fa(account.id, PASSWORD, required=True)
    accounts.disable_2fa(account.id, PASSWORD, required=False)
    assert not accounts.get(account.id).has_2fa


def test_code_failures_are_throttled_like_passwords(accounts, clock):
    import pyotp

    account = accounts.create(username="lab12", password=PASSWORD, role="admin")
    totp = pyotp.TOTP(accounts.begin_2fa(account.id))
    accounts.confirm_2fa(account.id, totp.at(clock.now))
    for _ in range(5):  # five free, then the pair waits
        assert accounts.second_factor(account.id, "abcdefghij", client="x") is None
    following = totp.at(clock.now + dt.timedelta(seconds=30))  # the next step's code (one step ahead is accepted)
    assert accounts.second_factor(account.id, following, client="x") is None  # waiting: even the right code
    assert accounts.second_factor(account.id, following, client="y") is not None  # the owner elsewhere


def test_owner_reset_only_to_a_verified_address_and_never_locks_the_owner_out(accounts, clock):
    account = accounts.create(username="lab13", password=PASSWORD, role="admin")
    assert accounts.request_reset("lab13") is None  # no address
    changed, token = accounts.set_email(account.id, "Lab13@LAB.example.CN")
    assert changed.email == "Lab13@lab.example.cn" and changed.email_verified_at is None
    assert accounts.request_reset("lab13") is None  # not verified yet
    assert accounts.verify_email(token).email_verified_at is not None
    assert accounts.verify_email(token) is None  # single use
    found = accounts.request_reset("Lab13@lab.example.cn")
    assert found is not None and found[0].id == account.id
    assert accounts.authenticate("lab13", PASSWORD).account is not None  # the password still works
    assert accounts.request_reset("nobody") is None and accounts.request_reset("x" * 300) is None
    _, second = accounts.request_reset("lab13")
    assert accounts.reset_account(found[1]) is None and accounts.reset_account(second) is not None  # newest only
    clock.now += dt.timedelta(hours=1, seconds=1)
    assert accounts.reset_account(second) is None  # an owner's link lives an hour
    for _ in range(3):
        assert accounts.request_reset("lab13") is not None
    assert accounts.request_reset("lab13") is None  # five a day
    _, last = accounts.set_email(account.id, "other@lab.example.cn")
    assert accounts.get(account.id).email_verified_at is None  # a new address is unverified until its link


def test_sessions_listed_and_ended_everywhere(accounts, clock):
    account = accounts.create(username="lab14", password=PASSWORD, role="admin")
    first = accounts.start_session(account.id, user_agent="Firefox")
    clock.now += dt.timedelta(minutes=5)
    second = accounts.start_session(account.id, user_agent="Chromium")
    listed = accounts.live_sessions(account.id, current=second)
    assert [(s.user_agent, s.current) for s in listed] == [("Chromium", True), ("Firefox", False)]
    accounts.end_all_sessions(account.id)
    assert accounts.session_account(first) is None and accounts.session_account(second) is None
    assert accounts.live_sessions(account.id) == []
