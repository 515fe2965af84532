"""Deterministic simulator of a chainmerce validator network (see docs/consensus.md).

`run(seed, scenario)` returns a SimResult; `python -m tests.sim --seed S --scenario NAME`
replays one run; `python -m tests.sim.soak --seeds 10000 --jobs 2` soaks.
"""

from .scenarios import SCENARIOS, Scenario, scenario_for_seed
from .sim import SimResult, Simulation, run

__all__ = ["SCENARIOS", "Scenario", "SimResult", "Simulation", "run", "scenario_for_seed"]
