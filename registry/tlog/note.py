"""Keys, checkpoints and signed notes: C2SP ``signed-note`` and ``tlog-checkpoint``, keys in the
text formats of Go's ``golang.org/x/mod/sumdb/note`` (Ed25519, algorithm byte 0x01).

    signer key:   PRIVATE+KEY+<name>+<8 hex key hash>+<base64(0x01 ‖ 32-byte seed)>
    verifier key: <name>+<8 hex key hash>+<base64(0x01 ‖ 32-byte public key)>
    key hash:     first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)
    signature:    "— <name> <base64(key hash ‖ 64-byte signature)>" after the note text and an empty line
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space


class KeyFormatError(ValueError):
    """A key text that is not a well-formed key of the expected kind."""


class NoteError(ValueError):
    """A note or checkpoint that is malformed or not signed by the expected key."""


def valid_name(name: str) -> bool:
    return bool(name) and name.isprintable() and not any(c.isspace() or c == "+" for c in name)


def key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public).digest()[:4]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise KeyFormatError("not base64") from None


@dataclass(frozen=True)
class Verifier:
    name: str
    public: bytes

    @property
    def hash(self) -> bytes:
        return key_hash(self.name, self.public)

    def text(self) -> str:
        return f"{self.name}+{self.hash.hex()}+{_b64(ALG_ED25519 + self.public)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> "Signer":
        if not valid_name(name):
            raise KeyFormatError(f"a key name has no spaces and no '+': {name!r}")
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(name, seed)

    @property
    def verifier(self) -> Verifier:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, public)

    def text(self) -> str:
        return f"PRIVATE+KEY+{self.name}+{self.verifier.hash.hex()}+{_b64(ALG_ED25519 + self.seed)}"

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


def parse_signer(text: str) -> Signer:
    parts = text.strip().split("+", 4)  # base64 may hold '+' too
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise KeyFormatError("a signing key reads PRIVATE+KEY+<name>+<hash>+<key>")
    name, hash_hex, key = parts[2], parts[3], _unb64(parts[4])
    if not valid_name(name) or len(key) != 33 or key[:1] != ALG_ED25519:
        raise KeyFormatError("not an Ed25519 signing key in the sumdb/note format")
    signer = Signer(name, key[1:])
    if signer.verifier.hash.hex() != hash_hex.lower():
        raise KeyFormatError("the signing key's hash does not match its name and key")
    return signer


def parse_verifier(text: str) -> Verifier:
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise KeyFormatError("a verifier key reads <name>+<hash>+<key>")
    name, hash_hex, key = parts[0], parts[1], _unb64(parts[2])
    if not valid_name(name) or len(key) != 33 or key[:1] != ALG_ED25519:
        raise KeyFormatError("not an Ed25519 verifier key in the sumdb/note format")
    verifier = Verifier(name, key[1:])
    if verifier.hash.hex() != hash_hex.lower():
        raise KeyFormatError("the verifier key's hash does not match its name and key")
    return verifier


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n"


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The checkpoint as a signed note: its text, an empty line, the signature line."""
    body = checkpoint.body()
    sig = signer.sign(body.encode())
    return f"{body}\n{SIGNATURE_PREFIX}{signer.name} {_b64(signer.verifier.hash + sig)}\n"


def open_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """The checkpoint of a signed note, once a signature of ``verifier`` over it checks out."""
    body, sep, signatures = note.partition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise NoteError("not a signed note")
    body += "\n"
    signed = False
    for line in signatures[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line starts with '— '")
        name, _, blob = line[len(SIGNATURE_PREFIX):].partition(" ")
        try:
            raw = _unb64(blob)
        except KeyFormatError:
            raise NoteError("a signature is not base64") from None
        if name == verifier.name and raw[:4] == verifier.hash and len(raw) == 68:
            if not verifier.verify(body.encode(), raw[4:]):
                raise NoteError("the checkpoint's signature does not verify")
            signed = True
    if not signed:
        raise NoteError(f"the checkpoint is not signed by {verifier.name}")
    lines = body[:-1].split("\n")
    if len(lines) < 3 or not lines[1].isdigit():
        raise NoteError("a checkpoint has an origin, a size and a root hash")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        raise NoteError("the root hash is not base64") from None
    if len(root) != 32 or lines[0] != verifier.name:
        raise NoteError("the checkpoint's origin or root hash is wrong")
    return Checkpoint(lines[0], int(lines[1]), root)
