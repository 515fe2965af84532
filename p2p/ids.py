"""Peer ids and `id@host:port` addresses.

A peer id is the node key's address: the first 20 bytes of SHA-256 of its ed25519 public
key (core.address), written as 40 hex digits in peer addresses. Dialling an address checks
that the peer proves ownership of the key behind that id during the handshake.
"""

from __future__ import annotations

from core.address import address_from_pubkey

PEER_ID_SIZE = 20
MAX_HOST_LENGTH = 253


def node_id_of(public_key: bytes) -> bytes:
    return address_from_pubkey(public_key)


def parse_host_port(text: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); ValueError on bad input."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"address {text!r} is not host:port")
    host, _, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or len(host) > MAX_HOST_LENGTH or any(c.isspace() or c in "@/" for c in host):
        raise ValueError(f"address {text!r} has a bad host")
    if not port_text.isdigit() or len(port_text) > 5:
        raise ValueError(f"address {text!r} has a bad port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"address {text!r} has a port out of range")
    return host, port


def parse_peer_address(text: str) -> tuple[bytes, str, int]:
    """"<40 hex id>@host:port" -> (id, host, port); ValueError on bad input."""
    if not isinstance(text, str) or text.count("@") != 1:
        raise ValueError(f"peer address {text!r} is not id@host:port")
    id_text, _, rest = text.partition("@")
    if len(id_text) != 2 * PEER_ID_SIZE:
        raise ValueError(f"peer address {text!r}: the id must be {2 * PEER_ID_SIZE} hex digits")
    try:
        peer_id = bytes.fromhex(id_text)
    except ValueError:
        raise ValueError(f"peer address {text!r}: the id is not hex") from None
    host, port = parse_host_port(rest)
    if port == 0:
        raise ValueError(f"peer address {text!r}: port 0 cannot be dialled")
    return peer_id, host, port


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_peer_address(peer_id: bytes, host: str, port: int) -> str:
    return f"{peer_id.hex()}@{format_host_port(host, port)}"
