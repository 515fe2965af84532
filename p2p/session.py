"""Sealed frames and message batches, sans-IO.

Wire format after the handshake, in each direction:

    frame     = length (4 bytes, big-endian) || ChaCha20-Poly1305-IETF(key, nonce, batch)
    nonce     = 4 zero bytes || frame counter (8 bytes, little-endian), one counter per direction
    batch     = record*
    record    = channel (1 byte) || flags (1 byte) || size (4 bytes, big-endian) || part
    flags     = bit 0 MORE: the message continues in the next record (a message larger than
                a frame is cut into parts; parts of one message are always consecutive)

`length` counts the sealed bytes (ciphertext + 16-byte tag) and is checked against the
maximum frame size before the body is read. The counter is implicit, so a replayed,
reordered, dropped or altered frame fails to open and the connection is closed.
Sealing a batch, not each message, is the point: one AEAD call and one write carry many
small messages.
"""

from __future__ import annotations

import struct
from collections import deque

import nacl.bindings
import nacl.exceptions

from p2p.errors import FrameError

KEY_SIZE = 32
TAG_SIZE = 16
LENGTH_SIZE = 4
RECORD_HEADER = struct.Struct(">BBI")
FLAG_MORE = 1
_LENGTH = struct.Struct(">I")
_NONCE_PREFIX = b"\x00\x00\x00\x00"
_encrypt = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt
_decrypt = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt


def _nonce(counter: int) -> bytes:
    return _NONCE_PREFIX + counter.to_bytes(8, "little")


class SecureSession:
    """One connection's sealing state: a key and a frame counter per direction."""

    __slots__ = ("_send_key", "_recv_key", "_send_counter", "_recv_counter",
                 "max_frame_bytes", "_buffer", "_pos")

    def __init__(self, send_key: bytes, recv_key: bytes, max_frame_bytes: int):
        if len(send_key) != KEY_SIZE or len(recv_key) != KEY_SIZE:
            raise ValueError("session keys are 32 bytes")
        if max_frame_bytes <= TAG_SIZE:
            raise ValueError("max_frame_bytes must exceed the 16-byte tag")
        self._send_key = send_key
        self._recv_key = recv_key
        self._send_counter = 0
        self._recv_counter = 0
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._pos = 0

    def seal(self, plaintext: bytes) -> bytes:
        """The length-prefixed sealed frame carrying `plaintext`."""
        if len(plaintext) + TAG_SIZE > self.max_frame_bytes:
            raise ValueError("plaintext does not fit in one frame")
        sealed = _encrypt(plaintext, None, _nonce(self._send_counter), self._send_key)
        self._send_counter += 1
        return _LENGTH.pack(len(sealed)) + sealed

    def feed(self, data: bytes) -> None:
        """Buffer received bytes; `read_frame` opens them. Checks the pending length at once."""
        self._buffer += data
        self._check_pending_length()

    def _check_pending_length(self) -> None:
        available = len(self._buffer) - self._pos
        if available >= LENGTH_SIZE:
            (length,) = _LENGTH.unpack_from(self._buffer, self._pos)
            if length > self.max_frame_bytes:
                raise FrameError(f"frame of {length} bytes exceeds the limit of "
                                 f"{self.max_frame_bytes}", "frame_too_large")
            if length < TAG_SIZE:
                raise FrameError(f"frame of {length} bytes is shorter than its tag",
                                 "frame_too_short")

    def read_frame(self) -> bytes | None:
        """The next opened plaintext, or None until a whole frame has arrived."""
        buffer, pos = self._buffer, self._pos
        if len(buffer) - pos < LENGTH_SIZE:
            return None
        self._check_pending_length()
        (length,) = _LENGTH.unpack_from(buffer, pos)
        end = pos + LENGTH_SIZE + length
        if len(buffer) < end:
            return None
        sealed = bytes(buffer[pos + LENGTH_SIZE:end])
        try:
            plaintext = _decrypt(sealed, None, _nonce(self._recv_counter), self._recv_key)
        except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError,
                nacl.exceptions.TypeError) as exc:
            raise FrameError("frame does not open (tampered, replayed or reordered)",
                             "bad_mac") from exc
        self._recv_counter += 1
        if end == len(buffer):
            buffer.clear()
            self._pos = 0
        elif end > 65536 and end * 2 > len(buffer):
            del buffer[:end]
            self._pos = 0
        else:
            self._pos = end
        self._check_pending_length()
        return plaintext

    def receive_data(self, data: bytes) -> list[bytes]:
        """feed + every complete frame's plaintext."""
        self.feed(data)
        out = []
        while (plaintext := self.read_frame()) is not None:
            out.append(plaintext)
        return out


