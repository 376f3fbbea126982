"""The transparency log: an append-only Merkle tree (RFC 9162) of salted commitments to every
registration, withdrawal and restore, with signed checkpoints (C2SP tlog-checkpoint, signed-note).
See docs/transparency.md."""
