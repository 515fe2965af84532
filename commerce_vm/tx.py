"""The tx envelope: decoding, stateless checks, signatures.

Wire form: encode([chain_id, type, sender_pubkey32, nonce, fee, body, signature64]).
The signature covers DOMAIN_TX + chain id + encode([chain_id, type, sender_pubkey, nonce, fee,
body]); tx hash = sha256(raw bytes).

Checks are split so the node can run the expensive ones once and in parallel:
- decode_tx(raw, chain_id, max_size): structure, size, canonical bytes, chain, type, body shape
- check_stateless(tx, params): size limit, fee floor, string bounds, windows (needs params)
- verify_tx_signature(tx): ed25519, cached on the Tx
Everything raises VMError with a STATELESS code; nothing here reads state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.address import address_from_pubkey
from core.encoding import decode, encode
from core.errors import DecodeError
from core.hashing import sha256
from core.keys import DOMAIN_TX, PrivateKey, signing_payload, verify_raw

from . import errors as E
from . import txtypes as T
from .params import GenesisParams

DEFAULT_MAX_TX_SIZE = 64 * 1024  # decode bound before params are known; params tighten it
SIGNATURE_TAIL = 2 + 64  # a 64-byte bin8 field is c4 40 + 64 bytes, always last in the envelope


def signed_message_of(raw: bytes) -> bytes:
    """What the sender signed, given a canonical tx envelope: the envelope minus its last
    field is the signed 6-array, so swap the array header (0x97 -> 0x96) and drop the
    signature; no re-encoding needed."""
    return b"\x96" + raw[1:-SIGNATURE_TAIL]


# --- bodies: one NamedTuple per type, fields in wire order ------------------------------
class TransferBody(NamedTuple):
    to: bytes
    amount: int


class ListBody(NamedTuple):
    listing_id: int  # 0 creates a new listing, otherwise updates that listing
    title: str
    price: int
    quantity: int
    ship_within: int  # blocks; 0 = the genesis default
    confirm_within: int  # blocks; 0 = the genesis default
    origin: str  # provenance: where and by whom the goods were made
    metadata: bytes


class DelistBody(NamedTuple):
    listing_id: int


class BuyBody(NamedTuple):
    listing_id: int
    quantity: int
    max_unit_price: int  # guards the buyer against a price change racing the purchase
    referrer: bytes | None


class ShipBody(NamedTuple):
    order_id: int
    carrier: str
    tracking_id: str
    carrier_address: bytes | None  # may then add checkpoints with `track`
    location: str
    note: str


class TrackBody(NamedTuple):
    order_id: int
    location: str
    note: str


class OrderBody(NamedTuple):  # confirm, cancel
    order_id: int


class ReasonBody(NamedTuple):  # refund, dispute
    order_id: int
    reason: str


class ResolveBody(NamedTuple):
    order_id: int
    buyer_amount: int  # the rest of the escrow goes to the merchant
    note: str


class ReviewBody(NamedTuple):
    order_id: int
    rating: int  # 1..5
    text: str


class RewardBody(NamedTuple):
    order_id: int
    amount: int
    memo: str


class ValidatorVoteBody(NamedTuple):
    action: int  # 1 add, 2 remove, 3 set power
    pubkey: bytes
    power: int  # 0 for remove


# Field kinds. String/bytes kinds name the params attribute that bounds them.
ADDR, OPT_ADDR, PUBKEY, U63, POS, RATING, ACTION, POWER = (
    "addr", "opt_addr", "pubkey", "u63", "pos", "rating", "action", "power"
)
_T, _X, _C, _O, _M = (
    ("str", "max_title_bytes"),
    ("str", "max_text_bytes"),
    ("str", "max_checkpoint_bytes"),
    ("str", "max_origin_bytes"),
    ("bytes", "max_metadata_bytes"),
)

BODY_SCHEMAS: dict[int, tuple[type, tuple[Any, ...]]] = {
    T.TRANSFER: (TransferBody, (ADDR, POS)),
    T.LIST: (ListBody, (U63, _T, POS, U63, U63, U63, _O, _M)),
    T.DELIST: (DelistBody, (POS,)),
    T.BUY: (BuyBody, (POS, POS, POS, OPT_ADDR)),
    T.SHIP: (ShipBody, (POS, _C, _C, OPT_ADDR, _C, _C)),
    T.TRACK: (TrackBody, (POS, _C, _C)),
    T.CONFIRM: (OrderBody, (POS,)),
    T.CANCEL: (OrderBody, (POS,)),
    T.REFUND: (ReasonBody, (POS, _X)),
    T.DISPUTE: (ReasonBody, (POS, _X)),
    T.RESOLVE: (ResolveBody, (POS, U63, _X)),
    T.REVIEW: (ReviewBody, (POS, RATING, _X)),
    T.REWARD: (RewardBody, (POS, POS, _X)),
    T.VALIDATOR_VOTE: (ValidatorVoteBody, (ACTION, PUBKEY, POWER)),
}


@dataclass(slots=True, eq=False)
class Tx:
    """A decoded tx. Keeps its raw bytes and hash; `sig_valid` caches verification."""

    raw: bytes
    hash: bytes
    chain_id: str
    type: int
    sender: bytes  # ed25519 public key
    sender_address: bytes
    nonce: int
    fee: int
    body: Any  # the type's body NamedTuple
    signature: bytes
    sig_valid: bool | None = None
    stateless_ok_for: GenesisParams | None = None  # the params check_stateless passed it for

    @property
    def type_name(self) -> str:
        return T.TYPE_NAMES[self.type]

    def signed_message(self) -> bytes:
        return signed_message_of(self.raw)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _u63(value: Any, low: int = 0) -> bool:
    return _is_int(value) and low <= value <= T.MAX_AMOUNT


def _field_check(kind: Any) -> Callable[[Any], bool]:
    """The check of one field kind, built once per kind: parse_body runs on every tx a node
    receives, and walking the kinds per field cost more than the checks themselves."""
    if isinstance(kind, tuple):
        expected = str if kind[0] == "str" else bytes
        return lambda v: isinstance(v, expected)
    if kind == U63:
        return _u63
    if kind == POS:
        return lambda v: _u63(v, 1)
    if kind == ADDR:
        return lambda v: isinstance(v, bytes) and len(v) == 20
    if kind == OPT_ADDR:
        return lambda v: v is None or (isinstance(v, bytes) and len(v) == 20)
    if kind == PUBKEY:
        return lambda v: isinstance(v, bytes) and len(v) == 32
    if kind == RATING:
        return lambda v: _is_int(v) and 1 <= v <= 5
    if kind == ACTION:
        return lambda v: _is_int(v) and v in T.VOTE_ACTION_NAMES
    if kind == POWER:
        return lambda v: _is_int(v) and 0 <= v <= T.MAX_VALIDATOR_POWER
    raise AssertionError(kind)


# type -> (body class, (field name, check) per field)
_BODY_CHECKS: dict[int, tuple[type, tuple[tuple[str, Callable[[Any], bool]], ...]]] = {
    tx_type: (cls, tuple((name, _field_check(kind)) for name, kind in zip(cls._fields, kinds,
                                                                          strict=True)))
    for tx_type, (cls, kinds) in BODY_SCHEMAS.items()
}


def parse_body(tx_type: int, body: Any) -> Any:
    cls, checks = _BODY_CHECKS[tx_type]
    if not isinstance(body, list) or len(body) != len(checks):
        raise E.VMError(E.BAD_BODY, f"{T.TYPE_NAMES[tx_type]} body must be a list of {len(checks)} fields")
    for (name, check), value in zip(checks, body, strict=True):
        if not check(value):
            raise E.VMError(E.BAD_BODY, f"{T.TYPE_NAMES[tx_type]}.{name}: wrong type or out of range")
    parsed = cls(*body)
    if tx_type == T.VALIDATOR_VOTE and (parsed.power == 0) != (parsed.action == T.VOTE_REMOVE):
        raise E.VMError(E.BAD_BODY, "validator_vote.power: 0 for remove, at least 1 otherwise")
    return parsed


def decode_tx(raw: bytes, chain_id: str, max_size: int = DEFAULT_MAX_TX_SIZE) -> Tx:
    """Decode and structurally validate a raw tx. Raises VMError (stateless codes)."""
    if not isinstance(raw, bytes):
        raise E.VMError(E.MALFORMED, "a tx is bytes")
    if len(raw) > max_size:
        raise E.VMError(E.TX_TOO_LARGE, f"{len(raw)} bytes exceeds the limit of {max_size}")
    try:
        items = decode(raw, max_size)
    except DecodeError as exc:
        raise E.VMError(E.MALFORMED, str(exc)) from None
    if not isinstance(items, list) or len(items) != 7:
        raise E.VMError(E.BAD_ENVELOPE, "a tx is a list of 7 fields")
    tx_chain, tx_type, sender, nonce, fee, body, signature = items
    if not isinstance(tx_chain, str):
        raise E.VMError(E.BAD_ENVELOPE, "chain_id must be a string")
    if tx_chain != chain_id:
        raise E.VMError(E.WRONG_CHAIN, f"tx is for chain {tx_chain[:48]!r}, this is {chain_id!r}")
    if not _is_int(tx_type):
        raise E.VMError(E.BAD_ENVELOPE, "type must be an integer")
    if tx_type not in BODY_SCHEMAS:
        raise E.VMError(E.UNKNOWN_TYPE, f"unknown tx type {tx_type}")
    if not isinstance(sender, bytes) or len(sender) != 32:
        raise E.VMError(E.BAD_ENVELOPE, "sender must be a 32-byte public key")
    if not _u63(nonce) or not _u63(fee):
        raise E.VMError(E.BAD_ENVELOPE, "nonce and fee must be integers in [0, 2**63)")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise E.VMError(E.BAD_ENVELOPE, "signature must be 64 bytes")
    parsed = parse_body(tx_type, body)
    return Tx(raw, sha256(raw), tx_chain, tx_type, sender, address_from_pubkey(sender),
              nonce, fee, parsed, signature)


def check_stateless(tx: Tx, params: GenesisParams) -> None:
    """The params-dependent stateless rules. Raises VMError. A pass is remembered on the
    Tx for these (frozen) params: a tx meets them at admission, at every re-check of the
    pool and in its block, and the walk over its fields cost 4% of a validator's loop."""
    if tx.stateless_ok_for is params:
        return
    if tx.chain_id != params.chain_id:
        raise E.VMError(E.WRONG_CHAIN, f"tx is for chain {tx.chain_id!r}")
    if len(tx.raw) > params.max_tx_size:
        raise E.VMError(E.TX_TOO_LARGE, f"{len(tx.raw)} bytes exceeds {params.max_tx_size}")
    minimum = params.min_fees[tx.type]
    if tx.fee < minimum:
        raise E.VMError(E.FEE_TOO_LOW, f"fee {tx.fee} is below the minimum {minimum} for {tx.type_name}")
    _, kinds = BODY_SCHEMAS[tx.type]
    for name, kind, value in zip(tx.body._fields, kinds, tx.body, strict=True):
        if isinstance(kind, tuple):
            limit = getattr(params, kind[1])
            size = len(value.encode()) if isinstance(value, str) else len(value)
            if size > limit:
                raise E.VMError(E.FIELD_TOO_LARGE, f"{tx.type_name}.{name} is {size} bytes, limit {limit}")
    if tx.type == T.LIST:
        if tx.body.ship_within > params.max_ship_within:
            raise E.VMError(E.WINDOW_TOO_LONG, f"ship_within exceeds {params.max_ship_within} blocks")
        if tx.body.confirm_within > params.max_confirm_within:
            raise E.VMError(E.WINDOW_TOO_LONG, f"confirm_within exceeds {params.max_confirm_within} blocks")
    tx.stateless_ok_for = params


