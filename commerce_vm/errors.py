"""Typed VM errors with stable numeric codes.

Every rule a transaction can break has exactly one ErrorKind. Codes never change meaning once
released; new rules get new codes. The stage says what happens to a tx that breaks the rule:

- STATELESS (1xx): the tx is malformed or mis-signed. REJECTED: never included, no effect.
- ADMISSION (2xx): wrong nonce or cannot pay the fee. REJECTED: never included, no effect.
- EXECUTION (3xx-5xx): a business rule. INCLUDED AS FAILED: fee charged, nonce incremented,
  nothing else changes; the tx result carries the code.

docs/errors.md documents the same table; a test keeps the two in sync.
"""

from __future__ import annotations

from dataclasses import dataclass

STATELESS = "stateless"
ADMISSION = "admission"
EXECUTION = "execution"


@dataclass(frozen=True, slots=True)
class ErrorKind:
    code: int
    name: str
    stage: str
    rule: str

    @property
    def rejects(self) -> bool:
        """True when a tx breaking this rule is never included in a block."""
        return self.stage != EXECUTION


class VMError(Exception):
    """A tx broke one rule. `kind` names the rule; `message` says what exactly was wrong."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(f"{kind.name} ({kind.code}): {message}")
        self.kind = kind
        self.code = kind.code
        self.name = kind.name
        self.message = message


class BlockInvalid(Exception):
    """A block contains a tx that must never be included (only a faulty proposer does that)."""

    def __init__(self, index: int, error: VMError):
        super().__init__(f"tx #{index} of the block is not includable: {error}")
        self.index = index
        self.error = error


OK = 0

_S, _A, _E = STATELESS, ADMISSION, EXECUTION

# --- stateless: structure, size, chain, signature, fee floor ---
MALFORMED = ErrorKind(100, "malformed", _S, "bytes are not a canonical encoding (truncated, trailing data, non-canonical)")
TX_TOO_LARGE = ErrorKind(101, "tx_too_large", _S, "the raw tx exceeds the maximum tx size")
WRONG_CHAIN = ErrorKind(102, "wrong_chain", _S, "the tx names a different chain id")
UNKNOWN_TYPE = ErrorKind(103, "unknown_type", _S, "the tx type code is not in the type table")
BAD_ENVELOPE = ErrorKind(104, "bad_envelope", _S, "the envelope is not [chain_id, type, pubkey32, nonce, fee, body, sig64]")
BAD_BODY = ErrorKind(105, "bad_body", _S, "the body has the wrong length or a field of the wrong type or range")
FIELD_TOO_LARGE = ErrorKind(106, "field_too_large", _S, "a string or bytes field exceeds its bound from the genesis params")
WINDOW_TOO_LONG = ErrorKind(107, "window_too_long", _S, "a ship-within/confirm-within window exceeds the genesis maximum")
BAD_SIGNATURE = ErrorKind(108, "bad_signature", _S, "the signature does not verify for this sender, chain and payload")
FEE_TOO_LOW = ErrorKind(109, "fee_too_low", _S, "the fee is below the genesis minimum for this tx type")

# --- admission: needs state, but decides inclusion ---
BAD_NONCE = ErrorKind(200, "bad_nonce", _A, "the nonce is not exactly the sender's next nonce")
CANNOT_PAY_FEE = ErrorKind(201, "cannot_pay_fee", _A, "the sender's balance is below the fee")

# --- execution: business rules (included as failed, fee charged) ---
INSUFFICIENT_FUNDS = ErrorKind(300, "insufficient_funds", _E, "the sender's balance (after the fee) is below the amount to pay")
SELF_TRANSFER = ErrorKind(301, "self_transfer", _E, "a transfer or reward must go to another account")
LISTING_NOT_FOUND = ErrorKind(310, "listing_not_found", _E, "no listing has this id")
NOT_LISTING_OWNER = ErrorKind(311, "not_listing_owner", _E, "only the merchant who created a listing may change or delist it")
LISTING_INACTIVE = ErrorKind(312, "listing_inactive", _E, "the listing was delisted")
INSUFFICIENT_INVENTORY = ErrorKind(313, "insufficient_inventory", _E, "the listing has fewer units available than requested")
PRICE_ABOVE_LIMIT = ErrorKind(314, "price_above_limit", _E, "the listing price is above the buyer's max unit price")
SELF_PURCHASE = ErrorKind(315, "self_purchase", _E, "a merchant cannot buy from its own listing")
BAD_REFERRER = ErrorKind(316, "bad_referrer", _E, "the referrer must be neither the buyer nor the merchant")
ORDER_NOT_FOUND = ErrorKind(320, "order_not_found", _E, "no order has this id")
NOT_ORDER_BUYER = ErrorKind(321, "not_order_buyer", _E, "only the order's buyer may do this")
NOT_ORDER_MERCHANT = ErrorKind(322, "not_order_merchant", _E, "only the order's merchant may do this")
WRONG_ORDER_STATUS = ErrorKind(323, "wrong_order_status", _E, "the order's status does not allow this action")
TOO_MANY_CHECKPOINTS = ErrorKind(324, "too_many_checkpoints", _E, "the order already has the maximum number of checkpoints")
NOT_CARRIER = ErrorKind(325, "not_carrier", _E, "only the merchant or the carrier named at shipment may add a checkpoint")
NOT_ARBITER = ErrorKind(326, "not_arbiter", _E, "only an arbiter from the genesis params may resolve a dispute")
SPLIT_EXCEEDS_ESCROW = ErrorKind(327, "split_exceeds_escrow", _E, "the buyer's share is larger than the escrow held")
DEADLINE_PASSED = ErrorKind(328, "deadline_passed", _E, "the order's deadline for this action has passed")
ALREADY_REVIEWED = ErrorKind(330, "already_reviewed", _E, "the order already has a review")
REVIEW_NOT_ALLOWED = ErrorKind(331, "review_not_allowed", _E, "only a COMPLETED or RESOLVED order may be reviewed")
REWARD_NOT_ALLOWED = ErrorKind(340, "reward_not_allowed", _E, "a merchant rewards only the buyer of its own COMPLETED or RESOLVED order")
NOT_VALIDATOR = ErrorKind(350, "not_validator", _E, "only a current validator may vote")
DUPLICATE_VOTE = ErrorKind(351, "duplicate_vote", _E, "this validator already voted for this exact change")
INVALID_VALIDATOR_CHANGE = ErrorKind(352, "invalid_validator_change", _E, "the change does not apply to the (pending) validator set or would empty it")

ALL_ERRORS: tuple[ErrorKind, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, ErrorKind)
)
BY_CODE: dict[int, ErrorKind] = {kind.code: kind for kind in ALL_ERRORS}
assert len(BY_CODE) == len(ALL_ERRORS), "error codes must be unique"
