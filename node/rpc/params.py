"""Declared method parameters: each one checked and converted before a method runs.

The declarations double as the API description (rpc.discover builds its OpenRPC document
from them), so what is documented is exactly what is enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.address import address_from_text
from core.errors import AddressError
from node.rpc.errors import invalid_params

MAX_INT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: str  # int | str | bool | hex | hash | address
    doc: str
    required: bool = False
    default: Any = None
    minimum: int = 0
    maximum: int = MAX_INT
    max_len: int = 256  # characters for str, bytes for hex

    def convert(self, value: Any) -> Any:
        converter = _CONVERTERS[self.kind]
        return converter(self, value)

    def json_schema(self) -> dict[str, Any]:
        if self.kind == "int":
            return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
        if self.kind == "bool":
            return {"type": "boolean"}
        if self.kind == "hash":
            return {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$"}
        if self.kind == "hex":
            return {"type": "string", "pattern": "^(0x)?([0-9a-fA-F]{2})*$",
                    "maxLength": 2 + 2 * self.max_len}
        if self.kind == "address":
            return {"type": "string", "pattern": "^cm1[02-9ac-hj-np-z]{38}$"}
        return {"type": "string", "maxLength": self.max_len}


def _int(p: Param, v: Any) -> int:
    if isinstance(v, str) and v.isdigit():  # CometBFT clients send heights as strings
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise invalid_params(f"{p.name} must be an integer")
    if not p.minimum <= v <= p.maximum:
        raise invalid_params(f"{p.name} must be between {p.minimum} and {p.maximum}")
    return v


def _str(p: Param, v: Any) -> str:
    if not isinstance(v, str):
        raise invalid_params(f"{p.name} must be a string")
    if len(v) > p.max_len:
        raise invalid_params(f"{p.name} is longer than {p.max_len} characters")
    return v


def _bool(p: Param, v: Any) -> bool:
    if not isinstance(v, bool):
        raise invalid_params(f"{p.name} must be true or false")
    return v


def _hex(p: Param, v: Any) -> bytes:
    if not isinstance(v, str):
        raise invalid_params(f"{p.name} must be a hex string")
    text = v[2:] if v[:2] in ("0x", "0X") else v
    if len(text) > 2 * p.max_len:
        raise invalid_params(f"{p.name} is longer than {p.max_len} bytes")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise invalid_params(f"{p.name} is not valid hex") from None


def _hash(p: Param, v: Any) -> bytes:
    raw = _hex(Param(p.name, "hex", p.doc, max_len=32), v)
    if len(raw) != 32:
        raise invalid_params(f"{p.name} must be a 32-byte hash (64 hex characters)")
    return raw


def _address(p: Param, v: Any) -> bytes:
    if not isinstance(v, str):
        raise invalid_params(f"{p.name} must be an address (cm1...)")
    try:
        return address_from_text(v)
    except AddressError as exc:
        raise invalid_params(f"{p.name}: {exc}") from None


_CONVERTERS = {
    "int": _int,
    "str": _str,
    "bool": _bool,
    "hex": _hex,
    "hash": _hash,
    "address": _address,
}


def bind(params: tuple[Param, ...], given: Any) -> dict[str, Any]:
    """Match JSON-RPC params (by name or by position) to declarations and convert them."""
    if given is None:
        given = {}
    if isinstance(given, list):
        if len(given) > len(params):
            raise invalid_params(f"at most {len(params)} positional params")
        given = {p.name: value for p, value in zip(params, given, strict=False)}
    if not isinstance(given, dict):
        raise invalid_params("params must be an object or an array")
    known = {p.name for p in params}
    unknown = sorted(k for k in given if k not in known)
    if unknown:
        raise invalid_params(f"unknown param {unknown[0]!r}")
    bound: dict[str, Any] = {}
    for p in params:
        if p.name in given and given[p.name] is not None:
            bound[p.name] = p.convert(given[p.name])
        elif p.required:
            raise invalid_params(f"{p.name} is required")
        else:
            bound[p.name] = p.default
    return bound
