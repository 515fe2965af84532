"""Passphrase-encrypted ed25519 keys: one JSON file per key under <home>/keyring/.

Encryption: the passphrase (UTF-8 of its NFC form) goes through argon2id
(nacl.pwhash.argon2id) with a random 16-byte salt to a 32-byte key, which seals the 32-byte
seed with nacl's SecretBox (XSalsa20-Poly1305) under a random 24-byte nonce. The default
cost is libsodium's "moderate" level (3 passes over 256 MiB: about a second here), which
makes guessing expensive while staying fine for a CLI. The cost is stored in each file, so
tests can write keys with the minimal cost and any file still opens.

A wrong passphrase fails the Poly1305 check: one clear error, no partial output. After a
successful decryption the derived public key must equal the stored one, so an edited file
cannot pass off another key. Files are 0600 in a 0700 directory and written atomically.

`encrypted: false` stores the seed in clear for throwaway dev/test networks: INSECURE,
anyone who can read the file owns the key. Never use it for a key that holds value.

Nothing here logs, prints or puts a passphrase or a seed into an error message.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
import nacl.utils
from nacl.pwhash import argon2id

from core.address import address_from_pubkey, address_to_text
from core.keys import SEED_SIZE, PrivateKey
from storage.fileutil import fsync_dir, write_all

KEYSTORE_VERSION = 1
KEYRING_DIR = "keyring"
PASSPHRASE_ENV = "CHAINMERCE_PASSPHRASE"
KDF_NAME = "argon2id"
CIPHER_NAME = "xsalsa20poly1305"
MAX_KEY_FILE = 64 * 1024
MAX_PASSPHRASE_FILE = 4096
# Bounds on the cost a key file may ask for, so a crafted file cannot make `load` take
# minutes or gigabytes.
MAX_OPSLIMIT = 16
MAX_MEMLIMIT = argon2id.MEMLIMIT_SENSITIVE  # 1 GiB

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KeystoreError(Exception):
    """A key that cannot be created, read or decrypted. The message is one clear line."""

    name = "keystore_error"


class WrongPassphraseError(KeystoreError):
    name = "wrong_passphrase"


@dataclass(frozen=True, slots=True)
class KdfLimits:
    opslimit: int
    memlimit: int


MODERATE = KdfLimits(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
MINIMAL = KdfLimits(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)  # tests only: no protection


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """The public part of a stored key: safe to print."""

    name: str
    public_key: bytes
    address: str
    encrypted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "public_key": self.public_key.hex(),
            "address": self.address,
            "encrypted": self.encrypted,
        }


def validate_key_name(name: str) -> str:
    """Key names become file names: letters, digits, '.', '_', '-', no leading dot."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise KeystoreError(
            f"invalid key name {name!r}: use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return name


def _passphrase_bytes(passphrase: str | None, name: str) -> bytes:
    if not isinstance(passphrase, str) or not passphrase:
        raise KeystoreError(f"key '{name}' needs a non-empty passphrase")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _derive(passphrase: bytes, salt: bytes, limits: KdfLimits) -> bytes:
    return argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase,
        salt,
        opslimit=limits.opslimit,
        memlimit=limits.memlimit,
    )


