"""Bad input: every malformed or hostile tx is refused with the right code and changes nothing."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_vm import (
    VMError,
    app_hash_of,
    check_stateless,
    check_tx,
    decode_tx,
    execute_block,
    sign_tx,
    validate_tx,
)
from commerce_vm import errors as E
from commerce_vm import txtypes as T
from commerce_vm.tx import BODY_SCHEMAS
from core.encoding import encode
from core.keys import DOMAIN_TX
from tests.vm_helpers import CHAIN_ID, KEYS, Chain, addr

BOB = addr(KEYS["bob"])


def _good(chain: Chain) -> bytes:
    return chain.tx("alice", T.TRANSFER, [BOB, 100], nonce=0)


def _code(raw: bytes, chain: Chain) -> int:
    try:
        validate_tx(raw, chain.params)
    except VMError as err:
        return err.code
    return 0


def _assert_block_refuses(chain: Chain, raw: bytes, code: int) -> None:
    """Decoding or executing `raw` yields `code`, and a block with it changes nothing."""
    before = app_hash_of(chain.state)
    try:
        txs = [decode_tx(raw, CHAIN_ID)]
    except VMError as err:
        assert err.code == code
        return
    result = execute_block(chain.state, chain.params, chain.context(), txs, drop_rejected=True)
    assert result.results[0].code == code and not result.results[0].included
    assert result.app_hash == before
    assert result.changes == [] and result.included == []


def test_good_tx_is_accepted() -> None:
    chain = Chain()
    assert _code(_good(chain), chain) == 0


def test_truncated_at_every_offset() -> None:
    chain = Chain()
    raw = _good(chain)
    for cut in range(len(raw)):
        assert _code(raw[:cut], chain) == E.MALFORMED.code, cut


def test_trailing_bytes() -> None:
    chain = Chain()
    assert _code(_good(chain) + b"\x00", chain) == E.MALFORMED.code


def test_non_canonical_integer_encoding() -> None:
    chain = Chain()
    raw = chain.tx("alice", T.TRANSFER, [BOB, 100], nonce=0)
    # amount 100 is a positive fixint (0x64); encode it as uint8 (cc 64) instead
    at = raw.index(BOB) + 20
    assert raw[at] == 100
    assert _code(raw[:at] + b"\xcc\x64" + raw[at + 1:], chain) == E.MALFORMED.code


def test_map_and_float_are_malformed() -> None:
    chain = Chain()
    assert _code(b"\x81\x01\x02", chain) == E.MALFORMED.code  # {1: 2}
    assert _code(b"\xcb" + b"\x00" * 8, chain) == E.MALFORMED.code  # float64


def test_oversized_raw() -> None:
    chain = Chain()
    big = chain.tx("merchant", T.LIST, [0, "x", 1, 1, 0, 0, "", b"\x00" * 9000], nonce=0)
    assert _code(big, chain) == E.TX_TOO_LARGE.code
    with pytest.raises(VMError) as info:
        decode_tx(big, CHAIN_ID, max_size=1000)
    assert info.value.code == E.TX_TOO_LARGE.code
    _assert_block_refuses(chain, big, E.TX_TOO_LARGE.code)


def test_huge_strings_in_every_string_field() -> None:
    chain = Chain()
    for tx_type, (cls, kinds) in BODY_SCHEMAS.items():
        for index, kind in enumerate(kinds):
            if not isinstance(kind, tuple):
                continue
            body = _valid_body(tx_type)
            limit = getattr(chain.params, kind[1])
            body[index] = ("x" * (limit + 1)) if kind[0] == "str" else b"x" * (limit + 1)
            raw = chain.tx("merchant", tx_type, body, nonce=0)
            assert _code(raw, chain) == E.FIELD_TOO_LARGE.code, (cls.__name__, index)
            _assert_block_refuses(chain, raw, E.FIELD_TOO_LARGE.code)


def test_multibyte_string_bound_counts_bytes() -> None:
    chain = Chain()
    title = "é" * 65  # 130 bytes > 128, only 65 characters
    raw = chain.tx("merchant", T.LIST, [0, title, 1, 1, 0, 0, "", b""], nonce=0)
    assert _code(raw, chain) == E.FIELD_TOO_LARGE.code


def test_wrong_chain_signed_and_named() -> None:
    chain = Chain()
    raw = sign_tx(KEYS["alice"], "another-chain", T.TRANSFER, 0, 10, [BOB, 1])
    assert _code(raw, chain) == E.WRONG_CHAIN.code


def test_signature_for_other_chain_but_named_this_chain() -> None:
    chain = Chain()
    unsigned = [CHAIN_ID, T.TRANSFER, KEYS["alice"].public_key, 0, 10, [BOB, 1]]
    sig = KEYS["alice"].sign(DOMAIN_TX, "another-chain", encode(unsigned))
    raw = encode(unsigned + [sig])
    assert _code(raw, chain) == E.BAD_SIGNATURE.code
    _assert_block_refuses(chain, raw, E.BAD_SIGNATURE.code)


def test_every_signature_bit_matters() -> None:
    chain = Chain()
    raw = _good(chain)
    for bit in range(0, 64 * 8, 37):
        bad = bytearray(raw)
        bad[len(raw) - 64 + bit // 8] ^= 1 << (bit % 8)
        assert _code(bytes(bad), chain) == E.BAD_SIGNATURE.code


def test_signature_covers_body_fields() -> None:
    chain = Chain()
    raw = _good(chain)
    at = raw.index(BOB) + 20
    tampered = raw[:at] + bytes([raw[at] + 1]) + raw[at + 1:]  # amount 100 -> 101
    assert _code(tampered, chain) == E.BAD_SIGNATURE.code


def test_signed_message_is_the_six_field_encoding() -> None:
    chain = Chain()
    tx = decode_tx(_good(chain), CHAIN_ID)
    assert tx.signed_message() == encode([CHAIN_ID, T.TRANSFER, tx.sender, 0, 10, [BOB, 100]])


def test_replayed_nonce_is_rejected_and_changes_nothing() -> None:
    chain = Chain()
    raw = _good(chain)
    assert chain.block([raw]).results[0].ok
    _assert_block_refuses(chain, raw, E.BAD_NONCE.code)


def test_bad_envelopes() -> None:
    chain = Chain()
    pk = KEYS["alice"].public_key
    sig = b"\x00" * 64
    cases = [
        encode([CHAIN_ID, T.TRANSFER, pk, 0, 10, [BOB, 1]]),  # 6 fields
        encode([CHAIN_ID, T.TRANSFER, pk, 0, 10, [BOB, 1], sig, 0]),  # 8 fields
        encode([1, T.TRANSFER, pk, 0, 10, [BOB, 1], sig]),  # chain id not a string
        encode([CHAIN_ID, "1", pk, 0, 10, [BOB, 1], sig]),  # type not an int
        encode([CHAIN_ID, True, pk, 0, 10, [BOB, 1], sig]),  # bool is not an int
        encode([CHAIN_ID, T.TRANSFER, pk[:31], 0, 10, [BOB, 1], sig]),
        encode([CHAIN_ID, T.TRANSFER, pk, -1, 10, [BOB, 1], sig]),
        encode([CHAIN_ID, T.TRANSFER, pk, 0, 2**63, [BOB, 1], sig]),
        encode([CHAIN_ID, T.TRANSFER, pk, 0, 10, [BOB, 1], sig[:63]]),
        encode("not a list"),
    ]
    for raw in cases:
        assert _code(raw, chain) == E.BAD_ENVELOPE.code, raw.hex()


def _valid_body(tx_type: int) -> list:
    return {
        T.TRANSFER: [BOB, 1], T.LIST: [0, "t", 1, 1, 0, 0, "o", b""], T.DELIST: [1],
        T.BUY: [1, 1, 1, None], T.SHIP: [1, "c", "t", None, "l", "n"], T.TRACK: [1, "l", "n"],
        T.CONFIRM: [1], T.CANCEL: [1], T.REFUND: [1, "r"], T.DISPUTE: [1, "r"],
        T.RESOLVE: [1, 0, "n"], T.REVIEW: [1, 5, "t"], T.REWARD: [1, 1, "m"],
        T.VALIDATOR_VOTE: [T.VOTE_ADD, b"\x01" * 32, 1],
    }[tx_type]


@pytest.mark.parametrize("tx_type", sorted(T.TYPE_NAMES))
def test_wrong_type_bodies(tx_type: int) -> None:
    chain = Chain()
    good = _valid_body(tx_type)
    assert _code(chain.tx("merchant", tx_type, good, nonce=0), chain) == 0
    wrongs = [good[:-1], good + [0], "body", []]
    for index, value in enumerate(good):
        replacement = "s" if not isinstance(value, str) else 7
        wrongs.append(good[:index] + [replacement] + good[index + 1:])
        if isinstance(value, int) and not isinstance(value, bool):
            wrongs.append(good[:index] + [-1] + good[index + 1:])
            wrongs.append(good[:index] + [2**63] + good[index + 1:])
            wrongs.append(good[:index] + [True] + good[index + 1:])
    for body in wrongs:
        raw = chain.tx("merchant", tx_type, body, nonce=0)
        assert _code(raw, chain) == E.BAD_BODY.code, (tx_type, body)


def test_unknown_type() -> None:
    chain = Chain()
    for tx_type in (0, 15, 99, 2**32):
        raw = sign_tx(KEYS["alice"], CHAIN_ID, tx_type, 0, 10, [])
        assert _code(raw, chain) == E.UNKNOWN_TYPE.code


def test_fee_floor_and_cannot_pay() -> None:
    chain = Chain()
    low = chain.tx("alice", T.TRANSFER, [BOB, 1], fee=9, nonce=0)
    assert _code(low, chain) == E.FEE_TOO_LOW.code
    _assert_block_refuses(chain, low, E.FEE_TOO_LOW.code)
    broke = chain.tx("stranger", T.TRANSFER, [BOB, 1], nonce=0)
    _assert_block_refuses(chain, broke, E.CANNOT_PAY_FEE.code)


def test_a_stateless_pass_is_remembered_only_for_the_params_it_was_checked_with() -> None:
    chain = Chain()
    tx = decode_tx(chain.tx("alice", T.TRANSFER, [BOB, 1], fee=10, nonce=0), CHAIN_ID)
    check_stateless(tx, chain.params)
    assert tx.stateless_ok_for is chain.params
    check_stateless(tx, chain.params)  # the same params: passes again
    fees = list(chain.params.min_fees)
    fees[T.TRANSFER] = 11
    stricter = dataclasses.replace(chain.params, min_fees=tuple(fees))
    with pytest.raises(VMError) as refused:
        check_stateless(tx, stricter)  # other params are checked in full
    assert refused.value.code == E.FEE_TOO_LOW.code
    assert tx.stateless_ok_for is chain.params  # a refusal is never remembered
    low = decode_tx(chain.tx("alice", T.TRANSFER, [BOB, 1], fee=9, nonce=0), CHAIN_ID)
    for _ in range(2):  # a tx that failed fails each time
        with pytest.raises(VMError):
            check_stateless(low, chain.params)
    assert low.stateless_ok_for is None


def test_check_tx_does_not_modify_state() -> None:
    chain = Chain()
    tx = decode_tx(_good(chain), CHAIN_ID)
    before = chain.state.items()
    assert check_tx(chain.state, chain.params, chain.context(), tx).ok
    assert chain.state.items() == before


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        decode_tx(data, CHAIN_ID)
    except VMError as err:
        assert err.kind in E.ALL_ERRORS and err.kind.rejects


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.integers(0, 255))
def test_single_byte_mutations_are_refused(position: int, value: int) -> None:
    chain = Chain()
    raw = bytearray(_good(chain))
    position %= len(raw)
    if raw[position] == value:
        return
    raw[position] = value
    assert _code(bytes(raw), chain) != 0
