"""Peak memory of a full read, per reader, each in a fresh subprocess.

What is measured, in a new Python process per (reader, dataset):

1. import the library, open the array (``Reader.open``), collect garbage;
2. *baseline* = the process's resident set size (``VmRSS`` in ``/proc/self/status``);
   then the kernel's high-water mark is reset (``echo 5 > /proc/self/clear_refs``);
3. read the whole array (``Reader.run``, the same call the timing loop times);
4. *peak* = the high-water mark (``VmHWM``) since the reset.

``peak - baseline`` is the memory the read needed at its worst moment, the result
included; ``peak - baseline - output bytes`` is the *staging overhead*: buffers for
compressed bytes, per-chunk decode scratch, copies. 0 would be a reader that decodes
straight into its result and holds nothing else. Everything counts: Python, NumPy,
Rust and C++ allocations, thread stacks, the page cache's pages mapped into the process
(none here: readers copy). Where ``clear_refs`` is not writable the fallback is
``ru_maxrss`` (peak since the process started, imports included), flagged in the result.

The result is then checked against the source (after the measurement), so a number
belongs to a correct read. One sample per reader and dataset: peak RSS is nearly
deterministic, unlike time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MemoryResult", "main", "measure_memory"]

_REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class MemoryResult:
    """Peak memory of one reader's full read of one dataset."""

    reader: str
    status: str
    note: str | None = None
    baseline_bytes: int | None = None
    peak_bytes: int | None = None
    output_bytes: int | None = None
    method: str | None = None
    read_s: float | None = None

    @property
    def used_bytes(self) -> int | None:
        """Peak minus baseline: what the read needed at its worst, the result included."""
        if self.peak_bytes is None or self.baseline_bytes is None:
            return None
        return self.peak_bytes - self.baseline_bytes

    @property
    def overhead_bytes(self) -> int | None:
        """``used - output``: staging memory beyond the result itself."""
        used = self.used_bytes
        return None if used is None or self.output_bytes is None else used - self.output_bytes

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, derived values included."""
        return {**asdict(self), "used_bytes": self.used_bytes, "overhead_bytes": self.overhead_bytes}


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def measure_memory(
    reader: str,
    spec: Any,
    data_dir: Path,
    *,
    threads: int | None = None,
    suite: str = "cpu",
    timeout_s: float = 600.0,
) -> MemoryResult:
    """Run the probe for ``reader`` on the dataset ``spec`` (a :class:`~benchmarks.datasets.DatasetSpec`)."""
    args = {
        "reader": reader,
        "spec": asdict(spec),
        "data_dir": str(data_dir),
        "threads": threads,
        "suite": suite,
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=_REPO_ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return MemoryResult(reader, "error", f"probe timed out after {timeout_s:g} s")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return MemoryResult(reader, "error", f"probe exited {done.returncode}: {' | '.join(tail)}")
    return MemoryResult(**json.loads(lines[-1]))


def _probe(args: dict[str, Any]) -> MemoryResult:
    """The measurement, inside the child process."""
    from benchmarks.datasets import DatasetSpec, ensure_dataset
    from benchmarks.patterns import make_task

    spec = DatasetSpec(**args["spec"])
    ds = ensure_dataset(spec, Path(args["data_dir"]), generate=False, log=lambda _m: None)
    if args.get("suite") == "gpu":
        from benchmarks import gpu

        registry = gpu.GPU_READERS
    else:
        from benchmarks import readers

        registry = readers.READERS
    reader = registry[args["reader"]](args.get("threads"))
    reason = reader.unavailable()
    if reason:
        return MemoryResult(reader.name, "unavailable", reason)
    task = make_task("full", spec)
    with reader.session():
        reader.prepare(ds, task)
        handle = reader.open(ds, task)
        gc.collect()
        baseline = _status_kib("VmRSS")
        exact = _reset_peak() and _status_kib("VmHWM") is not None
        t0 = time.perf_counter()
        result = reader.run(handle, ds, task)
        read_s = time.perf_counter() - t0
        if exact:
            peak_kib, method = _status_kib("VmHWM"), "VmHWM after clear_refs (peak during the read)"
        else:
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            method = "ru_maxrss (peak since process start, imports included: an upper bound)"
    problem = reader.verify(result, ds, task, np.asarray(ds.load_source()))
    if problem:
        return MemoryResult(reader.name, "mismatch", problem)
    return MemoryResult(
        reader=reader.name,
        status="ok",
        baseline_bytes=None if baseline is None else baseline * 1024,
        peak_bytes=None if peak_kib is None else peak_kib * 1024,
        output_bytes=ds.nbytes,
        method=method,
        read_s=read_s,
    )


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: ``python -m benchmarks.memory '<json args>'``; prints one JSON line."""
    parser = argparse.ArgumentParser(description="peak memory of one full read (used by the benchmark suites)")
    parser.add_argument("args", help="JSON: reader, spec, data_dir, threads, suite")
    ns = parser.parse_args(argv)
    try:
        result = _probe(json.loads(ns.args))
    except Exception as exc:
        result = MemoryResult(json.loads(ns.args).get("reader", "?"), "error", f"{type(exc).__name__}: {exc}")
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