def _hex_field(obj: Mapping[str, Any], field: str, size: int, where: str) -> bytes:
    value = obj.get(field)
    if not isinstance(value, str) or len(value) != 2 * size:
        raise KeystoreError(f"{where}: field '{field}' must be {size} bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KeystoreError(f"{where}: field '{field}' is not hex") from None


def _int_field(obj: Mapping[str, Any], field: str, lo: int, hi: int, where: str) -> int:
    value = obj.get(field)
    if type(value) is not int or not lo <= value <= hi:
        raise KeystoreError(f"{where}: field '{field}' must be an integer in {lo}..{hi}")
    return value


class Keystore:
    """The keyring of one node home directory."""

    def __init__(self, home: str | os.PathLike[str], kdf_limits: KdfLimits = MODERATE) -> None:
        self.dir = Path(home) / KEYRING_DIR
        self.kdf_limits = kdf_limits

    # -- paths and files ------------------------------------------------------------

    def path_for(self, name: str) -> Path:
        return self.dir / f"{validate_key_name(name)}.json"

    def exists(self, name: str) -> bool:
        return self.path_for(name).exists()

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
        except OSError as exc:
            raise KeystoreError(f"cannot create keyring {self.dir}: {exc.strerror}") from None

    def _write_new(self, name: str, document: dict[str, Any]) -> None:
        """Create the key file atomically; never overwrite an existing key."""
        self._ensure_dir()
        final = self.path_for(name)
        if final.exists():
            raise KeystoreError(f"key '{name}' already exists")
        data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
        tmp = self.dir / f".{name}.json.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            write_all(fd, data)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.link(tmp, final)  # fails if the name appeared meanwhile: no overwrite race
        except FileExistsError:
            raise KeystoreError(f"key '{name}' already exists") from None
        except OSError as exc:
            raise KeystoreError(f"cannot write key '{name}': {exc.strerror}") from None
        finally:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
        fsync_dir(self.dir)

    def _read(self, name: str) -> dict[str, Any]:
        path = self.path_for(name)
        where = f"key file {path}"
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_KEY_FILE + 1)
        except FileNotFoundError:
            raise KeystoreError(f"no key named '{name}' in {self.dir}") from None
        except OSError as exc:
            raise KeystoreError(f"cannot read {where}: {exc.strerror}") from None
        if len(raw) > MAX_KEY_FILE:
            raise KeystoreError(f"{where} is larger than {MAX_KEY_FILE} bytes")
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise KeystoreError(f"{where} is not valid JSON (corrupt or truncated?)") from None
        if not isinstance(document, dict):
            raise KeystoreError(f"{where} is not a JSON object")
        version = document.get("version")
        if version != KEYSTORE_VERSION:
            raise KeystoreError(
                f"{where} has version {version!r}; this build reads version {KEYSTORE_VERSION}"
            )
        if document.get("name") != name:
            raise KeystoreError(f"{where} names key {document.get('name')!r}, not '{name}'")
        if not isinstance(document.get("encrypted"), bool):
            raise KeystoreError(f"{where}: field 'encrypted' must be true or false")
        return document

    def _info(self, name: str, document: dict[str, Any]) -> KeyInfo:
        where = f"key file {self.path_for(name)}"
        public_key = _hex_field(document, "public_key", 32, where)
        address = address_to_text(address_from_pubkey(public_key))
        if document.get("address") != address:
            raise KeystoreError(f"{where}: address does not match the public key")
        return KeyInfo(name, public_key, address, document["encrypted"])

    # -- operations -----------------------------------------------------------------

    def create(self, name: str, passphrase: str | None, *, encrypted: bool = True) -> KeyInfo:
        """Generate a new key. Unencrypted keys (passphrase None) are for dev networks only."""
        return self._store(name, PrivateKey.generate(), passphrase, encrypted)

    def import_seed(
        self, name: str, seed_hex: str, passphrase: str | None, *, encrypted: bool = True
    ) -> KeyInfo:
        """Store an existing key given as 64 hex characters of its seed."""
        try:
            seed = bytes.fromhex(seed_hex.strip()) if isinstance(seed_hex, str) else b""
        except ValueError:
            seed = b""
        if len(seed) != SEED_SIZE:
            raise KeystoreError("a key seed is 64 hex characters (32 bytes)")
        return self._store(name, PrivateKey(seed), passphrase, encrypted)

    def _store(
        self, name: str, key: PrivateKey, passphrase: str | None, encrypted: bool
    ) -> KeyInfo:
        validate_key_name(name)
        address = address_to_text(address_from_pubkey(key.public_key))
        document: dict[str, Any] = {
            "version": KEYSTORE_VERSION,
            "name": name,
            "public_key": key.public_key.hex(),
            "address": address,
            "encrypted": encrypted,
        }
        if encrypted:
            secret = _passphrase_bytes(passphrase, name)
            salt = nacl.utils.random(argon2id.SALTBYTES)
            nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
            box = nacl.secret.SecretBox(_derive(secret, salt, self.kdf_limits))
            ciphertext = box.encrypt(key.seed, nonce).ciphertext
            document["kdf"] = {
                "name": KDF_NAME,
                "opslimit": self.kdf_limits.opslimit,
                "memlimit": self.kdf_limits.memlimit,
                "salt": salt.hex(),
            }
            document["cipher"] = {
                "name": CIPHER_NAME,
                "nonce": nonce.hex(),
                "ciphertext": ciphertext.hex(),
            }
        else:
            if passphrase is not None:
                raise KeystoreError("an unencrypted key takes no passphrase")
            document["seed"] = key.seed.hex()
            document["warning"] = "UNENCRYPTED dev key: anyone who reads this file owns it"
        self._write_new(name, document)
        return KeyInfo(name, key.public_key, address, encrypted)

    def load(self, name: str, passphrase: str | None) -> PrivateKey:
        """The private key; the passphrase is ignored for unencrypted dev keys."""
        document = self._read(name)
        info = self._info(name, document)
        where = f"key file {self.path_for(name)}"
        if info.encrypted:
            seed = self._decrypt(name, document, passphrase, where)
        else:
            seed = _hex_field(document, "seed", SEED_SIZE, where)
        key = PrivateKey(seed)
        if key.public_key != info.public_key:
            raise KeystoreError(f"{where}: the stored public key does not match the secret key")
        return key

    def _decrypt(
        self, name: str, document: dict[str, Any], passphrase: str | None, where: str
    ) -> bytes:
        kdf, cipher = document.get("kdf"), document.get("cipher")
        if not isinstance(kdf, dict) or kdf.get("name") != KDF_NAME:
            raise KeystoreError(f"{where}: field 'kdf' must describe {KDF_NAME}")
        if not isinstance(cipher, dict) or cipher.get("name") != CIPHER_NAME:
            raise KeystoreError(f"{where}: field 'cipher' must describe {CIPHER_NAME}")
        limits = KdfLimits(
            _int_field(kdf, "opslimit", argon2id.OPSLIMIT_MIN, MAX_OPSLIMIT, where),
            _int_field(kdf, "memlimit", argon2id.MEMLIMIT_MIN, MAX_MEMLIMIT, where),
        )
        salt = _hex_field(kdf, "salt", argon2id.SALTBYTES, where)
        nonce = _hex_field(cipher, "nonce", nacl.secret.SecretBox.NONCE_SIZE, where)
        ciphertext = _hex_field(
            cipher, "ciphertext", SEED_SIZE + nacl.secret.SecretBox.MACBYTES, where
        )
        box = nacl.secret.SecretBox(_derive(_passphrase_bytes(passphrase, name), salt, limits))
        try:
            return box.decrypt(ciphertext, nonce)
        except nacl.exceptions.CryptoError:
            raise WrongPassphraseError(f"wrong passphrase for key '{name}'") from None

    def export_seed(self, name: str, passphrase: str | None) -> str:
        """The seed as hex: only after the passphrase has opened the key."""
        return self.load(name, passphrase).seed.hex()

    def show(self, name: str) -> KeyInfo:
        return self._info(name, self._read(name))

    def list_keys(self) -> list[KeyInfo]:
        """Every key in the keyring, by name. A corrupt key file is an error naming it."""
        if not self.dir.is_dir():
            return []
        names = sorted(
            p.name[: -len(".json")]
            for p in self.dir.iterdir()
            if p.name.endswith(".json") and _NAME_RE.fullmatch(p.name[: -len(".json")])
        )
        return [self.show(name) for name in names]


