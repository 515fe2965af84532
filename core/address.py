"""Account addresses: the first 20 bytes of SHA-256(public key), shown as bech32m text.

The text form (`cm1...`) carries a checksum that catches any typo of up to four characters,
so a mistyped address is refused instead of burning funds. Bech32m (BIP-350) is short
enough to write here; a dependency for forty lines is not worth it.
"""

from __future__ import annotations

from functools import lru_cache

from core.errors import AddressError
from core.hashing import sha256

ADDRESS_SIZE = 20
HRP = "cm"
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3


def address_from_pubkey(public_key: bytes) -> bytes:
    return sha256(public_key)[:ADDRESS_SIZE]


def _polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        raise AddressError("address has invalid padding")
    return out


def address_to_text(address: bytes) -> str:
    if not isinstance(address, bytes) or len(address) != ADDRESS_SIZE:
        raise AddressError("an address is 20 bytes")
    return _address_text(address)


@lru_cache(maxsize=1 << 15)
def _address_text(address: bytes) -> str:
    # the checksum is a pure-Python loop; RPC views render the same few accounts again and
    # again (a block view renders every tx's sender), so remember recent ones
    data = _convert_bits(address, 8, 5, True)
    polymod = _polymod(_hrp_expand(HRP) + data + [0] * 6) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return HRP + "1" + "".join(_CHARSET[d] for d in data + checksum)


def address_from_text(text: str) -> bytes:
    if not isinstance(text, str) or len(text) > 90:
        raise AddressError("address text is not a string of at most 90 characters")
    if text.lower() != text and text.upper() != text:
        raise AddressError("address mixes upper and lower case")
    text = text.lower()
    hrp, sep, rest = text.rpartition("1")
    if not sep or hrp != HRP:
        raise AddressError(f"address must start with '{HRP}1'")
    if len(rest) < 7 or any(c not in _CHARSET for c in rest):
        raise AddressError("address has characters outside the bech32 alphabet")
    data = [_CHARSET.index(c) for c in rest]
    if _polymod(_hrp_expand(hrp) + data) != _BECH32M_CONST:
        raise AddressError("address checksum does not match (typo?)")
    decoded = bytes(_convert_bits(data[:-6], 5, 8, False))
    if len(decoded) != ADDRESS_SIZE:
        raise AddressError("address does not hold 20 bytes")
    return decoded
