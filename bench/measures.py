"""What every part of the bench measures the same way: percentiles of a list of timings, calls
timed in wall and CPU time, and the resident memory of processes sampled while something runs."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.system_harness import HarnessError


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the value of rank ceil(fraction * n) (0 for no values). The
    product is rounded to 9 places first, so 0.99 * 100 is rank 99, not 100 by a float's last bit
    (and a whole product is never taken a rank up, as round(x + 0.5) took odd ones)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = math.ceil(round(fraction * len(ordered), 9))
    return ordered[max(0, min(len(ordered) - 1, rank - 1))]


@dataclass
class Timings:
    """Milliseconds of each timed call: wall time, and CPU time of the thread that made it (on
    this shared machine wall time also holds whatever else ran meanwhile; CPU time hardly does).
    """

    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    @contextlib.contextmanager
    def timing(self, *, keep: bool = True) -> Iterator[None]:
        """Times the block; `keep=False` for a warm-up, timed the same way but not kept."""
        wall, cpu = time.perf_counter(), time.thread_time()
        yield
        if keep:
            self.cpu_ms.append((time.thread_time() - cpu) * 1000)
            self.wall_ms.append((time.perf_counter() - wall) * 1000)

    def cpu(self, fraction: float) -> float:
        return percentile(self.cpu_ms, fraction)

    def wall(self, fraction: float) -> float:
        return percentile(self.wall_ms, fraction)


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise HarnessError(f"no {field} for pid {pid}")


def rss_mb(pid: int) -> float:
    """Resident memory of one process, from /proc/<pid>/status (VmRSS, in kB)."""
    return _status_mb(pid, "VmRSS")


def high_water_mb(pid: int) -> float:
    """The process's peak RSS since it started (VmHWM)."""
    return _status_mb(pid, "VmHWM")


class RssSampler:
    """RSS of some processes every `every` seconds in a thread, while it is open: each one's
    RSS before, its samples (seconds since the start, MB) and the largest of them.

    `growth()` reads the high-water mark (VmHWM) too: when it rose meanwhile, that is the exact
    peak; otherwise the largest sample is (a peak between two samples below the old high-water
    mark is missed).
    """

    def __init__(self, pids: Mapping[str, int], *, every: float) -> None:
        self.pids = dict(pids)
        self.every = every
        self.before = {name: rss_mb(pid) for name, pid in self.pids.items()}
        self.high_water = {name: high_water_mb(pid) for name, pid in self.pids.items()}
        self.peak = dict(self.before)
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in self.pids}
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, ValueError, HarnessError):
                    mb = rss_mb(pid)
                    self.samples[name].append((time.monotonic() - self._started, mb))
                    self.peak[name] = max(self.peak[name], mb)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def growth(self) -> dict[str, float]:
        peaks = dict(self.peak)
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError, HarnessError):
                high_water = high_water_mb(pid)
                if high_water > self.high_water[name]:
                    peaks[name] = max(peaks[name], high_water)
        return {name: round(peaks[name] - self.before[name], 1) for name in self.pids}
