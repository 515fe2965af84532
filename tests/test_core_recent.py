"""core.recent.RecentSet: bounded memory, and the last half of its capacity always kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.recent import RecentSet


def test_add_is_true_once_and_contains_follows() -> None:
    recent = RecentSet(8)
    assert recent.add(b"a") and not recent.add(b"a")
    assert b"a" in recent and b"b" not in recent and len(recent) == 1


def test_the_oldest_generation_is_dropped_whole() -> None:
    recent = RecentSet(4)  # generations of 2
    for key in (b"a", b"b", b"c", b"d"):
        assert recent.add(key)
    # a, b were the old generation when c, d filled the young one: dropped
    assert b"a" not in recent and b"b" not in recent
    assert b"c" in recent and b"d" in recent and len(recent) == 2
    assert recent.add(b"a")  # forgotten, so new again


def test_a_key_in_the_old_generation_is_still_known() -> None:
    recent = RecentSet(4)
    recent.add(b"a")
    recent.add(b"b")  # the turn: a, b are the old generation now
    assert not recent.add(b"a") and not recent.add(b"b")
    assert len(recent) == 2


@given(st.integers(min_value=2, max_value=64),
       st.lists(st.integers(min_value=0, max_value=200), max_size=400))
def test_bounded_and_keeps_the_last_half_of_its_capacity(capacity: int, keys: list[int]) -> None:
    recent, distinct = RecentSet(capacity), []
    for key in keys:
        expected_new = key not in recent
        assert recent.add(key) is expected_new
        if expected_new:
            distinct.append(key)
        assert len(recent) <= capacity
        # every key among the last capacity // 2 new ones is still remembered
        for kept in distinct[-(capacity // 2):]:
            assert kept in recent
        assert key in recent


def test_clear_and_a_capacity_below_two_is_refused() -> None:
    recent = RecentSet(4)
    recent.add(1)
    recent.clear()
    assert 1 not in recent and len(recent) == 0
    with pytest.raises(ValueError):
        RecentSet(1)