class Outbox:
    """A peer's send queue: messages in, frame plaintexts out (bounded by a byte budget).

    Messages leave in the order they were pushed. Whatever is queued when the writer runs
    is packed into as few frames as possible; a message bigger than the budget is cut into
    consecutive parts.
    """

    __slots__ = ("_queue", "_head_offset", "queued_bytes", "messages_taken")

    def __init__(self) -> None:
        self._queue: deque[tuple[int, bytes]] = deque()
        self._head_offset = 0
        self.queued_bytes = 0
        self.messages_taken = 0

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, channel: int, payload: bytes) -> None:
        self._queue.append((channel, payload))
        self.queued_bytes += len(payload)

    def clear(self) -> None:
        self._queue.clear()
        self._head_offset = 0
        self.queued_bytes = 0

    def next_plaintext(self, budget: int) -> bytes | None:
        """Up to `budget` bytes of records, or None when the queue is empty."""
        queue = self._queue
        if not queue:
            return None
        header_size = RECORD_HEADER.size
        if budget <= header_size:
            raise ValueError("frame budget too small")
        parts: list[bytes] = []
        room = budget
        pack = RECORD_HEADER.pack
        while queue and room > header_size:
            channel, payload = queue[0]
            offset = self._head_offset
            remaining = len(payload) - offset
            if remaining + header_size <= room:
                part = payload if offset == 0 else payload[offset:]
                parts.append(pack(channel, 0, remaining))
                parts.append(part)
                queue.popleft()
                self._head_offset = 0
                self.messages_taken += 1
                room -= remaining + header_size
                self.queued_bytes -= remaining
            else:
                if room - header_size < 64 and parts:
                    break  # not worth a sliver; the next frame starts the message
                size = room - header_size
                parts.append(pack(channel, FLAG_MORE, size))
                parts.append(payload[offset:offset + size])
                self._head_offset = offset + size
                self.queued_bytes -= size
                break
        return b"".join(parts)


class Inbox:
    """Frame plaintexts in, whole (channel, payload) messages out; reassembles parts."""

    __slots__ = ("max_message_bytes", "_pending_channel", "_pending_parts", "_pending_size")

    def __init__(self, max_message_bytes: int):
        self.max_message_bytes = max_message_bytes
        self._pending_channel = -1
        self._pending_parts: list[bytes] = []
        self._pending_size = 0

    def feed(self, plaintext: bytes) -> list[tuple[int, bytes]]:
        """Messages completed by this frame's records. Raises FrameError on a bad layout."""
        out: list[tuple[int, bytes]] = []
        header_size = RECORD_HEADER.size
        unpack = RECORD_HEADER.unpack_from
        total = len(plaintext)
        if total == 0:
            raise FrameError("empty batch", "bad_batch")
        pos = 0
        while pos < total:
            if total - pos < header_size:
                raise FrameError("truncated record header", "bad_batch")
            channel, flags, size = unpack(plaintext, pos)
            pos += header_size
            if flags & ~FLAG_MORE:
                raise FrameError(f"unknown record flags {flags}", "bad_batch")
            if size > total - pos:
                raise FrameError("record runs past the end of the frame", "bad_batch")
            part = plaintext[pos:pos + size]
            pos += size
            if self._pending_parts and channel != self._pending_channel:
                raise FrameError("a message's parts were interleaved", "bad_batch")
            if flags & FLAG_MORE and size == 0:
                raise FrameError("an empty message part", "bad_batch")
            if self._pending_size + size > self.max_message_bytes:
                raise FrameError("message exceeds the size limit", "message_too_large")
            if flags & FLAG_MORE:
                self._pending_channel = channel
                self._pending_parts.append(part)
                self._pending_size += size
            elif self._pending_parts:
                self._pending_parts.append(part)
                out.append((channel, b"".join(self._pending_parts)))
                self._pending_parts = []
                self._pending_size = 0
                self._pending_channel = -1
            else:
                out.append((channel, part))
        return out
