"""Offline pre-check snapshots (registry/bloom/snapshot.py) on both stores, read back with the
shipped client (tools/snapshot_client.py): checkpoints, deltas that bring a copy exactly up to
date, a rebuild that makes clients download again, signatures that refuse tampering."""
from __future__ import annotations

import base64
import datetime as dt
import zlib

import pytest

from registry.bloom.snapshot import (SnapshotOutdated, SnapshotSigner, SnapshotUnavailable, bundle,
                                     encode_positions, load_signing_key, new_signing_key_pem, parse_since)
from registry.numbers.normalize import InvalidValue, normalize_number
from tests.builders import make_institution, register
from tools import snapshot_client as client


@pytest.fixture
def lab(reg):
    with reg.sessions() as session:
        inst = make_institution(session)
        session.expunge(inst)
    return inst


def opened(bundle, reg):
    """The bundle as a platform's client reads it (signature and checksums checked)."""
    key = client.load_public_key(reg.snapshots.signer.public_pem)
    return client.open_bundle(b"".join(bundle.parts), key)


def test_a_snapshot_answers_offline_and_deltas_bring_it_exactly_up_to_date(reg, lab):
    register(reg, lab, ["SNAP-0001", "snap—0002", "国环测〔2021〕第045号"])
    first = reg.snapshots.tick()
    assert first["seq"] == 0 and first["base"]
    assert reg.snapshots.tick() is None  # not due again within the hour
    bundle = reg.snapshots.snapshot()
    assert bundle.length == sum(len(p) for p in bundle.parts)
    manifest, blobs = opened(bundle, reg)
    local = client.Snapshot.from_bundle(manifest, blobs)
    generation = reg.bloom.status()["generation"]
    assert manifest["delta"] == f"{generation}.0" and manifest["layout"]["shards"] == 4
    assert manifest["newest_batch"]["id"] >= 1 and manifest["as_of"].endswith("Z")
    for number in ("SNAP-0001", "SNAP-0002", "snap-0002", "国环测(2021)第045号"):
        assert local.check(number) == "possible hit — confirm via the API", number
    absent = [f"ABSENT-{i:05d}" for i in range(2000)]
    assert sum(local.maybe_registered(n) for n in absent) <= 10  # at the configured FP rate (0.1%)
    assert local.check("ABSENT-99999") == f"not registered as of {manifest['as_of']}"

    register(reg, lab, ["LATER-0001", "LATER-0002"])
    assert not local.maybe_registered("LATER-0001")
    taken = reg.snapshots.tick(force=True)
    assert taken["seq"] == 1 and not taken["base"]
    deltas, delta_blobs = opened(reg.snapshots.deltas(local.delta), reg)
    assert deltas["since"] == f"{generation}.0" and deltas["delta"] == f"{generation}.1"
    assert local.apply(deltas, delta_blobs) > 0
    assert local.maybe_registered("LATER-0001") and local.maybe_registered("later-0002")
    assert local.as_of == deltas["as_of"]
    # exactly the newest checkpoint, bit for bit
    fresh = client.Snapshot.from_bundle(*opened(reg.snapshots.snapshot(), reg))
    assert [f.bitarray for f in local.filters] == [f.bitarray for f in fresh.filters]
    # up to date: an empty, still signed answer
    empty, none = opened(reg.snapshots.deltas(local.delta), reg)
    assert none == [] and empty["blobs"] == [] and empty["delta"] == local.delta
    with pytest.raises(SnapshotOutdated):
        reg.snapshots.deltas(f"{generation}.7")  # a delta that does not exist yet


def test_a_rebuild_makes_clients_download_again(reg, lab):
    register(reg, lab, ["GEN-0001"])
    reg.snapshots.tick()
    old = opened(reg.snapshots.snapshot(), reg)[0]
    reg.bloom.rebuild()
    with pytest.raises(SnapshotOutdated, match="rebuilt"):
        reg.snapshots.deltas(old["delta"])
    manifest, blobs = opened(reg.snapshots.snapshot(), reg)  # the new generation's first checkpoint
    assert manifest["generation"] != old["generation"] and manifest["seq"] == 0
    assert client.Snapshot.from_bundle(manifest, blobs).maybe_registered("GEN-0001")


