"""Vote bookkeeping for one height.

Counting follows the paper: a quorum for a value is +2/3 of the power of DISTINCT
validators that voted for that value, and "+2/3 of anything" counts each validator once.
An equivocator may therefore appear in the tally of two values; that is safe, because two
+2/3 quorums intersect in more than a third of the power, hence in an honest validator who
never votes twice. It is needed for liveness: an honest node that first saw an
equivocator's other vote must still recognise the polka its peers saw. To bound memory, a
conflicting vote is only counted when the caller says its block is known (or it is nil).
"""

from __future__ import annotations

from consensus.messages import Vote, VoteType
from consensus.validators import ValidatorSet

ADDED, DUPLICATE, CONFLICT, CONFLICT_COUNTED = 0, 1, 2, 3


class VoteSet:
    __slots__ = ("first", "by_block", "power_by_block", "power")

    def __init__(self) -> None:
        self.first: dict[int, Vote] = {}  # each validator's first vote
        self.by_block: dict[bytes | None, dict[int, Vote]] = {}
        self.power_by_block: dict[bytes | None, int] = {}
        self.power = 0  # power of the distinct validators that voted

    def add(self, vote: Vote, power: int, count_conflict: bool) -> tuple[int, Vote | None]:
        idx = vote.validator_index
        existing = self.first.get(idx)
        voters = self.by_block.get(vote.block_hash)
        if voters is not None and idx in voters:
            return DUPLICATE, voters[idx]
        if existing is not None and not count_conflict:
            return CONFLICT, existing
        if voters is None:
            voters = self.by_block[vote.block_hash] = {}
        voters[idx] = vote
        self.power_by_block[vote.block_hash] = self.power_by_block.get(vote.block_hash, 0) + power
        if existing is None:
            self.first[idx] = vote
            self.power += power
            return ADDED, None
        return CONFLICT_COUNTED, existing

    def votes_for(self, block_hash: bytes | None) -> list[Vote]:
        return list(self.by_block.get(block_hash, {}).values())


class HeightVotes:
    """Prevotes and precommits of every round of one height."""

    __slots__ = ("validators", "_sets", "_round_power", "_round_voters")

    def __init__(self, validators: ValidatorSet):
        self.validators = validators
        self._sets: dict[tuple[int, int], VoteSet] = {}
        self._round_voters: dict[int, set[int]] = {}
        self._round_power: dict[int, int] = {}

    def add(self, vote: Vote, count_conflict: bool = False) -> tuple[int, Vote | None]:
        key = (vote.round, int(vote.type))
        vs = self._sets.get(key)
        if vs is None:
            vs = self._sets[key] = VoteSet()
        power = self.validators.power_of(vote.validator_index)
        result = vs.add(vote, power, count_conflict)
        if result[0] == ADDED:
            voters = self._round_voters.setdefault(vote.round, set())
            if vote.validator_index not in voters:
                voters.add(vote.validator_index)
                self._round_power[vote.round] = self._round_power.get(vote.round, 0) + power
        return result

    def get(self, round_: int, vtype: VoteType) -> VoteSet | None:
        return self._sets.get((round_, int(vtype)))

    def has_vote(self, vote: Vote) -> bool:
        vs = self._sets.get((vote.round, int(vote.type)))
        return vs is not None and vs.by_block.get(vote.block_hash, {}).get(
            vote.validator_index) == vote

    def has_quorum_for(self, round_: int, vtype: VoteType, block_hash: bytes | None) -> bool:
        vs = self._sets.get((round_, int(vtype)))
        return vs is not None and self.validators.has_quorum(vs.power_by_block.get(block_hash, 0))

    def has_quorum_any(self, round_: int, vtype: VoteType) -> bool:
        vs = self._sets.get((round_, int(vtype)))
        return vs is not None and self.validators.has_quorum(vs.power)

    def round_power(self, round_: int) -> int:
        """Power of the validators that sent any vote in `round_`."""
        return self._round_power.get(round_, 0)
