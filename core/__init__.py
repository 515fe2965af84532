"""Primitives every other package builds on. Imports nothing of ours.

- encoding: canonical msgpack (positional arrays, ints, bytes, str) with strict decoding
- hashing:  SHA-256 everywhere
- keys:     ed25519 keys, domain-separated signatures bound to a chain id
- address:  20-byte account addresses with a checksummed bech32m text form
- merkle:   RFC 6962 Merkle roots and inclusion proofs
"""
