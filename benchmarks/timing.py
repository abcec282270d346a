"""Warm-up, verification and round-robin timing of several readers on one dataset.

Method, per dataset:

1. every reader does one untimed warm-up read (it also pulls the chunk files into the
   page cache and imports/initialises the library); its result is checked against the
   source values, and a reader whose result differs, or that raises, is not timed;
2. ``repeats`` rounds follow; in each round every reader does one open + read, in a
   rotated order (round ``i`` starts with reader ``i mod n``), so slow drifts of the
   machine (other load, thermal, page-cache state) spread evenly over the readers
   instead of landing on whichever ran last;
3. each measurement opens a fresh handle; ``open`` and ``read`` are timed separately
   with :func:`time.perf_counter`; the garbage collector runs (untimed) before each.

Shared machines: every sample records the CPU time this process used and the CPU time
all other processes used meanwhile (from ``/proc/stat``). Before each measurement the
loop waits, bounded, for other processes to go quiet, and a measurement they disturbed
is retaken, within a budget for the whole run (:class:`Quiet`); samples that stay
disturbed are kept and counted, so they are visible in the results.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from benchmarks.datasets import Dataset
from benchmarks.readers import Reader

__all__ = [
    "Outcome",
    "Quiet",
    "Sample",
    "machine_busy_s",
    "measure_once",
    "measure_quietly",
    "run_round_robin",
    "wait_for_quiet",
]

Status = Literal["ok", "unavailable", "error", "mismatch"]


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_s() -> float | None:
    """CPU-seconds all CPUs have spent busy since boot (``/proc/stat``; steal counts as busy)."""
    try:
        with open("/proc/stat") as f:
            fields_ = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields_
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


class _OthersMeter:
    """CPU-seconds used by other processes between :meth:`start` and :meth:`stop`."""

    def start(self) -> None:
        self._busy0 = machine_busy_s()
        self._cpu0 = time.process_time()

    def stop(self) -> tuple[float, float | None]:
        """(this process's CPU-seconds, other processes' CPU-seconds or None if unknown)."""
        cpu = time.process_time() - self._cpu0
        busy1 = machine_busy_s()
        if busy1 is None or self._busy0 is None:
            return cpu, None
        # /proc/stat counts in clock ticks (10 ms): small negative values are rounding.
        return cpu, max(0.0, busy1 - self._busy0 - cpu)


@dataclass
class Quiet:
    """Policy for other processes' load: wait for quiet, retake disturbed samples, within a budget.

    Before each measurement, sleep in ``window_s`` steps until other processes use fewer
    than ``cpus`` CPUs (at most ``wait_s``). A measurement during which they used ``cpus``
    or more is *disturbed*; it is discarded and retaken, at most ``retakes`` times. All
    waiting and discarded measurements draw on ``budget_s`` for the whole run; once it is
    spent, measurements are taken as they come (and still flagged).
    """

    cpus: float = 0.25
    wait_s: float = 3.0
    retakes: int = 3
    budget_s: float = 300.0
    window_s: float = 0.2
    spent_s: float = 0.0
    discarded: int = 0

    @property
    def exhausted(self) -> bool:
        """Whether the waiting/retake budget is spent."""
        return self.spent_s >= self.budget_s

    def is_disturbed(self, sample: Sample) -> bool:
        """Whether other processes used ``cpus`` CPUs or more during ``sample``."""
        return sample.others_cpus is not None and sample.others_cpus >= self.cpus


def wait_for_quiet(quiet: Quiet | None) -> float:
    """Sleep until other processes use < ``quiet.cpus`` CPUs (bounded); return the time waited."""
    if quiet is None or quiet.wait_s <= 0 or quiet.exhausted or machine_busy_s() is None:
        return 0.0
    meter = _OthersMeter()
    t0 = time.perf_counter()
    while True:
        meter.start()
        time.sleep(quiet.window_s)
        _cpu, others = meter.stop()
        waited = time.perf_counter() - t0
        if others is None or others / quiet.window_s < quiet.cpus or waited >= quiet.wait_s:
            break
        if quiet.spent_s + waited >= quiet.budget_s:
            break
    quiet.spent_s += waited
    return waited


@dataclass(frozen=True)
class Sample:
    """One timed open + read, with the CPU use around it."""

    open_s: float
    read_s: float
    cpu_s: float = 0.0
    others_cpu_s: float | None = None
    waited_s: float = 0.0
    retakes: int = 0

    @property
    def total_s(self) -> float:
        """Open plus read: what a user waits for."""
        return self.open_s + self.read_s

    @property
    def others_cpus(self) -> float | None:
        """Average number of CPUs other processes kept busy during this sample."""
        return None if self.others_cpu_s is None else self.others_cpu_s / self.total_s


@dataclass
class Outcome:
    """What happened to one reader on one dataset."""

    reader: str
    status: Status = "ok"
    note: str | None = None
    traceback: str | None = None
    warmup: Sample | None = None
    samples: list[Sample] = field(default_factory=list)

    def _values(self, attr: str) -> list[float]:
        return [getattr(s, attr) for s in self.samples]

    def median(self, attr: str = "total_s") -> float | None:
        """Median of ``open_s``, ``read_s`` or ``total_s`` over the timed repetitions."""
        values = self._values(attr)
        return statistics.median(values) if values else None

    def minimum(self, attr: str = "total_s") -> float | None:
        """Fastest repetition."""
        values = self._values(attr)
        return min(values) if values else None

    def maximum(self, attr: str = "total_s") -> float | None:
        """Slowest repetition."""
        values = self._values(attr)
        return max(values) if values else None

    def disturbed(self, cpus: float) -> int:
        """How many timed samples ran while other processes used ``cpus`` CPUs or more."""
        return sum(1 for smp in self.samples if smp.others_cpus is not None and smp.others_cpus >= cpus)

    def spread(self, attr: str = "total_s") -> float | None:
        """(max - min) / median: how noisy the repetitions were."""
        med = self.median(attr)
        if not med:
            return None
        return (self.maximum(attr) - self.minimum(attr)) / med  # type: ignore[operator]


def measure_once(reader: Reader, ds: Dataset, quiet: Quiet | None = None) -> tuple[Sample, Any]:
    """One fresh open + read of ``ds`` by ``reader``; returns the timing and the result."""
    gc.collect()
    waited = wait_for_quiet(quiet)
    meter = _OthersMeter()
    with reader.session():
        meter.start()
        t0 = time.perf_counter()
        handle = reader.open(ds)
        t1 = time.perf_counter()
        result = reader.read(handle, ds)
        t2 = time.perf_counter()
        cpu, others = meter.stop()
    del handle
    return Sample(t1 - t0, t2 - t1, cpu, others, waited), result


def measure_quietly(reader: Reader, ds: Dataset, quiet: Quiet | None) -> tuple[Sample, Any]:
    """:func:`measure_once`, retaking measurements disturbed by other processes (see :class:`Quiet`)."""
    retakes = 0
    waited = 0.0
    while True:
        sample, result = measure_once(reader, ds, quiet)
        waited += sample.waited_s
        if quiet is None or not quiet.is_disturbed(sample) or retakes >= quiet.retakes or quiet.exhausted:
            return replace(sample, waited_s=waited, retakes=retakes), result
        del result
        retakes += 1
        quiet.discarded += 1
        quiet.spent_s += sample.total_s


def _short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def run_round_robin(
    readers: list[Reader],
    ds: Dataset,
    repeats: int,
    *,
    quiet: Quiet | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Outcome]:
    """Warm up and verify every reader on ``ds``, then time ``repeats`` rotated rounds."""
    outcomes: dict[str, Outcome] = {r.name: Outcome(r.name) for r in readers}
    source = np.asarray(ds.load_source())
    for reader in readers:
        outcome = outcomes[reader.name]
        try:
            sample, result = measure_once(reader, ds)
        except Exception as exc:
            outcome.status, outcome.note, outcome.traceback = "error", _short_error(exc), traceback.format_exc()
            log(f"    {reader.name}: warm-up FAILED: {outcome.note}")
            continue
        outcome.warmup = sample
        mismatch = reader.verify(result, ds, source)
        del result
        if mismatch is not None:
            outcome.status, outcome.note = "mismatch", mismatch
            log(f"    {reader.name}: result does NOT match the source: {mismatch}; not timed")
    del source

    active = [r for r in readers if outcomes[r.name].status == "ok"]
    for rep in range(repeats):
        if not active:
            break
        start = rep % len(active)
        for reader in active[start:] + active[:start]:
            outcome = outcomes[reader.name]
            if outcome.status != "ok":
                continue
            try:
                sample, result = measure_quietly(reader, ds, quiet)
            except Exception as exc:
                outcome.status, outcome.note, outcome.traceback = "error", _short_error(exc), traceback.format_exc()
                log(f"    {reader.name}: repetition {rep + 1} FAILED: {outcome.note}")
                continue
            del result
            outcome.samples.append(sample)
    for reader in readers:
        reader.close()
    return outcomes
