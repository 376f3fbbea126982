"""Offline pre-check snapshots of the Bloom index, for keyed platforms (docs/contract.md,
"Offline pre-check snapshot"; the idea of Mozilla's CRLite).

About once an hour (:meth:`SnapshotService.tick`, from the upkeep loop of any process, or
``flask --app wsgi snapshot-delta``) the current generation's shard bits are read and kept as a
*checkpoint* (each shard zlib-compressed) in a snapshot store beside the shards (files in the
Bloom folder, or Redis keys). The bits newly set since the previous checkpoint become a *delta*:
per shard, the sorted positions as LEB128-encoded gaps, zlib-compressed (measured smaller than
the XOR of the shard bytes compressed with zlib at every size tried: bench/snapshot.py). Bits are
only ever set within a generation, so a client holding checkpoint N that applies deltas N+1..M
holds exactly checkpoint M. A rebuild makes a new generation: its first checkpoint is sequence 0
and clients of the old generation must download the snapshot again.

A checkpoint is taken only from a trusted index whose newest-batch marker has reached the
database's newest batch (read before the bits): every batch committed before the bits were read
is in them, so "not in the snapshot" means "not registered as of the checkpoint's time".

Answers are *bundles*: ``RNRSNAP1``, the manifest's length (u32, big-endian), the manifest (JSON),
its Ed25519 signature (64 bytes, over the magic, the length and the manifest), then the blobs the
manifest lists, each with its length and SHA-256. The signing key is the snapshot's own
(``SNAPSHOT_SIGNING_KEY``), not any other key of the registry.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import struct
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from bitarray import bitarray
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import text

from registry.bloom.layout import HEADER_SIZE, Layout, generation_of
from registry.bloom.stores import exclusive_flock

log = logging.getLogger(__name__)

MAGIC = b"RNRSNAP1"
FORMAT = "rnr-snapshot/1"
#: a checkpoint (and the delta to it) about once an hour; the upkeep's hourly chore may run a
#: little early, so a checkpoint this much younger than an hour counts as due
EVERY = dt.timedelta(hours=1)
SLACK = dt.timedelta(minutes=5)
#: deltas kept (a week of hours); a client further behind downloads the snapshot again
KEEP_DELTAS = 7 * 24
_LENGTH = struct.Struct(">I")


class SnapshotUnavailable(RuntimeError):
    """No checkpoint can be served or taken now (the index is not trusted, the store unreachable)."""


class SnapshotOutdated(LookupError):
    """A client's ``since`` names another generation or a delta no longer kept: download again."""


class SnapshotBusy(RuntimeError):
    """Another process is taking a checkpoint."""


# --- the signing key -------------------------------------------------------------------------------
def load_signing_key(value: str) -> Ed25519PrivateKey:
    """``SNAPSHOT_SIGNING_KEY``: a PEM (PKCS#8) Ed25519 private key, or the 32-byte seed in base64."""
    value = (value or "").strip()
    if not value:
        raise ValueError("SNAPSHOT_SIGNING_KEY is empty")
    if value.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(value.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("SNAPSHOT_SIGNING_KEY must be an Ed25519 key")
        return key
    try:
        seed = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value
                                else None, validate=True)
    except ValueError:
        raise ValueError("SNAPSHOT_SIGNING_KEY must be a PEM Ed25519 private key or 32 bytes in base64") from None
    if len(seed) != 32:
        raise ValueError("SNAPSHOT_SIGNING_KEY must be a PEM Ed25519 private key or 32 bytes in base64")
    return Ed25519PrivateKey.from_private_bytes(seed)


def new_signing_key_pem() -> str:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


