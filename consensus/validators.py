"""Validators, validator sets and the history of sets by height.

A set is ordered by public key, so a validator's index (used in votes and commits) is the
same on every node. Quorums are integer comparisons: +2/3 means `3 * power > 2 * total`.
The proposer of (height, round) is read from a smooth weighted round-robin schedule built
once per set: every validator proposes in proportion to its power, turns are spread out,
and consecutive rounds of one height go to different proposers.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import gcd

from consensus.errors import ValidatorSetError
from core.address import address_from_pubkey
from core.encoding import encode
from core.hashing import tagged_hash
from core.keys import PUBKEY_SIZE

MAX_VALIDATORS = 1000
MAX_POWER = 2**50
MAX_TOTAL_POWER = 2**60
_SCHEDULE_CAP = 4096  # schedule length bound; powers are scaled down beyond it


@dataclass(frozen=True, slots=True)
class Validator:
    pubkey: bytes
    power: int

    @property
    def address(self) -> bytes:
        return address_from_pubkey(self.pubkey)


@dataclass(frozen=True, slots=True)
class ValidatorUpdate:
    """Set `pubkey`'s power; power 0 removes it. Returned by the application."""

    pubkey: bytes
    power: int


def _check_validator(pubkey: object, power: object, allow_zero: bool) -> None:
    if not isinstance(pubkey, bytes) or len(pubkey) != PUBKEY_SIZE:
        raise ValidatorSetError("a validator public key is 32 bytes")
    if not isinstance(power, int) or isinstance(power, bool):
        raise ValidatorSetError("voting power is an integer")
    if power < (0 if allow_zero else 1) or power > MAX_POWER:
        raise ValidatorSetError(f"voting power must be in [1, {MAX_POWER}]")


def _schedule(powers: list[int]) -> tuple[int, ...]:
    divisor = 0
    for p in powers:
        divisor = gcd(divisor, p)
    weights = [p // divisor for p in powers]
    total = sum(weights)
    cap = max(_SCHEDULE_CAP, len(weights))
    if total > cap:
        weights = [max(1, w * cap // total) for w in weights]
        total = sum(weights)
    current = [0] * len(weights)
    order: list[int] = []
    for _ in range(total):
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= total
        order.append(best)
    return tuple(order)


class ValidatorSet:
    """An immutable, deterministically ordered set of validators."""

    __slots__ = ("validators", "total_power", "hash", "_index", "_schedule", "addresses")

    def __init__(self, validators: Iterable[Validator]):
        ordered = sorted(validators, key=lambda v: v.pubkey)
        if not ordered:
            raise ValidatorSetError("a validator set cannot be empty")
        if len(ordered) > MAX_VALIDATORS:
            raise ValidatorSetError(f"at most {MAX_VALIDATORS} validators")
        for v in ordered:
            _check_validator(v.pubkey, v.power, allow_zero=False)
        self._index = {v.pubkey: i for i, v in enumerate(ordered)}
        if len(self._index) != len(ordered):
            raise ValidatorSetError("a public key appears twice in the validator set")
        self.validators: tuple[Validator, ...] = tuple(ordered)
        self.total_power = sum(v.power for v in ordered)
        if self.total_power > MAX_TOTAL_POWER:
            raise ValidatorSetError("total voting power is too large")
        self.hash = tagged_hash(b"chainmerce/validators", encode(self.to_list()))
        self.addresses = tuple(v.address for v in ordered)
        self._schedule: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.validators)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidatorSet) and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        return f"ValidatorSet(n={len(self)}, total_power={self.total_power})"

    def index_of(self, pubkey: bytes) -> int | None:
        return self._index.get(pubkey)

    def power_of(self, index: int) -> int:
        return self.validators[index].power

    def has_quorum(self, power: int) -> bool:
        """More than two thirds of the total power."""
        return 3 * power > 2 * self.total_power

    def has_one_third(self, power: int) -> bool:
        """More than one third: at least one honest validator is among them."""
        return 3 * power > self.total_power

    def proposer_index(self, height: int, round_: int) -> int:
        if self._schedule is None:
            self._schedule = _schedule([v.power for v in self.validators])
        return self._schedule[(height + round_) % len(self._schedule)]

    def proposer(self, height: int, round_: int) -> Validator:
        return self.validators[self.proposer_index(height, round_)]

    def apply_updates(self, updates: Sequence[ValidatorUpdate]) -> ValidatorSet:
        powers = {v.pubkey: v.power for v in self.validators}
        seen: set[bytes] = set()
        for u in updates:
            _check_validator(u.pubkey, u.power, allow_zero=True)
            if u.pubkey in seen:
                raise ValidatorSetError("two updates for one validator in one block")
            seen.add(u.pubkey)
            if u.power == 0:
                powers.pop(u.pubkey, None)
            else:
                powers[u.pubkey] = u.power
        return ValidatorSet(Validator(k, p) for k, p in powers.items())

    def to_list(self) -> list[list]:
        return [[v.pubkey, v.power] for v in self.validators]

    @classmethod
    def from_list(cls, value: object) -> ValidatorSet:
        if not isinstance(value, list) or not all(
            isinstance(item, list) and len(item) == 2 for item in value
        ):
            raise ValidatorSetError("a validator set is a list of [pubkey, power]")
        return cls(Validator(item[0], item[1]) for item in value)


class ValidatorHistory:
    """Which validator set is in force at each height (sets change rarely: store changes)."""

    __slots__ = ("_starts", "_sets")

    def __init__(self, entries: Sequence[tuple[int, ValidatorSet]]):
        if not entries:
            raise ValidatorSetError("a validator history needs at least one set")
        starts = [h for h, _ in entries]
        if starts != sorted(set(starts)) or starts[0] < 1:
            raise ValidatorSetError("history start heights must be increasing and >= 1")
        self._starts = starts
        self._sets = [s for _, s in entries]

    @classmethod
    def from_genesis(cls, validators: ValidatorSet, initial_height: int = 1) -> ValidatorHistory:
        return cls([(initial_height, validators)])

    def at(self, height: int) -> ValidatorSet:
        i = bisect_right(self._starts, height) - 1
        if i < 0:
            raise ValidatorSetError(f"no validator set known for height {height}")
        return self._sets[i]

    def with_set_from(self, height: int, validators: ValidatorSet) -> ValidatorHistory:
        """A history where `validators` is in force from `height` on."""
        entries = [(h, s) for h, s in zip(self._starts, self._sets, strict=True) if h < height]
        if not entries or entries[-1][1] != validators:
            entries.append((height, validators))
        return ValidatorHistory(entries)

    def entries(self) -> list[tuple[int, ValidatorSet]]:
        return list(zip(self._starts, self._sets, strict=True))

    def to_list(self) -> list:
        return [[h, s.to_list()] for h, s in self.entries()]

    @classmethod
    def from_list(cls, value: object) -> ValidatorHistory:
        if not isinstance(value, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) for e in value
        ):
            raise ValidatorSetError("a validator history is a list of [height, set]")
        return cls([(e[0], ValidatorSet.from_list(e[1])) for e in value])
