"""Named simulation scenarios. A seed picks the random details inside a scenario."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scenario:
    name: str
    validators: int = 4
    byzantine: int = 0  # how many validators misbehave (f or less, unless an attack test)
    behaviour: str = "honest"  # silent | equivocate | garbage | attack | mixed
    weighted: bool = False  # random voting powers 1..3 (honest scenarios only)
    drop: float = 0.0  # probability that a message is lost (before the network is stable)
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (5, 60)
    partition: bool = False
    crashes: int = 0
    valset_changes: bool = False
    heights_after_stable: int = 3  # liveness: new heights every honest node must commit
    min_height: int = 4
    liveness_window_ms: int = 90_000

    def with_validators(self, n: int) -> Scenario:
        return replace(self, validators=n)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("clean"),
    Scenario("weighted", weighted=True),
    Scenario("lossy", drop=0.2, duplicate=0.1, delay_ms=(1, 400), weighted=True),
    Scenario("partition", partition=True, drop=0.05, duplicate=0.05),
    Scenario("crash", crashes=2, drop=0.05, duplicate=0.05),
    Scenario("valset", valset_changes=True, drop=0.05, min_height=12),
    Scenario("silent", byzantine=-1, behaviour="silent", drop=0.05),
    Scenario("equivocate", byzantine=-1, behaviour="equivocate", drop=0.05, duplicate=0.05),
    Scenario("garbage", byzantine=-1, behaviour="garbage", drop=0.05),
    Scenario("attack", byzantine=-1, behaviour="attack"),
    Scenario("chaos", byzantine=-1, behaviour="mixed", drop=0.1, duplicate=0.1,
             delay_ms=(1, 250), partition=True, crashes=1),
]}

_ROTATION = ["clean", "weighted", "lossy", "partition", "crash", "valset", "silent",
             "equivocate", "garbage", "attack", "chaos"]


def scenario_for_seed(seed: int) -> tuple[str, int]:
    """The (scenario, validator count) a soak/CI run uses for `seed`."""
    name = _ROTATION[seed % len(_ROTATION)]
    validators = 7 if (seed // len(_ROTATION)) % 3 == 2 else 4
    return name, validators


def faults(n: int) -> int:
    """f: the most byzantine validators of equal power that n validators tolerate."""
    return (n - 1) // 3