class SnapshotSigner:
    """Signs bundles with the snapshot key; ``key_id`` names its public half (first 16 hex digits
    of the SHA-256 of the raw public key)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key: Ed25519PublicKey = key.public_key()
        raw = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_raw = base64.b64encode(raw).decode()
        self.public_pem = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


# --- encodings -------------------------------------------------------------------------------------
def encode_positions(positions) -> bytes:
    """Sorted bit positions as LEB128 gaps (the first from 0), zlib-compressed."""
    out = bytearray()
    previous = 0
    for position in positions:
        gap = position - previous
        previous = position
        while gap >= 0x80:
            out.append((gap & 0x7F) | 0x80)
            gap >>= 7
        out.append(gap)
    return zlib.compress(bytes(out), 9)


def bundle(manifest: dict, blobs: list[bytes], signer: SnapshotSigner) -> Iterator[bytes]:
    """A signed bundle in parts: header, manifest, signature, then each blob (for a streamed answer)."""
    manifest = {**manifest, "blobs": [{**entry, "length": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
                                      for entry, blob in zip(manifest["blobs"], blobs)]}
    raw = json.dumps(manifest, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    head = MAGIC + _LENGTH.pack(len(raw)) + raw
    yield head + signer.sign(head)
    yield from blobs


def bundle_length(manifest: dict, blobs: list[bytes], signer: SnapshotSigner) -> tuple[int, list[bytes]]:
    parts = list(bundle(manifest, blobs, signer))
    return sum(len(p) for p in parts), parts


def layout_json(layout: Layout) -> dict:
    """The layout as a client needs it to map a number to bits (docs/contract.md)."""
    return {**layout.to_dict(), "shard_capacity": layout.shard_capacity, "bits_per_shard": layout.num_bits,
            "shard_of": "crc32(utf8(number)) mod shards", "bit_order": "msb-first",
            "hashes": "pybloom-live make_hashfuncs(num_slices, bits_per_slice); bit = slice * bits_per_slice + hash"}


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- where checkpoints and deltas are kept -----------------------------------------------------------
class SnapshotStore(Protocol):
    def read_meta(self) -> dict | None: ...
    def read_blob(self, generation: int, seq: int, shard: int) -> bytes | None: ...
    def write_checkpoint(self, meta: dict, blobs: list[bytes], previous: dict | None) -> None: ...
    def write_delta(self, generation: int, seq: int, record: dict, blob: bytes) -> None: ...
    def read_delta(self, generation: int, seq: int) -> tuple[dict, bytes] | None: ...
    def lock(self) -> contextmanager: ...


def _pack(record: dict, blob: bytes) -> bytes:
    raw = json.dumps(record, sort_keys=True).encode()
    return _LENGTH.pack(len(raw)) + raw + blob


def _unpack(raw: bytes) -> tuple[dict, bytes]:
    (n,) = _LENGTH.unpack_from(raw)
    return json.loads(raw[4:4 + n]), raw[4 + n:]


class FileSnapshotStore:
    """Files in one folder (``BLOOM_DIR/snapshots``): ``checkpoint.json`` names the checkpoint,
    ``cp-g{gen}-n{seq}-s{shard}.z`` hold its shards, ``delta-g{gen}-n{seq}`` each delta."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _write(self, name: str, data: bytes) -> None:
        tmp = self.directory / f".{name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.directory / name)

    def read_meta(self) -> dict | None:
        try:
            return json.loads((self.directory / "checkpoint.json").read_text())
        except FileNotFoundError:
            return None

    def read_blob(self, generation: int, seq: int, shard: int) -> bytes | None:
        try:
            return (self.directory / f"cp-g{generation}-n{seq}-s{shard}.z").read_bytes()
        except FileNotFoundError:
            return None

    def write_checkpoint(self, meta: dict, blobs: list[bytes], previous: dict | None) -> None:
        gen, seq = meta["generation"], meta["seq"]
        for shard, blob in enumerate(blobs):
            self._write(f"cp-g{gen}-n{seq}-s{shard}.z", blob)
        self._write("checkpoint.json", json.dumps(meta, sort_keys=True).encode())
        # a reader that opened the previous files keeps reading them; one that did not retries
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith("cp-") and not name.startswith(f"cp-g{gen}-n{seq}-"):
                path.unlink(missing_ok=True)
            elif name.startswith("delta-") and (not name.startswith(f"delta-g{gen}-")
                                                or int(name.rsplit("-n", 1)[1]) <= seq - KEEP_DELTAS):
                path.unlink(missing_ok=True)

    def write_delta(self, generation: int, seq: int, record: dict, blob: bytes) -> None:
        self._write(f"delta-g{generation}-n{seq}", _pack(record, blob))

    def read_delta(self, generation: int, seq: int) -> tuple[dict, bytes] | None:
        try:
            return _unpack((self.directory / f"delta-g{generation}-n{seq}").read_bytes())
        except FileNotFoundError:
            return None

    def lock(self):
        return exclusive_flock(self.directory / "tick.lock",
                               lambda: SnapshotBusy("a checkpoint is being taken on this host"))


