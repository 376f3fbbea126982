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


# --- the complaint row is sealed too; each complaint's trail is linked (issue 13, item 9) ------
def concluded(sessions, finding="forged"):
    """A complaint accepted and concluded through casework (its row and finding change with events)."""
    from registry.complaints.casework import CaseworkService
    from tests.regulator_builders import officer

    with sessions() as s:
        row = make_complaint(s)
        who = officer(s, "11")
    work = CaseworkService(sessions=sessions)
    work.accept(who, row.id)
    work.conclude(who, row.id, finding, "机构确认")
    return row.id


def test_a_finding_changed_around_the_chain_is_named(sessions, chain):
    from registry.complaints.models import ComplaintFinding

    fill(sessions, 1)
    cid = concluded(sessions)
    fill(sessions, 1)
    assert verify(sessions, chain).ok
    with sessions() as s:
        s.execute(update(ComplaintFinding).where(ComplaintFinding.complaint_id == cid).values(finding="unfounded"))
        s.commit()
    result = verify(sessions, chain)
    assert [p.kind for p in result.problems] == ["row_altered"]
    assert result.first.complaint_id == cid and f"complaint {cid}" in result.first.message
    with sessions() as s:
        assert not chain.intact_for(s, cid)


@pytest.mark.parametrize("values", [{"description": "别的内容"}, {"complainant_contact": "13900000000"},
                                    {"complainant_name": "李四"}, {"status": "rejected"}, {"authority_id": 1}])
def test_a_complaint_row_changed_around_the_chain_is_named(sessions, chain, values):
    from registry.complaints.models import Complaint

    cid = concluded(sessions)
    with sessions() as s:
        s.execute(update(Complaint).where(Complaint.id == cid).values(values))
        s.commit()
        assert not chain.intact_for(s, cid)
    assert verify(sessions, chain).first.kind == "row_altered"


@pytest.mark.parametrize("which", ["middle", "last"])
def test_a_deleted_event_shows_on_its_own_complaints_page(sessions, chain, which):
    fill(sessions, 1)
    cid = concluded(sessions)  # submitted, routed, accepted, concluded
    fill(sessions, 1)          # a neighbour after it
    with sessions() as s:
        own = s.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == cid)
                        .order_by(ComplaintEvent.seq)).all()
        victim = own[1] if which == "middle" else own[-1]
        s.execute(delete(ComplaintEvent).where(ComplaintEvent.id == victim.id))
        s.commit()
        assert not chain.intact_for(s, cid)
    assert not verify(sessions, chain).ok


def test_each_event_knows_its_place_in_its_complaints_trail(sessions, chain):
    fill(sessions, 2)
    cid = concluded(sessions)
    with sessions() as s:
        own = s.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == cid)
                        .order_by(ComplaintEvent.seq)).all()
        assert [e.cseq for e in own] == [1, 2, 3, 4] and all(e.chain_version == 2 for e in own)
        assert all(e.key_id == chain.key_id and len(e.state) == 64 for e in own)
        # renumbering the trail to hide a deleted event breaks the seal
        s.execute(update(ComplaintEvent).where(ComplaintEvent.id == own[2].id).values(cseq=9))
        s.commit()
        assert not chain.intact_for(s, cid)
    assert verify(sessions, chain).first.event_id == own[2].id


def test_personal_data_redaction_is_a_sealed_event_and_the_chain_still_verifies(sessions, chain):
    from registry.complaints.models import Complaint
    from registry.complaints.service import ComplaintService
    from registry.institutions.directory import InstitutionDirectory

    cid = concluded(sessions)
    fill(sessions, 1)
    with sessions() as s:
        salt = s.get(Complaint, cid).personal_salt
        sealed = s.scalars(select(ComplaintEvent.state).where(ComplaintEvent.complaint_id == cid)).all()
    assert salt and len(salt) == 32
    service = ComplaintService(sessions=sessions, directory=InstitutionDirectory(), chain=chain)
    with pytest.raises(ValueError):
        service.redact_personal_data(cid, "admin", " ")
    assert service.redact_personal_data(cid, "admin", "保存期满")
    assert not service.redact_personal_data(cid, "admin", "保存期满")  # nothing left: nothing recorded
    with sessions() as s:
        row = s.get(Complaint, cid)
        assert (row.complainant_name, row.complainant_contact, row.personal_salt) == (None, None, None)
        last = s.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == cid)
                         .order_by(ComplaintEvent.seq.desc())).first()
        assert (last.kind, last.actor, last.note, last.public) == ("personal_data_redacted", "admin", "保存期满", False)
        assert chain.intact_for(s, cid)
        # the phone number is nowhere in the trail: earlier states hashed it with the erased salt
        assert all("13800138000" not in (st or "") for st in sealed)
    assert verify(sessions, chain).ok
    with sessions() as s:  # putting the data back around the chain shows
        s.execute(update(Complaint).where(Complaint.id == cid).values(complainant_contact="13800138000"))
        s.commit()
        assert not chain.intact_for(s, cid)


