"""bench/bloom_writes: ways of setting a sparse batch's bits in a Redis shard, side by side.

A 1 M-number file at national capacity (BLOOM_CAPACITY 2.3 × 10⁹: 64 shards of 64 MiB) sets about
156,000 bits per shard, one per 3.4 KB of bitmap: too sparse for a whole-bitmap merge, so the bits
go as offsets. Each mechanism here sets the same random offsets in 64 MiB keys that carry a
generation header, and the figures are offsets per second (client and server together), the
client's CPU per offset and Redis's CPU per offset (``INFO commandstats`` of its commands, so other
clients of the same server do not count):

* ``lua-setbit``: the script of ``RedisStore.write_bits`` before (packed u32 offsets, ``SETBIT``
  per offset from Lua), 4,096 offsets a call, pipelined;
* ``lua-bitfield``: a script that checks the generation, then one ``BITFIELD`` of 1,500 (Lua's ``unpack`` stops near 8,000 values) ``SET u1``
  from Lua (``unpack`` of its arguments);
* ``bitfield``: ``BITFIELD key GET i64 0 SET u1 o 1 …`` sent directly, packed with numpy
  (``stores.bit_writes``), with N offsets a command, unsorted or sorted;
* ``bitfield×16``: the same for 16 shards' commands in one write;
* ``write_bits``: ``RedisStore.write_bits`` as the registry calls it (sorted, 8,192 a command,
  16 commands an exchange, generation checked in the reply);
* ``bitmap merge``: ``RedisStore.merge_bits`` of a whole 64 MiB bitmap (``SETRANGE`` slices and a
  ``BITOP OR``) — its offsets/s are those of a shard holding as many offsets as a ``write_bits``
  exchange would set in the same time, i.e. the density above which the bitmap wins.

    .venv/bin/python -m bench.bloom_writes [--redis-url redis://127.0.0.1:6379/7] [--offsets 1000000]

It deletes its keys (generation 1700000000000000's shards) when done.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import redis

from registry.bloom.layout import HEADER_BITS, HEADER_SIZE, Layout, Pointer
from registry.bloom.stores import RedisStore, bit_writes

GENERATION = 1_700_000_000_000_000
#: RedisStore.write_bits's script before BITFIELD: packed big-endian u32 offsets, SETBIT per offset
_SET_BITS = """
if redis.call('GETRANGE', KEYS[1], 0, 7) ~= ARGV[1] then return 0 end
local base = tonumber(ARGV[2])
local data = ARGV[3]
for i = 1, #data, 4 do
  local b1, b2, b3, b4 = string.byte(data, i, i + 3)
  redis.call('SETBIT', KEYS[1], base + ((b1 * 256 + b2) * 256 + b3) * 256 + b4, 1)
