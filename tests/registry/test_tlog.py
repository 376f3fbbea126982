"""The transparency log's core: RFC 9162 hashing and proofs against an independent naive
implementation and known roots, C2SP signed notes with Go's sumdb/note keys, and entries
appended by registrations, withdrawals and restores and integrated into stored tiles."""
import base64
import hashlib
import json

import pytest
from sqlalchemy import func, select

from registry.numbers.quarters import iso_local
from registry.registration.models import ReportNumber
from registry.tlog.entries import commitment, entry_text, fast_entry_text
from registry.tlog.merkle import CompactRange, Tree, leaf_hash, node_hash
from registry.tlog.models import LogEntry, PendingEntry, StoredCheckpoint, Tile
from registry.tlog.note import (Checkpoint, KeyFormatError, NoteError, Signer, open_checkpoint, parse_signer,
                                parse_verifier, sign_checkpoint)
from registry.tlog.service import LogBroken
from registry.tlog.spans import unpack
from registry.tlog.tiles import TileReader
from tests.builders import make_institution, register


# --- an independent, naive RFC 9162 §2.1 (the recursive definitions, memoised) --------------
class Naive:
    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self._memo: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int, hi: int) -> bytes:
        if (lo, hi) not in self._memo:
            n = hi - lo
            if n == 0:
                value = hashlib.sha256(b"").digest()
            elif n == 1:
                value = hashlib.sha256(b"\x00" + self.leaves[lo]).digest()
            else:
                k = _split(n)
                value = hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()
            self._memo[(lo, hi)] = value
        return self._memo[(lo, hi)]

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return self.path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self.path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self.mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return self.subproof(m, lo, lo + k, complete) + [self.mth(lo + k, hi)]
        return self.subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(leaves: list[bytes]) -> bytes:
    return Naive(leaves).mth(0, len(leaves))


