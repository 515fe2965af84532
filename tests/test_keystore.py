"""Keystore: encrypted round trip, errors, permissions, names, dev keys, passphrase sources."""

from __future__ import annotations

import io
import json
import logging
import os
import stat

import pytest

from core.address import address_from_pubkey, address_to_text
from core.keys import PrivateKey
from node import keystore as ks
from node.keystore import (
    MINIMAL,
    Keystore,
    KeystoreError,
    WrongPassphraseError,
    resolve_passphrase,
)

SEED = bytes(range(32))
PASS = "correct horse battery staple"


@pytest.fixture
def store(tmp_path):
    return Keystore(tmp_path / "home", kdf_limits=MINIMAL)


def test_create_load_round_trip(store):
    info = store.create("alice", PASS)
    key = store.load("alice", PASS)
    assert key.public_key == info.public_key
    assert info.address == address_to_text(address_from_pubkey(key.public_key))
    assert info.encrypted


def test_import_export_round_trip(store):
    info = store.import_seed("bob", SEED.hex(), PASS)
    assert info.public_key == PrivateKey(SEED).public_key
    assert store.export_seed("bob", PASS) == SEED.hex()
    assert store.show("bob") == info


def test_file_format_and_no_secret_in_clear(store):
    store.import_seed("bob", SEED.hex(), PASS)
    raw = store.path_for("bob").read_text()
    doc = json.loads(raw)
    assert doc["version"] == 1 and doc["name"] == "bob" and doc["encrypted"] is True
    assert doc["kdf"]["name"] == "argon2id" and len(bytes.fromhex(doc["kdf"]["salt"])) == 16
    assert doc["kdf"]["opslimit"] == MINIMAL.opslimit
    assert doc["cipher"]["name"] == "xsalsa20poly1305"
    assert len(bytes.fromhex(doc["cipher"]["nonce"])) == 24
    assert SEED.hex() not in raw and PASS not in raw


def test_default_cost_is_moderate(tmp_path):
    assert Keystore(tmp_path).kdf_limits == ks.MODERATE
    assert ks.MODERATE.memlimit == 256 * 1024 * 1024


def test_wrong_passphrase_is_one_clear_error(store):
    store.create("alice", PASS)
    with pytest.raises(WrongPassphraseError) as info:
        store.load("alice", "not it")
    assert str(info.value) == "wrong passphrase for key 'alice'"
    assert isinstance(info.value, KeystoreError)
    with pytest.raises(WrongPassphraseError):
        store.export_seed("alice", "not it")
    with pytest.raises(KeystoreError, match="non-empty passphrase"):
        store.load("alice", "")
    with pytest.raises(KeystoreError):
        store.load("alice", None)


def test_unicode_passphrase_is_normalized(store):
    store.import_seed("u", SEED.hex(), "caf\u00e9")  # composed é
    assert store.export_seed("u", "cafe\u0301") == SEED.hex()  # decomposed é


def test_permissions(store):
    store.create("alice", PASS)
    assert stat.S_IMODE(os.stat(store.path_for("alice")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o700
    assert [p.name for p in store.dir.iterdir()] == ["alice.json"]  # no temp file left


def test_permissions_even_with_a_permissive_umask(store):
    old = os.umask(0)
    try:
        store.create("alice", PASS)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(store.path_for("alice")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o700


def test_never_overwrites(store):
    first = store.import_seed("alice", SEED.hex(), PASS)
    with pytest.raises(KeystoreError, match="already exists"):
        store.create("alice", PASS)
    assert store.show("alice") == first


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/b", "..", ".", ".hidden", "", "a" * 65, "a\x00b", "a b", "ключ", "/abs", "ok\n", 5],
)
def test_bad_names_rejected(store, tmp_path, name):
    with pytest.raises(KeystoreError, match="invalid key name"):
        store.create(name, PASS)
    with pytest.raises(KeystoreError, match="invalid key name"):
        store.load(name, PASS)
    assert not (tmp_path / "evil.json").exists()


def test_unencrypted_dev_key(store):
    info = store.import_seed("dev", SEED.hex(), None, encrypted=False)
    assert not info.encrypted
    doc = json.loads(store.path_for("dev").read_text())
    assert doc["encrypted"] is False and doc["seed"] == SEED.hex() and "UNENCRYPTED" in doc["warning"]
    assert store.load("dev", None).seed == SEED
    assert stat.S_IMODE(os.stat(store.path_for("dev")).st_mode) == 0o600
    with pytest.raises(KeystoreError, match="takes no passphrase"):
        store.create("dev2", PASS, encrypted=False)


def test_encrypted_key_needs_a_passphrase(store):
    with pytest.raises(KeystoreError):
        store.create("a", None)
    with pytest.raises(KeystoreError):
        store.create("a", "")
    assert not store.exists("a")


@pytest.mark.parametrize("seed", ["", "zz" * 32, "00" * 31, "00" * 33, None])
def test_bad_seed_import(store, seed):
    with pytest.raises(KeystoreError, match="64 hex"):
        store.import_seed("x", seed, PASS)


def test_list_and_show(store):
    assert store.list_keys() == []
    store.create("bob", PASS)
    store.import_seed("alice", SEED.hex(), None, encrypted=False)
    (store.dir / "notes.txt").write_text("ignored")
    names = [i.name for i in store.list_keys()]
    assert names == ["alice", "bob"]
    shown = store.show("alice").to_json()
    assert set(shown) == {"name", "public_key", "address", "encrypted"}
    with pytest.raises(KeystoreError, match="no key named 'carol'"):
        store.show("carol")


def rewrite(store, name, change):
    path = store.path_for(name)
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d.pop("version"), "version None"),
        (lambda d: d.update(name="mallory"), "names key"),
        (lambda d: d.update(encrypted="yes"), "encrypted"),
        (lambda d: d.update(public_key="00" * 32), "address does not match"),
        (lambda d: d["kdf"].update(memlimit=2**40), "memlimit"),
        (lambda d: d["kdf"].update(opslimit=0), "opslimit"),
        (lambda d: d["kdf"].update(salt="00"), "salt"),
        (lambda d: d["kdf"].update(name="scrypt"), "kdf"),
        (lambda d: d["cipher"].update(nonce="zz" * 24), "nonce"),
        (lambda d: d["cipher"].update(ciphertext="00" * 10), "ciphertext"),
        (lambda d: d.pop("cipher"), "cipher"),
    ],
)
def test_tampered_files_are_clear_errors(store, change, message):
    store.import_seed("k", SEED.hex(), PASS)
    rewrite(store, "k", change)
    with pytest.raises(KeystoreError, match=message):
        store.load("k", PASS)


