"""Sans-IO protocol tests: handshake, sealed frames and batches, fed bytes directly."""

from __future__ import annotations

import struct

import nacl.bindings
import pytest

from core.encoding import encode
from p2p import Channel, node_id_of, parse_peer_address
from p2p.errors import FrameError, HandshakeError
from p2p.handshake import MAX_HELLO_BYTES, Handshake, decode_hello
from p2p.ids import format_peer_address
from p2p.session import RECORD_HEADER, Inbox, Outbox, SecureSession
from tests.test_p2p_support import CHAIN, key, pair, run_handshake


def sessions() -> tuple[SecureSession, SecureSession]:
    ra, rb = run_handshake(*pair())
    return ra.session, rb.session


def send(sender: SecureSession, receiver: SecureSession, messages, budget=65536):
    """Messages through Outbox -> seal -> open -> Inbox; returns (received, frames)."""
    outbox, inbox = Outbox(), Inbox(1 << 24)
    for channel, payload in messages:
        outbox.push(channel, payload)
    received, frames = [], 0
    while (plaintext := outbox.next_plaintext(budget)) is not None:
        frames += 1
        for opened in receiver.receive_data(sender.seal(plaintext)):
            received += inbox.feed(opened)
    return received, frames


# --- handshake ---------------------------------------------------------------------------

def test_handshake_succeeds_both_ways_and_authenticates_ids():
    a, b = pair()
    ra, rb = run_handshake(a, b)
    assert ra.peer_id == node_id_of(key(2).public_key)
    assert rb.peer_id == node_id_of(key(1).public_key)
    assert (ra.listen_address, ra.moniker) == ("127.0.0.1:2000", "b")
    assert (rb.listen_address, rb.moniker) == ("127.0.0.1:1000", "a")
    # both directions carry data under the derived keys
    assert rb.session.receive_data(ra.session.seal(b"\x02\x00\x00\x00\x00\x01x")) == [
        b"\x02\x00\x00\x00\x00\x01x"]
    assert ra.session.receive_data(rb.session.seal(b"pong")) == [b"pong"]


def test_handshake_survives_byte_at_a_time_delivery_and_early_data():
    a, b = pair()
    to_b, to_a = a.start(), b.start()
    out_a = b"".join(a.receive_data(to_a[i:i + 1]) for i in range(len(to_a)))
    out_b = b"".join(b.receive_data(to_b[i:i + 1]) for i in range(len(to_b)))
    # b's first data frame arrives in the same chunk as its auth frame
    for i in range(len(out_a)):
        b.receive_data(out_a[i:i + 1])
    early = b.result.session.seal(b"early")
    a.receive_data(out_b + early)
    assert a.result is not None and b.result is not None
    assert a.result.session.read_frame() is None
    assert a.result.session.receive_data(a.result.early_data) == [b"early"]


def test_expected_peer_id_match_is_accepted():
    a, b = pair(expected_peer_id=node_id_of(key(2).public_key))
    ra, _ = run_handshake(a, b)
    assert ra.peer_id == node_id_of(key(2).public_key)


def test_wrong_chain_id_is_refused():
    with pytest.raises(HandshakeError) as err:
        run_handshake(*pair(chain_b="other-chain"))
    assert err.value.name == "wrong_chain"


def test_dialled_peer_with_another_id_is_refused():
    with pytest.raises(HandshakeError) as err:
        run_handshake(*pair(expected_peer_id=b"\x07" * 20))
    assert err.value.name == "unexpected_peer_id"


def test_self_connection_is_refused():
    a = Handshake(key(1), CHAIN, initiator=True)
    b = Handshake(key(1), CHAIN, initiator=False)
    with pytest.raises(HandshakeError) as err:
        run_handshake(a, b)
    assert err.value.name == "self_connection"


def _hello_frame(fields) -> bytes:
    body = encode(fields)
    return struct.pack(">I", len(body)) + body


def test_version_mismatch_is_refused():
    b = Handshake(key(2), CHAIN, initiator=False)
    eph = nacl.bindings.crypto_scalarmult_base(b"\x05" * 32)
    with pytest.raises(HandshakeError) as err:
        b.receive_data(_hello_frame([2, CHAIN, eph, key(1).public_key, "", "", 1 << 20]))
    assert err.value.name == "version_mismatch"


