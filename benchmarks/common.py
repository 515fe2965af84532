"""What every benchmark shares: the machine's ceiling, per-process stats, tables, JSON.

The ceiling is measured in the same run as the benchmark: ed25519 verifications per second
on one core (pynacl, a tight loop of real verifications), times the usable cores. A network
of V validators on C cores can commit at most C x rate / V tx/s when every node verifies
every tx once; block sync of one node is bounded by C x rate.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

DEFAULT_OUT = Path("bench-out")


# --- the ceiling ----------------------------------------------------------------------------


def verify_rate(seconds: float = 2.0, runs: int = 3) -> dict[str, Any]:
    """ed25519 verifications per second on one core: the median of `runs` timed loops."""
    keys = [SigningKey(bytes([i]) * 32) for i in range(16)]
    signed = [(k.verify_key, k.sign(b"chainmerce benchmark message %d" % i * 3))
              for i, k in enumerate(keys)]
    rates = []
    for _ in range(runs):
        done = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            for verify_key, message in signed:
                verify_key.verify(message)
            done += len(signed)
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(done / (now - start))
    return {"verify_per_s_one_core": round(statistics.median(rates)),
            "verify_runs": [round(r) for r in rates], "verify_seconds_per_run": seconds}


def machine_facts() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "cores_usable": usable, "cpu_model": model,
            "python": platform.python_version(), "platform": platform.platform()}


def measure_ceiling(quick: bool) -> dict[str, Any]:
    facts = machine_facts()
    rate = verify_rate(seconds=0.5 if quick else 2.0, runs=3)
    return {**facts, **rate}


def ratio(value: float, ceiling: float) -> float:
    return round(value / ceiling, 4) if ceiling > 0 else 0.0


# --- per-process stats ----------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (a node's verify workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:  # field 4 of stat(5): ppid
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process so far, in seconds, with that of its children: the live
    ones (a node's verify workers) and those it has waited for."""
    fields = _stat(pid)
    if fields is None:
        return None
    ticks = sum(int(f) for f in fields[11:15])  # fields 14-17 of stat(5): u/s, cu/cs time
    for child in children(pid):
        child_fields = _stat(child)
        if child_fields is not None:
            ticks += int(child_fields[11]) + int(child_fields[12])
    return ticks / _TICKS


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and RssAnon in KiB, of the process and its live children
    summed (a node and its verify workers; the peak is the sum of each one's own). RssAnon
    is the processes' own memory; the rest of VmRSS is file pages they have mapped (LevelDB
    maps its tables), which the kernel can drop and reread."""
    out: dict[str, int] = {}
    for i, process in enumerate([pid, *children(pid)]):
        try:
            lines = Path(f"/proc/{process}/status").read_text().splitlines()
        except OSError:
            if i == 0:
                return {}
            continue
        for line in lines:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:")):
                key = line.split(":")[0]
                out[key] = out.get(key, 0) + int(line.split()[1])
    return out


@dataclass
class ProcessMeter:
    """CPU over a window and memory samples of a set of named processes."""

    pids: dict[str, int]

    def __post_init__(self) -> None:
        self.start_cpu: dict[str, float | None] = {}
        self.start_time = 0.0
        self.rss_samples: dict[str, list[int]] = {name: [] for name in self.pids}
        self.anon_samples: dict[str, list[int]] = {name: [] for name in self.pids}
        self.rss_times: dict[str, list[float]] = {name: [] for name in self.pids}
        self.cpu_samples: dict[str, list[float]] = {name: [] for name in self.pids}
        self.cpu_times: dict[str, list[float]] = {name: [] for name in self.pids}

    def begin(self) -> None:
        self.start_time = time.monotonic()
        self.start_cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def sample(self) -> None:
        now = time.monotonic()
        for name, pid in self.pids.items():
            mem = memory_kb(pid)
            if "VmRSS" in mem:
                self.rss_samples[name].append(mem["VmRSS"])
                self.anon_samples[name].append(mem.get("RssAnon", 0))
                self.rss_times[name].append(now)
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self.cpu_samples[name].append(cpu)
                self.cpu_times[name].append(now)

    def cpu_between(self, name: str, start: float, end: float) -> float | None:
        """CPU seconds `name` used between two monotonic times, from the samples nearest
        to them (None without two distinct samples in the span)."""
        times, cpus = self.cpu_times.get(name, []), self.cpu_samples.get(name, [])
        first = bisect_left(times, start)
        last = bisect_right(times, end) - 1
        if first >= len(times) or last <= first:
            return None
        return cpus[last] - cpus[first]

    def rss_by_minute(self, name: str, anonymous: bool = False) -> list[float]:
        """The highest RSS sample (MB) of each minute since the first sample: the shape of
        memory over a long run (growing, or levelling off once the caches are full).
        `anonymous`: of RssAnon only, without mapped file pages."""
        samples = (self.anon_samples if anonymous else self.rss_samples).get(name, [])
        times = self.rss_times.get(name, [])
        if not samples:
            return []
        peaks: dict[int, int] = {}
        for t, rss in zip(times, samples, strict=True):
            minute = int((t - times[0]) // 60)
            peaks[minute] = max(peaks.get(minute, 0), rss)
        return [round(peaks[m] / 1024, 1) for m in sorted(peaks)]

    def end(self) -> dict[str, dict[str, Any]]:
        """Per process: cpu seconds and cpu % of one core over the window, RSS now and peak."""
        elapsed = max(time.monotonic() - self.start_time, 1e-9)
        out = {}
        for name, pid in self.pids.items():
            now, before = cpu_seconds(pid), self.start_cpu.get(name)
            used = None if now is None or before is None else now - before
            mem = memory_kb(pid)
            out[name] = {"pid": pid,
                         "window_seconds": round(elapsed, 2),
                         "cpu_seconds": None if used is None else round(used, 2),
                         "cpu_percent_of_one_core": None if used is None
                         else round(100 * used / elapsed, 1),
                         "rss_mb": round(mem.get("VmRSS", 0) / 1024, 1),
                         "peak_rss_mb": round(mem.get("VmHWM", 0) / 1024, 1)}
        return out


# --- numbers ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    return {"count": len(seconds),
            "p50_s": _r(percentile(seconds, 50)), "p90_s": _r(percentile(seconds, 90)),
            "p99_s": _r(percentile(seconds, 99)),
            "max_s": _r(max(seconds) if seconds else None)}


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --- output -----------------------------------------------------------------------------------


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(out_dir: Path, name: str, result: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
