"""Signing state: durable, atomic, monotonic, and never silently reset."""

from __future__ import annotations

import os
import stat

import pytest

from storage.errors import SigningStateError
from storage.signing_state import (
    MAGIC,
    SigningState,
    SigningStateFile,
    encode_signing_state,
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
