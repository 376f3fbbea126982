"""Tamper drills for the transparency log, on both stacks: a registration deleted, inserted,
back-dated or changed in ``report_numbers``, or an entry, a tree hash or a checkpoint changed
in the log's own storage — each is named by ``tlog verify`` at the first bad index (exit 1), as
an insider with database access would leave it. A checkpoint that does not extend the previous
one is refused by the integrator and by the standalone verifier."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, func, insert, select, update

from registry.registration.models import ReportNumber
from registry.tlog.models import LogEntry, StoredCheckpoint, Tile
from registry.tlog.note import Signer
from registry.tlog.service import LogBroken
from tests.builders import make_institution, register


@pytest.fixture
def logged(reg):
    """300 registrations (tiles past one), a withdrawal and a restore, integrated twice."""
    with reg.sessions() as s:
        lab = make_institution(s)
        other = make_institution(s)
        ids = lab.id, other.id
    register(reg, lab, [f"R-{i:03d}" for i in range(200)])
    reg.tlog.integrate()
    reg.registration.withdraw(institution_id=ids[0], items=[(1, "R-010", "作废")])
    reg.registration.withdraw(institution_id=ids[0], items=[(1, "R-011", "作废")])
    reg.registration.restore(institution_id=ids[0], items=[(1, "R-011", "误撤")])
    register(reg, lab, [f"S-{i:03d}" for i in range(100)])
    reg.tlog.integrate()
    return ids


def index_of(reg, number: str, action: str = "register") -> int:
    with reg.sessions() as s:
        return s.scalar(select(LogEntry.leaf_index).where(LogEntry.number == number, LogEntry.action == action))


def broken_at(runner) -> int:
    result = runner.invoke(args=["tlog", "verify"])
    assert result.exit_code == 1, result.output
    line = result.output.split("log BROKEN at index ", 1)[1]
    return int(line.split(":", 1)[0])


def tamper(reg, statement) -> None:
    with reg.sessions() as s:
        assert s.execute(statement).rowcount in (1, -1)  # -1: an INSERT on PostgreSQL through psycopg
        s.commit()


def test_intact(runner, logged):
    result = runner.invoke(args=["tlog", "verify"])
    assert result.exit_code == 0, result.output
    assert "log intact: 303 entries, 2 checkpoints, 0 pending" in result.output


def test_a_registration_deleted(runner, reg, logged):
    tamper(reg, delete(ReportNumber).where(ReportNumber.number == "R-150"))
    assert broken_at(runner) == index_of(reg, "R-150")


def test_a_registration_inserted(runner, reg, logged):
    lab, _ = logged
    tamper(reg, insert(ReportNumber).values(number="SNEAKED-1", institution_id=lab, quarter="2026Q3", batch_id=1,
                                             registered_at=dt.datetime(2026, 8, 1, tzinfo=dt.timezone.utc),
                                             salt=b"\x00" * 16))
    assert broken_at(runner) == 303  # where the log would have had to record it


def test_a_registration_back_dated(runner, reg, logged):
    tamper(reg, update(ReportNumber).where(ReportNumber.number == "S-050")
           .values(registered_at=dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)))
    assert broken_at(runner) == index_of(reg, "S-050")


def test_a_registration_moved_to_another_institution(runner, reg, logged):
    _, other = logged
    tamper(reg, update(ReportNumber).where(ReportNumber.number == "R-020").values(institution_id=other))
    assert broken_at(runner) == index_of(reg, "R-020")


def test_a_withdrawal_undone_in_the_table(runner, reg, logged):
    tamper(reg, update(ReportNumber).where(ReportNumber.number == "R-010").values(withdrawn_at=None))
    assert broken_at(runner) == index_of(reg, "R-010", "withdraw")


def test_a_quiet_withdrawal(runner, reg, logged):
    tamper(reg, update(ReportNumber).where(ReportNumber.number == "R-030")
           .values(withdrawn_at=dt.datetime(2026, 9, 1, tzinfo=dt.timezone.utc)))
    assert broken_at(runner) == index_of(reg, "R-030")


def test_an_entry_changed_in_the_log(runner, reg, logged):
    index = index_of(reg, "S-010")
    tamper(reg, update(LogEntry).where(LogEntry.leaf_index == index)
           .values(at=dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)))
    assert broken_at(runner) == index


def test_an_entry_deleted_from_the_log(runner, reg, logged):
    tamper(reg, delete(LogEntry).where(LogEntry.leaf_index == 77))
    assert broken_at(runner) == 77


def test_an_entry_inserted_into_the_log(runner, reg, logged):
    with reg.sessions() as s:
        row = s.get(LogEntry, 5)
        values = {c.key: getattr(row, c.key) for c in LogEntry.__table__.columns}
    tamper(reg, insert(LogEntry).values({**values, "leaf_index": 303}))
    assert broken_at(runner) == 303


def test_a_tree_hash_changed(runner, reg, logged):
    with reg.sessions() as s:
        tile = s.get(Tile, (0, 1))
        hashes = tile.hashes[:32 * 3] + bytes(32) + tile.hashes[32 * 4:]
    tamper(reg, update(Tile).where(Tile.level == 0, Tile.index == 1).values(hashes=hashes))
    assert broken_at(runner) == 256 + 3


def test_a_checkpoint_replaced(runner, reg, logged):
    forger = Signer.generate("registry.localhost/tlog")
    from registry.tlog.note import Checkpoint, sign_checkpoint

    with reg.sessions() as s:
        cp = s.scalar(select(StoredCheckpoint).order_by(StoredCheckpoint.size.desc()))
        note = sign_checkpoint(Checkpoint("registry.localhost/tlog", cp.size, cp.root), forger)
    tamper(reg, update(StoredCheckpoint).where(StoredCheckpoint.size == cp.size).values(note=note))
    result = runner.invoke(args=["tlog", "verify"])
    assert result.exit_code == 1 and f"checkpoint {cp.size} is not signed by a trusted key" in result.output


def test_a_checkpoint_not_extending_the_previous_is_refused(runner, reg, logged):
    """History rewritten under the tree (the stored hash of entries 0…255 replaced, as a forger
    re-hashing changed entries would): the integrator will not sign a tree that does not
    reproduce the previous checkpoint, and the CLI says so."""
    with reg.sessions() as s:
        tile = s.get(Tile, (1, 0))
        hashes = bytes(32) + tile.hashes[32:]
    tamper(reg, update(Tile).where(Tile.level == 1, Tile.index == 0).values(hashes=hashes))
    with reg.sessions() as s:
        lab = s.scalar(select(func.min(ReportNumber.institution_id)))
    register(reg, reg.directory.get(lab), ["AFTER-1"])
    with pytest.raises(LogBroken):
        reg.tlog.integrate()
    result = runner.invoke(args=["tlog", "integrate"])
    assert result.exit_code == 1 and "refusing to extend" in result.output
    with reg.sessions() as s:
        assert s.scalar(select(func.max(StoredCheckpoint.size))) == 303


def test_entries_removed_from_the_end_are_refused(runner, reg, logged):
    tamper(reg, delete(LogEntry).where(LogEntry.leaf_index == 302))
    with reg.sessions() as s:
        lab = s.scalar(select(func.min(ReportNumber.institution_id)))
    register(reg, reg.directory.get(lab), ["AFTER-2"])
    with pytest.raises(LogBroken):
        reg.tlog.integrate()
    assert broken_at(runner) == 302
