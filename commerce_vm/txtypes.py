"""The tx type table: stable small integer codes (never renumber, only append)."""

from __future__ import annotations

TRANSFER = 1
LIST = 2
DELIST = 3
BUY = 4
SHIP = 5
TRACK = 6
CONFIRM = 7
CANCEL = 8
REFUND = 9
DISPUTE = 10
RESOLVE = 11
REVIEW = 12
REWARD = 13
VALIDATOR_VOTE = 14

TYPE_NAMES: dict[int, str] = {
    TRANSFER: "transfer",
    LIST: "list",
    DELIST: "delist",
    BUY: "buy",
    SHIP: "ship",
    TRACK: "track",
    CONFIRM: "confirm",
    CANCEL: "cancel",
    REFUND: "refund",
    DISPUTE: "dispute",
    RESOLVE: "resolve",
    REVIEW: "review",
    REWARD: "reward",
    VALIDATOR_VOTE: "validator_vote",
}
TYPE_CODES: dict[str, int] = {name: code for code, name in TYPE_NAMES.items()}

# Order statuses (stored as ints).
PAID = 1
SHIPPED = 2
COMPLETED = 3
CANCELLED = 4
REFUNDED = 5
DISPUTED = 6
RESOLVED = 7
STATUS_NAMES: dict[int, str] = {
    PAID: "PAID",
    SHIPPED: "SHIPPED",
    COMPLETED: "COMPLETED",
    CANCELLED: "CANCELLED",
    REFUNDED: "REFUNDED",
    DISPUTED: "DISPUTED",
    RESOLVED: "RESOLVED",
}
OPEN_STATUSES = frozenset((PAID, SHIPPED, DISPUTED))  # escrow is held only while open
CLOSED_FOR_REVIEW = frozenset((COMPLETED, RESOLVED))

# validator_vote actions
VOTE_ADD = 1
VOTE_REMOVE = 2
VOTE_SET_POWER = 3
VOTE_ACTION_NAMES = {VOTE_ADD: "add", VOTE_REMOVE: "remove", VOTE_SET_POWER: "set_power"}

MAX_AMOUNT = 2**63 - 1  # amounts, prices, quantities, ids: non-negative and below 2**63
MAX_VALIDATOR_POWER = 2**40
