"""Genesis parameters: the chain's fixed rules, with validation and a plain-dict form.

The node loads them from a genesis JSON/TOML file (`GenesisParams.from_dict`), the VM reads
them on every block, and genesis commits them to state (key `m/params`) so they are covered
by the app hash and any client can query them.

Token supply: the only issuance is at genesis (initial balances + the rewards pool). After
that the total (all balances + escrow + rewards pool) never changes: fees go into the pool and
protocol rewards come out of it, capped by what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from core.address import address_from_text, address_to_text
from core.errors import AddressError
from core.keys import validate_chain_id

from .txtypes import MAX_AMOUNT, MAX_VALIDATOR_POWER, TYPE_CODES, TYPE_NAMES

BPS_DENOMINATOR = 10_000
DEFAULT_MIN_FEE = 10


class ParamsError(ValueError):
    """Genesis params that are malformed or inconsistent. The message names the field."""


@dataclass(frozen=True, slots=True)
class GenesisParams:
    chain_id: str
    validators: tuple[tuple[bytes, int], ...]  # (ed25519 pubkey, voting power)
    initial_balances: tuple[tuple[bytes, int], ...] = ()  # (address, amount), sorted
    arbiters: tuple[bytes, ...] = ()  # addresses allowed to resolve disputes, sorted
    min_fees: tuple[int, ...] = (0,) + (DEFAULT_MIN_FEE,) * len(TYPE_NAMES)  # index = type code
    rewards_pool: int = 0
    purchase_reward_bps: int = 100  # paid to the buyer at completion, of the order value
    referral_reward_bps: int = 50  # paid to the referrer named in the buy, at completion
    review_reward: int = 10  # fixed amount to the reviewer
    default_ship_within: int = 100  # blocks
    max_ship_within: int = 10_000
    default_confirm_within: int = 200
    max_confirm_within: int = 20_000
    max_tx_size: int = 8_192
    max_title_bytes: int = 128
    max_text_bytes: int = 512  # review text, dispute reason, reward memo
    max_origin_bytes: int = 256
    max_metadata_bytes: int = 1_024
    max_checkpoint_bytes: int = 256  # each of carrier, tracking id, location, note
    max_checkpoints_per_order: int = 32

    def __post_init__(self) -> None:
        self.validate()

    def min_fee(self, tx_type: int) -> int:
        return self.min_fees[tx_type]

    # --- validation -------------------------------------------------------------------
    def validate(self) -> None:
        try:
            validate_chain_id(self.chain_id)
        except ValueError as exc:
            raise ParamsError(f"chain_id: {exc}") from None
        if not self.validators:
            raise ParamsError("validators: at least one validator is required")
        seen: set[bytes] = set()
        for pubkey, power in self.validators:
            if not isinstance(pubkey, bytes) or len(pubkey) != 32:
                raise ParamsError("validators: a pubkey is 32 bytes")
            if pubkey in seen:
                raise ParamsError(f"validators: duplicate pubkey {pubkey.hex()}")
            seen.add(pubkey)
            _int_in("validators.power", power, 1, MAX_VALIDATOR_POWER)
        if list(self.validators) != sorted(self.validators):
            raise ParamsError("validators: must be sorted by pubkey")
        total = self.rewards_pool
        addresses = [addr for addr, _ in self.initial_balances]
        for addr, amount in self.initial_balances:
            _address("initial_balances", addr)
            _int_in("initial_balances.amount", amount, 0, MAX_AMOUNT)
            total += amount
        if addresses != sorted(set(addresses)):
            raise ParamsError("initial_balances: addresses must be unique and sorted")
        for addr in self.arbiters:
            _address("arbiters", addr)
        if list(self.arbiters) != sorted(set(self.arbiters)):
            raise ParamsError("arbiters: must be unique and sorted")
        if len(self.min_fees) != len(TYPE_NAMES) + 1:
            raise ParamsError("min_fees: one fee per tx type")
        for fee in self.min_fees:
            _int_in("min_fees", fee, 0, MAX_AMOUNT)
        _int_in("rewards_pool", self.rewards_pool, 0, MAX_AMOUNT)
        if total > MAX_AMOUNT:
            raise ParamsError("total supply (balances + rewards pool) must be below 2**63")
        _int_in("purchase_reward_bps", self.purchase_reward_bps, 0, BPS_DENOMINATOR)
        _int_in("referral_reward_bps", self.referral_reward_bps, 0, BPS_DENOMINATOR)
        _int_in("review_reward", self.review_reward, 0, MAX_AMOUNT)
        _int_in("max_ship_within", self.max_ship_within, 1, 10**9)
        _int_in("default_ship_within", self.default_ship_within, 1, self.max_ship_within)
        _int_in("max_confirm_within", self.max_confirm_within, 1, 10**9)
        _int_in("default_confirm_within", self.default_confirm_within, 1, self.max_confirm_within)
        _int_in("max_tx_size", self.max_tx_size, 256, 1 << 20)
        for name in ("max_title_bytes", "max_text_bytes", "max_origin_bytes",
                     "max_metadata_bytes", "max_checkpoint_bytes", "max_checkpoints_per_order"):
            _int_in(name, getattr(self, name), 1, 1 << 16)

    # --- plain forms ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-friendly form: addresses as cm1 text, pubkeys as hex, fees by type name."""
        out: dict[str, Any] = {}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        out["validators"] = [{"pub_key": pk.hex(), "power": p} for pk, p in self.validators]
        out["initial_balances"] = {address_to_text(a): n for a, n in self.initial_balances}
        out["arbiters"] = [address_to_text(a) for a in self.arbiters]
        out["min_fees"] = {TYPE_NAMES[t]: self.min_fees[t] for t in sorted(TYPE_NAMES)}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenesisParams:
        if not isinstance(data, dict):
            raise ParamsError("genesis params must be a table/object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParamsError(f"unknown genesis param(s): {', '.join(repr(k) for k in unknown)}")
        for required in ("chain_id", "validators"):
            if required not in data:
                raise ParamsError(f"{required}: missing")
        kwargs: dict[str, Any] = {k: v for k, v in data.items()}
        kwargs["validators"] = tuple(sorted(_validator(v) for v in _list("validators", data["validators"])))
        if "initial_balances" in data:
            balances = data["initial_balances"]
            if not isinstance(balances, dict):
                raise ParamsError("initial_balances: must map address text to amount")
            kwargs["initial_balances"] = tuple(
                sorted((_address_text("initial_balances", a), n) for a, n in balances.items())
            )
        if "arbiters" in data:
            kwargs["arbiters"] = tuple(
                sorted(_address_text("arbiters", a) for a in _list("arbiters", data["arbiters"]))
            )
        if "min_fees" in data:
            kwargs["min_fees"] = _min_fees(data["min_fees"])
        for name, value in kwargs.items():
            if name not in ("chain_id", "validators", "initial_balances", "arbiters", "min_fees"):
                _int_in(name, value, 0, MAX_AMOUNT)
        return cls(**kwargs)

    def to_list(self) -> list[Any]:
        """Positional form committed to state (canonical encoding)."""
        return [
            [list(v) for v in value] if f.name in ("validators", "initial_balances")
            else list(value) if isinstance(value, tuple) else value
            for f in fields(self)
            for value in (getattr(self, f.name),)
        ]

    @classmethod
    def from_list(cls, items: list[Any]) -> GenesisParams:
        values: list[Any] = []
        for f, value in zip(fields(cls), items, strict=True):
            if f.name in ("validators", "initial_balances"):
                value = tuple(tuple(v) for v in value)
            elif isinstance(value, list):
                value = tuple(value)
            values.append(value)
        return cls(*values)


def fees_by_name(fees: dict[str, int], default: int = DEFAULT_MIN_FEE) -> tuple[int, ...]:
    """Helper for tests and tools: min_fees tuple from a partial {type name: fee} map."""
    return _min_fees({**{name: default for name in TYPE_CODES}, **fees})


def _min_fees(value: Any) -> tuple[int, ...]:
    if not isinstance(value, dict):
        raise ParamsError("min_fees: must map tx type name to fee")
    out = [0] + [DEFAULT_MIN_FEE] * len(TYPE_NAMES)
    for name, fee in value.items():
        if name not in TYPE_CODES:
            raise ParamsError(f"min_fees: unknown tx type {name!r}")
        out[TYPE_CODES[name]] = _int_in(f"min_fees.{name}", fee, 0, MAX_AMOUNT)
    return tuple(out)


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParamsError(f"{name}: must be an integer in [{low}, {high}], got {value!r}")
    return value


def _address(name: str, value: Any) -> None:
    if not isinstance(value, bytes) or len(value) != 20:
        raise ParamsError(f"{name}: an address is 20 bytes")


def _address_text(name: str, value: Any) -> bytes:
    try:
        return address_from_text(value)
    except AddressError as exc:
        raise ParamsError(f"{name}: {exc}") from None


def _list(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ParamsError(f"{name}: must be a list")
    return value


def _validator(value: Any) -> tuple[bytes, int]:
    if not isinstance(value, dict) or set(value) != {"pub_key", "power"}:
        raise ParamsError("validators: each entry is {pub_key: hex, power: int}")
    try:
        pubkey = bytes.fromhex(value["pub_key"])
    except (TypeError, ValueError):
        raise ParamsError("validators.pub_key: must be 64 hex characters") from None
    return pubkey, _int_in("validators.power", value["power"], 1, MAX_VALIDATOR_POWER)
