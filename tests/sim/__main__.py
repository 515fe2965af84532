"""Replay one simulation: python -m tests.sim --seed 123 --scenario partition --validators 4"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from .scenarios import SCENARIOS, scenario_for_seed
from .sim import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS),
                        help="default: the scenario the soak uses for this seed")
    parser.add_argument("--validators", type=int)
    parser.add_argument("--byzantine", type=int, help="override the scenario's byzantine count")
    args = parser.parse_args(argv)
    name, n = scenario_for_seed(args.seed)
    scenario = SCENARIOS[args.scenario or name].with_validators(args.validators or n)
    if args.byzantine is not None:
        scenario = replace(scenario, byzantine=args.byzantine)
    result = run(args.seed, scenario)
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
