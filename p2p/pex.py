"""Peer exchange messages (channel PEX): requests, address lists, and keepalive pings.

    request = [1]
    addrs   = [2, [[peer id (20 bytes), host, port], ...]]   at most MAX_PEX_ADDRS entries
    ping    = [3]
"""

from __future__ import annotations

from dataclasses import dataclass

from core.encoding import decode, encode
from core.errors import DecodeError
from p2p.errors import P2PError
from p2p.ids import MAX_HOST_LENGTH, PEER_ID_SIZE

PEX_REQUEST, PEX_ADDRS, PEX_PING = 1, 2, 3
MAX_PEX_ADDRS = 100
MAX_PEX_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class PexMessage:
    kind: int
    addrs: tuple[tuple[bytes, str, int], ...] = ()


def encode_request() -> bytes:
    return encode([PEX_REQUEST])


def encode_ping() -> bytes:
    return encode([PEX_PING])


def encode_addrs(addrs: list[tuple[bytes, str, int]]) -> bytes:
    return encode([PEX_ADDRS, [[pid, host, port] for pid, host, port in addrs[:MAX_PEX_ADDRS]]])


def _bad(reason: str) -> P2PError:
    return P2PError(f"bad PEX message: {reason}", "bad_pex")


def decode_pex(payload: bytes) -> PexMessage:
    """Raises P2PError (name bad_pex) for anything but a well-formed PEX message."""
    try:
        value = decode(payload, MAX_PEX_BYTES)
    except DecodeError as exc:
        raise _bad(str(exc)) from None
    if not isinstance(value, list) or not value or type(value[0]) is not int:
        raise _bad("not a [kind, ...] array")
    kind = value[0]
    if kind in (PEX_REQUEST, PEX_PING):
        if len(value) != 1:
            raise _bad("request/ping take no fields")
        return PexMessage(kind)
    if kind != PEX_ADDRS or len(value) != 2 or not isinstance(value[1], list):
        raise _bad(f"unknown kind {kind}")
    if len(value[1]) > MAX_PEX_ADDRS:
        raise _bad(f"more than {MAX_PEX_ADDRS} addresses")
    addrs = []
    for item in value[1]:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], bytes)
                and len(item[0]) == PEER_ID_SIZE and isinstance(item[1], str)
                and 0 < len(item[1]) <= MAX_HOST_LENGTH and type(item[2]) is int
                and 0 < item[2] <= 65535):
            raise _bad("an address is not [id, host, port]")
        if any(c.isspace() or c in "@/" for c in item[1]):
            raise _bad("an address has a bad host")
        addrs.append((item[0], item[1], item[2]))
    return PexMessage(PEX_ADDRS, tuple(addrs))
