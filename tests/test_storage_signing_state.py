"""Signing state: durable, atomic, monotonic, and never silently reset."""

from __future__ import annotations

import os
import stat

import pytest

from storage.errors import SigningStateError
from storage.signing_state import (
    MAGIC,
    SLOT_SIZE,
    SigningState,
    SigningStateFile,
    encode_signing_state,
    encode_slot,
)


def test_missing_file_means_never_signed(tmp_path):
    assert SigningStateFile(tmp_path / "sign_state").load() is None


def test_save_then_load_in_a_new_instance(tmp_path):
    path = tmp_path / "sign_state"
    f = SigningStateFile(path)
    f.save(SigningState(5, 1, 2, b"\x01vote"))
    f.save(SigningState(5, 2, 0))
    again = SigningStateFile(path)
    assert again.load() == SigningState(5, 2, 0, b"")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not os.path.exists(str(path) + ".tmp")


def test_same_step_may_be_saved_again(tmp_path):
    f = SigningStateFile(tmp_path / "s")
    f.save(SigningState(3, 0, 1, b"a"))
    f.save(SigningState(3, 0, 1, b"a"))
    assert f.current == SigningState(3, 0, 1, b"a")


@pytest.mark.parametrize("older", [SigningState(4, 9, 9), SigningState(5, 0, 9), SigningState(5, 1, 1)])
def test_refuses_to_move_backwards_even_after_restart(tmp_path, older):
    path = tmp_path / "s"
    SigningStateFile(path).save(SigningState(5, 1, 2))
    f = SigningStateFile(path)
    with pytest.raises(SigningStateError, match="refusing to move signing state back"):
        f.save(older)
    assert SigningStateFile(path).load() == SigningState(5, 1, 2)


def test_leftover_tmp_from_a_crash_is_ignored(tmp_path):
    path = tmp_path / "s"
    SigningStateFile(path).save(SigningState(2, 0, 1))
    # A crash between writing the temp file and the rename leaves it behind.
    (tmp_path / "s.tmp").write_bytes(b"half-writ")
    assert SigningStateFile(path).load() == SigningState(2, 0, 1)
    SigningStateFile(path).save(SigningState(2, 0, 2))
    assert SigningStateFile(path).load() == SigningState(2, 0, 2)


def corruptions(good: bytes):
    yield "empty", b""
    yield "truncated", good[:-1]
    yield "header only", good[: len(MAGIC) + 8]
    yield "bad magic", b"X" + good[1:]
    flipped = bytearray(good)
    flipped[-1] ^= 0x40
    yield "flipped bit", bytes(flipped)
    yield "trailing garbage", good + b"\x00"


@pytest.mark.parametrize("case", range(6))
def test_corrupt_file_is_an_error_and_is_not_overwritten(tmp_path, case):
    path = tmp_path / "s"
    good = encode_signing_state(SigningState(9, 0, 1, b"x"))
    label, bad = list(corruptions(good))[case]
    path.write_bytes(bad)
    with pytest.raises(SigningStateError):
        SigningStateFile(path).load()
    f = SigningStateFile(path)
    with pytest.raises(SigningStateError):
        f.save(SigningState(10, 0, 0))  # would silently reset the guard
    assert path.read_bytes() == bad, label


def test_wrongly_shaped_payload_is_an_error(tmp_path):
    import zlib

    from core.encoding import encode

    payload = encode([1, 2, -3, b""])
    path = tmp_path / "s"
    path.write_bytes(MAGIC + len(payload).to_bytes(4, "big") +
                     zlib.crc32(payload).to_bytes(4, "big") + payload)
    with pytest.raises(SigningStateError, match="payload"):
        SigningStateFile(path).load()


def test_unencodable_state_is_a_typed_error(tmp_path):
    with pytest.raises(SigningStateError):
        SigningStateFile(tmp_path / "s").save(SigningState(1, 0, 0, "not bytes"))  # type: ignore[arg-type]


# --- the two-slot file ------------------------------------------------------------------