class RedisSnapshotStore:
    """Redis keys beside the shards: ``rnr:snapshot:meta``, ``rnr:snapshot:g{gen}:n{seq}:s{shard}``
    (a replaced checkpoint's shards expire after ten minutes, for the readers still on them) and
    ``rnr:snapshot:g{gen}:delta:{seq}`` (expiring after the week they are kept)."""

    META = "rnr:snapshot:meta"
    LOCK = "rnr:snapshot:lock"
    LOCK_SECONDS = 900
    GRACE_SECONDS = 600

    def __init__(self, client) -> None:
        self.client = client

    def read_meta(self) -> dict | None:
        raw = self.client.get(self.META)
        return None if raw is None else json.loads(raw)

    @staticmethod
    def _blob_key(generation: int, seq: int, shard: int) -> str:
        return f"rnr:snapshot:g{generation}:n{seq}:s{shard}"

    def read_blob(self, generation: int, seq: int, shard: int) -> bytes | None:
        return self.client.get(self._blob_key(generation, seq, shard))

    def write_checkpoint(self, meta: dict, blobs: list[bytes], previous: dict | None) -> None:
        pipe = self.client.pipeline(transaction=False)
        for shard, blob in enumerate(blobs):
            pipe.set(self._blob_key(meta["generation"], meta["seq"], shard), blob)
        pipe.execute()
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.META, json.dumps(meta, sort_keys=True))
        if previous is not None:
            for shard in range(int(previous["layout"]["shards"])):
                pipe.expire(self._blob_key(previous["generation"], previous["seq"], shard), self.GRACE_SECONDS)
        pipe.execute()

    def write_delta(self, generation: int, seq: int, record: dict, blob: bytes) -> None:
        self.client.set(f"rnr:snapshot:g{generation}:delta:{seq}", _pack(record, blob),
                        ex=int((EVERY * (KEEP_DELTAS + 24)).total_seconds()))

    def read_delta(self, generation: int, seq: int) -> tuple[dict, bytes] | None:
        raw = self.client.get(f"rnr:snapshot:g{generation}:delta:{seq}")
        return None if raw is None else _unpack(raw)

    @contextmanager
    def lock(self):
        token = os.urandom(8).hex()
        if not self.client.set(self.LOCK, token, nx=True, ex=self.LOCK_SECONDS):
            raise SnapshotBusy("a checkpoint is being taken (Redis lock held)")
        try:
            yield
        finally:
            if self.client.get(self.LOCK) == token.encode():
                self.client.delete(self.LOCK)


# --- the service -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bundle:
    """A signed answer: its parts (to stream) and its total length."""

    parts: list[bytes]
    length: int
    manifest: dict