class ListSource:
    """Subtree hashes straight from a list of leaf data (the proofs' HashSource)."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.naive = Naive(leaves)

    def subtree(self, start: int, size: int) -> bytes:
        return self.naive.mth(start, start + size)


# RFC 6962 test leaves and the roots of their first 1..8 (certificate-transparency's merkle tests)
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]


def test_known_roots():
    tree = Tree(ListSource(CT_LEAVES))
    for size, root in enumerate(CT_ROOTS, start=1):
        assert naive_mth(CT_LEAVES[:size]).hex() == root
        assert tree.root(size).hex() == root
    assert tree.root(0) == hashlib.sha256(b"").digest()


def test_proofs_match_the_naive_definitions():
    leaves = [f"leaf {i}".encode() for i in range(40)]
    tree = Tree(ListSource(leaves))
    naive = Naive(leaves)
    for size in range(1, 41):
        for index in range(size):
            assert tree.inclusion(index, size) == naive.path(index, 0, size)
        for old in range(1, size + 1):
            assert tree.consistency(old, size) == naive.subproof(old, 0, size, True)


def test_compact_range_gives_every_root():
    leaves = [f"x{i}".encode() for i in range(300)]
    edge = CompactRange()
    for i, leaf in enumerate(leaves):
        edge.append(leaf_hash(leaf))
        if i % 37 == 0 or i == 299:
            assert edge.root() == naive_mth(leaves[:i + 1])


# --- keys and notes ---------------------------------------------------------------------------
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


def test_go_sumdb_note_key_formats():
    signer = parse_signer(GO_SKEY)
    assert signer.text() == GO_SKEY
    assert signer.verifier.text() == GO_VKEY
    assert parse_verifier(GO_VKEY) == signer.verifier
    for bad in ("", "PRIVATE+KEY+a+00000000+AAAA", GO_SKEY.replace("c74f20a3", "c74f20a4"),
                GO_VKEY.replace("Peter", "Paul"), "a b+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"):
        with pytest.raises(KeyFormatError):
            (parse_signer if bad.startswith("PRIVATE") else parse_verifier)(bad)


def test_signed_checkpoint_round_trip_and_forgeries():
    signer = Signer.generate("registry.localhost/tlog")
    root = hashlib.sha256(b"root").digest()
    note = sign_checkpoint(Checkpoint("registry.localhost/tlog", 12, root), signer)
    lines = note.split("\n")
    assert lines[:4] == ["registry.localhost/tlog", "12", base64.b64encode(root).decode(), ""]
    assert lines[4].startswith("\u2014 registry.localhost/tlog ") and lines[5] == ""
    blob = base64.b64decode(lines[4].split(" ")[2])
    assert blob[:4] == signer.verifier.hash and len(blob) == 68
    assert open_checkpoint(note, signer.verifier) == Checkpoint("registry.localhost/tlog", 12, root)
    with pytest.raises(NoteError):
        open_checkpoint(note.replace("\n12\n", "\n13\n"), signer.verifier)
    with pytest.raises(NoteError):
        open_checkpoint(note, Signer.generate("registry.localhost/tlog").verifier)


def test_entry_text_and_commitment():
    import datetime as dt

    at = dt.datetime(2026, 11, 30, 16, 5, 9, 123456, tzinfo=dt.timezone.utc)
    digest = commitment("91110000000000001X", "WT-1", b"\x01" * 16)
    assert digest == hashlib.sha256(b"91110000000000001X\nWT-1\n\n" + b"\x01" * 16).digest()
    assert commitment("U", "N", b"s", "ab" * 32) == hashlib.sha256(b"U\nN\n" + b"ab" * 32 + b"\ns").digest()
    text = entry_text(action="register", at=at, batch=7, commitment=digest, quarter="2026Q4")
    assert text == json.dumps({"action": "register", "at": "2026-12-01T00:05:09+08:00", "batch": 7,
                               "commitment": digest.hex(), "quarter": "2026Q4"},
                              sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert fast_entry_text(action="register", at=at, batch=7, commitment=digest, quarter="2026Q4") == text


# --- the log in the database --------------------------------------------------------------------
def stored_leaves(reg) -> list[bytes]:
    """The entry texts of the log, recomputed from the private side of each entry."""
    with reg.sessions() as s:
        from registry.institutions.models import Institution

        usccs = dict(s.execute(select(Institution.id, Institution.uscc)).all())
        rows = s.execute(select(LogEntry.action, LogEntry.at, LogEntry.batch_id, LogEntry.quarter, LogEntry.salt,
                                LogEntry.number, LogEntry.institution_id).order_by(LogEntry.leaf_index)).all()
    return [entry_text(action=r.action, at=r.at, batch=r.batch_id, quarter=r.quarter,
                       commitment=commitment(usccs[r.institution_id], r.number, r.salt)).encode() for r in rows]


def pending_entries(reg) -> list[tuple]:
    """The pending entries in the order the integrator takes them: (action, number, salt,
    sha256, batch, at), each span expanded; and the pending rows."""
    with reg.sessions() as s:
        rows = s.scalars(select(PendingEntry).order_by(PendingEntry.id)).all()
    out = []
    for row in rows:
        if row.numbers is None:
            assert row.count == 1 and row.salts is None and row.sha256s is None
            out.append((row.action, row.number, row.salt, row.sha256, row.batch_id, row.at))
        else:
            assert row.action == "register" and row.number is None and row.salt is None
            out += [(row.action, number, salt, sha256, row.batch_id, row.at)
                    for number, salt, sha256 in unpack(row.count, row.numbers, row.salts, row.sha256s)]
    return out, rows


def test_registration_withdrawal_restore_are_logged(reg):
    with reg.sessions() as s:
        lab = make_institution(s)
    receipt = register(reg, lab, ["WT-1", "WT-2", "WT-2"])
    reg.registration.withdraw(institution_id=lab.id, items=[(1, "WT-1", "typo")])
    reg.registration.restore(institution_id=lab.id, items=[(1, "WT-1", "not a typo")])
    pending, rows = pending_entries(reg)
    with reg.sessions() as s:
        salts = dict(s.execute(select(ReportNumber.number, ReportNumber.salt)).all())
    # the registration's two entries wait as one span; the withdrawal and the restore after it
    assert [(r.action, r.count) for r in rows] == [("register", 2), ("withdraw", 1), ("restore", 1)]
    assert sorted((p[0], p[1]) for p in pending[:2]) == [("register", "WT-1"), ("register", "WT-2")]
    assert [(p[0], p[1]) for p in pending[2:]] == [("withdraw", "WT-1"), ("restore", "WT-1")]
    assert all(len(salt) == 16 for salt in salts.values()) and salts["WT-1"] != salts["WT-2"]
    assert [p[2] for p in pending if p[1] == "WT-1"] == [salts["WT-1"]] * 3
    assert reg.tlog.pending_count() == 4

    done = reg.tlog.integrate()
    assert done.added == 4 and done.size == 4 and done.signed == [4]
    assert reg.tlog.pending_count() == 0
    leaves = stored_leaves(reg)
    texts = [json.loads(leaf) for leaf in leaves]
    assert {t["action"] for t in texts} == {"register", "withdraw", "restore"}
    assert all(t["batch"] == receipt.batch_id and t["quarter"] == "2026Q3" for t in texts)
    assert texts[0]["at"] == iso_local(receipt.created_at)
    checkpoint = open_checkpoint(reg.tlog.checkpoint().note, reg.tlog.signer.verifier)
    assert checkpoint.size == 4 and checkpoint.root == naive_mth(leaves)
    assert reg.tlog.keys() == [reg.tlog.signer.verifier.text()]
    # nothing new: no new checkpoint
    assert reg.tlog.integrate().signed == []


def test_tiles_across_levels_and_chunks(reg):
    """70,000 entries integrated in uneven chunks: tiles of level 0, 1 and 2, partial right
    edges carried over, every stored root and proof equal to the naive definition."""
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, [f"T-{i}" for i in range(66_000)])
    assert reg.tlog.integrate(chunk=3_000).size == 66_000
    register(reg, lab, [f"U-{i}" for i in range(4_000)])
    assert reg.tlog.integrate(chunk=1_000).size == 70_000
    leaves = stored_leaves(reg)
    with reg.sessions() as s:
        checkpoints = s.scalars(select(StoredCheckpoint).order_by(StoredCheckpoint.size)).all()
        levels = dict(s.execute(select(Tile.level, func.count()).group_by(Tile.level)).all())
        tree = Tree(TileReader(s))
        naive = Naive(leaves)
        assert levels == {0: 274, 1: 2, 2: 1}
        for cp in checkpoints[::10] + checkpoints[-3:]:
            assert cp.root == naive.mth(0, cp.size)
        for index in (0, 255, 256, 65_535, 65_536, 69_999):
            assert tree.inclusion(index, 70_000) == naive.path(index, 0, 70_000)
        for old in (1, 256, 65_536, 66_000, 69_999):
            assert tree.consistency(old, 70_000) == naive.subproof(old, 0, 70_000, True)


def test_integration_refuses_a_tree_that_does_not_extend_the_last_checkpoint(reg):
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, ["A-1", "A-2", "A-3"])
    reg.tlog.integrate()
    with reg.sessions() as s:  # someone rewrites a stored leaf hash
        tile = s.get(Tile, (0, 0))
        tile.hashes = bytes(32) + tile.hashes[32:]
        s.commit()
    register(reg, lab, ["A-4"])
    with pytest.raises(LogBroken):
        reg.tlog.integrate()
    assert reg.tlog.checkpoint().size == 3 and reg.tlog.pending_count() == 1


# --- pending spans: a registration chunk waits as one row ---------------------------------------
def _digest(i: int) -> str:
    return hashlib.sha256(f"document {i}".encode()).hexdigest()


def expected_entry(reg, number: str, action: str = "register", at=None) -> str:
    """The entry text of ``number``'s registration (or of a change of it at ``at``), from its
    ``report_numbers`` row: what the integrator must append, byte for byte."""
    from registry.institutions.models import Institution

    with reg.sessions() as s:
        row = s.execute(select(ReportNumber, Institution.uscc).join(
            Institution, Institution.id == ReportNumber.institution_id).where(ReportNumber.number == number)).one()
    rn, uscc = row
    return entry_text(action=action, at=at or rn.registered_at, batch=rn.batch_id, quarter=rn.quarter,
                      commitment=commitment(uscc, number, rn.salt, rn.sha256))


def logged_texts(reg) -> list[tuple[str, str]]:
    from registry.tlog.service import text_of

    with reg.sessions() as s:
        return [(row.number, text_of(row)) for row in s.scalars(select(LogEntry).order_by(LogEntry.leaf_index))]


def register_file(reg, lab, numbers, documents=None):
    from registry.numbers.quarters import Quarter

    digest = hashlib.sha256(("\n".join(numbers) + repr(documents)).encode()).hexdigest()
    receipt = reg.registration.register(institution_id=lab.id, quarter=Quarter.parse("2026Q3"), numbers=numbers,
                                        sha256=digest, documents=dict(documents) if documents else None)
    reg.refresh()
    return receipt


def test_a_chunk_waits_as_one_span_on_both_paths(reg):
    """Direct path: a span per chunk of 10,000, the file's order, the rows' own salts and
    fingerprints (NULL when the chunk has none). After a clash (the careful path): a span of
    exactly the numbers inserted, none when nothing was new. Integrated, the entries are those of
    the registrations, byte for byte, in the spans' order."""
    with reg.sessions() as s:
        lab = make_institution(s)
    numbers = [f"SP-{i:05d}" for i in range(25_000)]
    documents = {numbers[i]: _digest(i) for i in range(0, 10_000, 7)}
    first = register_file(reg, lab, numbers, documents)
    assert first.accepted == 25_000
    pending, rows = pending_entries(reg)
    assert [r.count for r in rows] == [10_000, 10_000, 5_000]
    assert rows[0].sha256s is not None and rows[1].sha256s is None and rows[2].sha256s is None
    assert [p[1] for p in pending] == numbers
    with reg.sessions() as s:
        stored = {r.number: (r.salt, r.sha256) for r in s.execute(
            select(ReportNumber.number, ReportNumber.salt, ReportNumber.sha256))}
    assert all((p[2], p[3]) == stored[p[1]] for p in pending)
    assert sum(p[3] is not None for p in pending) == len(documents)
    assert {(p[4], p[5]) for p in pending} == {(first.batch_id, first.created_at)}

    # a clash: this file is loaded the careful way; its span holds the three new numbers only
    second = register_file(reg, lab, ["SP-00001", "NEW-1", "NEW-2", "NEW-1", "SP-00002", "NEW-3"],
                           {"NEW-2": _digest(-2), "SP-00001": _digest(-1)})
    assert (second.accepted, second.already_registered, second.in_file_duplicates) == (3, 2, 1)
    pending, rows = pending_entries(reg)
    assert [r.count for r in rows] == [10_000, 10_000, 5_000, 3]
    assert sorted(p[1] for p in pending[25_000:]) == ["NEW-1", "NEW-2", "NEW-3"]
    assert {p[1]: p[3] for p in pending[25_000:]} == {"NEW-1": None, "NEW-2": _digest(-2), "NEW-3": None}
    with reg.sessions() as s:
        salts = dict(s.execute(select(ReportNumber.number, ReportNumber.salt)
                               .where(ReportNumber.batch_id == second.batch_id)).all())
    assert {p[1]: p[2] for p in pending[25_000:]} == salts
    # a careful chunk without fingerprints; then one where nothing is new: no span at all
    register_file(reg, lab, ["NEW-1", "NEW-4"])
    register_file(reg, lab, ["NEW-1", "NEW-4"], {"NEW-4": _digest(4)})
    pending, rows = pending_entries(reg)
    assert [r.count for r in rows][3:] == [3, 1] and rows[4].sha256s is None
    assert reg.tlog.pending_count() == 25_004

    order = [p[1] for p in pending]
    done = reg.tlog.integrate(chunk=4_000)  # at least one span a transaction, never half of one
    assert done.added == 25_004 and done.signed == [10_000, 20_000, 25_000, 25_004]
    texts = logged_texts(reg)
    assert [number for number, _ in texts] == order
    assert all(text == expected_entry(reg, number) for number, text in texts[::97] + texts[24_990:])
    assert reg.tlog.pending_count() == 0
    assert reg.tlog.verify([reg.tlog.signer.verifier]).ok


