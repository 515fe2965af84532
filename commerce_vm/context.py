"""Plain data passed into and out of block execution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .state import Change


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What consensus tells the VM about the block being executed. Never a local clock."""

    chain_id: str
    height: int
    time: int  # BFT time in ms, from consensus (recorded in events only, never decides rules)
    proposer: bytes  # proposer address (20 bytes) or pubkey; informational
    misbehaving: tuple[bytes, ...] = ()  # validator pubkeys with committed duplicate-vote evidence


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # e.g. "transfer", "order_status", "listing_created", "reward", "validator_update"
    attributes: dict[str, Any]


@dataclass(slots=True)
class TxResult:
    hash: bytes
    code: int  # 0 = success
    name: str  # "ok" or the error's short name
    message: str
    included: bool
    fee_charged: int
    tx_type: int
    events: list[Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(slots=True)
class BlockExecution:
    results: list[TxResult]  # one per input tx, in order (rejected ones have included=False)
    included: list[Any]  # the Tx objects that belong in the block, in order
    changes: list[Change]  # every state write, sorted by key (tree nodes included)
    app_hash: bytes
    validator_updates: list[tuple[bytes, int]]  # (pubkey, power; 0 = removed), effective at H+2
    events: list[Event]  # block-level events (expirations, validator changes)