def verify_tx_signature(tx: Tx) -> bool:
    """ed25519 check of the tx signature; the result is cached on the Tx."""
    if tx.sig_valid is None:
        payload = signing_payload(DOMAIN_TX, tx.chain_id, tx.signed_message())
        tx.sig_valid = verify_raw(tx.sender, payload, tx.signature)
    return tx.sig_valid


def validate_tx(raw: bytes, params: GenesisParams, signature_verified: bool = False) -> Tx:
    """All stateless checks in order (decode, params rules, signature). Raises VMError.
    `signature_verified`: the caller verified the signature of exactly these bytes itself
    (the node's verify workers), so it is not verified again."""
    tx = decode_tx(raw, params.chain_id, params.max_tx_size)
    check_stateless(tx, params)
    if signature_verified:
        tx.sig_valid = True
    if not verify_tx_signature(tx):
        raise E.VMError(E.BAD_SIGNATURE, "signature does not verify")
    return tx


def sign_tx(key: PrivateKey, chain_id: str, tx_type: int, nonce: int, fee: int, body: list[Any]) -> bytes:
    """Build and sign a raw tx (for the CLI, tests and tools)."""
    unsigned = [chain_id, tx_type, key.public_key, nonce, fee, list(body)]
    signature = key.sign(DOMAIN_TX, chain_id, encode(unsigned))
    return encode(unsigned + [signature])
