"""Access patterns: what is read or written, identical for every reader and writer.

A :class:`Task` is one pattern bound to one dataset: the selections, the values
expected back (or written), and the bytes involved. Every random choice is seeded from
the run's seed and the dataset's geometry, so all readers see the same positions in a
run, and a rerun sees the same ones again.

Read patterns:

* ``full``: the whole array;
* ``windows``: a batch of random chunk-aligned windows, each one decode unit (one chunk,
  or one inner chunk of a sharded array; whole rows for ``f32``, a tile for ``i16``),
  what a training data loader asks for: ``--windows`` of them (default 32, at most half
  the units), drawn without replacement, in random order;
* ``region``: one small unaligned box (default 100 x 100) straddling chunk boundaries
  near the middle of the array: latency of a point lookup;
* ``strided``: ``[::7, ::3]`` over the whole array (every 7th row, every 3rd column).

Write patterns:

* ``write-full``: create a fresh array (metadata) and write every chunk from memory;
* ``write-partial``: open an existing copy of the dataset and overwrite a box that is
  not aligned to chunks (a quarter of each dimension, offset by half a chunk), so the
  edge chunks (or shards) must be read, merged and rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from benchmarks.datasets import DatasetSpec, stable_seed

__all__ = [
    "DEFAULT_WINDOWS",
    "PATTERNS",
    "PATTERN_SUMMARY",
    "READ_PATTERNS",
    "WRITE_PATTERNS",
    "Selection",
    "Task",
    "make_task",
    "selection_text",
]

Selection = tuple[slice, ...]

DEFAULT_WINDOWS = 32
DEFAULT_REGION = 100
DEFAULT_STRIDE = (7, 3)


@dataclass(frozen=True)
class Task:
    """One access pattern on one dataset."""

    pattern: str
    kind: Literal["read", "write"]
    selections: tuple[Selection, ...]
    #: The result is a list, one array per selection (a batch of windows).
    batch: bool = False
    #: The selection is the whole array.
    full: bool = False
    #: Decoded bytes of every decode unit the selections touch (what must be decoded or encoded).
    work_bytes: int = 0
    #: Bytes of the result (reads) or of the values written (writes).
    out_bytes: int = 0
    description: str = ""
    #: Write patterns: the values written into ``selections[0]``, from the source.
    value: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def selection(self) -> Selection:
        """The single selection of a non-batch task."""
        return self.selections[0]

    @property
    def is_write(self) -> bool:
        """Whether this is a write pattern."""
        return self.kind == "write"

    def expected(self, source: np.ndarray) -> Any:
        """What a correct reader returns, or what the array holds after a correct write."""
        if self.kind == "read":
            if self.batch:
                return [np.asarray(source[s]) for s in self.selections]
            return np.asarray(source[self.selection])
        assert self.value is not None
        if self.full:
            return np.asarray(self.value(source))
        after = np.array(source)
        after[self.selection] = self.value(source)
        return after

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the results file."""
        return {
            "pattern": self.pattern,
            "kind": self.kind,
            "description": self.description,
            "n_selections": len(self.selections),
            "selections": [selection_text(s) for s in self.selections[:64]],
            "work_bytes": self.work_bytes,
            "out_bytes": self.out_bytes,
        }


def selection_text(sel: Selection) -> str:
    """``[100:200, ::3]`` style text for a tuple of slices."""

    def one(s: slice) -> str:
        text = f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}"
        return text + (f":{s.step}" if s.step not in (None, 1) else "")

    return "[" + ", ".join(one(s) for s in sel) + "]"


def _indices(sel: slice, n: int) -> np.ndarray:
    return np.arange(*sel.indices(n))


