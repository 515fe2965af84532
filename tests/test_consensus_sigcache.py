"""The memoized signature check: it never makes a bad signature pass, and its memory is
bounded."""

import tracemalloc

from consensus.sigcache import MAX_ENTRIES, SignatureCache
from core.keys import PrivateKey


def _signed(key: PrivateKey, i: int) -> tuple[bytes, bytes, bytes]:
    payload = b"vote %d" % i
    return key.public_key, payload, key.sign_raw(payload)


def test_remembers_good_signatures_and_never_bad_ones():
    cache = SignatureCache()
    key = PrivateKey.generate()
    pub, payload, sig = _signed(key, 1)
    assert cache.verify(pub, payload, sig)
    assert len(cache) == 1
    forged = bytes([sig[0] ^ 1]) + sig[1:]
    assert not cache.verify(pub, payload, forged)
    assert not cache.verify(pub, b"vote 2", sig)  # a remembered signature, another payload
    assert len(cache) == 1


def test_stays_within_its_bound_and_still_checks_after_dropping():
    cache = SignatureCache(max_entries=8)
    key = PrivateKey.generate()
    signed = [_signed(key, i) for i in range(20)]
    for pub, payload, sig in signed:
        assert cache.verify(pub, payload, sig)
        assert len(cache) <= 8
    pub, payload, sig = signed[0]  # dropped by now: verified again, still correctly
    assert cache.verify(pub, payload, sig)
    assert not cache.verify(pub, payload, bytes(64))


def test_a_full_default_cache_holds_under_four_megabytes():
    """Filled to its bound with vote-sized entries (a 123-byte payload, as signing_payload
    makes for a vote), the default cache stays small: it was 200,000 entries (~70 MB)."""
    cache = SignatureCache()
    pub = PrivateKey.generate().public_key
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(cache.max_entries - 1):  # the fullest it gets: one short of a turn
            cache.remember(pub, b"%0123d" % i, b"%064d" % i)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == MAX_ENTRIES - 1
    assert held < 4 * 1024 * 1024


def test_the_newest_half_survives_when_the_cache_turns(monkeypatch):
    """Filling the cache never forgets the last max_entries // 2 signatures it verified:
    a commit certificate right after the turn is not verified all over again."""
    cache = SignatureCache(max_entries=8)
    key = PrivateKey.generate()
    signed = [_signed(key, i) for i in range(30)]

    def no_verification(*_args):
        raise AssertionError("a remembered signature was verified again")

    for n, entry in enumerate(signed):
        assert cache.verify(*entry)
        assert len(cache) <= 8
        with monkeypatch.context() as patch:
            patch.setattr("consensus.sigcache.verify_raw", no_verification)
            for kept in signed[max(0, n + 1 - 4):n + 1]:
                assert cache.verify(*kept)
