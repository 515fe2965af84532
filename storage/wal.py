"""The consensus write-ahead log: an append-only file of opaque records.

Consensus appends every input (messages received, timeouts, its own signed messages)
before acting on it, and on restart replays the records of the height in progress.

File format (big-endian):

    header: magic "CMWAL01\\n" (8 bytes)
    frame:  payload length (4) | CRC32 of kind+payload (4) | kind (1) | payload

kind 1 = data record (opaque bytes), kind 2 = height marker (payload: height, 8 bytes).

A crash can leave the last frame half-written. Opening the WAL scans it and truncates the
file at the first frame that is incomplete or fails its CRC (`truncated_bytes` says how
much was dropped), so replay yields only whole records and later appends are not hidden
behind garbage. `start_height(h)` appends a marker for h; the records of a height are
those after its marker. Records of finished heights are not needed (their blocks are in
the block store), so once the file is past `rotate_size` the next `start_height` replaces
it with one holding only the new marker: the file stays under `rotate_size` plus one
height's records, and `max_file_size` bounds those. (Replacing the file at every height
cost two fsyncs, a rename and a directory fsync per block.)
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from storage.blocks import check_height
from storage.errors import WALError
from storage.fileutil import atomic_write, write_all

log = logging.getLogger("chainmerce.storage.wal")

MAGIC = b"CMWAL01\n"
KIND_DATA = 1
KIND_MARKER = 2
_FRAME = struct.Struct(">IIB")  # length, crc, kind
_U64 = struct.Struct(">Q")
DEFAULT_MAX_RECORD = 4 * 1024 * 1024
DEFAULT_MAX_FILE = 256 * 1024 * 1024
DEFAULT_ROTATE = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WALEntry:
    kind: int  # KIND_DATA or KIND_MARKER
    data: bytes  # the record (data) or b"" (marker)
    height: int | None  # the height (marker) or None (data)


def _frame(kind: int, payload: bytes) -> bytes:
    kind_and_payload = bytes([kind]) + payload
    return _FRAME.pack(len(payload), zlib.crc32(kind_and_payload), kind) + payload


def _scan(data: bytes, max_record: int) -> tuple[list[WALEntry], int]:
    """Whole valid frames of `data` and the offset where they end."""
    entries: list[WALEntry] = []
    offset = len(MAGIC)
    size = len(data)
    while offset + _FRAME.size <= size:
        length, crc, kind = _FRAME.unpack_from(data, offset)
        body_start = offset + _FRAME.size
        if length > max_record or body_start + length > size:
            break
        payload = data[body_start : body_start + length]
        if zlib.crc32(bytes([kind]) + payload) != crc:
            break
        if kind == KIND_DATA:
            entries.append(WALEntry(KIND_DATA, payload, None))
        elif kind == KIND_MARKER and length == _U64.size:
            entries.append(WALEntry(KIND_MARKER, b"", _U64.unpack(payload)[0]))
        else:
            # A checksummed frame we do not understand was written on purpose (by a newer
            # version?): truncating it would destroy data, so stop and let a human decide.
            raise WALError(f"WAL frame at offset {offset} has unknown kind {kind}")
        offset = body_start + length
    return entries, offset


class WAL:
    """One WAL file, opened for appending. Single writer; not thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_record_size: int = DEFAULT_MAX_RECORD,
        max_file_size: int = DEFAULT_MAX_FILE,
        rotate_size: int = DEFAULT_ROTATE,
    ) -> None:
        self.path = os.fspath(path)
        self.max_record_size = max_record_size
        self.max_file_size = max_file_size
        self.rotate_size = min(rotate_size, max_file_size // 2)
        self.truncated_bytes = 0
        self._fd = -1
        self._recover()

    def _recover(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if len(data) < len(MAGIC):
            if data and not MAGIC.startswith(data):
                raise WALError(f"{self.path} is not a chainmerce WAL (bad magic)")
            # Missing, empty or a torn header: start a fresh file.
            atomic_write(self.path, MAGIC)
            self._size = len(MAGIC)
        elif data[: len(MAGIC)] != MAGIC:
            raise WALError(f"{self.path} is not a chainmerce WAL (bad magic)")
        else:
            _, end = _scan(data, self.max_record_size)
            if end < len(data):
                self.truncated_bytes = len(data) - end
                log.warning(
                    "WAL %s: dropping %d bytes of torn or corrupt tail at offset %d",
                    self.path, self.truncated_bytes, end,
                )
                with open(self.path, "r+b") as f:
                    f.truncate(end)
                    f.flush()
                    os.fsync(f.fileno())
            self._size = end
        self._open_fd()

    def _open_fd(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def _write(self, frames: bytes, sync: bool) -> None:
        if self._fd < 0:
            raise WALError("WAL is closed")
        if self._size + len(frames) > self.max_file_size:
            raise WALError(
                f"WAL would exceed {self.max_file_size} bytes: too many records in one height"
            )
        write_all(self._fd, frames)
        self._size += len(frames)
        if sync:
            os.fsync(self._fd)

    def _check_record(self, record: bytes) -> None:
        if type(record) is not bytes:
            raise WALError("a WAL record is bytes")
        if len(record) > self.max_record_size:
            raise WALError(f"WAL record of {len(record)} bytes exceeds {self.max_record_size}")

    def append(self, record: bytes, sync: bool = True) -> None:
        """Append one record; with sync=True it is on disk when this returns."""
        self._check_record(record)
        self._write(_frame(KIND_DATA, record), sync)

    def append_many(self, records: Iterable[bytes], sync: bool = True) -> None:
        """Append several records with one write and (optionally) one fsync."""
        frames = []
        for record in records:
            self._check_record(record)
            frames.append(_frame(KIND_DATA, record))
        self._write(b"".join(frames), sync)

    def sync(self) -> None:
        """Group fsync: make every record appended with sync=False durable."""
        if self._fd >= 0:
            os.fsync(self._fd)

    def start_height(self, height: int) -> None:
        """Begin `height`: append its marker, or, once the file is past `rotate_size`,
        atomically replace the file with just the marker.

        An appended marker is not synced here: it becomes durable with the next `sync()`,
        which the node runs before any signed message of the height leaves. A crash before
        that leaves the previous marker last, whose height is committed: stale, ignored."""
        check_height(height)
        marker = _frame(KIND_MARKER, _U64.pack(height))
        if self._size <= self.rotate_size:
            self._write(marker, sync=False)
            return
        content = MAGIC + marker
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        atomic_write(self.path, content)
        self._size = len(content)
        self._open_fd()

    def replay(self) -> Iterator[WALEntry]:
        """Every whole entry in the file, in order."""
        with open(self.path, "rb") as f:
            data = f.read()
        entries, _ = _scan(data, self.max_record_size)
        return iter(entries)

    def records_since_last_marker(self) -> tuple[int | None, list[bytes]]:
        """(height of the last marker, data records after it); (None, all) without marker."""
        height: int | None = None
        records: list[bytes] = []
        for entry in self.replay():
            if entry.kind == KIND_MARKER:
                height, records = entry.height, []
            else:
                records.append(entry.data)
        return height, records

    @property
    def size(self) -> int:
        return self._size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> WAL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