def resolve_passphrase(
    passphrase_file: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
    prompt_ok: bool = True,
    *,
    prompt: str = "Passphrase: ",
    confirm: bool = False,
) -> str:
    """Find the passphrase: --passphrase-file, then $CHAINMERCE_PASSPHRASE, then a prompt.

    The prompt (no echo) is used only when `prompt_ok` and stdin is a terminal; otherwise
    a missing passphrase is a clear error rather than a hang. A passphrase file holds the
    passphrase on its first line (one trailing newline is ignored). `confirm` asks twice,
    for new keys.
    """
    if passphrase_file is not None:
        try:
            with open(passphrase_file, "rb") as f:
                raw = f.read(MAX_PASSPHRASE_FILE + 1)
        except OSError as exc:
            raise KeystoreError(
                f"cannot read passphrase file {os.fspath(passphrase_file)}: {exc.strerror}"
            ) from None
        if len(raw) > MAX_PASSPHRASE_FILE:
            raise KeystoreError(f"passphrase file is larger than {MAX_PASSPHRASE_FILE} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KeystoreError("passphrase file is not UTF-8") from None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise KeystoreError("passphrase file is empty")
        return text
    environ = os.environ if env is None else env
    from_env = environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    if prompt_ok and sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if not first:
            raise KeystoreError("empty passphrase")
        if confirm and getpass.getpass("Repeat passphrase: ") != first:
            raise KeystoreError("passphrases do not match")
        return first
    raise KeystoreError(
        f"no passphrase: use --passphrase-file, set {PASSPHRASE_ENV}, or run in a terminal"
    )
