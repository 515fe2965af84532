"""core/: canonical encoding, signatures, addresses and Merkle proofs."""

from concurrent.futures import ThreadPoolExecutor

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.address import address_from_pubkey, address_from_text, address_to_text
from core.encoding import MAX_DEPTH, decode, encode, encode_trusted
from core.errors import AddressError, DecodeError, EncodeError
from core.hashing import sha256, tagged_hash
from core.keys import (
    DOMAIN_TX,
    DOMAIN_VOTE,
    PrivateKey,
    require_valid,
    signing_payload,
    validate_chain_id,
    verify,
)
from core.merkle import EMPTY_ROOT, inclusion_proof, merkle_root, verify_inclusion

values = st.recursive(
    st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32)
    | st.booleans()
    | st.none(),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


# --- encoding -------------------------------------------------------------------------------


@given(values)
def test_encoding_round_trips(value):
    assert decode(encode(value)) == value


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_decode_of_random_bytes_is_canonical_or_refused(data):
    try:
        value = decode(data)
    except DecodeError:
        return
    assert encode(value) == data


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "empty"),
        (b"\xcc\x01", "1 encoded in two bytes"),
        (b"\xd9\x01a", "short string with a wide header"),
        (b"\xc5\x00\x01a", "short bytes with a wide header"),
        (b"\xdc\x00\x01\x01", "short array with a wide header"),
        (b"\x81\x01\x02", "a map"),
        (b"\xcb" + b"\x00" * 8, "a float"),
        (b"\xd4\x01\x00", "an extension type"),
        (b"\x01\x02", "trailing bytes"),
        (b"\xc4\x05ab", "truncated bytes"),
        (b"\xa2\xff\xfe", "invalid utf-8"),
        (b"\x92\x01", "truncated array"),
    ],
)
def test_decode_refuses_non_canonical_and_malformed(data, why):
    with pytest.raises(DecodeError):
        decode(data)


def test_decode_enforces_size_and_depth_limits():
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(encode(b"x" * 100), max_size=50)
    nested: list = [1]
    for _ in range(MAX_DEPTH + 1):
        nested = [nested]
    with pytest.raises(DecodeError, match="nesting"):
        decode(msgpack.packb(nested))
    # a pathological nest far deeper than msgpack's own stack is refused, not a crash
    with pytest.raises(DecodeError):
        decode(b"\x91" * 100_000 + b"\x01")


@pytest.mark.parametrize("bad", [1.5, {"a": 1}, 2**64, -(2**63) - 1, object(), [[{1: 2}]]])
def test_encode_refuses_values_without_canonical_form(bad):
    with pytest.raises(EncodeError):
        encode(bad)


def test_encoding_is_positional_and_stable():
    # A golden value: changing the format silently would change every hash and signature.
    assert encode([1, b"\x00", "a", [True, None]]).hex() == "9401c40100a16192c3c0"


@given(st.lists(values, min_size=1, max_size=8))
def test_the_kept_packer_encodes_each_value_as_a_fresh_one_does(seq):
    for value in seq:
        assert encode_trusted(value) == encode(value) == msgpack.packb(value, use_bin_type=True)


def test_the_kept_packer_survives_a_failed_and_a_large_value():
    small = [1, b"ab", "c"]
    with pytest.raises(TypeError):
        encode_trusted([1, b"half written", object()])  # fails after packing a prefix
    assert encode_trusted(small) == msgpack.packb(small)  # nothing of it is left over
    large = [b"x" * 600_000, 7]  # grows the buffer past its 256 KiB
    assert encode_trusted(large) == msgpack.packb(large)
    assert encode_trusted(small) == msgpack.packb(small)


def test_threads_encode_with_packers_of_their_own():
    work = [[i, b"k" * (i % 97), str(i) * (i % 5), [i % 2 == 0, None]] for i in range(4000)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(encode_trusted, work, chunksize=7))
    assert got == [msgpack.packb(v) for v in work]


# --- hashing and keys -----------------------------------------------------------------------


def test_hashes():
    assert sha256(b"abc").hex().startswith("ba7816bf")
    assert tagged_hash(b"a", b"b") != tagged_hash(b"ab", b"")


