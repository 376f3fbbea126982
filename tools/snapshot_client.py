#!/usr/bin/env python3
"""Offline pre-check client for the Report Number Registry's snapshot (docs/contract.md,
"Offline pre-check snapshot").

A platform downloads the signed snapshot of the registry's Bloom index once, applies the hourly
deltas, and checks numbers locally with zero requests:

- "not registered as of <time>": the number was not registered when the snapshot (with its
  deltas) was taken; it may have been registered since. Before refusing a report, confirm
  through the API (``GET /api/v1/verify`` or ``POST /api/v1/verify/bulk``).
- "possible hit — confirm via the API": registered, withdrawn, or a false positive (at the rate the
  layout states): only the API answers which.

Standalone: the standard library, pybloom-live (the filter's layout and hashes) and
``cryptography`` (Ed25519). Copy this file; nothing else of the registry is needed.

    export RNR_PLATFORM_KEY=rnrp_…
    python snapshot_client.py --base https://verify.example.cn --state ./rnr-snapshot download
    python snapshot_client.py --base https://verify.example.cn --state ./rnr-snapshot update   # hourly
    python snapshot_client.py --state ./rnr-snapshot check WT2020-000123 "国环测〔2021〕第045号"

The first download fetches the signing key from ``/api/v1/snapshot/key`` and pins it in the state
folder; better, pin it yourself with ``--public-key`` (a PEM or the raw key in base64, from the
registry's published documentation). A bundle whose signature or checksums do not verify is
refused and nothing is changed.

Exit codes of ``check``: 0 all "not registered as of", 1 at least one possible hit, 2 an error.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import struct
import sys
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from bitarray import bitarray
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pybloom_live import BloomFilter

MAGIC = b"RNRSNAP1"
FORMAT = "rnr-snapshot/1"
_LENGTH = struct.Struct(">I")


class SnapshotError(Exception):
    """A bundle that does not verify, a state that cannot be used, or a refusal of the server."""


class MustDownload(SnapshotError):
    """The server says the deltas cannot bring this snapshot up to date (410): download again."""


# --- report numbers: the registry's normal form (docs/contract.md, "Report numbers") --------------
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff"), None)
_BRACKETS = str.maketrans({"〔": "(", "〕": ")", "【": "[", "】": "]"})
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d", "-"))
_ALLOWED = re.compile(r"[A-Z0-9\-/()\[\]_.#+\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
                      r"\U00020000-\U0002ebef\U00030000-\U0003134f]{1,64}")


_PLAIN = re.compile(r"[A-Za-z0-9\-/()\[\]_.#+]{1,64}")  # already normal but for ASCII case: most numbers


def normalize(number: str) -> str:
    """A report number as the registry keeps it: zero-width characters dropped, NFKC, 〔〕【】 as
    ()[], every dash as '-', ASCII letters upper-case, whitespace removed. ValueError when it is
    not a valid report number."""
    if _PLAIN.fullmatch(number):
        return number.upper()
    text = unicodedata.normalize("NFKC", number.translate(_ZERO_WIDTH))
    text = text.translate(_BRACKETS).translate(_DASHES)
    text = re.sub(r"\s+", "", "".join(ch.upper() if ch.isascii() else ch for ch in text))
    if not _ALLOWED.fullmatch(text):
        raise ValueError(f"not a valid report number: {number!r}")
    return text


# --- bundles ------------------------------------------------------------------------------------
def load_public_key(text: str) -> Ed25519PublicKey:
    """A PEM public key, or the raw 32-byte key in base64 (as /api/v1/snapshot/key gives both)."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError:
        raise SnapshotError("the pinned key is not an Ed25519 public key (PEM, or 32 bytes in base64)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SnapshotError("the pinned key is not an Ed25519 public key")
    return key


def open_bundle(data: bytes, public_key: Ed25519PublicKey) -> tuple[dict, list[bytes]]:
    """The manifest and blobs of a bundle, after checking its signature and every blob's length
    and SHA-256; SnapshotError otherwise."""
    if len(data) < len(MAGIC) + 4 or not data.startswith(MAGIC):
        raise SnapshotError("not a snapshot bundle")
    (n,) = _LENGTH.unpack_from(data, len(MAGIC))
    head_end = len(MAGIC) + 4 + n
    if len(data) < head_end + 64:
        raise SnapshotError("the bundle is cut short")
    head, signature = data[:head_end], data[head_end:head_end + 64]
    try:
        public_key.verify(signature, head)
    except InvalidSignature:
        raise SnapshotError("the signature does not verify: refused (tampered, or signed with another key)") from None
    manifest = json.loads(head[len(MAGIC) + 4:])
    if manifest.get("format") != FORMAT:
        raise SnapshotError(f"unknown format {manifest.get('format')!r}")
    blobs, offset = [], head_end + 64
    for entry in manifest["blobs"]:
        blob = data[offset:offset + entry["length"]]
        offset += entry["length"]
        if len(blob) != entry["length"] or hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            raise SnapshotError("a blob does not match its checksum: refused")
        blobs.append(blob)
    if offset != len(data):
        raise SnapshotError("trailing bytes after the last blob: refused")
    return manifest, blobs


def decode_positions(blob: bytes):
    """The bit positions of a delta blob: zlib, then LEB128 gaps."""
    raw = zlib.decompress(blob)
    position = shift = value = 0
    for byte in raw:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        position += value
        yield position
        value = shift = 0


# --- the local copy -----------------------------------------------------------------------------
class Snapshot:
    """The filter shards of one generation, with the delta they are at and its time."""

    def __init__(self, manifest: dict, shards: list[bytes]) -> None:
        layout = manifest["layout"]
        self.manifest = manifest
        self.shard_count = int(layout["shards"])
        self.filters: list[BloomFilter] = []
        for bits in shards:
            bf = BloomFilter(int(layout["shard_capacity"]), float(layout["error_rate"]))
            if (bf.num_slices, bf.bits_per_slice) != (layout["num_slices"], layout["bits_per_slice"]):
                raise SnapshotError("the layout does not match this pybloom-live's sizing")
            array = bitarray(endian="big")  # the registry's bit order: most significant bit first
            array.frombytes(bits)
            del array[bf.num_bits:]
            bf.bitarray = array
            self.filters.append(bf)

    @classmethod
    def from_bundle(cls, manifest: dict, blobs: list[bytes]) -> "Snapshot":
        if manifest.get("kind") != "snapshot":
            raise SnapshotError("not a snapshot")
        return cls(manifest, [zlib.decompress(b) for b in blobs])

    @property
    def as_of(self) -> str:
        return self.manifest["as_of"]

    @property
    def delta(self) -> str:
        return self.manifest["delta"]

    def apply(self, manifest: dict, blobs: list[bytes]) -> int:
        """Apply a deltas bundle; the number of bits set."""
        if manifest.get("kind") != "deltas" or manifest.get("since") != self.delta:
            raise SnapshotError(f"these deltas start at {manifest.get('since')}, this snapshot is at {self.delta}")
        changed = 0
        for entry, blob in zip(manifest["blobs"], blobs):
            array = self.filters[entry["shard"]].bitarray
            for position in decode_positions(blob):
                array[position] = 1
                changed += 1
        self.manifest = {**self.manifest, "seq": manifest["seq"], "delta": manifest["delta"],
                         "as_of": manifest["as_of"], "newest_batch": manifest["newest_batch"]}
        return changed

    def maybe_registered(self, number: str) -> bool:
        """False: certainly not registered as of :attr:`as_of`. True: ask the API."""
        key = normalize(number)
        return key in self.filters[zlib.crc32(key.encode("utf-8")) % self.shard_count]

    def check(self, number: str) -> str:
        if self.maybe_registered(number):
            return "possible hit — confirm via the API"
        return f"not registered as of {self.as_of}"

    # state on disk
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for i, bf in enumerate(self.filters):
            _write(folder / f"shard-{i}.bits", bf.bitarray.tobytes())
        _write(folder / "snapshot.json", json.dumps(self.manifest, ensure_ascii=False, indent=1).encode())

    @classmethod
    def load(cls, folder: Path) -> "Snapshot":
        try:
            manifest = json.loads((folder / "snapshot.json").read_text())
        except FileNotFoundError:
            raise SnapshotError(f"no snapshot in {folder}: run 'download' first") from None
        return cls(manifest, [(folder / f"shard-{i}.bits").read_bytes() for i in range(manifest["layout"]["shards"])])


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- talking to the registry -------------------------------------------------------------------
class Client:
    def __init__(self, base: str, key: str | None, state: Path, public_key: str | None = None,
                 timeout: float = 120.0) -> None:
        self.base = base.rstrip("/")
        self.key = key
        self.state = Path(state)
        self.timeout = timeout
        self._pinned = public_key

    def _get(self, path: str, *, auth: bool = True) -> bytes:
        request = urllib.request.Request(self.base + path, headers={"User-Agent": "rnr-snapshot-client/1"})
        if auth:
            if not self.key:
                raise SnapshotError("a platform key is needed: --key or RNR_PLATFORM_KEY")
            request.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": str(exc.code), "message": exc.reason}
            cls = MustDownload if exc.code == 410 else SnapshotError
            raise cls(f"{exc.code} {error.get('code')}: {error.get('message')}") from None

    def public_key(self) -> Ed25519PublicKey:
        pinned = self.state / "signing_key.pub"
        if self._pinned:
            return load_public_key(self._pinned)
        if not pinned.exists():  # trust on first use: pin what the registry publishes
            self.state.mkdir(parents=True, exist_ok=True)
            _write(pinned, json.loads(self._get("/api/v1/snapshot/key", auth=False))["public_key_pem"].encode())
        return load_public_key(pinned.read_text())

    def download(self) -> Snapshot:
        manifest, blobs = open_bundle(self._get("/api/v1/snapshot"), self.public_key())
        snapshot = Snapshot.from_bundle(manifest, blobs)
        snapshot.save(self.state)
        return snapshot

    def update(self) -> tuple[Snapshot, int]:
        """Apply the deltas since the local copy; download again when the server says so."""
        snapshot = Snapshot.load(self.state)
        try:
            data = self._get("/api/v1/snapshot/deltas?since=" + urllib.parse.quote(snapshot.delta))
        except MustDownload:
            return self.download(), -1
        manifest, blobs = open_bundle(data, self.public_key())
        changed = snapshot.apply(manifest, blobs)
        snapshot.save(self.state)
        return snapshot, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=os.environ.get("RNR_BASE_URL", ""), help="the registry's address")
    parser.add_argument("--key", default=os.environ.get("RNR_PLATFORM_KEY"), help="platform key (rnrp_…)")
    parser.add_argument("--state", default="rnr-snapshot", help="folder of the local copy")
    parser.add_argument("--public-key", help="file with the registry's snapshot public key (PEM or base64), pinned")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("download", help="download the whole snapshot")
    sub.add_parser("update", help="apply the deltas since the local copy (downloads again when needed)")
    check = sub.add_parser("check", help="check numbers offline")
    check.add_argument("numbers", nargs="+")
    args = parser.parse_args(argv)
    pinned = Path(args.public_key).read_text() if args.public_key else None
    client = Client(args.base, args.key, Path(args.state), pinned)
    try:
        if args.command == "download":
            snapshot = client.download()
            print(f"snapshot {snapshot.delta} downloaded: as of {snapshot.as_of}")
        elif args.command == "update":
            snapshot, changed = client.update()
            how = "downloaded again" if changed < 0 else f"{changed} bits set"
            print(f"snapshot at {snapshot.delta} ({how}): as of {snapshot.as_of}")
        else:
            snapshot = Snapshot.load(Path(args.state))
            hit = False
            for number in args.numbers:
                try:
                    answer = snapshot.check(number)
                except ValueError as exc:
                    print(f"{number}\t{exc}")
                    continue
                hit = hit or answer.startswith("possible hit")
                print(f"{number}\t{answer}")
            return 1 if hit else 0
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