def test_saves_after_the_first_overwrite_the_other_slot_in_place(tmp_path, monkeypatch):
    path = tmp_path / "s"
    f = SigningStateFile(path)
    f.save(SigningState(1, 0, 1, b"p"))  # creates the file (rename)
    assert path.stat().st_size == 2 * SLOT_SIZE
    inode = path.stat().st_ino

    def no_rename(*_a):
        raise AssertionError("a save after the first must not replace the file")

    monkeypatch.setattr(os, "replace", no_rename)
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    states = [SigningState(1, 0, 2), SigningState(1, 0, 3, b"c"), SigningState(2, 0, 1)]
    slots = []
    for state in states:
        f.save(state)
        slots.append(path.read_bytes())
        assert SigningStateFile(path).load() == state
    assert len(synced) == len(states) and path.stat().st_ino == inode
    # they alternate: each save leaves the previous state whole in the other slot
    assert slots[0][:SLOT_SIZE] == slots[1][:SLOT_SIZE] != slots[2][:SLOT_SIZE]
    assert slots[1][SLOT_SIZE:] == slots[2][SLOT_SIZE:] != slots[0][SLOT_SIZE:]


def tear(path, slot: int) -> None:
    data = bytearray(path.read_bytes())
    data[slot * SLOT_SIZE + 25] ^= 0xFF  # inside the payload: the checksum no longer holds
    path.write_bytes(bytes(data))


def test_a_torn_slot_falls_back_to_the_other_and_is_the_next_overwritten(tmp_path, caplog):
    path = tmp_path / "s"
    f = SigningStateFile(path)
    f.save(SigningState(4, 0, 1))
    f.save(SigningState(4, 0, 2))  # slot 0 now (sequence 3); slot 1 holds (4, 0, 1)
    tear(path, 0)  # power lost while (4, 0, 2) was written: it was never sent
    again = SigningStateFile(path)
    assert again.load() == SigningState(4, 0, 1)
    assert "slot 0" in caplog.text and "checksum" in caplog.text
    again.save(SigningState(4, 0, 3))  # goes into the torn slot, not over the good one
    assert SigningStateFile(path).load() == SigningState(4, 0, 3)
    tear(path, 0)
    assert SigningStateFile(path).load() == SigningState(4, 0, 1)  # slot 1 was kept


def test_two_bad_slots_are_an_error_and_are_not_overwritten(tmp_path):
    path = tmp_path / "s"
    f = SigningStateFile(path)
    f.save(SigningState(7, 0, 1))
    f.save(SigningState(7, 0, 2))
    tear(path, 0)
    tear(path, 1)
    bad = path.read_bytes()
    with pytest.raises(SigningStateError, match="slot 0.*slot 1"):
        SigningStateFile(path).load()
    with pytest.raises(SigningStateError):
        SigningStateFile(path).save(SigningState(8, 0, 0))
    assert path.read_bytes() == bad


def test_a_newer_slot_with_an_older_state_is_an_error(tmp_path):
    path = tmp_path / "s"
    path.write_bytes(encode_slot(SigningState(9, 0, 2), 5) + encode_slot(SigningState(9, 0, 1), 6))
    with pytest.raises(SigningStateError, match="older state"):
        SigningStateFile(path).load()


def test_a_file_in_the_first_format_is_read_and_replaced_on_the_next_save(tmp_path):
    path = tmp_path / "s"
    path.write_bytes(encode_signing_state(SigningState(3, 1, 2, b"old")))
    f = SigningStateFile(path)
    assert f.load() == SigningState(3, 1, 2, b"old")
    with pytest.raises(SigningStateError, match="refusing to move"):
        f.save(SigningState(3, 1, 1))
    f.save(SigningState(3, 2, 0))
    assert path.stat().st_size == 2 * SLOT_SIZE
    assert SigningStateFile(path).load() == SigningState(3, 2, 0)


def test_a_state_too_large_for_a_slot_is_refused(tmp_path):
    f = SigningStateFile(tmp_path / "s")
    with pytest.raises(SigningStateError, match="does not fit"):
        f.save(SigningState(1, 0, 0, b"x" * SLOT_SIZE))
    assert f.current is None