def test_spans_and_single_entry_rows_integrate_together_in_id_order(reg):
    """Rows pending from before spans (one per number) and spans, withdrawals between them, a
    withdrawal of a registration still pending: all appended in id order, spans expanded."""
    with reg.sessions() as s:
        lab = make_institution(s)
    old = register_file(reg, lab, ["OLD-1", "OLD-2", "OLD-3"])
    # the registration as it waited before 0020: a row per number
    with reg.sessions() as s:
        span = s.scalars(select(PendingEntry)).one()
        entries = unpack(span.count, span.numbers, span.salts, span.sha256s)
        s.delete(span)
        s.flush()
        for number, salt, sha256 in entries:
            s.add(PendingEntry(action="register", number=number, institution_id=lab.id, batch_id=old.batch_id,
                               quarter="2026Q3", at=span.at, salt=salt, sha256=sha256))
        s.commit()
    reg.registration.withdraw(institution_id=lab.id, items=[(1, "OLD-2", "作废")])
    register_file(reg, lab, ["NEW-1", "NEW-2"], {"NEW-2": _digest(2)})
    reg.registration.withdraw(institution_id=lab.id, items=[(1, "NEW-2", "作废")])  # still pending
    pending, rows = pending_entries(reg)
    assert [(r.action, r.count) for r in rows] == [("register", 1)] * 3 + [("withdraw", 1), ("register", 2),
                                                                          ("withdraw", 1)]
    assert reg.tlog.pending_count() == 7

    # the withdrawal of a pending registration: proof=1 lists the register entry, then it
    uscc = lab.uscc
    before = reg.tlog.evidence([("NEW-2", lab.id, uscc), ("OLD-1", lab.id, uscc)])["entries"]
    assert [(e["number"], json.loads(e["entry"])["action"], e["pending"]) for e in before] == [
        ("NEW-2", "register", True), ("NEW-2", "withdraw", True), ("OLD-1", "register", True)]
    assert before[0]["sha256"] == _digest(2) and before[0]["entry"] == expected_entry(reg, "NEW-2")
    assert reg.tlog.verify([reg.tlog.signer.verifier]).ok  # nothing pending is taken for unlogged

    done = reg.tlog.integrate(chunk=2)
    assert done.size == 7 and done.signed == [2, 4, 6, 7]
    texts = logged_texts(reg)
    assert [number for number, _ in texts] == ["OLD-1", "OLD-2", "OLD-3", "OLD-2", "NEW-1", "NEW-2", "NEW-2"]
    with reg.sessions() as s:
        withdrawn = dict(s.execute(select(ReportNumber.number, ReportNumber.withdrawn_at)
                                   .where(ReportNumber.withdrawn_at.is_not(None))).all())
    assert [text for _, text in texts] == [
        expected_entry(reg, "OLD-1"), expected_entry(reg, "OLD-2"), expected_entry(reg, "OLD-3"),
        expected_entry(reg, "OLD-2", "withdraw", withdrawn["OLD-2"]), expected_entry(reg, "NEW-1"),
        expected_entry(reg, "NEW-2"), expected_entry(reg, "NEW-2", "withdraw", withdrawn["NEW-2"])]
    after = reg.tlog.evidence([("NEW-2", lab.id, uscc), ("OLD-1", lab.id, uscc)])["entries"]
    assert [e["entry"] for e in after] == [e["entry"] for e in before]
    assert all("pending" not in e and len(e["inclusion"]) > 0 for e in after)
    assert reg.tlog.verify([reg.tlog.signer.verifier]).ok


