"""Warm-up, verification and round-robin timing of several subjects on one dataset and pattern
(subjects interleaved in a balanced order).

Method, per dataset and pattern (a :class:`~benchmarks.patterns.Task`):

1. every subject (reader, writer or ceiling) does one untimed warm-up (it also pulls the
   chunk files into the page cache and imports/initialises the library); its result is
   checked against the source values, and a subject whose result differs, or that
   raises, is not timed;
2. ``repeats`` rounds follow; in each round every subject does one open + run, in the
   order of one row of a Williams design (:func:`round_orders`): over ``n`` rounds (2n
   for an odd number of subjects) every subject runs once in every position and
   directly after every other subject equally often. Slow drifts of the machine (other
   load, thermal, page-cache state) spread evenly over the subjects, and so does what a
   subject leaves behind for the next (evicted caches, idle or still spinning worker
   threads): with a fixed cyclic order each subject always followed the same one, and
   two identical gpuzarr subjects differed by up to 15% on a 4 ms read (the one after
   the other gpuzarr ran warm, the other always came after tensorstore);
3. each measurement starts with the subject's untimed :meth:`prepare` (drop caches,
   remove or copy output), then the garbage collector runs (untimed), then ``open`` and
   ``run`` are timed separately with :func:`time.perf_counter`.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from benchmarks.datasets import Dataset
from benchmarks.patterns import Task
from benchmarks.readers import Subject

__all__ = [
    "ORDER_TEXT",
    "Outcome",
    "Quiet",
    "Sample",
    "machine_busy_s",
    "measure_once",
    "measure_quietly",
    "round_orders",
    "run_round_robin",
    "wait_for_quiet",
]

Status = Literal["ok", "unavailable", "unsupported", "error", "mismatch"]


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

    Before each measurement, wait until other processes used fewer than ``cpus`` CPUs
    over a window of at least ``window_s`` (the untimed preparation counts towards it;
    at most ``wait_s``). A measurement during which they used ``cpus``
    or more is *disturbed*; it is discarded and retaken, at most ``retakes`` times. All
    waiting and discarded measurements draw on ``budget_s`` for the whole run; once it is
    spent, measurements are taken as they come (and still flagged).
    """

    cpus: float = 0.25
    wait_s: float = 3.0
    retakes: int = 3
    budget_s: float = 300.0
    window_s: float = 0.1
    spent_s: float = 0.0
    discarded: int = 0

    @property
    def exhausted(self) -> bool:
        """Whether the waiting/retake budget is spent."""
        return self.spent_s >= self.budget_s

    def is_disturbed(self, sample: Sample) -> bool:
        """Whether other processes used ``cpus`` CPUs or more during ``sample``."""
        return sample.others_cpus is not None and sample.others_cpus >= self.cpus


def wait_for_quiet(quiet: Quiet | None, since: tuple[_OthersMeter, float] | None = None) -> float:
    """Sleep until other processes use < ``quiet.cpus`` CPUs (bounded); return the time waited.

    Quiet is judged over windows of at least ``quiet.window_s``. ``since`` (a meter
    started at a time, e.g. before the untimed preparation) lets the first window
    include that time, so a machine that was quiet all along costs no extra sleep.
    """
    if quiet is None or quiet.wait_s <= 0 or quiet.exhausted or machine_busy_s() is None:
        return 0.0
    t0 = time.perf_counter()
    if since is None:
        meter = _OthersMeter()
        meter.start()
        window_start = t0
    else:
        meter, window_start = since
    while True:
        elapsed = time.perf_counter() - window_start
        if elapsed < quiet.window_s:
            time.sleep(quiet.window_s - elapsed)
        _cpu, others = meter.stop()
        now = time.perf_counter()
        waited = now - t0
        if others is None or others / (now - window_start) < quiet.cpus or waited >= quiet.wait_s:
            break
        if quiet.spent_s + waited >= quiet.budget_s:
            break
        meter.start()
        window_start = time.perf_counter()
    quiet.spent_s += waited
    return waited


@dataclass(frozen=True)
class Sample:
    """One timed open + run, with the CPU use around it."""

    open_s: float
    run_s: float
    cpu_s: float = 0.0
    others_cpu_s: float | None = None
    waited_s: float = 0.0
    retakes: int = 0

    @property
    def total_s(self) -> float:
        """Open plus run: what a user waits for."""
        return self.open_s + self.run_s

    @property
    def others_cpus(self) -> float | None:
        """Average number of CPUs other processes kept busy during this sample."""
        if self.others_cpu_s is None or self.total_s <= 0:
            return None
        return self.others_cpu_s / self.total_s


@dataclass
class Outcome:
    """What happened to one subject on one dataset and pattern."""

    reader: str
    status: Status = "ok"
    note: str | None = None
    traceback: str | None = None
    warmup: Sample | None = None
    samples: list[Sample] = field(default_factory=list)
    #: Extra facts for the record (a writer's stored bytes, ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def _values(self, attr: str) -> list[float]:
        return [getattr(s, attr) for s in self.samples]

    def median(self, attr: str = "total_s") -> float | None:
        """Median of ``open_s``, ``run_s`` or ``total_s`` over the timed repetitions."""
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

    @property
    def timed(self) -> bool:
        """Whether there are timed samples to report."""
        return self.status == "ok" and bool(self.samples)