# --- keys: rotation and key ids (issue 13, item 11) --------------------------------------------
def test_rotating_keys_keeps_old_events_verifiable(sessions, chain):
    from registry.complaints.audit import keyring

    old = AuditChain(keys=keyring(secret_key="", audit_keys="k1:first-secret"), head=chain.head)
    new = AuditChain(keys=keyring(secret_key="", audit_keys="k2:second-secret,k1:first-secret"), head=chain.head)
    factory_old, factory_new = make_session_factory(sessions.kw["bind"]), make_session_factory(sessions.kw["bind"])
    old.install(factory_old)
    new.install(factory_new)
    fill(factory_old, 1)
    fill(factory_new, 1)
    kids = [e.key_id for e in events(sessions)]
    assert kids == ["k1", "k1", "k2", "k2"]
    assert verify(sessions, new).ok
    only_new = AuditChain(keys=keyring(secret_key="", audit_keys="k2:second-secret"), head=chain.head)
    result = verify(sessions, only_new)
    assert result.first.kind == "altered" and "'k1'" in result.first.message and "AUDIT_KEYS" in result.first.message


def test_a_secret_key_rotation_with_the_old_audit_key_kept(sessions, chain, tmp_path):
    """The issue's case: the key derived from SECRET_KEY changes; with AUDIT_KEY set it does not matter."""
    from registry.complaints.audit import chain_for

    before = chain_for(secret_key="s1", audit_key="audit-1", files_dir=tmp_path)
    after = chain_for(secret_key="s2", audit_key="audit-1", files_dir=tmp_path)
    assert before.key_id == after.key_id and before.configured
    factory = make_session_factory(sessions.kw["bind"])
    before.install(factory)
    fill(factory, 1)
    with sessions() as s:
        assert after.verify(s).ok
    assert not chain_for(secret_key="s2", files_dir=tmp_path).configured


def test_audit_keys_are_parsed_newest_first():
    from registry.complaints.audit import key_id_for, keyring, parse_audit_keys

    keys = parse_audit_keys("new:abc, old:def,bare-secret-without-id")
    assert [k.id for k in keys] == ["new", "old", key_id_for(b"bare-secret-without-id")]
    assert keys[0].secret == b"abc"
    for bad in ("a:x,,b:y", "a:x,a:y"):
        with pytest.raises(ValueError):
            parse_audit_keys(bad)
    ring = keyring(secret_key="s", audit_key="single")
    assert ring[0].secret == b"single" and ring[-1].secret == derive_key(secret_key="s")
    assert keyring(secret_key="s", audit_keys="x:1,y:2")[0].id == "x"


def test_version_1_events_keep_verifying_after_the_migration(tmp_path):
    """Events sealed before migration 0008 (no cseq/state/key id) verify as before, and new ones
    chain on to them."""
    import datetime as dt

    import sqlalchemy as sa

    from registry.complaints.audit import compute_mac, keyring
    from registry.infra.base import UTCDateTime
    from registry.infra.db import make_engine
    from registry.infra.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'v1.db'}")
    upgrade(engine, "0007")
    key = derive_key(secret_key="test-secret")
    at = dt.datetime(2026, 1, 5, 8, tzinfo=dt.timezone.utc)
    complaints = sa.table("complaints", *(sa.column(c) for c in (
        "id", "tracking_code", "number", "authority_id", "category", "description", "complainant_name", "status")),
        sa.column("created_at", UTCDateTime), sa.column("updated_at", UTCDateTime))
    evs = sa.table("complaint_events", *(sa.column(c) for c in ("complaint_id", "kind", "actor", "public", "seq", "mac")),
                   sa.column("at", UTCDateTime))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO authorities (id, code, name, name_en, kind) "
                          "VALUES (1, '11', '北京市市场监督管理局', 'Beijing', 'provincial')"))
        conn.execute(sa.insert(complaints).values(
            id=1, tracking_code="AAAAAAAAAAAAAAAA", number="WT-1", authority_id=1, category="not_found",
            description="x", complainant_name="张三", status="received", created_at=at, updated_at=at))
        prev = ""
        for seq, kind in ((1, "submitted"), (2, "routed")):
            mac = compute_mac(key, seq=seq, complaint_id=1, at=at, kind=kind, actor="public", public=True,
                              note=None, prev_mac=prev)
            conn.execute(sa.insert(evs).values(complaint_id=1, at=at, kind=kind, actor="public", public=True,
                                               seq=seq, mac=mac))
            prev = mac
        conn.execute(text("INSERT INTO registry_state (key, value) VALUES ('audit_seq', 2)"))
    upgrade(engine)
    head = FileChainHead(tmp_path / "audit")
    head.advance(2, prev)
    chain = AuditChain(keys=keyring(secret_key="test-secret", audit_key="new-key"), head=head)
    factory = make_session_factory(engine)
    chain.install(factory)
    with factory() as s:
        assert chain.verify(s).ok and chain.intact_for(s, 1)
        s.add(ComplaintEvent(complaint_id=1, kind="note", actor="x", public=False, note="after the migration"))
        s.commit()
    with factory() as s:
        evs = s.scalars(select(ComplaintEvent).order_by(ComplaintEvent.seq)).all()
        assert [(e.cseq, e.chain_version) for e in evs] == [(1, None), (2, None), (3, 2)]
        assert s.scalar(text("SELECT personal_salt FROM complaints WHERE id = 1"))
        result = chain.verify(s)
        assert result.ok, result.problems
        assert chain.intact_for(s, 1)
    engine.dispose()
