"""Named crash points for crash-consistency tests: kill -9 at chosen moments of a commit.

The commit path calls `crash_point("name")` where a crash is most interesting (around the
one-batch chain DB write, the WAL appends, the signing-state save, between the commit and
BlockFinalized). Normally that is a no-op function: the environment is read once, at
import. With `CHAINMERCE_CRASHPOINTS` set, a matching point kills the whole process with
SIGKILL (no cleanup, no atexit, no flush: exactly what a power cut or `kill -9` leaves).

    CHAINMERCE_CRASHPOINTS="chaindb.after_write:3"     the 3rd time that point is reached
    CHAINMERCE_CRASHPOINTS="*:17"                      the 17th crash point reached, any name
    CHAINMERCE_CRASHPOINTS="driver.after_wal_append:0.05,chaindb.before_write:0.1"
                                                       each pass with that probability

A rule is `name:N` (an integer: the Nth pass, counted per rule) or `name:P` (a decimal
with a dot: a probability per pass). Rules are separated by commas; `*` matches any point.
Just before dying the process writes `crash point <name> fired` to stderr (one unbuffered
write), so a test can tell which point it hit.

`storage/` must not import `node/`, so the chain DB has its own hook (`storage.chaindb.
crash_point`, a no-op) that this module replaces when crash points are active.
"""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass

ENV = "CHAINMERCE_CRASHPOINTS"

# Every point the code base calls, so tests can pick one at random and a typo in a rule is
# caught instead of silently never firing.
POINTS = (
    "app.before_commit",
    "chaindb.before_write",
    "chaindb.after_write",
    "driver.after_commit",
    "driver.after_wal_start_height",
    "driver.after_wal_append",
    "driver.before_signing_save",
    "driver.after_signing_save",
)


class CrashPointSpecError(ValueError):
    """A CHAINMERCE_CRASHPOINTS value that cannot be parsed."""


@dataclass(slots=True)
class Rule:
    name: str  # a point name or "*"
    nth: int | None = None  # fire on this pass (1-based)
    probability: float | None = None
    passes: int = 0

    def hit(self, name: str) -> bool:
        if self.name != "*" and self.name != name:
            return False
        self.passes += 1
        if self.nth is not None:
            return self.passes == self.nth
        return random.random() < (self.probability or 0.0)


def parse_spec(spec: str) -> list[Rule]:
    rules = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.rpartition(":")
        if not sep or not name:
            raise CrashPointSpecError(f"{ENV}: expected name:N or name:P, got {part!r}")
        if name != "*" and name not in POINTS:
            raise CrashPointSpecError(f"{ENV}: unknown crash point {name!r}")
        try:
            if "." in value:
                probability = float(value)
                if not 0.0 <= probability <= 1.0:
                    raise ValueError
                rules.append(Rule(name, probability=probability))
            else:
                nth = int(value)
                if nth < 1:
                    raise ValueError
                rules.append(Rule(name, nth=nth))
        except ValueError:
            raise CrashPointSpecError(
                f"{ENV}: {part!r}: N must be an integer >= 1, P a decimal in [0, 1]") from None
    return rules


def kill_now(name: str) -> None:
    os.write(2, f"crash point {name} fired\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


def _noop(name: str) -> None:
    return None


RULES: list[Rule] = parse_spec(os.environ.get(ENV, ""))
ACTIVE = bool(RULES)


def _armed(name: str) -> None:
    for rule in RULES:
        if rule.hit(name):
            kill_now(name)


crash_point = _armed if ACTIVE else _noop

if ACTIVE:
    import storage.chaindb

    storage.chaindb.crash_point = _armed