def opened_manifest(data, key) -> dict:
    manifest = client.open_bundle(bytes(data), key)[0]
    return {**manifest, "blobs": []}


def test_tampering_is_refused(reg, lab):
    register(reg, lab, ["TAMPER-0001"])
    data = bytearray(b"".join(reg.snapshots.snapshot().parts))
    key = client.load_public_key(reg.snapshots.signer.public_raw)
    client.open_bundle(bytes(data), key)
    at = data.index(b'"as_of":"') + 9
    forged = bytes(data[:at]) + b"2099" + bytes(data[at + 4:])  # a later "as of" in the manifest
    with pytest.raises(client.SnapshotError, match="signature"):
        client.open_bundle(forged, key)
    flipped = bytes(data[:-1]) + bytes([data[-1] ^ 1])  # a bit of the last shard
    with pytest.raises(client.SnapshotError, match="checksum"):
        client.open_bundle(flipped, key)
    other = SnapshotSigner(load_signing_key(new_signing_key_pem()))  # another registry's, or an attacker's
    with pytest.raises(client.SnapshotError, match="signature"):
        client.open_bundle(bytes(data), client.load_public_key(other.public_pem))
    resigned = b"".join(bundle(opened_manifest(data, key), [], other))
    with pytest.raises(client.SnapshotError, match="signature"):
        client.open_bundle(resigned, key)


def test_no_checkpoint_from_an_index_that_is_not_trusted(reg, lab):
    register(reg, lab, ["UNTRUSTED-1"])
    reg.bloom.close()  # database mode from here on
    with pytest.raises(SnapshotUnavailable):
        reg.snapshots.tick(force=True)
    with pytest.raises(SnapshotUnavailable):
        reg.snapshots.snapshot()


@pytest.mark.parametrize("since", ["", "12", "x.1", "1.-1", "1.2.3", "9" * 41 + ".1"])
def test_since_must_name_a_delta(since):
    with pytest.raises(ValueError):
        parse_since(since)


def test_positions_round_trip():
    positions = [0, 1, 127, 128, 300, 2**20, 2**32 - 1]
    assert list(client.decode_positions(encode_positions(positions))) == positions
    assert list(client.decode_positions(zlib.compress(b""))) == []


def test_the_signing_key_setting():
    seed = b"\x01" * 32
    key = load_signing_key(base64.b64encode(seed).decode())
    assert key.private_bytes_raw() == seed
    for bad in ("", "AAAA", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"):
        with pytest.raises(ValueError):
            load_signing_key(bad)


SAMPLES = ["WT2020-000123", "wt2020—000123", " ab 12 ", "国环测〔2021〕第045号", "ＡＢＣ－１２３", "a\u200bb",
           "【X】_1.2#3+", "x/y(z)", "", "   ", "ab*cd", "é-1", "x" * 64, "x" * 65, "ｘ" * 64, "\t1\n2", "À1"]


@pytest.mark.parametrize("raw", SAMPLES)
def test_the_client_normalizes_numbers_as_the_registry_does(raw):
    try:
        expected = normalize_number(raw)
    except InvalidValue:
        with pytest.raises(ValueError):
            client.normalize(raw)
    else:
        assert client.normalize(raw) == expected


def test_checkpoints_name_their_time(reg, lab):
    register(reg, lab, ["TIME-1"])
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    reg.snapshots.tick(force=True)
    manifest = opened(reg.snapshots.snapshot(), reg)[0]
    assert dt.datetime.fromisoformat(manifest["as_of"].replace("Z", "+00:00")) >= before - dt.timedelta(seconds=1)


def test_the_cli_takes_a_checkpoint_now(runner, reg, lab):
    register(reg, lab, ["CLI-SNAP-1"])
    first = runner.invoke(args=["bloom", "snapshot"])
    assert first.exit_code == 0 and "seq=0 base=True" in first.output, first.output
    second = runner.invoke(args=["bloom", "snapshot"])  # on demand: not waiting for the hour
    assert second.exit_code == 0 and "seq=1 base=False" in second.output, second.output
    with reg.snapshots._store.lock():  # another process at it
        busy = runner.invoke(args=["bloom", "snapshot"])
    assert busy.exit_code == 1 and "another process is taking a checkpoint" in busy.output
