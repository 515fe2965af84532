"""Hypothesis fuzzing: decoders of untrusted bytes raise only the module's own errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import parse_peer_address
from p2p.errors import FrameError, HandshakeError, P2PError
from p2p.handshake import Handshake, decode_hello
from p2p.pex import decode_pex, encode_addrs
from p2p.session import RECORD_HEADER, Inbox, Outbox, SecureSession
from tests.test_p2p_support import CHAIN, key, pair, run_handshake

FAST = settings(max_examples=300, deadline=None)


@FAST
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_inbox_raises_only_frame_errors(chunks):
    inbox = Inbox(1000)
    for chunk in chunks:
        try:
            inbox.feed(chunk)
        except FrameError:
            return


@FAST
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 3), st.binary(max_size=40)),
                max_size=6))
def test_inbox_on_well_framed_random_records(records):
    plaintext = b"".join(RECORD_HEADER.pack(c, f, len(p)) + p for c, f, p in records)
    try:
        Inbox(1000).feed(plaintext)
    except FrameError:
        pass


@FAST
@given(st.lists(st.tuples(st.integers(1, 4), st.binary(max_size=3000)), max_size=20),
       st.integers(64, 5000))
def test_outbox_to_inbox_round_trips_any_messages(messages, budget):
    outbox, inbox = Outbox(), Inbox(1 << 20)
    for channel, payload in messages:
        outbox.push(channel, payload)
    received = []
    while (plaintext := outbox.next_plaintext(budget)) is not None:
        assert len(plaintext) <= budget
        received += inbox.feed(plaintext)
    assert received == messages


@FAST
@given(st.binary(max_size=2000))
def test_session_raises_only_frame_errors(data):
    session = SecureSession(b"\x01" * 32, b"\x02" * 32, 4096)
    try:
        session.receive_data(data)
    except FrameError:
        pass


@FAST
@given(st.binary(max_size=1200))
def test_hello_decoder_raises_only_handshake_errors(data):
    try:
        decode_hello(data)
    except HandshakeError:
        pass


@FAST
@given(st.lists(st.binary(max_size=400), max_size=4))
def test_handshake_raises_only_handshake_errors_on_garbage(chunks):
    hs = Handshake(key(2), CHAIN, initiator=False)
    hs.start()
    try:
        for chunk in chunks:
            hs.receive_data(chunk)
    except HandshakeError:
        pass
    assert hs.result is None


@FAST
@given(st.integers(0, 400), st.integers(0, 255))
def test_handshake_bytes_with_one_flipped_bit_are_refused(position, mask):
    a, b = pair()
    to_b = a.start()
    to_a = b.start()
    out_b = b.receive_data(to_b)
    out_a = a.receive_data(to_a)
    stream = bytearray(out_a)
    if position < len(stream) and mask:
        stream[position] ^= mask
        try:
            b.receive_data(bytes(stream))
        except HandshakeError:
            return
        raise AssertionError("a tampered auth frame was accepted")
    b.receive_data(bytes(stream))
    a.receive_data(out_b)
    assert a.result is not None and b.result is not None


@FAST
@given(st.binary(max_size=500))
def test_pex_decoder_raises_only_p2p_errors(data):
    try:
        decode_pex(data)
    except P2PError:
        pass


@FAST
@given(st.lists(st.tuples(st.binary(min_size=20, max_size=20),
                          st.from_regex(r"[a-z0-9.]{1,20}", fullmatch=True),
                          st.integers(1, 65535)), max_size=100))
def test_pex_address_lists_round_trip(addrs):
    assert list(decode_pex(encode_addrs(addrs)).addrs) == addrs


@FAST
@given(st.text(max_size=80))
def test_peer_address_parser_raises_only_value_errors(text):
    try:
        parse_peer_address(text)
    except ValueError:
        pass


def test_sessions_from_a_real_handshake_survive_random_frames():
    ra, rb = run_handshake(*pair())
    for data in (b"\x00\x00\x00\x10" + bytes(16), b"\xff" * 8):
        try:
            rb.session.receive_data(data)
        except FrameError:
            continue
        raise AssertionError("garbage frame accepted")
