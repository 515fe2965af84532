"""Seeded simulations: safety and liveness across hostile scenarios, and a checker that bites.

Replay any seed with the command a failure prints, e.g.
    python -m tests.sim --seed 123 --scenario partition --validators 4
"""

from __future__ import annotations

import pathlib
import sys
from dataclasses import replace

ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.sim import SCENARIOS, run, scenario_for_seed  # noqa: E402
from tests.sim.soak import run_many  # noqa: E402

CI_SEEDS = 330


def test_ci_seeds_are_all_safe_and_live():
    mix = {scenario_for_seed(s) for s in range(CI_SEEDS)}
    assert {n for _, n in mix} == {4, 7} and len({name for name, _ in mix}) == len(SCENARIOS)
    results = run_many(range(CI_SEEDS), jobs=2)
    failures = [r.report() for r in results if not r.ok]
    assert not failures, "\n".join(failures)
    assert any(r.evidence for r in results)  # equivocation was really exercised
    assert any(r.max_round > 0 for r in results)  # and round changes


def test_f_plus_one_byzantine_can_break_safety():
    """With f+1 colluding equivocators the checker must report two committed blocks."""
    for n, byzantine in ((4, 2), (7, 3)):
        attack = replace(SCENARIOS["attack"], byzantine=byzantine, validators=n)
        result = run(0, attack)
        assert result.safety_violated, result.report()
        assert (f"replay: python -m tests.sim --seed 0 --scenario attack --validators {n} "
                f"--byzantine {byzantine}") in result.report()
    within_f = run(0, replace(SCENARIOS["attack"], validators=4))
    assert within_f.ok, within_f.report()


def test_a_seed_replays_identically():
    a = run(17, "chaos", 4)
    b = run(17, "chaos", 4)
    assert (a.heights, a.virtual_ms, a.max_round, a.evidence) == (
        b.heights, b.virtual_ms, b.max_round, b.evidence)
