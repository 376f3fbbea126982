"""Tamper evidence: the HMAC chain over complaint events, with its head kept outside the database."""
import threading

import pytest
from sqlalchemy import delete, select, text, update

from registry.complaints.audit import AuditChain, FileChainHead, RedisChainHead, derive_key
from registry.infra.db import make_session_factory
from registry.complaints.models import ComplaintEvent
from tests.regulator_builders import make_complaint


@pytest.fixture(params=["file", "redis"])
def chain(request, tmp_path):
    if request.param == "file":
        head = FileChainHead(tmp_path / "audit")
    else:
        head = RedisChainHead(request.getfixturevalue("redis_client"))
    return AuditChain(key=derive_key(secret_key="test-secret"), head=head)


@pytest.fixture
def sessions(engine, chain):
    factory = make_session_factory(engine)
    chain.install(factory)
    return factory


def events(sessions):
    with sessions() as s:
        return s.scalars(select(ComplaintEvent).order_by(ComplaintEvent.seq)).all()


def verify(sessions, chain):
    with sessions() as s:
        return chain.verify(s)


def fill(sessions, complaints=3):
    with sessions() as s:
        for _ in range(complaints):
            make_complaint(s)


def test_events_are_sealed_in_one_chain_and_verify(sessions, chain):
    fill(sessions)
    evs = events(sessions)
    assert [e.seq for e in evs] == list(range(1, 7))
    assert all(len(e.mac) == 64 for e in evs)
    assert chain.head.read() == (6, evs[-1].mac)
    result = verify(sessions, chain)
    assert result.ok and result.checked == 6 and result.last_seq == 6


def test_an_edited_event_is_named(sessions, chain):
    fill(sessions)
    victim = events(sessions)[3]
    with sessions() as s:
        s.execute(update(ComplaintEvent).where(ComplaintEvent.id == victim.id).values(note="edited"))
        s.commit()
    result = verify(sessions, chain)
    assert not result.ok
    assert result.first.event_id == victim.id and result.first.kind == "altered"
    assert f"event {victim.id}" in result.first.message


@pytest.mark.parametrize("field, value", [("actor", "someone else"), ("kind", "concluded"), ("public", False)])
def test_any_sealed_field_counts(sessions, chain, field, value):
    fill(sessions, 1)
    victim = events(sessions)[0]
    with sessions() as s:
        s.execute(update(ComplaintEvent).where(ComplaintEvent.id == victim.id).values({field: value}))
        s.commit()
    assert verify(sessions, chain).first.event_id == victim.id


def test_moving_an_event_to_another_complaint_is_detected(sessions, chain):
    fill(sessions, 2)
    evs = events(sessions)
    with sessions() as s:
        s.execute(update(ComplaintEvent).where(ComplaintEvent.id == evs[1].id).values(complaint_id=evs[2].complaint_id))
        s.commit()
    assert verify(sessions, chain).first.event_id == evs[1].id


def test_a_deleted_event_is_named_by_the_gap(sessions, chain):
    fill(sessions)
    evs = events(sessions)
    with sessions() as s:
        s.execute(delete(ComplaintEvent).where(ComplaintEvent.id == evs[2].id))
        s.commit()
    result = verify(sessions, chain)
    assert result.first.kind == "missing" and result.first.event_id == evs[3].id
    assert "seq 3" in result.first.message


def test_deleting_and_renumbering_does_not_help(sessions, chain):
    fill(sessions)
    evs = events(sessions)
    with sessions() as s:
        s.execute(delete(ComplaintEvent).where(ComplaintEvent.id == evs[2].id))
        for e in evs[3:]:
            s.execute(update(ComplaintEvent).where(ComplaintEvent.id == e.id).values(seq=e.seq - 1))
        s.commit()
    result = verify(sessions, chain)
    assert result.first.kind == "altered" and result.first.event_id == evs[3].id


def test_truncation_is_detected_by_the_head(sessions, chain):
    fill(sessions)
    evs = events(sessions)
    with sessions() as s:
        s.execute(delete(ComplaintEvent).where(ComplaintEvent.id.in_([evs[-1].id, evs[-2].id])))
        s.commit()
    result = verify(sessions, chain)
    assert result.first.kind == "truncated"
    assert result.first.event_id == evs[-3].id and f"after event {evs[-3].id}" in result.first.message


def test_truncating_everything_is_detected(sessions, chain):
    fill(sessions, 1)
    with sessions() as s:
        s.execute(delete(ComplaintEvent))
        s.commit()
    result = verify(sessions, chain)
    assert result.first.kind == "truncated" and "from the start" in result.first.message


def test_an_event_written_around_the_chain_is_reported(sessions, chain, engine):
    fill(sessions, 1)
    cid = events(sessions)[0].complaint_id
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO complaint_events (complaint_id, at, kind, actor, public) "
                          "VALUES (:c, CURRENT_TIMESTAMP, 'note', 'dba', :p)"), {"c": cid, "p": False})
    result = verify(sessions, chain)
    assert [p.kind for p in result.problems] == ["unsealed"]


def test_a_missing_head_is_a_problem_and_a_wrong_key_fails(sessions, chain, tmp_path):
    fill(sessions, 1)
    other = AuditChain(key=derive_key(secret_key="other"), head=chain.head)
    assert verify(sessions, other).first.kind == "altered"
    headless = AuditChain(key=derive_key(secret_key="test-secret"), head=FileChainHead(tmp_path / "nowhere"))
    assert verify(sessions, headless).first.kind == "head_missing"
    assert derive_key(secret_key="x", audit_key="k") == b"k"


def test_the_head_never_moves_back(chain):
    chain.head.advance(5, "a" * 64)
    chain.head.advance(3, "b" * 64)
    assert chain.head.read() == (5, "a" * 64)


def test_a_rolled_back_flush_does_not_move_the_head(sessions, chain):
    fill(sessions, 1)
    before = chain.head.read()
    with sessions() as s:
        cid = s.scalar(select(ComplaintEvent.complaint_id))
        s.add(ComplaintEvent(complaint_id=cid, kind="note", actor="x", public=False))
        s.flush()
        s.rollback()
    assert chain.head.read() == before and verify(sessions, chain).ok


def test_concurrent_writers_keep_one_chain(sessions, chain):
    fill(sessions, 1)
    cid = events(sessions)[0].complaint_id
    errors = []

    def write(i):
        try:
            for j in range(5):
                with sessions() as s:
                    s.add(ComplaintEvent(complaint_id=cid, kind="note", actor=f"w{i}", public=False, note=str(j)))
                    s.commit()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = verify(sessions, chain)
    assert result.ok and result.checked == 22


def test_intact_for_one_complaint(sessions, chain):
    fill(sessions, 2)
    evs = events(sessions)
    with sessions() as s:
        assert chain.intact_for(s, evs[2].complaint_id)
        s.execute(update(ComplaintEvent).where(ComplaintEvent.id == evs[3].id).values(note="x"))
        s.commit()
        assert not chain.intact_for(s, evs[2].complaint_id) and chain.intact_for(s, evs[0].complaint_id)