def test_a_registration_sneaked_into_a_batch_whose_span_waits_is_reported_once_it_is_in(reg):
    """``tlog verify`` takes a registration whose batch still has a span waiting for pending (the
    span is written with the rows, in their transaction); once the batch is integrated, a row
    that none of its spans held is reported."""
    import datetime as dt

    from sqlalchemy import insert

    with reg.sessions() as s:
        lab = make_institution(s)
    receipt = register_file(reg, lab, ["IN-1", "IN-2"])
    with reg.sessions() as s:
        s.execute(insert(ReportNumber).values(number="SNEAKED-1", institution_id=lab.id, quarter="2026Q3",
                                              batch_id=receipt.batch_id, salt=b"\x00" * 16,
                                              registered_at=dt.datetime(2026, 8, 1, tzinfo=dt.timezone.utc)))
        s.commit()
    assert reg.tlog.verify([reg.tlog.signer.verifier]).ok
    assert reg.tlog.evidence([("SNEAKED-1", lab.id, lab.uscc)])["entries"][0]["pending"] is True
    reg.tlog.integrate()
    check = reg.tlog.verify([reg.tlog.signer.verifier])
    assert not check.ok and check.first.index == 2 and "SNEAKED-1" in check.first.message
    assert reg.tlog.evidence([("SNEAKED-1", lab.id, lab.uscc)])["entries"] == []


