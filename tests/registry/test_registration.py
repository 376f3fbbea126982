"""Registration through the real pipeline: counts told apart in SQL, all-or-nothing, bits first."""
import pytest
from sqlalchemy import func, select

from registry.registration import service as registration_module
from registry.registration.models import Batch, ReportNumber
from registry.numbers.quarters import Quarter
from registry.registration.service import RegistrationRefused
from tests.builders import make_institution, register


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 500, so a few thousand numbers take the big batch's path (bits gathered per shard
    and merged at the end, rows loaded by the DB thread)."""
    from registry.bloom import index as index_module

    monkeypatch.setattr(registration_module, "CHUNK", 500)
    monkeypatch.setattr(index_module, "MANY", 100)


def test_counts_across_chunks(reg, small_chunks):
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, [f"OLD-{i}" for i in range(300)])
    numbers = [f"NEW-{i}" for i in range(3000)] + [f"NEW-{i}" for i in range(0, 3000, 10)] + [f"OLD-{i}" for i in range(300)]
    receipt = reg.registration.register(institution_id=lab.id, quarter=Quarter(2026, 3), numbers=iter(numbers),
                                        sha256="f" * 64, file_name="big.csv")
    assert receipt.accepted == 3000
    assert receipt.in_file_duplicates == 300
    assert receipt.already_registered == 300
    reg.refresh()
    assert reg.bloom.status()["mode"] == "bloom"
    assert all(reg.bloom.lookup(f"NEW-{i}") for i in range(3000))
    assert reg.verifier.verify("NEW-2999").status == "found"


def test_failure_mid_stream_changes_nothing(reg, small_chunks):
    with reg.sessions() as s:
        lab = make_institution(s)

    def numbers():
        for i in range(2600):
            yield f"HALF-{i}"
        raise ValueError("the file turned out to be unreadable")

    with pytest.raises(ValueError):
        reg.registration.register(institution_id=lab.id, quarter=Quarter(2026, 3), numbers=numbers(), sha256="e" * 64)
    with reg.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ReportNumber)) == 0
        assert s.scalar(select(func.count()).select_from(Batch)) == 0


def test_quarter_rules(reg):
    with reg.sessions() as s:
        lab = make_institution(s)
    with pytest.raises(RegistrationRefused) as info:
        reg.registration.register(institution_id=lab.id, quarter=Quarter(2099, 1), numbers=["X"], sha256="d" * 64)
    assert info.value.code == "quarter_not_started"
    late = reg.registration.register(institution_id=lab.id, quarter=Quarter(2020, 4), numbers=["X"], sha256="d" * 64)
    assert late.late is True
    zero = reg.registration.declare_zero(institution_id=lab.id, quarter=Quarter.containing(reg.clock().date()))
    assert zero.accepted == 0 and zero.late is False
    assert reg.registration.declare_zero(institution_id=lab.id, quarter=Quarter.containing(reg.clock().date())).repeated is True


def test_zero_declaration_keeps_the_index_trusted(reg):
    with reg.sessions() as s:
        lab = make_institution(s)
    reg.registration.declare_zero(institution_id=lab.id, quarter=Quarter.containing(reg.clock().date()))
    reg.refresh(auto_rebuild=False)
    assert reg.bloom.status()["mode"] == "bloom", reg.bloom.status()


def test_counts_when_registered_numbers_repeat_across_chunks(reg, small_chunks):
    """A number registered before and repeated in the file counts once as registered, then as a
    duplicate; another institution's identical numbers are no clash at all."""
    with reg.sessions() as s:
        lab, other = make_institution(s), make_institution(s, name="另一家检测机构")
    register(reg, lab, [f"R-{i}" for i in range(200)])
    register(reg, other, [f"S-{i}" for i in range(200)])
    numbers = ([f"R-{i}" for i in range(200)] + [f"N-{i}" for i in range(1200)] + [f"R-{i}" for i in range(100)]
               + [f"S-{i}" for i in range(200)] + [f"N-{i}" for i in range(0, 1200, 4)] + [f"R-{i}" for i in range(50)])
    receipt = reg.registration.register(institution_id=lab.id, quarter=Quarter(2026, 3), numbers=iter(numbers),
                                        sha256="e" * 64, file_name="repeats.csv")
    assert receipt.accepted == 1200 + 200  # the N- numbers and the other institution's S- numbers
    assert receipt.already_registered == 200
    assert receipt.in_file_duplicates == 100 + 300 + 50
    with reg.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ReportNumber).where(ReportNumber.institution_id == lab.id)) == 1600
