"""The authenticated key exchange, sans-IO.

Both sides send a hello at once (no round trip is wasted waiting for the other):

    hello = length (4 bytes) || encode([version, chain_id, ephemeral X25519 public key,
                                        node ed25519 public key, listen "host:port",
                                        moniker, max_frame_bytes])

Each side then computes the X25519 shared secret and the transcript hash over both hellos
in role order (initiator = the dialler), derives one key per direction from them, and sends
its signature (DOMAIN_HANDSHAKE, chain id) over role || transcript as the first sealed frame.
A man in the middle who swaps ephemeral keys changes the transcript each side sees, so
neither signature verifies for the other side (and the frames do not even open).

Refused: another protocol version or chain id, a connection to ourselves, a dialled peer
whose id is not the expected one, malformed or oversized hellos, low-order keys, and a bad
signature. Every refusal raises HandshakeError with a stable name.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import nacl.bindings

from core.encoding import decode, encode
from core.errors import DecodeError
from core.hashing import sha256, tagged_hash
from core.keys import DOMAIN_HANDSHAKE, SIGNATURE_SIZE, PrivateKey, verify
from p2p.errors import FrameError, HandshakeError
from p2p.ids import node_id_of, parse_host_port
from p2p.session import LENGTH_SIZE, TAG_SIZE, SecureSession

PROTOCOL_VERSION = 1
MAX_HELLO_BYTES = 1024
MAX_MONIKER_LENGTH = 64
MAX_LISTEN_LENGTH = 300
MIN_FRAME_BYTES = 4096
_LENGTH = struct.Struct(">I")
_PUBKEY_SIZE = 32
_I2R = b"p2p/initiator->responder"
_R2I = b"p2p/responder->initiator"


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    chain_id: str
    ephemeral_public: bytes
    node_public: bytes
    listen_address: str
    moniker: str
    max_frame_bytes: int

    def encode(self) -> bytes:
        return encode([self.version, self.chain_id, self.ephemeral_public, self.node_public,
                       self.listen_address, self.moniker, self.max_frame_bytes])


def decode_hello(data: bytes) -> Hello:
    """Parse and shape-check a hello body. Raises HandshakeError only."""
    try:
        value = decode(data, MAX_HELLO_BYTES)
    except DecodeError as exc:
        raise HandshakeError(f"hello is not canonical: {exc}", "bad_hello") from None
    if not isinstance(value, list) or len(value) != 7:
        raise HandshakeError("hello must be a 7-field array", "bad_hello")
    version, chain_id, eph, node_pub, listen, moniker, max_frame = value
    if type(version) is not int:
        raise HandshakeError("hello version is not an integer", "bad_hello")
    if not isinstance(chain_id, str) or len(chain_id) > 64:
        raise HandshakeError("hello chain id is not a short string", "bad_hello")
    if not isinstance(eph, bytes) or len(eph) != _PUBKEY_SIZE:
        raise HandshakeError("hello ephemeral key is not 32 bytes", "bad_hello")
    if not isinstance(node_pub, bytes) or len(node_pub) != _PUBKEY_SIZE:
        raise HandshakeError("hello node key is not 32 bytes", "bad_hello")
    if not isinstance(listen, str) or len(listen) > MAX_LISTEN_LENGTH:
        raise HandshakeError("hello listen address is not a short string", "bad_hello")
    if listen:
        try:
            parse_host_port(listen)
        except ValueError:
            raise HandshakeError("hello listen address is not host:port", "bad_hello") from None
    if not isinstance(moniker, str) or len(moniker) > MAX_MONIKER_LENGTH:
        raise HandshakeError("hello moniker is not a short string", "bad_hello")
    if type(max_frame) is not int or not MIN_FRAME_BYTES <= max_frame <= 1 << 30:
        raise HandshakeError("hello max frame size is out of range", "bad_hello")
    return Hello(version, chain_id, eph, node_pub, listen, moniker, max_frame)


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    peer_public_key: bytes
    peer_id: bytes
    listen_address: str  # as the peer announced it ("" if it does not listen)
    moniker: str
    peer_max_frame_bytes: int
    session: SecureSession
    early_data: bytes = b""  # bytes that arrived right after the handshake: feed them first


class Handshake:
    """Consumes received bytes, produces bytes to send, ends with a SecureSession.

    Usage: send `start()`; then for each chunk received, send what `receive_data(chunk)`
    returns, until `result` is set. Raises HandshakeError on any refusal.
    """

    def __init__(self, node_key: PrivateKey, chain_id: str, *, initiator: bool,
                 listen_address: str = "", moniker: str = "", max_frame_bytes: int = 1 << 20,
                 expected_peer_id: bytes | None = None, ephemeral_secret: bytes | None = None):
        self.node_key = node_key
        self.chain_id = chain_id
        self.initiator = initiator
        self.expected_peer_id = expected_peer_id
        self.max_frame_bytes = max_frame_bytes
        self._eph_secret = ephemeral_secret or os.urandom(32)
        eph_public = nacl.bindings.crypto_scalarmult_base(self._eph_secret)
        self._hello = Hello(PROTOCOL_VERSION, chain_id, eph_public, node_key.public_key,
                            listen_address, moniker[:MAX_MONIKER_LENGTH], max_frame_bytes)
        self._hello_bytes = self._hello.encode()
        self._buffer = bytearray()
        self._peer_hello: Hello | None = None
        self._session: SecureSession | None = None
        self._transcript = b""
        self._peer_frame = max_frame_bytes
        self.result: HandshakeResult | None = None

    def start(self) -> bytes:
        return _LENGTH.pack(len(self._hello_bytes)) + self._hello_bytes

    def receive_data(self, data: bytes) -> bytes:
        if self.result is not None:
            raise HandshakeError("handshake already complete", "handshake_state")
        if self._session is not None:
            return self._receive_auth(data)
        self._buffer += data
        if len(self._buffer) < LENGTH_SIZE:
            return b""
        (length,) = _LENGTH.unpack_from(self._buffer, 0)
        if length > MAX_HELLO_BYTES or length == 0:
            raise HandshakeError(f"hello of {length} bytes is out of bounds", "bad_hello")
        if len(self._buffer) < LENGTH_SIZE + length:
            return b""
        body = bytes(self._buffer[LENGTH_SIZE:LENGTH_SIZE + length])
        rest = bytes(self._buffer[LENGTH_SIZE + length:])
        self._buffer.clear()
        out = self._on_hello(decode_hello(body), body)
        if rest:
            self._receive_auth(rest)
        return out

    def _on_hello(self, peer: Hello, peer_bytes: bytes) -> bytes:
        if peer.version != PROTOCOL_VERSION:
            raise HandshakeError(f"peer speaks protocol version {peer.version}",
                                 "version_mismatch")
        if peer.chain_id != self.chain_id:
            raise HandshakeError(f"peer is on chain {peer.chain_id!r}", "wrong_chain")
        if peer.node_public == self.node_key.public_key:
            raise HandshakeError("connected to ourselves", "self_connection")
        peer_id = node_id_of(peer.node_public)
        if self.expected_peer_id is not None and peer_id != self.expected_peer_id:
            raise HandshakeError(f"dialled {self.expected_peer_id.hex()} but reached "
                                 f"{peer_id.hex()}", "unexpected_peer_id")
        try:
            shared = nacl.bindings.crypto_scalarmult(self._eph_secret, peer.ephemeral_public)
        except Exception:  # libsodium refuses low-order points (all-zero result)
            raise HandshakeError("peer ephemeral key is of low order", "bad_ephemeral") from None
        if shared == bytes(32):
            raise HandshakeError("peer ephemeral key is of low order", "bad_ephemeral")
        first, second = ((self._hello_bytes, peer_bytes) if self.initiator
                         else (peer_bytes, self._hello_bytes))
        self._transcript = sha256(b"chainmerce-p2p-v1" + _LENGTH.pack(len(first)) + first
                                  + _LENGTH.pack(len(second)) + second)
        k_i2r = tagged_hash(_I2R, shared + self._transcript)
        k_r2i = tagged_hash(_R2I, shared + self._transcript)
        send_key, recv_key = (k_i2r, k_r2i) if self.initiator else (k_r2i, k_i2r)
        frame = min(self.max_frame_bytes, peer.max_frame_bytes)
        # the auth frame is tiny; the real limit for what we accept is ours
        self._session = SecureSession(send_key, recv_key, self.max_frame_bytes)
        self._peer_hello = peer
        self._peer_frame = frame
        return self._session.seal(self.node_key.sign(DOMAIN_HANDSHAKE, self.chain_id,
                                                     self._role(self.initiator)))

    def _role(self, initiator: bool) -> bytes:
        return (b"I" if initiator else b"R") + self._transcript

    def _receive_auth(self, data: bytes) -> bytes:
        session, peer = self._session, self._peer_hello
        assert session is not None and peer is not None
        self._buffer += data
        if len(self._buffer) < LENGTH_SIZE:
            return b""
        (length,) = _LENGTH.unpack_from(self._buffer, 0)
        if length != TAG_SIZE + SIGNATURE_SIZE:
            raise HandshakeError(f"auth frame of {length} bytes", "bad_auth")
        if len(self._buffer) < LENGTH_SIZE + length:
            return b""
        end = LENGTH_SIZE + length
        early_data = bytes(self._buffer[end:])
        try:
            session.feed(bytes(self._buffer[:end]))
            signature = session.read_frame()
        except FrameError as exc:
            raise HandshakeError(f"auth frame does not open: {exc}", "bad_auth") from None
        finally:
            self._buffer.clear()
        if signature is None or not verify(peer.node_public, DOMAIN_HANDSHAKE, self.chain_id,
                                           self._role(not self.initiator), signature):
            raise HandshakeError("peer's handshake signature does not verify", "bad_signature")
        self.result = HandshakeResult(peer.node_public, node_id_of(peer.node_public),
                                      peer.listen_address, peer.moniker, self._peer_frame,
                                      session, early_data)
        return b""
