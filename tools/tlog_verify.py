#!/usr/bin/env python3
"""Check a registry answer against its transparency log, without trusting the registry.

Needs only the Python standard library and ``cryptography`` (for Ed25519). Given a verify answer
fetched with ``proof=1`` and the log's verifier key (published out of band; ``GET /log/key``
lists it), it checks:

1. the checkpoint is a signed note (C2SP signed-note) signed by that key, whose origin is the
   key's name (C2SP tlog-checkpoint: origin, tree size, base64 root hash);
2. each logged entry names the answer's number and an institution the answer names, its
   commitment recomputes from USCC, number, document fingerprint and salt, and its inclusion
   proof leads to the checkpoint's root (RFC 9162 §2.1.3.2);
3. with ``--state FILE``: the checkpoint extends the last one this script accepted — the same
   root at the same size, or a consistency proof (RFC 9162 §2.1.4.2) from ``--server`` (``GET
   /log/consistency``) or ``--consistency FILE`` — and is then remembered.

    python tools/tlog_verify.py --key 'registry.localhost/tlog+1a2b3c4d+AX…' --answer answer.json \\
        --state ~/.registry-log.json --server https://verify.example.cn

Exit status: 0 verified; 1 the answer or the log failed a check (the reason on stderr); 2 bad
arguments or unreadable input. Entries the log has not integrated yet (``"pending": true``) are
reported, and are not an error. The verifier is written from the specifications, independently of
the registry's own code: see docs/transparency.md.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import urllib.parse
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Failed(Exception):
    """A check failed: the evidence does not hold."""


# --- keys and signed notes -------------------------------------------------------------------
def read_verifier_key(text: str) -> tuple[str, bytes, bytes]:
    """(name, 4-byte key hash, 32-byte public key) of ``<name>+<hex hash>+<base64(0x01 ‖ key)>``."""
    name, _, rest = text.strip().partition("+")
    hash_hex, _, key64 = rest.partition("+")
    key = base64.b64decode(key64, validate=True)
    if not name or len(key) != 33 or key[0] != 1:
        raise ValueError("not an Ed25519 verifier key <name>+<hash>+<base64>")
    key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    if key_id.hex() != hash_hex.lower():
        raise ValueError("the verifier key's hash does not match its name and key")
    return name, key_id, key[1:]


def open_checkpoint(note: str, key: tuple[str, bytes, bytes]) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint note carrying a valid signature by ``key``."""
    name, key_id, public = key
    text, sep, signatures = note.partition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise Failed("the checkpoint is not a signed note")
    text += "\n"
    good = False
    for line in signatures[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise Failed("a signature line of the checkpoint is malformed")
        signer, _, blob64 = line[2:].partition(" ")
        blob = base64.b64decode(blob64)
        if signer == name and blob[:4] == key_id and len(blob) == 68:
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], text.encode())
            except InvalidSignature:
                raise Failed("the checkpoint's signature is not valid for the key") from None
            good = True
    if not good:
        raise Failed(f"the checkpoint is not signed by the key {name}")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or lines[0] != name or not lines[1].isdigit():
        raise Failed("the checkpoint's origin, size or root is malformed")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32:
        raise Failed("the checkpoint's root hash is not 32 bytes")
    return lines[0], int(lines[1]), root


