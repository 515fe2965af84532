"""The validator's last-signed (height, round, step): the guard against double-signing.

Consensus saves the state BEFORE a signed proposal or vote leaves the process, and checks it
before signing anything, so a restart can never sign a second, different message for a
step it already signed. The file is therefore written atomically and durably, it can only
move forward, and a file that cannot be read is an error the operator must look at: never
a silent reset.

File format (big-endian):

    magic "CMSIGN01" (8) | payload length (4) | CRC32 of payload (4) | payload

payload = canonical encoding of [height, round, step, extra] where `extra` is opaque bytes
for consensus (e.g. the signed message, to re-send it unchanged after a restart).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

from core.encoding import decode, encode
from core.errors import CoreError
from storage.errors import SigningStateError
from storage.fileutil import atomic_write

MAGIC = b"CMSIGN01"
_HEADER = struct.Struct(">II")
MAX_PAYLOAD = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SigningState:
    height: int
    round: int
    step: int
    extra: bytes = b""

    def position(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)


def encode_signing_state(state: SigningState) -> bytes:
    payload = encode([state.height, state.round, state.step, state.extra])
    return MAGIC + _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_signing_state(data: bytes, where: str = "signing state") -> SigningState:
    head = len(MAGIC) + _HEADER.size
    if len(data) < head or data[: len(MAGIC)] != MAGIC:
        raise SigningStateError(f"{where}: not a signing-state file (bad magic or truncated)")
    length, crc = _HEADER.unpack_from(data, len(MAGIC))
    payload = data[head:]
    if length != len(payload) or length > MAX_PAYLOAD:
        raise SigningStateError(f"{where}: truncated or oversized ({len(payload)} of {length} bytes)")
    if zlib.crc32(payload) != crc:
        raise SigningStateError(f"{where}: checksum mismatch (file is corrupt)")
    try:
        value = decode(payload, MAX_PAYLOAD)
    except CoreError as exc:
        raise SigningStateError(f"{where}: bad payload: {exc}") from None
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(type(v) is int and v >= 0 for v in value[:3])
        or type(value[3]) is not bytes
    ):
        raise SigningStateError(f"{where}: payload is not [height, round, step, extra]")
    return SigningState(value[0], value[1], value[2], value[3])


class SigningStateFile:
    """Load and save the signing state at `path`.

    `load()` returns None only when the file does not exist (a validator that never
    signed). `save()` refuses to move (height, round, step) backwards.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._current: SigningState | None = None
        self._loaded = False

    def load(self) -> SigningState | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read(len(MAGIC) + _HEADER.size + MAX_PAYLOAD + 1)
        except FileNotFoundError:
            state = None
        except OSError as exc:
            raise SigningStateError(f"cannot read {self.path}: {exc.strerror}") from None
        else:
            state = decode_signing_state(data, self.path)
        self._current, self._loaded = state, True
        return state

    def save(self, state: SigningState) -> None:
        if (
            not all(type(v) is int and 0 <= v < 2**63 for v in state.position())
            or type(state.extra) is not bytes
        ):
            raise SigningStateError("signing state needs non-negative ints and bytes extra")
        if len(state.extra) > MAX_PAYLOAD // 2:
            raise SigningStateError("signing state extra bytes are too large")
        if not self._loaded:
            self.load()  # a corrupt file raises here instead of being overwritten
        current = self._current
        if current is not None and state.position() < current.position():
            raise SigningStateError(
                f"refusing to move signing state back from {current.position()} "
                f"to {state.position()}"
            )
        try:
            data = encode_signing_state(state)
        except CoreError as exc:
            raise SigningStateError(f"signing state cannot be encoded: {exc}") from None
        try:
            atomic_write(self.path, data)
        except OSError as exc:
            raise SigningStateError(f"cannot write {self.path}: {exc.strerror}") from None
        self._current = state

    @property
    def current(self) -> SigningState | None:
        return self._current