def _units_touched(spec: DatasetSpec, selections: tuple[Selection, ...]) -> int:
    """How many decode units (chunks, or inner chunks) the selections touch together."""
    touched: set[tuple[int, ...]] = set()
    for sel in selections:
        per_dim = [
            np.unique(_indices(s, n) // c).tolist() for s, n, c in zip(sel, spec.shape, spec.chunks, strict=True)
        ]
        touched.update((i, j) for i in per_dim[0] for j in per_dim[1])
    return len(touched)


def _nbytes(spec: DatasetSpec, sel: Selection) -> int:
    n = 1
    for s, dim in zip(sel, spec.shape, strict=True):
        n *= len(range(*s.indices(dim)))
    return n * spec.dtype.itemsize


def _unit_bytes(spec: DatasetSpec) -> int:
    return spec.chunks[0] * spec.chunks[1] * spec.dtype.itemsize


def _read_task(spec: DatasetSpec, pattern: str, selections: list[Selection], description: str, **kw: Any) -> Task:
    return Task(
        pattern=pattern,
        kind="read",
        selections=tuple(selections),
        work_bytes=_units_touched(spec, tuple(selections)) * _unit_bytes(spec),
        out_bytes=sum(_nbytes(spec, s) for s in selections),
        description=description,
        **kw,
    )


def _full(spec: DatasetSpec, **_: Any) -> Task:
    sel = tuple(slice(None) for _ in spec.shape)
    return _read_task(spec, "full", [sel], "the whole array", full=True)


def _windows(spec: DatasetSpec, *, seed: int = 0, windows: int = DEFAULT_WINDOWS, **_: Any) -> Task:
    grid = [n // c for n, c in zip(spec.shape, spec.chunks, strict=True)]
    total = grid[0] * grid[1]
    count = max(1, min(windows, total // 2))
    rng = np.random.default_rng(stable_seed(seed, "windows", spec.shape, spec.chunks))
    flat = rng.choice(total, size=count, replace=False)
    selections = []
    for f in flat.tolist():
        i, j = divmod(f, grid[1])
        r0, c0 = i * spec.chunks[0], j * spec.chunks[1]
        selections.append((slice(r0, r0 + spec.chunks[0]), slice(c0, c0 + spec.chunks[1])))
    return _read_task(
        spec,
        "windows",
        selections,
        f"{count} random chunk-aligned windows of {spec.chunks[0]}x{spec.chunks[1]} (one decode unit each), "
        "same positions for every reader",
        batch=True,
    )


def _region_start(n: int, chunk: int, size: int) -> int:
    """Start of a ``size``-long range near the middle of ``n`` that straddles a chunk boundary."""
    if size >= n:
        return 0
    boundary = (n // 2 // chunk) * chunk or (chunk if chunk < n else n // 2)
    return int(min(max(boundary - size // 2, 0), n - size))


def _region(spec: DatasetSpec, *, region: int = DEFAULT_REGION, **_: Any) -> Task:
    sel = tuple(
        slice(start, start + min(region, n))
        for n, c in zip(spec.shape, spec.chunks, strict=True)
        for start in [_region_start(n, c, min(region, n))]
    )
    text = f"one {region}x{region} box straddling chunk boundaries: {selection_text(sel)}"
    return _read_task(spec, "region", [sel], text)


def _strided(spec: DatasetSpec, *, stride: tuple[int, int] = DEFAULT_STRIDE, **_: Any) -> Task:
    sel = tuple(slice(None, None, s) for s in stride)
    return _read_task(spec, "strided", [sel], f"strided selection {selection_text(sel)} over the whole array")


def _write_full(spec: DatasetSpec, **_: Any) -> Task:
    sel = tuple(slice(None) for _ in spec.shape)
    return Task(
        pattern="write-full",
        kind="write",
        selections=(sel,),
        full=True,
        work_bytes=spec.nbytes,
        out_bytes=spec.nbytes,
        description="create a fresh array and write every chunk from memory",
        value=lambda source: source,
    )


def _flipped(sel: Selection) -> Callable[[np.ndarray], np.ndarray]:
    def value(source: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(source[sel])[::-1, ::-1])

    return value


def _write_partial(spec: DatasetSpec, **_: Any) -> Task:
    sel = tuple(slice(n // 4 + c // 2, n // 4 + c // 2 + n // 4) for n, c in zip(spec.shape, spec.chunks, strict=True))
    return Task(
        pattern="write-partial",
        kind="write",
        selections=(sel,),
        work_bytes=_units_touched(spec, (sel,)) * _unit_bytes(spec),
        out_bytes=_nbytes(spec, sel),
        description=f"overwrite {selection_text(sel)} (not chunk-aligned) in a copy of the dataset with other values "
        "(the source box flipped)",
        value=_flipped(sel),
    )


#: Every pattern by name, in the order they run.
PATTERNS: dict[str, Callable[..., Task]] = {
    "full": _full,
    "windows": _windows,
    "region": _region,
    "strided": _strided,
    "write-full": _write_full,
    "write-partial": _write_partial,
}
READ_PATTERNS = ("full", "windows", "region", "strided")
#: One line per pattern, for titles and legends.
PATTERN_SUMMARY = {
    "full": "the whole array into memory",
    "windows": f"a batch of (up to) {DEFAULT_WINDOWS} random chunk-aligned windows, one decode unit each",
    "region": f"one {DEFAULT_REGION}x{DEFAULT_REGION} box straddling chunk boundaries near the middle",
    "strided": f"[::{DEFAULT_STRIDE[0]}, ::{DEFAULT_STRIDE[1]}] over the whole array",
    "write-full": "create a fresh array and write it whole from memory",
    "write-partial": "overwrite an unaligned box (1/4 of each dimension) in an existing array",
}
WRITE_PATTERNS = ("write-full", "write-partial")


def make_task(pattern: str, spec: DatasetSpec, **options: Any) -> Task:
    """The task for ``pattern`` on ``spec``; ``options``: ``seed``, ``windows``, ``region``, ``stride``."""
    return PATTERNS[pattern](spec, **options)
