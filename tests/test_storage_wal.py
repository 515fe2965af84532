"""Consensus WAL: framing, torn-tail recovery, height markers, bounds."""

from __future__ import annotations

import os

import pytest

from storage.errors import WALError
from storage.wal import KIND_DATA, KIND_MARKER, MAGIC, WAL, _frame


def data_records(wal):
    return [e.data for e in wal.replay() if e.kind == KIND_DATA]


def test_append_and_replay_in_order(tmp_path):
    with WAL(tmp_path / "wal") as wal:
        wal.append(b"one")
        wal.append(b"", sync=False)
        wal.append_many([b"three", b"four" * 100], sync=False)
        wal.sync()
        assert data_records(wal) == [b"one", b"", b"three", b"four" * 100]
    with WAL(tmp_path / "wal") as wal:
        assert wal.truncated_bytes == 0
        assert data_records(wal) == [b"one", b"", b"three", b"four" * 100]
        wal.append(b"five")
        assert data_records(wal)[-1] == b"five"


def test_start_height_marks_and_the_file_turns_over_past_its_rotate_size(tmp_path):
    with WAL(tmp_path / "big") as wal:  # far below the rotate size: markers are appended
        wal.append(b"old")
        wal.start_height(7)
        wal.append(b"a")
        size = wal.size
        wal.start_height(8)
        assert wal.size > size and wal.records_since_last_marker() == (8, [])
        wal.append(b"b")
        wal.sync()
    with WAL(tmp_path / "big") as wal:
        assert wal.records_since_last_marker() == (8, [b"b"])
        assert [e.height for e in wal.replay() if e.kind == KIND_MARKER] == [7, 8]
    with WAL(tmp_path / "wal", rotate_size=1) as wal:
        assert wal.records_since_last_marker() == (None, [])
        wal.append(b"old")
        wal.start_height(7)
        wal.append(b"a")
        wal.append(b"b")
        assert wal.records_since_last_marker() == (7, [b"a", b"b"])
        entries = list(wal.replay())
        assert [e.kind for e in entries] == [KIND_MARKER, KIND_DATA, KIND_DATA]
        assert entries[0].height == 7
        size_at_7 = wal.size
        wal.start_height(8)
        assert wal.records_since_last_marker() == (8, [])
        assert wal.size < size_at_7  # the file does not grow with the chain
    with WAL(tmp_path / "wal") as wal:
        assert wal.records_since_last_marker() == (8, [])
        assert not os.path.exists(str(tmp_path / "wal") + ".tmp")


def test_torn_tail_at_every_offset_of_the_last_record(tmp_path):
    path = tmp_path / "wal"
    whole = [b"first", b"second record", b"x" * 300]
    with WAL(path) as wal:
        wal.start_height(3)
        for record in whole:
            wal.append(record)
    intact = path.read_bytes()
    last = _frame(KIND_DATA, b"the last record, torn by a crash")
    for cut in range(len(last)):
        path.write_bytes(intact + last[:cut])
        with WAL(path) as wal:
            assert wal.truncated_bytes == cut
            assert wal.records_since_last_marker() == (3, whole)
            # New appends land after the last whole record, not behind garbage.
            wal.append(b"after")
            assert wal.records_since_last_marker() == (3, whole + [b"after"])
        assert path.read_bytes() == intact + _frame(KIND_DATA, b"after")


def test_corrupt_byte_in_the_last_record_drops_only_it(tmp_path):
    path = tmp_path / "wal"
    with WAL(path) as wal:
        wal.append(b"keep")
        wal.append(b"flip me")
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    with WAL(path) as wal:
        assert wal.truncated_bytes == len(_frame(KIND_DATA, b"flip me"))
        assert data_records(wal) == [b"keep"]


def test_torn_header_starts_fresh_but_foreign_file_is_refused(tmp_path):
    torn = tmp_path / "torn"
    torn.write_bytes(MAGIC[:3])
    with WAL(torn) as wal:
        assert data_records(wal) == []
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"this is somebody's notes file")
    with pytest.raises(WALError, match="not a chainmerce WAL"):
        WAL(foreign)
    assert foreign.read_bytes() == b"this is somebody's notes file"
    short_foreign = tmp_path / "short"
    short_foreign.write_bytes(b"abc")
    with pytest.raises(WALError):
        WAL(short_foreign)


def test_unknown_checksummed_kind_is_an_error_not_a_truncation(tmp_path):
    path = tmp_path / "wal"
    path.write_bytes(MAGIC + _frame(KIND_DATA, b"ok") + _frame(9, b"future"))
    with pytest.raises(WALError, match="unknown kind 9"):
        WAL(path)
    assert path.read_bytes().endswith(b"future")


def test_bounds(tmp_path):
    with WAL(tmp_path / "wal", max_record_size=16, max_file_size=100) as wal:
        with pytest.raises(WALError):
            wal.append(b"x" * 17)
        with pytest.raises(WALError):
            wal.append("text")
        wal.append(b"x" * 16)
        with pytest.raises(WALError, match="exceed"):
            for _ in range(10):
                wal.append(b"y" * 16)
        wal.start_height(2)  # a new height frees the space
        wal.append(b"z")
        assert wal.records_since_last_marker() == (2, [b"z"])
    # A length field beyond the record limit is treated as a torn/corrupt tail.
    with WAL(tmp_path / "wal2", max_record_size=16) as wal:
        wal.append(b"ok")
    with open(tmp_path / "wal2", "ab") as f:
        f.write(b"\xff\xff\xff\xff" + b"\x00" * 20)
    with WAL(tmp_path / "wal2", max_record_size=16) as wal:
        assert wal.truncated_bytes == 24
        assert data_records(wal) == [b"ok"]


def test_closed_wal_refuses_appends(tmp_path):
    wal = WAL(tmp_path / "wal")
    wal.close()
    wal.close()
    with pytest.raises(WALError):
        wal.append(b"x")
