"""Soak: run many seeds across every scenario, on several processes.

    python -m tests.sim.soak --seeds 10000 --jobs 2 [--start 0] [--scenario NAME]

Each seed's scenario and validator count come from scenario_for_seed (or --scenario).
Failures print their replay command; the exit status is 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

from .scenarios import scenario_for_seed
from .sim import SimResult, run


def run_seed(args: tuple[int, str | None, int | None]) -> SimResult:
    seed, scenario, validators = args
    name, n = scenario_for_seed(seed)
    return run(seed, scenario or name, validators or n)


def run_many(seeds: range, jobs: int, scenario: str | None = None,
             validators: int | None = None) -> list[SimResult]:
    work = [(s, scenario, validators) for s in seeds]
    if jobs <= 1:
        return [run_seed(w) for w in work]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return pool.map(run_seed, work, chunksize=4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.soak", description=__doc__)
    parser.add_argument("--seeds", type=int, default=10_000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--scenario")
    parser.add_argument("--validators", type=int)
    args = parser.parse_args(argv)
    started = time.monotonic()
    seeds = range(args.start, args.start + args.seeds)
    failures = 0
    chunk = 200
    for lo in range(seeds.start, seeds.stop, chunk):
        batch = range(lo, min(lo + chunk, seeds.stop))
        for result in run_many(batch, args.jobs, args.scenario, args.validators):
            if not result.ok:
                failures += 1
                print(result.report(), flush=True)
        print(f"... {batch.stop - seeds.start}/{len(seeds)} seeds, {failures} failed, "
              f"{time.monotonic() - started:.0f}s", flush=True)
    print(f"{len(seeds)} seeds, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
