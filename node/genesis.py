"""The genesis file: chain params (commerce_vm.GenesisParams) plus consensus start values.

JSON, so any tool can read it:
    {"genesis_time_ms": 1790000000000, "initial_height": 1, "params": {...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commerce_vm import GenesisParams, ParamsError
from core.hashing import sha256

MAX_GENESIS_BYTES = 16 * 1024 * 1024


class GenesisError(Exception):
    """A genesis file that cannot be used; the message is one line."""


@dataclass(frozen=True, slots=True)
class Genesis:
    genesis_time_ms: int
    initial_height: int
    params: GenesisParams

    @property
    def chain_id(self) -> str:
        return self.params.chain_id

    def to_dict(self) -> dict[str, Any]:
        return {"genesis_time_ms": self.genesis_time_ms, "initial_height": self.initial_height,
                "params": self.params.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def hash(self) -> bytes:
        return sha256(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode())

    @classmethod
    def from_dict(cls, data: Any, where: str = "genesis") -> Genesis:
        if not isinstance(data, dict):
            raise GenesisError(f"{where}: must be a JSON object")
        unknown = sorted(set(data) - {"genesis_time_ms", "initial_height", "params"})
        if unknown:
            raise GenesisError(f"{where}: unknown field {unknown[0]!r}")
        time_ms = data.get("genesis_time_ms")
        height = data.get("initial_height", 1)
        for name, value in (("genesis_time_ms", time_ms), ("initial_height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
                raise GenesisError(f"{where}: {name} must be a non-negative integer")
        if height < 1:
            raise GenesisError(f"{where}: initial_height must be at least 1")
        try:
            params = GenesisParams.from_dict(data.get("params"))
        except (ParamsError, ValueError, TypeError) as exc:
            raise GenesisError(f"{where}: params: {exc}") from None
        return cls(time_ms, height, params)


def load_genesis(path: Path) -> Genesis:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise GenesisError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_GENESIS_BYTES:
        raise GenesisError(f"{path}: larger than {MAX_GENESIS_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GenesisError(f"{path}: not valid JSON: {exc}") from None
    return Genesis.from_dict(data, str(path))
