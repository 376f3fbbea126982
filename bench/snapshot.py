"""bench/snapshot: the offline snapshot at a registry of N numbers (default 10 M): the size of the
snapshot and of hourly deltas in both encodings considered, the time a checkpoint takes, and the
shipped client's lookups per second (docs/contract.md, "Offline pre-check snapshot"; issue 17).

The filter is built with the registry's own layout and hashes (``Layout.offsets``, what every
writer sets) for N synthetic numbers, at the default ``BLOOM_CAPACITY``/``BLOOM_ERROR_RATE``
(grown as a rebuild would when N exceeds it); the snapshot is encoded by the server's code
(``SnapshotService``'s zlib level and ``bundle``), deltas by ``encode_positions`` (LEB128 gaps +
zlib, the format served) against the alternative of zlib over the XOR of the shard bytes.

The client's lookups go through ``tools/snapshot_client.Snapshot.maybe_registered`` (normal form,
CRC-32 shard, pybloom-live's ``__contains__``), half present, half absent numbers; the baseline in
the same run is pybloom-live's own ``__contains__`` on the same filters with keys already in their
normal form (the least a pybloom-based lookup can cost), so the headline is a ratio.

    .venv/bin/python -m bench.snapshot [--numbers 10000000] [--deltas 1000,10000,100000]
"""
from __future__ import annotations

import argparse
import json
import os
import time
import zlib
from multiprocessing import Pool

from bitarray import bitarray

from bench.common import absent_number, synthetic_number
from registry.bloom.layout import Layout
from registry.bloom.snapshot import SnapshotSigner, bundle, encode_positions, layout_json, new_signing_key_pem, \
    load_signing_key
from tools import snapshot_client as client

CHUNK = 200_000


def _positions(args) -> list[tuple[int, list[int]]]:
    layout_dict, start, stop, make = args
    layout = Layout.from_dict(layout_dict)
    name = synthetic_number if make == "present" else absent_number
    return [layout.offsets(name(i)) for i in range(start, stop)]


def fill(layout: Layout, shards: list[bitarray], start: int, stop: int, make: str = "present") -> None:
    jobs = [(layout.to_dict(), a, min(a + CHUNK, stop), make) for a in range(start, stop, CHUNK)]
    with Pool(max(1, min(2, os.cpu_count() or 1))) as pool:
        for part in pool.imap_unordered(_positions, jobs):
            for shard, offsets in part:
                shards[shard][offsets] = 1  # type: ignore[index]


def rate(fn, items) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--numbers", type=int, default=10_000_000)
    parser.add_argument("--capacity", type=int, default=10_000_000, help="BLOOM_CAPACITY (grown to 2 × numbers as a rebuild would)")
    parser.add_argument("--error-rate", type=float, default=0.001)
    parser.add_argument("--deltas", default="1000,10000,100000", help="numbers registered in an hour")
    parser.add_argument("--lookups", type=int, default=200_000)
    args = parser.parse_args()
    capacity = args.capacity if args.numbers <= args.capacity else 2 * args.numbers
    layout = Layout.for_capacity(capacity, args.error_rate)
    shards = [bitarray(layout.num_bits, endian="big") for _ in range(layout.shards)]
    for s in shards:
        s.setall(0)
    started = time.perf_counter()
    fill(layout, shards, 0, args.numbers)
    figures: dict = {"numbers": args.numbers, "layout": layout.to_dict(), "filter_bytes": layout.bits_bytes * layout.shards,
                     "fill_seconds": round(time.perf_counter() - started, 1),
                     "fill_ratio": round(sum(s.count() for s in shards) / (layout.num_bits * layout.shards), 4)}

    # the snapshot, as the server encodes and signs it
    signer = SnapshotSigner(load_signing_key(new_signing_key_pem()))
    started = time.perf_counter()
    blobs = [zlib.compress(s.tobytes(), 6) for s in shards]
    figures["checkpoint_compress_seconds"] = round(time.perf_counter() - started, 2)
    manifest = {"format": "rnr-snapshot/1", "kind": "snapshot", "key_id": signer.key_id, "generation": 1, "seq": 0,
                "delta": "1.0", "as_of": "2026-12-01T00:00:00Z", "newest_batch": None, "layout": layout_json(layout),
                "blobs": [{"shard": i, "encoding": "zlib"} for i in range(layout.shards)]}
    data = b"".join(bundle(manifest, blobs, signer))
    figures["snapshot_bytes"] = len(data)
    started = time.perf_counter()
    opened = client.open_bundle(data, client.load_public_key(signer.public_pem))
    local = client.Snapshot.from_bundle(*opened)
    figures["client_load_seconds"] = round(time.perf_counter() - started, 2)

    # hourly deltas: the bits a further hour of registrations sets, in both encodings
    deltas = []
    done = args.numbers
    for n in (int(x) for x in args.deltas.split(",") if x):
        before = [s.copy() for s in shards]
        fill(layout, shards, done, done + n)
        done += n
        gaps = xor = bits = 0
        started = time.perf_counter()
        for old, new in zip(before, shards):
            added = new & ~old
            bits += added.count()
            gaps += len(encode_positions(added.search(1)))
        gaps_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for old, new in zip(before, shards):
            xor += len(zlib.compress((old ^ new).tobytes(), 6))
        xor_seconds = time.perf_counter() - started
        deltas.append({"numbers": n, "bits_set": bits, "gaps_zlib_bytes": gaps, "xor_zlib6_bytes": xor,
                       "gaps_encode_seconds": round(gaps_seconds, 2), "xor_encode_seconds": round(xor_seconds, 2)})
    figures["deltas"] = deltas

    # the client's lookups against pybloom-live's own, on the same filters, in this run
    half = args.lookups // 2
    asked = [synthetic_number(i * 37 % args.numbers) for i in range(half)] + [absent_number(i) for i in range(half)]
    keys = [client.normalize(n) for n in asked]
    by_shard = [(local.filters[zlib.crc32(k.encode()) % local.shard_count], k) for k in keys]
    baseline = rate(lambda pair: pair[1] in pair[0], by_shard)
    ours = rate(local.maybe_registered, asked)
    hits = sum(local.maybe_registered(n) for n in asked[:half])
    false_positives = sum(local.maybe_registered(n) for n in asked[half:])
    assert hits == half, "a registered number the snapshot misses"
    figures["client"] = {"lookups_per_second": round(ours), "pybloom_contains_per_second": round(baseline),
                         "ratio_to_pybloom": round(ours / baseline, 2),
                         "false_positive_rate": round(false_positives / half, 5)}
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