def measure_once(subject: Subject, ds: Dataset, task: Task, quiet: Quiet | None = None) -> tuple[Sample, Any]:
    """One fresh open + run of ``task`` on ``ds`` by ``subject``; returns the timing and the result."""
    with subject.session():
        gap = _OthersMeter()
        gap.start()
        gap_start = time.perf_counter()
        subject.prepare(ds, task)
        gc.collect()
        waited = wait_for_quiet(quiet, (gap, gap_start))
        meter = _OthersMeter()
        meter.start()
        t0 = time.perf_counter()
        handle = subject.open(ds, task)
        t1 = time.perf_counter()
        result = subject.run(handle, ds, task)
        t2 = time.perf_counter()
        cpu, others = meter.stop()
    del handle
    return Sample(t1 - t0, t2 - t1, cpu, others, waited), result


def measure_quietly(subject: Subject, ds: Dataset, task: Task, quiet: Quiet | None) -> tuple[Sample, Any]:
    """:func:`measure_once`, retaking measurements disturbed by other processes (see :class:`Quiet`)."""
    retakes = 0
    waited = 0.0
    while True:
        sample, result = measure_once(subject, ds, task, quiet)
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


def _fail(outcome: Outcome, subject: Subject, exc: BaseException) -> None:
    """Record an exception: ``unsupported`` when the subject says so, else ``error``."""
    if type(exc).__name__ in subject.unsupported_errors:
        outcome.status, outcome.note = "unsupported", _short_error(exc)
    else:
        outcome.status, outcome.note, outcome.traceback = "error", _short_error(exc), traceback.format_exc()


#: How runs record the order of :func:`round_orders` (``params["order"]``).
ORDER_TEXT = (
    "interleaved: each round one row of a Williams design (every subject in every position, "
    "and directly after every other subject, equally often)"
)


def round_orders(n: int, rounds: int) -> list[list[int]]:
    """The order of ``n`` subjects (by index) in each of ``rounds`` rounds: the rows of a
    Williams design, cycled. Over each full cycle of rows (``n`` of them, ``2n`` for odd
    ``n``) every subject takes every position equally often and directly follows every
    other subject equally often (a balanced crossover design)."""
    if n <= 0:
        return []
    base, low, high = [0], 1, n - 1
    while len(base) < n:  # 0, 1, n-1, 2, n-2, ...
        base.append(low)
        low += 1
        if len(base) < n:
            base.append(high)
            high -= 1
    rows = [[(b + shift) % n for b in base] for shift in range(n)]
    if n % 2:  # (odd n: the reversed rows balance the predecessors)
        rows += [row[::-1] for row in rows]
    return [rows[r % len(rows)] for r in range(rounds)]


def run_round_robin(
    subjects: Sequence[Subject],
    ds: Dataset,
    task: Task,
    repeats: int,
    *,
    source: np.ndarray | None = None,
    quiet: Quiet | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Outcome]:
    """Warm up and verify every subject on ``task``, then time ``repeats`` rounds (in the
    orders of :func:`round_orders`).

    ``source`` (the dataset's values in memory) is loaded from disk when not given.
    Writers get the values to write through ``set_value`` before their warm-up.
    """
    outcomes: dict[str, Outcome] = {s.name: Outcome(s.name) for s in subjects}
    source = np.asarray(ds.load_source()) if source is None else source
    expected = task.expected(source)
    value = task.value(source) if task.value is not None else None
    active: list[Subject] = []
    for subject in subjects:
        outcome = outcomes[subject.name]
        reason = subject.supports(ds, task)
        if reason is not None:
            outcome.status, outcome.note = "unsupported", reason
            continue
        if value is not None and hasattr(subject, "set_value"):
            subject.set_value(ds, task, value)
        try:
            sample, result = measure_once(subject, ds, task)
        except Exception as exc:
            _fail(outcome, subject, exc)
            if outcome.status == "error":
                log(f"    {subject.name}: warm-up FAILED: {outcome.note}")
            continue
        outcome.warmup = sample
        try:
            mismatch = subject.verify(result, ds, task, expected)
        except Exception as exc:
            mismatch = f"verification raised {_short_error(exc)}"
        del result
        if mismatch is not None:
            outcome.status, outcome.note = "mismatch", mismatch
            log(f"    {subject.name}: result does NOT match the source: {mismatch}; not timed")
            continue
        active.append(subject)
    del expected

    for rep, order in enumerate(round_orders(len(active), repeats)):
        for subject in (active[i] for i in order):
            outcome = outcomes[subject.name]
            if outcome.status != "ok":
                continue
            try:
                sample, result = measure_quietly(subject, ds, task, quiet)
            except Exception as exc:
                _fail(outcome, subject, exc)
                log(f"    {subject.name}: repetition {rep + 1} FAILED: {outcome.note}")
                continue
            del result
            outcome.samples.append(sample)
    for subject in subjects:
        try:
            subject.cleanup(ds, task)
        except Exception as exc:  # cleanup must not lose the results
            log(f"    {subject.name}: cleanup failed: {_short_error(exc)}")
        stored = getattr(subject, "stored_bytes", None)
        if isinstance(stored, dict) and (ds.name, task.pattern) in stored:
            outcomes[subject.name].extra["stored_bytes"] = stored[(ds.name, task.pattern)]
    return outcomes
