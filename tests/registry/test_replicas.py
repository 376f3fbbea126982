"""The replica bookkeeping without a server: WAL positions as numbers."""
from registry.verification.replicas import parse_lsn


def test_wal_positions_compare_as_numbers():
    assert parse_lsn("0/0") == 0
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")
    assert parse_lsn(None) is None
