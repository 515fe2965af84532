"""Errors the p2p layer raises on bad input from a peer. Each carries a stable name."""

from __future__ import annotations


class P2PError(Exception):
    """Base class: a peer (or an address) broke the protocol; the connection is closed."""

    name = "p2p_error"

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        if name is not None:
            self.name = name


class HandshakeError(P2PError):
    """The handshake failed: wrong chain, version, key, signature, size, or peer id."""

    name = "handshake_failed"


class FrameError(P2PError):
    """A sealed frame was oversized, tampered with, replayed, reordered, or undecodable."""

    name = "bad_frame"
