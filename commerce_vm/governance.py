"""PoA governance: validator votes, evidence removals, and the pending-update schedule.

A change that passes (or an evidence removal) in block H is returned to consensus as a
validator update (consensus applies it at H+2) and stored under `vp/<H+2>` so the VM's own
validator record applies it at the start of block H+2 too. Changes are checked against the
*projected* set (current set + pending updates), so the two records can never disagree and
the set can never become empty.
"""

from __future__ import annotations

from core.encoding import encode_trusted
from core.hashing import sha256

from . import errors as E
from . import txtypes as T
from .context import BlockContext, Event
from .ledger import PENDING_UPDATE, VOTE, VOTE_CHANGE, Ledger, be4, be8, unpack
from .params import GenesisParams
from .tx import Tx

UPDATE_DELAY = 2


def change_id(action: int, pubkey: bytes, power: int) -> bytes:
    return sha256(encode_trusted([action, pubkey, power]))


def projected_validators(lg: Ledger) -> dict[bytes, int]:
    """The set as it will be once every scheduled update has applied."""
    validators = lg.validators()
    for _, value in lg.state.iterate(PENDING_UPDATE):
        pubkey, power = unpack(value)
        if power:
            validators[pubkey] = power
        else:
            validators.pop(pubkey, None)
    return validators


def _schedule(lg: Ledger, height: int, pubkey: bytes, power: int) -> Event:
    due = height + UPDATE_DELAY
    prefix = PENDING_UPDATE + be8(due)
    seq = sum(1 for _ in lg.state.iterate(prefix))
    lg.state.put(prefix + be4(seq), encode_trusted([pubkey, power]))
    return Event("validator_update", {"pubkey": pubkey, "power": power, "effective_height": due})


def _check_change(projected: dict[bytes, int], action: int, pubkey: bytes, power: int) -> None:
    if action == T.VOTE_ADD and pubkey in projected:
        raise E.VMError(E.INVALID_VALIDATOR_CHANGE, "cannot add: already a validator")
    if action in (T.VOTE_REMOVE, T.VOTE_SET_POWER) and pubkey not in projected:
        raise E.VMError(E.INVALID_VALIDATOR_CHANGE, "not a validator")
    if action == T.VOTE_REMOVE and len(projected) == 1:
        raise E.VMError(E.INVALID_VALIDATOR_CHANGE, "cannot remove the last validator")
    if action == T.VOTE_SET_POWER and projected[pubkey] == power:
        raise E.VMError(E.INVALID_VALIDATOR_CHANGE, "the validator already has this power")


def validator_vote(lg: Ledger, ctx: BlockContext, params: GenesisParams, tx: Tx) -> list[Event]:
    action, pubkey, power = tx.body
    current = lg.validators()
    if tx.sender not in current:
        raise E.VMError(E.NOT_VALIDATOR, "sender is not a current validator")
    _check_change(projected_validators(lg), action, pubkey, power)
    change = change_id(action, pubkey, power)
    vote_key = VOTE + change + tx.sender
    if lg.state.get(vote_key) is not None:
        raise E.VMError(E.DUPLICATE_VOTE, "already voted for this change")
    lg.state.put(vote_key, b"")
    lg.state.put(VOTE_CHANGE + change, encode_trusted([action, pubkey, power]))
    voters = [key[len(VOTE) + 32:] for key, _ in lg.state.iterate(VOTE + change)]
    # Only current validators' votes count, at their current power.
    tally = sum(current.get(voter, 0) for voter in voters)
    total = sum(current.values())
    events = [Event("validator_vote", {"voter": tx.sender, "action": T.VOTE_ACTION_NAMES[action],
                                       "pubkey": pubkey, "power": power, "tally": tally, "total": total})]
    if 3 * tally > 2 * total:
        for key, _ in list(lg.state.iterate(VOTE + change)):
            lg.state.delete(key)
        lg.state.delete(VOTE_CHANGE + change)
        events.append(_schedule(lg, ctx.height, pubkey, 0 if action == T.VOTE_REMOVE else power))
    return events


def begin_block(lg: Ledger, ctx: BlockContext) -> list[Event]:
    """Apply updates due now, then schedule removals for validators with evidence."""
    events: list[Event] = []
    due = []
    for key, value in lg.state.iterate(PENDING_UPDATE):
        if int.from_bytes(key[len(PENDING_UPDATE):len(PENDING_UPDATE) + 8], "big") > ctx.height:
            break
        due.append((key, value))
    for key, value in due:
        pubkey, power = unpack(value)
        lg.set_validator(pubkey, power)
        lg.state.delete(key)
        events.append(Event("validator_applied", {"pubkey": pubkey, "power": power}))
    for pubkey in sorted(set(ctx.misbehaving)):
        projected = projected_validators(lg)
        if pubkey in projected and len(projected) > 1:
            event = _schedule(lg, ctx.height, pubkey, 0)
            event.attributes["reason"] = "evidence"
            events.append(event)
    return events