# --- RFC 9162 ---------------------------------------------------------------------------------
def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root an inclusion proof leads to (Failed if malformed)."""
    if index >= size:
        raise Failed("leaf index beyond the tree size")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Failed("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Failed("the inclusion proof is too short")
    return r


def check_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]) -> None:
    """RFC 9162 §2.1.4.2: raise Failed unless ``proof`` shows tree ``second`` extends ``first``."""
    if first == second:
        if proof or first_root != second_root:
            raise Failed("same size, different root: the log forked")
        return
    if not 0 < first < second or not proof:
        raise Failed("a consistency proof needs 0 < old size < new size and some hashes")
    if first & (first - 1) == 0:
        proof = [first_root, *proof]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise Failed("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_root or sr != second_root:
        raise Failed(f"the checkpoint of size {second} does not extend the one of size {first}")


# --- the answer -----------------------------------------------------------------------------
def check_answer(answer: dict, key: tuple[str, bytes, bytes]) -> tuple[tuple[str, int, bytes], list[str]]:
    """Check every entry of a verify answer's ``log``; returns the checkpoint and a report."""
    log = answer.get("log")
    if not isinstance(log, dict):
        raise Failed("the answer has no 'log': ask with proof=1")
    if log.get("checkpoint") is None:
        raise Failed("the log has no checkpoint yet")
    origin, size, root = open_checkpoint(log["checkpoint"], key)
    named = {answer.get("institution", {}).get("uscc")} if answer.get("institution") else set()
    named |= {c.get("uscc") for c in answer.get("candidates") or []}
    report = [f"checkpoint {origin} size {size} signed by {key[0]}"]
    for item in log.get("entries") or []:
        entry_text = item["entry"]
        entry = json.loads(entry_text)
        if item["number"] != answer.get("number") or item["uscc"] not in named:
            raise Failed(f"an entry names {item['uscc']}/{item['number']}, which the answer does not")
        salt = base64.b64decode(item["salt"], validate=True)
        fingerprint = item.get("sha256") or ""
        digest = hashlib.sha256(f"{item['uscc']}\n{item['number']}\n{fingerprint}\n".encode() + salt).hexdigest()
        if digest != entry.get("commitment"):
            raise Failed(f"the commitment of the {entry.get('action')} entry does not match its number, USCC and salt")
        if item.get("pending"):
            report.append(f"pending (not yet in the log): {entry['action']} at {entry['at']}")
            continue
        leaf = hashlib.sha256(b"\x00" + entry_text.encode()).digest()
        proof = [base64.b64decode(h, validate=True) for h in item["inclusion"]]
        if root_from_inclusion(item["leaf_index"], size, leaf, proof) != root:
            raise Failed(f"entry {item['leaf_index']} is not included in the checkpoint")
        report.append(f"included at {item['leaf_index']}: {entry['action']} at {entry['at']}")
    return (origin, size, root), report


def check_extends(state: dict | None, checkpoint: tuple[str, int, bytes], fetch_consistency) -> None:
    """Refuse a checkpoint that does not extend the remembered one."""
    if not state:
        return
    origin, size, root = checkpoint
    old_size, old_root = int(state["size"]), base64.b64decode(state["root"])
    if state.get("origin") != origin:
        raise Failed(f"the remembered checkpoint is of another log ({state.get('origin')})")
    if size < old_size:
        raise Failed(f"the log shrank: size {size} after {old_size}")
    if size == old_size:
        check_consistency(size, size, old_root, root, [])
        return
    proof = fetch_consistency(old_size, size)
    check_consistency(old_size, size, old_root, root, [base64.b64decode(h, validate=True) for h in proof])


def fetch_from(server: str):
    def fetch(old: int, new: int) -> list[str]:
        query = urllib.parse.urlencode({"from": old, "to": new})
        with urllib.request.urlopen(f"{server.rstrip('/')}/log/consistency?{query}", timeout=30) as response:
            return json.load(response)["consistency"]
    return fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", required=True, help="the verifier key text, or @FILE holding it")
    parser.add_argument("--answer", required=True, help="a verify answer fetched with proof=1 (a file, or - for stdin)")
    parser.add_argument("--state", help="remember the checkpoint here and demand consistency with the last one")
    parser.add_argument("--server", help="the registry's base URL, to ask for consistency proofs")
    parser.add_argument("--consistency", help="a saved answer of GET /log/consistency instead of --server")
    args = parser.parse_args(argv)
    try:
        key_text = open(args.key[1:], encoding="utf-8").read().split("\n")[0] if args.key.startswith("@") else args.key
        key = read_verifier_key(key_text)
        stream = sys.stdin if args.answer == "-" else open(args.answer, encoding="utf-8")
        with stream:
            answer = json.load(stream)
        state = None
        if args.state:
            try:
                with open(args.state, encoding="utf-8") as fh:
                    state = json.load(fh)
            except FileNotFoundError:
                state = None
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def consistency(old: int, new: int) -> list[str]:
        if args.consistency:
            with open(args.consistency, encoding="utf-8") as fh:
                return json.load(fh)["consistency"]
        if args.server:
            return fetch_from(args.server)(old, new)
        raise Failed(f"a consistency proof from size {old} to {new} is needed: give --server or --consistency")

    try:
        checkpoint, report = check_answer(answer, key)
        check_extends(state, checkpoint, consistency)
    except (Failed, KeyError, TypeError, ValueError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    if args.state:
        origin, size, root = checkpoint
        with open(args.state, "w", encoding="utf-8") as fh:
            json.dump({"origin": origin, "size": size, "root": base64.b64encode(root).decode()}, fh)
    for line in report:
        print(line)
    print("verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