def test_low_order_ephemeral_key_is_refused():
    b = Handshake(key(2), CHAIN, initiator=False)
    with pytest.raises(HandshakeError) as err:
        b.receive_data(_hello_frame([1, CHAIN, bytes(32), key(1).public_key, "", "", 1 << 20]))
    assert err.value.name == "bad_ephemeral"


def test_oversized_or_malformed_hello_is_refused_before_buffering():
    b = Handshake(key(2), CHAIN, initiator=False)
    with pytest.raises(HandshakeError) as err:
        b.receive_data(struct.pack(">I", MAX_HELLO_BYTES + 1))
    assert err.value.name == "bad_hello"
    with pytest.raises(HandshakeError):
        decode_hello(encode([1, CHAIN, b"short", key(1).public_key, "", "", 1 << 20]))
    with pytest.raises(HandshakeError):
        decode_hello(encode([1, CHAIN]))


class _ReplayingKey:
    """Impersonates a node key: announces its public key, 'signs' with a stolen signature."""

    def __init__(self, public_key: bytes, signature: bytes):
        self.public_key = public_key
        self.signature = signature

    def sign(self, domain: bytes, chain_id: str, message: bytes) -> bytes:
        return self.signature


def test_man_in_the_middle_swapping_ephemeral_keys_fails_signature_check():
    a = Handshake(key(1), CHAIN, initiator=True)
    b = Handshake(key(2), CHAIN, initiator=False)
    # M poses as B towards A (B's node key, M's ephemeral key) and learns A's signature
    m1 = Handshake(_ReplayingKey(key(2).public_key, b"\x00" * 64), CHAIN, initiator=False,
                   ephemeral_secret=b"\x09" * 32)
    a_hello = a.start()
    a_auth = a.receive_data(m1.start())
    m1_auth = m1.receive_data(a_hello)  # M cannot sign for B: its signature is garbage
    stolen = m1._session.receive_data(a_auth)[0]  # A's real signature, for A's transcript
    assert len(stolen) == 64
    # M poses as A towards B, presenting A's real signature
    m2 = Handshake(_ReplayingKey(key(1).public_key, stolen), CHAIN, initiator=True,
                   ephemeral_secret=b"\x0a" * 32)
    m2_auth = m2.receive_data(b.start())
    b.receive_data(m2.start())
    with pytest.raises(HandshakeError) as err:
        b.receive_data(m2_auth)
    assert err.value.name == "bad_signature"
    # and A, whose frames M can open, refuses M's signature in B's name
    with pytest.raises(HandshakeError) as err:
        a.receive_data(m1_auth)
    assert err.value.name == "bad_signature"


def test_forwarding_unmodified_hellos_gives_the_middle_nothing_to_open():
    a, b = pair()
    m = Handshake(key(3), CHAIN, initiator=False, ephemeral_secret=b"\x0b" * 32)
    m.receive_data(a.start())  # M derives keys from its own ephemeral secret
    a_auth = a.receive_data(b.start())  # A talks to the real B's hello
    with pytest.raises(HandshakeError) as err:
        m.receive_data(a_auth)
    assert err.value.name in ("bad_auth", "bad_signature")


# --- frames ------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", list(Channel))
def test_each_channel_round_trips(channel):
    sa, sb = sessions()
    messages = [(int(channel), b"payload-%d" % i) for i in range(3)] + [(int(channel), b"")]
    received, _ = send(sa, sb, messages)
    assert received == messages
    received, _ = send(sb, sa, messages)
    assert received == messages


def test_many_messages_share_one_frame_and_keep_their_order():
    sa, sb = sessions()
    messages = [(1 + i % 3, i.to_bytes(4, "big") * 60) for i in range(200)]  # 240-byte msgs
    received, frames = send(sa, sb, messages)
    assert received == messages
    assert frames == 1


