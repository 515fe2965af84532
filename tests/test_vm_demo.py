"""The demo story (`make run`) runs end to end and tells the whole story."""

from __future__ import annotations

import pytest

from node import demo


def test_demo_story(capsys: pytest.CaptureFixture[str]) -> None:
    demo.main()
    out = capsys.readouterr().out
    for expected in ("order 1 -> COMPLETED (confirm)", "reward 40 to alice (review)",
                     "order 2 -> CANCELLED", "FAIL carol", "REJ  bob", "order 3 -> RESOLVED",
                     "order 4 -> REFUNDED (ship_by_expired)", "unchanged since genesis",
                     "5.000 stars"):
        assert expected in out, expected