class SnapshotService:
    """Takes checkpoints and deltas (:meth:`tick`) and serves them signed (:meth:`snapshot`,
    :meth:`deltas`)."""

    def __init__(self, *, bloom, store: SnapshotStore, signer: SnapshotSigner, engine, clock) -> None:
        self._bloom = bloom
        self._store = store
        self.signer = signer
        self._engine = engine
        self._clock = clock

    # --- taking checkpoints ----------------------------------------------------------------------
    def tick(self, *, force: bool = False) -> dict | None:
        """Take a checkpoint (and the delta to it) when one is due — none yet for the current
        generation, or the last an hour old — or now with ``force``. Returns what it wrote, None
        when nothing was due or another process is at it. Raises :class:`SnapshotUnavailable`
        when the index cannot be trusted now."""
        try:
            with self._store.lock():
                return self._tick(force)
        except SnapshotBusy:
            return None

    def _tick(self, force: bool) -> dict | None:
        meta = self._store.read_meta()
        now = self._clock()
        generation = self._bloom.status().get("generation")
        if (not force and meta is not None and meta["generation"] == generation
                and now - dt.datetime.fromisoformat(meta["taken_at"]) < EVERY - SLACK):
            return None
        started = time.monotonic()
        with self._engine.connect() as conn:  # before the bits: every batch committed by now is in them
            newest = conn.execute(text("SELECT id, created_at FROM batches ORDER BY id DESC LIMIT 1")).first()
            conn.rollback()
        as_of = self._clock()
        pointer, shards = self._bloom.snapshot_bits(newest[0] if newest else None)
        newest_batch = None
        if newest is not None:
            at = newest[1] if isinstance(newest[1], dt.datetime) else dt.datetime.fromisoformat(str(newest[1]))
            newest_batch = {"id": int(newest[0]), "at": _iso(at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc))}
        base = meta is None or meta["generation"] != pointer.generation
        seq = 0 if base else meta["seq"] + 1
        if not base:
            record, blob = self._delta(meta, pointer.layout, shards, seq, as_of)
            if record is None:
                return None
            self._store.write_delta(pointer.generation, seq, record, blob)
        blobs = [zlib.compress(bits, 6) for bits in shards]
        new_meta = {"generation": pointer.generation, "seq": seq, "as_of": _iso(as_of),
                    "taken_at": as_of.isoformat(), "newest_batch": newest_batch,
                    "layout": pointer.layout.to_dict(),
                    "shards": [{"sha256": hashlib.sha256(b).hexdigest(), "length": len(b)} for b in blobs]}
        self._store.write_checkpoint(new_meta, blobs, meta)
        seconds = round(time.monotonic() - started, 2)
        log.info("snapshot: checkpoint %s.%s taken (%s, %.2f s)", pointer.generation, seq,
                 "base" if base else "delta", seconds)
        return {"generation": pointer.generation, "seq": seq, "base": base, "seconds": seconds,
                "bytes": sum(len(b) for b in blobs)}

    def _delta(self, meta: dict, layout: Layout, shards: list[bytes], seq: int, as_of: dt.datetime):
        parts, entries = [], []
        for shard, bits in enumerate(shards):
            old = self._checkpoint_bits(meta, shard, layout)
            new = bitarray(endian="big")
            new.frombytes(bits)
            if old is None or len(old) != len(new):
                raise SnapshotUnavailable(f"checkpoint {meta['generation']}.{meta['seq']} shard {shard} unreadable")
            if (old & ~new).any():  # bits never clear within a generation: the store lost some
                log.error("snapshot: bits of generation %s shard %s vanished since checkpoint %s; no delta until "
                          "the index is rebuilt", meta["generation"], shard, meta["seq"])
                return None, None
            added = new & ~old
            count = added.count()
            if count:
                blob = encode_positions(added.search(1))
                parts.append(blob)
                entries.append({"shard": shard, "bits": count, "length": len(blob),
                                "sha256": hashlib.sha256(blob).hexdigest()})
        record = {"generation": meta["generation"], "seq": seq, "as_of": _iso(as_of), "encoding": "zlib-gaps",
                  "shards": entries}
        return record, b"".join(parts)

    def _checkpoint_bits(self, meta: dict, shard: int, layout: Layout) -> bitarray | None:
        blob = self._store.read_blob(meta["generation"], meta["seq"], shard)
        if blob is None:
            return None
        bits = bitarray(endian="big")
        bits.frombytes(zlib.decompress(blob))
        return bits

    def hourly(self) -> None:
        """The upkeep loop's chore: a checkpoint when one is due; an untrusted index waits."""
        try:
            self.tick()
        except SnapshotUnavailable as exc:
            log.warning("snapshot: no checkpoint now: %s", exc)

    # --- serving ---------------------------------------------------------------------------------
    def _current_meta(self) -> dict:
        meta = self._store.read_meta()
        generation = self._bloom.status().get("generation")
        if meta is None or meta["generation"] != generation:
            self.tick(force=True)
            meta = self._store.read_meta()
        if meta is None or meta["generation"] != generation:
            raise SnapshotUnavailable("no snapshot of the current generation yet")
        return meta

    def snapshot(self) -> Bundle:
        """The newest checkpoint, signed."""
        for _attempt in range(3):  # a checkpoint replaced while we read it: read the new one
            meta = self._current_meta()
            blobs = [self._store.read_blob(meta["generation"], meta["seq"], s) for s in range(meta["layout"]["shards"])]
            if all(b is not None for b in blobs):
                break
        else:
            raise SnapshotUnavailable("the checkpoint changed while it was read")
        layout = Layout.from_dict(meta["layout"])
        manifest = {"format": FORMAT, "kind": "snapshot", "key_id": self.signer.key_id,
                    "generation": meta["generation"], "seq": meta["seq"],
                    "delta": f"{meta['generation']}.{meta['seq']}", "as_of": meta["as_of"],
                    "newest_batch": meta["newest_batch"], "layout": layout_json(layout),
                    "blobs": [{"shard": s, "encoding": "zlib"} for s in range(layout.shards)]}
        length, parts = bundle_length(manifest, blobs, self.signer)
        return Bundle(parts, length, manifest)

    def deltas(self, since: str) -> Bundle:
        """The deltas after ``since`` (``<generation>.<seq>``, as a snapshot or a delta answer names
        it) up to the newest checkpoint, signed; :class:`SnapshotOutdated` when the client must
        download the snapshot again, ValueError for a malformed ``since``."""
        generation, seq = parse_since(since)
        meta = self._current_meta()
        if generation != meta["generation"]:
            raise SnapshotOutdated(f"generation {generation} is not the current one ({meta['generation']}): "
                                   "the index was rebuilt")
        if seq > meta["seq"]:
            raise SnapshotOutdated(f"delta {since} does not exist")
        records, blobs = [], []
        for n in range(seq + 1, meta["seq"] + 1):
            found = self._store.read_delta(generation, n)
            if found is None:
                raise SnapshotOutdated(f"delta {generation}.{n} is no longer kept")
            record, blob = found
            offset = 0
            for entry in record["shards"]:
                blobs.append(blob[offset:offset + entry["length"]])
                offset += entry["length"]
                records.append({"seq": n, "shard": entry["shard"], "bits": entry["bits"], "encoding": "zlib-gaps"})
        manifest = {"format": FORMAT, "kind": "deltas", "key_id": self.signer.key_id, "generation": generation,
                    "since": f"{generation}.{seq}", "delta": f"{generation}.{meta['seq']}", "seq": meta["seq"],
                    "as_of": meta["as_of"], "newest_batch": meta["newest_batch"], "blobs": records}
        length, parts = bundle_length(manifest, blobs, self.signer)
        return Bundle(parts, length, manifest)


def parse_since(since: str) -> tuple[int, int]:
    generation, dot, seq = (since or "").strip().partition(".")
    if not dot or not generation.isdigit() or not seq.isdigit() or len(since) > 40:
        raise ValueError("since must be <generation>.<seq> as the snapshot's 'delta' names it")
    return int(generation), int(seq)


def shard_bits(raw: bytes, layout: Layout, generation: int) -> bytes:
    """A shard as a store holds it (header + bits) → its bits, checking the header's generation."""
    if generation_of(raw[:HEADER_SIZE]) != generation or len(raw) < layout.shard_bytes:
        raise SnapshotUnavailable(f"a shard of generation {generation} was replaced while it was read")
    return bytes(raw[HEADER_SIZE:layout.shard_bytes])