def test_signature_is_bound_to_domain_chain_and_message():
    key = PrivateKey(bytes(range(32)))
    sig = key.sign(DOMAIN_TX, "chain-a", b"msg")
    assert verify(key.public_key, DOMAIN_TX, "chain-a", b"msg", sig)
    assert not verify(key.public_key, DOMAIN_VOTE, "chain-a", b"msg", sig)
    assert not verify(key.public_key, DOMAIN_TX, "chain-b", b"msg", sig)
    assert not verify(key.public_key, DOMAIN_TX, "chain-a", b"msg2", sig)
    other = PrivateKey(bytes(32))
    assert not verify(other.public_key, DOMAIN_TX, "chain-a", b"msg", sig)
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify(key.public_key, DOMAIN_TX, "chain-a", b"msg", flipped)
    with pytest.raises(Exception, match="does not verify"):
        require_valid(key.public_key, DOMAIN_TX, "chain-a", b"msg", flipped)


@pytest.mark.parametrize("pub, sig", [(b"", b""), (b"\x00" * 31, b"\x00" * 64), (b"\x00" * 32, b"x")])
def test_verify_rejects_malformed_keys_and_signatures(pub, sig):
    assert not verify(pub, DOMAIN_TX, "c", b"m", sig)


def test_signatures_are_deterministic_and_keys_repr_hides_seed():
    key = PrivateKey(b"\x07" * 32)
    assert key.sign(DOMAIN_TX, "c", b"m") == PrivateKey(b"\x07" * 32).sign(DOMAIN_TX, "c", b"m")
    assert "07070707" not in repr(key)
    with pytest.raises(ValueError):
        PrivateKey(b"short")


def test_domain_and_chain_are_unambiguous_in_payload():
    assert signing_payload(b"tx", "ab", b"c") != signing_payload(b"tx", "a", b"bc")


@pytest.mark.parametrize("bad", ["", "A", "has space", "a\x00b", "x" * 49, "-lead"])
def test_chain_id_validation(bad):
    with pytest.raises(ValueError):
        validate_chain_id(bad)
    assert validate_chain_id("chainmerce-dev.1") == "chainmerce-dev.1"


# --- addresses ------------------------------------------------------------------------------


def test_address_text_round_trip_and_checksum():
    address = address_from_pubkey(PrivateKey(b"\x01" * 32).public_key)
    text = address_to_text(address)
    assert text.startswith("cm1") and address_from_text(text) == address
    assert address_from_text(text.upper()) == address
    for i in range(3, len(text)):
        replacement = "q" if text[i] != "q" else "p"
        typo = text[:i] + replacement + text[i + 1 :]
        with pytest.raises(AddressError):
            address_from_text(typo)


@pytest.mark.parametrize(
    "bad", ["", "cm1", "xx1qqqqqqqqqqqq", "cm1bbbbbbbbbbbb", "Cm1Qqqqqqqqqqqqq", 5, "cm1" + "q" * 200]
)
def test_address_text_rejects_garbage(bad):
    with pytest.raises(AddressError):
        address_from_text(bad)


def test_address_to_text_needs_20_bytes():
    with pytest.raises(AddressError):
        address_to_text(b"\x00" * 19)


# --- merkle ---------------------------------------------------------------------------------


def test_merkle_known_shapes():
    assert merkle_root([]) == EMPTY_ROOT
    a, b, c = b"a", b"b", b"c"
    from core.merkle import inner_hash, leaf_hash

    assert merkle_root([a]) == leaf_hash(a)
    assert merkle_root([a, b, c]) == inner_hash(inner_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_merkle_proofs_verify_and_tampering_fails(leaves, data):
    root = merkle_root(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(leaves, index)
    assert verify_inclusion(leaves[index], index, len(leaves), proof, root)
    assert not verify_inclusion(leaves[index] + b"!", index, len(leaves), proof, root)
    if proof:
        bad = list(proof)
        bad[0] = sha256(bad[0])
        assert not verify_inclusion(leaves[index], index, len(leaves), bad, root)
        assert not verify_inclusion(leaves[index], index, len(leaves), proof[:-1], root)


def test_leaf_cannot_pose_as_inner_node():
    from core.merkle import leaf_hash

    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    root = merkle_root([b"a", b"b"])
    # a forged single-leaf tree whose leaf is the concatenation of the children
    assert merkle_root([left + right]) != root