def test_a_message_larger_than_a_frame_is_split_and_reassembled():
    sa, sb = sessions()
    big = bytes(range(256)) * 1000  # 256 000 bytes
    messages = [(2, b"before"), (3, big), (1, b"after")]
    received, frames = send(sa, sb, messages, budget=16384)
    assert received == messages
    assert frames > len(big) // 16384


def test_tampered_frame_closes_the_connection():
    sa, sb = sessions()
    frame = bytearray(sa.seal(b"\x01\x00\x00\x00\x00\x02hi"))
    frame[10] ^= 1
    with pytest.raises(FrameError) as err:
        sb.receive_data(bytes(frame))
    assert err.value.name == "bad_mac"


def test_replayed_frame_closes_the_connection():
    sa, sb = sessions()
    frame = sa.seal(b"x")
    assert sb.receive_data(frame) == [b"x"]
    with pytest.raises(FrameError):
        sb.receive_data(frame)


def test_reordered_frames_close_the_connection():
    sa, sb = sessions()
    first, second = sa.seal(b"1"), sa.seal(b"2")
    with pytest.raises(FrameError):
        sb.receive_data(second + first)


def test_dropped_frame_closes_the_connection():
    sa, sb = sessions()
    sa.seal(b"lost")
    with pytest.raises(FrameError):
        sb.receive_data(sa.seal(b"next"))


def test_oversized_length_prefix_is_refused_before_the_body_arrives():
    sa, sb = sessions()
    with pytest.raises(FrameError) as err:
        sb.feed(struct.pack(">I", sb.max_frame_bytes + 1))  # only the prefix, no body
    assert err.value.name == "frame_too_large"
    _, sc = sessions()
    with pytest.raises(FrameError):
        sc.feed(struct.pack(">I", 3) + b"abc")  # shorter than its tag


def test_sealing_refuses_a_plaintext_over_the_frame_limit():
    sa, _ = sessions()
    with pytest.raises(ValueError):
        sa.seal(bytes(sa.max_frame_bytes))


def test_bad_batches_are_frame_errors():
    cases = [
        b"",  # empty batch
        b"\x01\x00\x00",  # truncated header
        RECORD_HEADER.pack(1, 0, 10) + b"short",  # record past the end
        RECORD_HEADER.pack(1, 4, 1) + b"x",  # unknown flag
        RECORD_HEADER.pack(1, 1, 1) + b"x" + RECORD_HEADER.pack(2, 0, 1) + b"y",  # interleaved
        RECORD_HEADER.pack(1, 1, 0),  # empty part
    ]
    for case in cases:
        with pytest.raises(FrameError):
            Inbox(1 << 20).feed(case)


def test_message_size_limit_counts_every_part():
    inbox = Inbox(100)
    inbox.feed(RECORD_HEADER.pack(3, 1, 60) + bytes(60))
    with pytest.raises(FrameError) as err:
        inbox.feed(RECORD_HEADER.pack(3, 0, 60) + bytes(60))
    assert err.value.name == "message_too_large"


def test_outbox_accounts_queued_bytes():
    outbox = Outbox()
    outbox.push(1, bytes(1000))
    outbox.push(2, bytes(3000))
    assert outbox.queued_bytes == 4000
    outbox.next_plaintext(2048)
    assert 0 < outbox.queued_bytes < 4000
    while outbox.next_plaintext(2048) is not None:
        pass
    assert outbox.queued_bytes == 0 and outbox.messages_taken == 2


# --- ids and seen-cache ------------------------------------------------------------------

def test_peer_addresses_parse_and_refuse_bad_input():
    pid = node_id_of(key(1).public_key)
    text = format_peer_address(pid, "127.0.0.1", 26656)
    assert parse_peer_address(text) == (pid, "127.0.0.1", 26656)
    assert parse_peer_address(format_peer_address(pid, "::1", 5)) == (pid, "::1", 5)
    for bad in ["", "nohost", pid.hex() + "@host", pid.hex()[:-2] + "@h:1",
                "zz" * 20 + "@h:1", pid.hex() + "@h:99999", pid.hex() + "@h:0",
                pid.hex() + "@:1", pid.hex() + "@h:-1", "a@b@c:1", None]:
        with pytest.raises(ValueError):
            parse_peer_address(bad)