def test_swapped_public_key_is_detected(store):
    store.import_seed("k", SEED.hex(), PASS)
    other = PrivateKey(b"\x07" * 32).public_key

    def swap(doc):
        doc["public_key"] = other.hex()
        doc["address"] = address_to_text(address_from_pubkey(other))

    rewrite(store, "k", swap)
    with pytest.raises(KeystoreError, match="does not match the secret key"):
        store.load("k", PASS)


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b"\xff\xfe", b"null", b"x" * 70000])
def test_corrupt_files_are_clear_errors(store, content):
    store.create("k", PASS)
    path = store.path_for("k")
    path.write_bytes(content)
    with pytest.raises(KeystoreError) as info:
        store.load("k", PASS)
    assert "\n" not in str(info.value)
    with pytest.raises(KeystoreError):
        store.list_keys()


def test_truncated_file_at_every_length(store):
    store.create("k", PASS)
    path = store.path_for("k")
    full = path.read_bytes()
    for cut in range(0, len(full) - 2, 7):  # -2: the trailing "}\n" makes it whole JSON
        path.write_bytes(full[:cut])
        with pytest.raises(KeystoreError):
            store.load("k", PASS)


def test_secrets_never_logged_or_in_errors(store, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    store.import_seed("k", SEED.hex(), PASS)
    store.load("k", PASS)
    with pytest.raises(KeystoreError) as info:
        store.load("k", PASS + "x")
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err, str(info.value), repr(store.load("k", PASS))):
        assert PASS not in text and SEED.hex() not in text


# -- passphrase sources ----------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_resolve_from_file_first(tmp_path):
    f = tmp_path / "pw"
    f.write_text("from file\n")
    assert resolve_passphrase(f, {"CHAINMERCE_PASSPHRASE": "env"}) == "from file"
    f.write_text("crlf\r\n")
    assert resolve_passphrase(f, {}) == "crlf"
    f.write_text(" spaces kept \n")
    assert resolve_passphrase(f, {}) == " spaces kept "


@pytest.mark.parametrize("content", [b"", b"\n", b"\xff", b"x" * 5000])
def test_resolve_bad_files(tmp_path, content):
    f = tmp_path / "pw"
    f.write_bytes(content)
    with pytest.raises(KeystoreError, match="passphrase file"):
        resolve_passphrase(f, {})
    with pytest.raises(KeystoreError, match="cannot read passphrase file"):
        resolve_passphrase(tmp_path / "missing", {})


def test_resolve_from_env_then_prompt(monkeypatch):
    assert resolve_passphrase(None, {"CHAINMERCE_PASSPHRASE": "env"}) == "env"
    monkeypatch.setattr("sys.stdin", FakeTTY())
    answers = iter(["typed", "typed"])
    monkeypatch.setattr(ks.getpass, "getpass", lambda prompt: next(answers))
    assert resolve_passphrase(None, {}, confirm=True) == "typed"


def test_resolve_confirm_mismatch(monkeypatch):
    monkeypatch.setattr("sys.stdin", FakeTTY())
    answers = iter(["one", "two"])
    monkeypatch.setattr(ks.getpass, "getpass", lambda prompt: next(answers))
    with pytest.raises(KeystoreError, match="do not match"):
        resolve_passphrase(None, {}, confirm=True)


def test_resolve_without_terminal_is_an_error_not_a_hang(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("piped"))

    def no_prompt(prompt):
        raise AssertionError("must not prompt")

    monkeypatch.setattr(ks.getpass, "getpass", no_prompt)
    with pytest.raises(KeystoreError, match="no passphrase"):
        resolve_passphrase(None, {})
    monkeypatch.setattr("sys.stdin", FakeTTY())
    with pytest.raises(KeystoreError, match="no passphrase"):
        resolve_passphrase(None, {}, prompt_ok=False)