# --- settings: the key never in the database, generated for the embedded default --------------
def test_embedded_default_generates_a_private_key_file(tmp_path):
    import stat

    from registry.infra.settings import finish_settings, load_settings

    config = finish_settings(load_settings({"INSTANCE_DIR": str(tmp_path)}))
    key_files = list(tmp_path.glob("tlog_signing_key.*"))
    assert len(key_files) == 1 and stat.S_IMODE(key_files[0].stat().st_mode) == 0o600
    assert parse_signer(config["TLOG_SIGNING_KEY"]).name == "registry.localhost/tlog"
    again = finish_settings(load_settings({"INSTANCE_DIR": str(tmp_path)}))
    assert again["TLOG_SIGNING_KEY"] == config["TLOG_SIGNING_KEY"]
    # production (PostgreSQL) without the key: this process is no integrator, nothing generated
    other = tmp_path / "web"
    web = finish_settings(load_settings({"INSTANCE_DIR": str(other), "DATABASE_URL": "postgresql+psycopg://x/y"}))
    assert web["TLOG_SIGNING_KEY"] == "" and not list(other.glob("tlog_signing_key.*"))


@pytest.mark.parametrize("environ, problem", [
    ({"TLOG_ORIGIN": "has space"}, "TLOG_ORIGIN"),
    ({"TLOG_ORIGIN": "a+b"}, "TLOG_ORIGIN"),
    ({"TLOG_SIGNING_KEY": GO_SKEY}, "TLOG_ORIGIN is"),
    ({"TLOG_SIGNING_KEY": "PRIVATE+KEY+nonsense"}, "TLOG_SIGNING_KEY"),
])
def test_bad_log_settings_are_refused_at_start(tmp_path, environ, problem):
    from registry.infra.settings import finish_settings, load_settings

    with pytest.raises(ValueError, match=problem):
        finish_settings(load_settings({"INSTANCE_DIR": str(tmp_path), **environ}))


def test_integrate_command(app, runner, reg):
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, ["C-1", "C-2"])
    result = runner.invoke(args=["tlog", "integrate"])
    assert result.exit_code == 0, result.output
    assert "integrated 2 entries; tree size 2; signed checkpoint 2" in result.output
    reg.tlog.signer = None  # a web host: no key, no integration
    result = runner.invoke(args=["tlog", "integrate"])
    assert result.exit_code == 2 and "TLOG_SIGNING_KEY" in result.output


def test_the_key_holders_background_loop_integrates(reg):
    """The process holding the key (the embedded default's web process, or the one integrator)
    integrates in its periodic chores; a process without the key has no such chore."""
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, ["LOOP-1"])
    reg.upkeep.run_periodic()
    assert reg.tlog.pending_count() == 0 and reg.tlog.checkpoint().size == 1
