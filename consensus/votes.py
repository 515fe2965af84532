"""Vote bookkeeping for one height: one vote per validator per (round, type).

A second, different vote of the same validator for the same (round, type) is never
counted: it is returned to the caller as an equivocation.
"""

from __future__ import annotations

from consensus.messages import Vote, VoteType
from consensus.validators import ValidatorSet

ADDED, DUPLICATE, CONFLICT = 0, 1, 2


class VoteSet:
    __slots__ = ("by_validator", "power_by_block", "power")

    def __init__(self) -> None:
        self.by_validator: dict[int, Vote] = {}
        self.power_by_block: dict[bytes | None, int] = {}
        self.power = 0  # total power of validators that voted (anything)

    def add(self, vote: Vote, power: int) -> tuple[int, Vote | None]:
        existing = self.by_validator.get(vote.validator_index)
        if existing is not None:
            if existing.block_hash == vote.block_hash:
                return DUPLICATE, existing
            return CONFLICT, existing
        self.by_validator[vote.validator_index] = vote
        self.power_by_block[vote.block_hash] = self.power_by_block.get(vote.block_hash, 0) + power
        self.power += power
        return ADDED, None

    def votes_for(self, block_hash: bytes | None) -> list[Vote]:
        return [v for v in self.by_validator.values() if v.block_hash == block_hash]


class HeightVotes:
    """Prevotes and precommits of every round of one height."""

    __slots__ = ("validators", "_sets", "_round_power", "_round_voters")

    def __init__(self, validators: ValidatorSet):
        self.validators = validators
        self._sets: dict[tuple[int, int], VoteSet] = {}
        self._round_voters: dict[int, set[int]] = {}
        self._round_power: dict[int, int] = {}

    def add(self, vote: Vote) -> tuple[int, Vote | None]:
        key = (vote.round, int(vote.type))
        vs = self._sets.get(key)
        if vs is None:
            vs = self._sets[key] = VoteSet()
        power = self.validators.power_of(vote.validator_index)
        result = vs.add(vote, power)
        if result[0] == ADDED:
            voters = self._round_voters.setdefault(vote.round, set())
            if vote.validator_index not in voters:
                voters.add(vote.validator_index)
                self._round_power[vote.round] = self._round_power.get(vote.round, 0) + power
        return result

    def get(self, round_: int, vtype: VoteType) -> VoteSet | None:
        return self._sets.get((round_, int(vtype)))

    def has_quorum_for(self, round_: int, vtype: VoteType, block_hash: bytes | None) -> bool:
        vs = self._sets.get((round_, int(vtype)))
        return vs is not None and self.validators.has_quorum(vs.power_by_block.get(block_hash, 0))

    def has_quorum_any(self, round_: int, vtype: VoteType) -> bool:
        vs = self._sets.get((round_, int(vtype)))
        return vs is not None and self.validators.has_quorum(vs.power)

    def round_power(self, round_: int) -> int:
        """Power of the validators that sent any vote in `round_`."""
        return self._round_power.get(round_, 0)

    def own_votes(self, index: int) -> list[Vote]:
        return [vs.by_validator[index] for vs in self._sets.values() if index in vs.by_validator]
