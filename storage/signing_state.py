"""The validator's last-signed (height, round, step): the guard against double-signing.

Consensus saves the state BEFORE a signed proposal or vote leaves the process, and checks it
before signing anything, so a restart can never sign a second, different message for a
step it already signed. The state is therefore written durably, it can only move forward,
and a file that cannot be read is an error the operator must look at: never a silent reset.

File format: two fixed slots of SLOT_SIZE bytes, written in place in turn (big-endian):

    slot = magic "CMSIGN02" (8) | sequence (8) | payload length (4) |
           CRC32 of sequence + payload (4) | payload | zero padding

payload = canonical encoding of [height, round, step, extra] where `extra` is opaque bytes
for consensus (e.g. the signed message, to re-send it unchanged after a restart).

A save overwrites the slot that does not hold the current state and makes it durable with
one fdatasync: three saves per height, each once a rename plus two fsyncs (file and
directory), were a fifth of a lone validator's time. The valid slot with the higher
sequence is the state. A slot that fails its checksum can only be a save that power loss
interrupted, so its message never left the process, and the other slot is the state (said
in the log); two bad slots are an error. A file in the first format ("CMSIGN01", one
record) is read, and the next save replaces it with a two-slot file atomically.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass

from core.encoding import decode, encode
from core.errors import CoreError
from storage.errors import SigningStateError
from storage.fileutil import atomic_write

MAGIC = b"CMSIGN01"  # the first format: one record, replaced by rename on every save
_HEADER = struct.Struct(">II")
MAX_PAYLOAD = 1024 * 1024

SLOT_MAGIC = b"CMSIGN02"
_SLOT_HEADER = struct.Struct(">QII")  # sequence, payload length, CRC32(sequence + payload)
SLOT_SIZE = 4096
MAX_SLOT_PAYLOAD = SLOT_SIZE - len(SLOT_MAGIC) - _SLOT_HEADER.size

log = logging.getLogger("chainmerce.storage")


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
    """A file in the first format (one record)."""
    head = len(MAGIC) + _HEADER.size
    if len(data) < head or data[: len(MAGIC)] != MAGIC:
        raise SigningStateError(f"{where}: not a signing-state file (bad magic or truncated)")
    length, crc = _HEADER.unpack_from(data, len(MAGIC))
    payload = data[head:]
    if length != len(payload) or length > MAX_PAYLOAD:
        raise SigningStateError(f"{where}: truncated or oversized ({len(payload)} of {length} bytes)")
    if zlib.crc32(payload) != crc:
        raise SigningStateError(f"{where}: checksum mismatch (file is corrupt)")
    return _decode_payload(payload, where)


def encode_slot(state: SigningState, sequence: int) -> bytes:
    payload = encode([state.height, state.round, state.step, state.extra])
    if len(payload) > MAX_SLOT_PAYLOAD:
        raise SigningStateError(f"signing state of {len(payload)} bytes does not fit a "
                                f"{SLOT_SIZE}-byte slot")
    seq = sequence.to_bytes(8, "big")
    record = SLOT_MAGIC + _SLOT_HEADER.pack(sequence, len(payload),
                                            zlib.crc32(seq + payload)) + payload
    return record + bytes(SLOT_SIZE - len(record))


def decode_slot(slot: bytes, where: str) -> tuple[int, SigningState]:
    """(sequence, state) of one slot; SigningStateError when it is not a whole record."""
    head = len(SLOT_MAGIC) + _SLOT_HEADER.size
    if len(slot) != SLOT_SIZE or slot[:len(SLOT_MAGIC)] != SLOT_MAGIC:
        raise SigningStateError(f"{where}: bad magic or truncated")
    sequence, length, crc = _SLOT_HEADER.unpack_from(slot, len(SLOT_MAGIC))
    if length > MAX_SLOT_PAYLOAD:
        raise SigningStateError(f"{where}: payload length {length} exceeds the slot")
    payload = slot[head:head + length]
    if zlib.crc32(sequence.to_bytes(8, "big") + payload) != crc:
        raise SigningStateError(f"{where}: checksum mismatch")
    if any(slot[head + length:]):
        raise SigningStateError(f"{where}: bytes after the record")
    return sequence, _decode_payload(payload, where)


def _decode_payload(payload: bytes, where: str) -> SigningState:
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
        # where the current state is: (slot, sequence) in a two-slot file; None before the
        # first save, or while the file is in the first format
        self._slot: tuple[int, int] | None = None

    def load(self) -> SigningState | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read(len(MAGIC) + _HEADER.size + MAX_PAYLOAD + 1)
        except FileNotFoundError:
            state, slot = None, None
        except OSError as exc:
            raise SigningStateError(f"cannot read {self.path}: {exc.strerror}") from None
        else:
            if data[:len(MAGIC)] == MAGIC:
                state, slot = decode_signing_state(data, self.path), None
            else:
                state, slot = self._read_slots(data)
        self._current, self._slot, self._loaded = state, slot, True
        return state

    def _read_slots(self, data: bytes) -> tuple[SigningState, tuple[int, int]]:
        if len(data) != 2 * SLOT_SIZE:
            raise SigningStateError(f"{self.path}: not a signing-state file "
                                    f"({len(data)} bytes, expected {2 * SLOT_SIZE})")
        found: list[tuple[int, int, SigningState]] = []
        errors = []
        for index in (0, 1):
            try:
                sequence, state = decode_slot(data[index * SLOT_SIZE:(index + 1) * SLOT_SIZE],
                                              f"{self.path} slot {index}")
            except SigningStateError as exc:
                errors.append(str(exc))
            else:
                found.append((sequence, index, state))
        if not found:
            raise SigningStateError("; ".join(errors))
        sequence, index, state = max(found)
        if errors:
            log.warning("%s; using the other slot, (height, round, step) %s: a save "
                        "interrupted before it was durable, whose message was never sent",
                        errors[0], state.position())
        else:
            (_, _, older), (_, _, newer) = sorted(found, key=lambda f: f[0])
            if newer.position() < older.position():  # saves only ever move forward
                raise SigningStateError(f"{self.path}: the newer slot holds an older state")
        return state, (index, sequence)

    def save(self, state: SigningState) -> None:
        if (
            not all(type(v) is int and 0 <= v < 2**63 for v in state.position())
            or type(state.extra) is not bytes
        ):
            raise SigningStateError("signing state needs non-negative ints and bytes extra")
        if not self._loaded:
            self.load()  # a corrupt file raises here instead of being overwritten
        current = self._current
        if current is not None and state.position() < current.position():
            raise SigningStateError(
                f"refusing to move signing state back from {current.position()} "
                f"to {state.position()}"
            )
        try:
            if self._slot is None:
                self._create(state)
            else:
                self._overwrite_other_slot(state)
        except CoreError as exc:
            raise SigningStateError(f"signing state cannot be encoded: {exc}") from None
        except OSError as exc:
            raise SigningStateError(f"cannot write {self.path}: {exc.strerror}") from None
        self._current = state

    def _create(self, state: SigningState) -> None:
        """A new two-slot file, atomically (replacing one in the first format): both slots
        hold `state`, slot 1 with the higher sequence."""
        atomic_write(self.path, encode_slot(state, 1) + encode_slot(state, 2))
        self._slot = (1, 2)

    def _overwrite_other_slot(self, state: SigningState) -> None:
        assert self._slot is not None
        index, sequence = self._slot
        target, data = 1 - index, encode_slot(state, sequence + 1)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            written = os.pwrite(fd, data, target * SLOT_SIZE)
            if written != len(data):
                raise OSError(0, f"short write ({written} of {len(data)} bytes)")
            os.fdatasync(fd)  # in place, same size: the data is all there is to flush
        finally:
            os.close(fd)
        self._slot = (target, sequence + 1)

    @property
    def current(self) -> SigningState | None:
        return self._current