end
return 1
"""
_LUA_BITFIELD = """
if redis.call('GETRANGE', KEYS[1], 0, 7) ~= ARGV[1] then return 0 end
redis.call('BITFIELD', KEYS[1], unpack(ARGV, 2))
return 1
"""


def _stats(client) -> dict[str, tuple[int, int]]:
    return {k: (v["calls"], v["usec"]) for k, v in client.info("commandstats").items()}


def _redis_usec(before, after) -> int:
    return sum(after[k][1] - before.get(k, (0, 0))[1] for k in after
               if k.removeprefix("cmdstat_") in ("evalsha", "eval", "bitfield", "setbit", "setrange", "expire"))


def _setbit_script(client, keys, offsets, header):
    script = client.register_script(_SET_BITS)
    pipe = client.pipeline(transaction=False)
    for key, offs in zip(keys, offsets):
        for start in range(0, len(offs), 4096):
            script(keys=[key], args=[header, HEADER_BITS, offs[start:start + 4096].astype(">u4").tobytes()], client=pipe)
    assert all(r == 1 for r in pipe.execute())


def _lua_bitfield(client, keys, offsets, header, per=1500):
    script = client.register_script(_LUA_BITFIELD)
    pipe = client.pipeline(transaction=False)
    for key, offs in zip(keys, offsets):
        offs = np.sort(offs) + HEADER_BITS
        for start in range(0, len(offs), per):
            args = [header]
            for o in offs[start:start + per].tolist():
                args += ("SET", "u1", o, 1)
            script(keys=[key], args=args, client=pipe)
    assert all(r == 1 for r in pipe.execute())


def _bitfield(client, keys, offsets, header, per, ordered, together=1):
    conn = client.connection_pool.get_connection()
    try:
        commands = []
        for key, offs in zip(keys, offsets):
            offs = (np.sort(offs) if ordered else offs).astype(np.uint64) + np.uint64(HEADER_BITS)
            commands += [bit_writes(key, offs[start:start + per]) for start in range(0, len(offs), per)]
        # ``together`` shards' commands a write, their replies read after it
        per_write = max(1, together * -(-len(offsets[0]) // per))
        for start in range(0, len(commands), per_write):
            group = commands[start:start + per_write]
            conn.send_packed_command([b"".join(group)])
            for _ in group:
                reply = conn.read_response()
                assert reply[0] == GENERATION
    finally:
        client.connection_pool.release(conn)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"))
    parser.add_argument("--offsets", type=int, default=1_000_000, help="offsets each mechanism sets")
    parser.add_argument("--shards", type=int, default=16)
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url, socket_timeout=120)
    # national capacity's layout: 64 MiB shards
    pointer = Pointer(GENERATION, Layout.for_capacity(2_300_000_000))
    store = RedisStore(client)
    keys = [store.key(GENERATION, i) for i in range(args.shards)]
    header = GENERATION.to_bytes(8, "big")
    rng = np.random.default_rng(7)
    print(f"bench/bloom_writes: {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()[0]:.2f}, "
          f"{args.offsets:,} offsets over {args.shards} keys of 64 MiB", flush=True)
    try:
        for key in keys:
            client.set(key, header.ljust(HEADER_SIZE, b"\0"))
            client.setrange(key, HEADER_SIZE + pointer.layout.bits_bytes - 1, b"\0")
        per_key = args.offsets // args.shards
        runs = [
            ("lua-setbit 4096", lambda k, o: _setbit_script(client, k, o, header)),
            ("lua-bitfield 1500 sorted", lambda k, o: _lua_bitfield(client, k, o, header)),
            ("bitfield 4096", lambda k, o: _bitfield(client, k, o, header, 4096, False)),
            ("bitfield 4096 sorted", lambda k, o: _bitfield(client, k, o, header, 4096, True)),
            ("bitfield 32768 sorted", lambda k, o: _bitfield(client, k, o, header, 32768, True)),
            ("bitfield 4096 sorted ×16", lambda k, o: _bitfield(client, k, o, header, 4096, True, together=16)),
            ("write_bits", lambda k, o: store.write_bits(pointer, dict(enumerate(o)), building=False)),
        ]
        print(f"{'mechanism':<26} {'offsets/s':>10} {'client µs/offset':>17} {'Redis µs/offset':>16}")
        for name, run in runs:
            offsets = [rng.integers(0, pointer.layout.num_bits, per_key, dtype=np.uint64) for _ in keys]
            before = _stats(client)
            cpu, wall = time.process_time(), time.perf_counter()
            run(keys, offsets)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            usec = _redis_usec(before, _stats(client))
            n = per_key * len(keys)
            print(f"{name:<26} {n / wall:>10,.0f} {cpu * 1e6 / n:>17.3f} {usec / n:>16.3f}", flush=True)
            for key, offs in zip(keys, offsets):  # every bit set?
                got = client.execute_command("BITFIELD_RO", key, *[a for o in offs[:200].tolist()
                                                                   for a in ("GET", "u1", HEADER_BITS + o)])
                assert all(got), name
        bitmap = np.zeros(pointer.layout.bits_bytes, dtype=np.uint8)
        bitmap[rng.integers(0, len(bitmap), 1000)] = 1
        before = _stats(client)
        cpu, wall = time.process_time(), time.perf_counter()
        merges = 4
        for shard in range(merges):
            assert store.merge_bits(pointer, shard, bitmap, building=False)
        wall, cpu = (time.perf_counter() - wall) / merges, (time.process_time() - cpu) / merges
        usec = _redis_usec(before, _stats(client)) / merges
        print(f"bitmap merge of 64 MiB: {wall:.3f} s a shard, client CPU {cpu:.3f} s, Redis {usec / 1e6:.3f} s", flush=True)
    finally:
        client.delete(*keys)
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
