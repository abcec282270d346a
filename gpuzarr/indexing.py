"""Translate a NumPy-style selection into per-chunk projections.

An array is cut into a regular grid of chunks. Reading ``arr[selection]`` means: find every
chunk the selection touches, take the selected elements out of that chunk and put them at the
right place in the result. This module does that bookkeeping and nothing else: it never
touches chunk data, so the pipeline can run the per-chunk work wherever it likes (CPU or GPU).

Three kinds of selection exist, mirroring zarr-python:

* ``"basic"`` -- what ``a[sel]`` does in NumPy: integers, slices (any step), ``Ellipsis``,
  ``None`` and at most one advanced index (an integer array of any shape or a 1-d boolean
  array), plus the special case of one boolean mask covering every dimension.
* ``"orthogonal"`` -- zarr's ``.oindex``: every dimension is indexed independently (outer
  product), each by an integer, a slice, a 1-d integer array or a 1-d boolean array.
* ``"vectorized"`` -- zarr's ``.vindex``: integer arrays (broadcast together, one per
  dimension) or boolean masks naming individual points.

Basic and orthogonal selections are both served by :class:`OrthogonalIndexer` (a basic
selection is an orthogonal one followed by a reshape, and for the NumPy quirk where advanced
indices separated by a slice move to the front, a transpose). Coordinate selections are served
by :class:`VectorizedIndexer`.

Errors follow NumPy: ``IndexError`` for out-of-bounds indices, too many indices, bad index
types and boolean shape mismatches; ``ValueError`` for a zero slice step; ``TypeError`` for
non-integer slice bounds.
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = [
    "ChunkProjection",
    "Indexer",
    "OrthogonalIndexer",
    "SelectionMode",
    "VectorizedIndexer",
    "array_module",
    "block_selection_to_slices",
    "is_basic",
    "fill_projection",
    "indexer_for_geometry",
    "make_indexer",
    "ortho_get",
    "ortho_set",
    "place_projection",
    "selection_byte_ranges",
    "whole_chunk_start",
]

SelectionMode = Literal["basic", "orthogonal", "vectorized"]

# NumPy's own wording, so users see the message they already know.
_BAD_INDEX_MSG = (
    "only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and integer or "
    "boolean arrays are valid indices"
)
_BAD_ARRAY_MSG = "arrays used as indices must be of integer (or boolean) type"
_BOOL_SCALAR_MSG = (
    "boolean scalar indices are not supported; use None/np.newaxis or a boolean array"
)
_INT64_MAX = np.iinfo(np.int64).max


# A named tuple, not a frozen dataclass: the dataclass's __init__ sets each field through
# object.__setattr__, which made building the projections of a 2048-chunk read, run
# before any worker starts, about twice as slow.
class ChunkProjection(NamedTuple):
    """How one chunk takes part in a selection (immutable).

    Attributes:
        chunk_coords: Grid coordinates of the chunk.
        chunk_selection: Chunk-local selection, one entry per array dimension. For orthogonal
            indexers each entry is a slice with explicit integer start/stop and step >= 1 or a
            1-d int64 array; for vectorized indexers each entry is a 1-d int64 array of point
            coordinates (all of equal length).
        out_selection: Where the selected values go in the indexer's buffer. For orthogonal
            indexers a tuple (one entry per array dimension) of slices (any step) or 1-d int64
            arrays; for vectorized indexers one 1-d int64 array of positions into the
            flattened buffer.
        covers_chunk: True iff the selection touches every in-bounds element of the chunk
            exactly once, so a write may replace the chunk without reading it first.
    """

    chunk_coords: tuple[int, ...]
    chunk_selection: tuple[slice | np.ndarray, ...]
    out_selection: tuple[slice | np.ndarray, ...] | np.ndarray
    covers_chunk: bool


# --------------------------------------------------------------------------------------------
# Helpers shared with the pipeline
# --------------------------------------------------------------------------------------------


def is_basic(sel: Sequence[Any]) -> bool:
    """Return True if every entry of ``sel`` is a slice (plain NumPy basic indexing works)."""
    return all(isinstance(s, slice) for s in sel)


def _ix(sel: Sequence[Any], shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Turn an orthogonal selection into ``np.ix_`` form (slices become small aranges)."""
    parts = [
        np.arange(*slice_indices(s, n), dtype=np.int64) if isinstance(s, slice) else s
        for s, n in zip(sel, shape, strict=True)
    ]
    return np.ix_(*parts)


def ortho_get(arr: np.ndarray, sel: Sequence[Any]) -> np.ndarray:
    """Orthogonal (outer) indexing: ``arr[sel]`` with every entry applied independently.

    ``sel`` has one entry per dimension of ``arr``: slices or 1-d integer arrays. The result
    always has one axis per dimension of ``arr`` (integer-array entries keep their axis).
    """
    sel = tuple(sel)
    if not sel:
        # arr[()] on a 0-d array returns a NumPy scalar; callers want an array.
        return arr[...]
    n_arrays = sum(not isinstance(s, slice) for s in sel)
    if n_arrays <= 1:
        # Basic indexing is a view; a single advanced index keeps its axis in place, so
        # NumPy's own indexing already is orthogonal here (and is the fastest gather).
        return arr[sel]
    return arr[_ix(sel, arr.shape)]


def _selected_positions(item: Any, n: int) -> Sequence[int] | None:
    """The sorted distinct positions along a dimension of ``n`` that one orthogonal
    selection entry (a slice, an integer or a 1-d integer array) takes; None for
    anything else."""
    if isinstance(item, slice):
        taken = range(*item.indices(n))
        return taken if taken.step > 0 else taken[::-1]
    if isinstance(item, (int, np.integer)):
        return (int(item),)
    if isinstance(item, np.ndarray) and item.ndim == 1 and item.dtype.kind in "iu":
        return sorted(set(item.tolist()))
    return None


#: Most byte ranges :func:`selection_byte_ranges` plans for one object before leaving it
#: to be read whole (past this, a read per range costs more than the bytes it skips).
MAX_RANGES = 4096


def selection_byte_ranges(
    selection: Sequence[Any], shape: tuple[int, ...], itemsize: int, *, max_gap: int, max_share: float
) -> list[tuple[int, int]] | None:
    """The ``(offset, length)`` byte ranges of a C-order array of ``shape`` that hold
    every element an orthogonal ``selection`` takes (a chunk-local selection: one slice,
    integer or 1-d integer array per dimension), in order; ranges at most ``max_gap``
    bytes apart are merged.

    None where reading the whole array would do as well: the ranges, each counted
    ``max_gap`` bytes longer (the cost of a read of its own), hold more than
    ``max_share`` of its bytes, or number more than :data:`MAX_RANGES`, or the
    selection has an entry of another kind. Elements outside the ranges are never part
    of the selection, so a buffer filled only at these ranges serves it exactly.

    (Plain Python, not NumPy: it runs once per unit of a read, where a few NumPy calls
    on a handful of rows cost more than the reads they plan.)
    """
    if len(selection) != len(shape) or not shape or itemsize <= 0:
        return None
    positions = [_selected_positions(item, n) for item, n in zip(selection, shape, strict=True)]
    if any(p is None for p in positions):
        return None
    if any(len(p) == 0 for p in positions):  # type: ignore[arg-type]
        return []
    last = positions[-1]
    assert last is not None
    # Runs along the last dimension: selected elements at most max_gap bytes apart share one.
    runs: list[list[int]] = []
    if isinstance(last, range) and (last.step - 1) * itemsize <= max_gap:
        runs.append([last[0] * itemsize, (last[-1] + 1) * itemsize])
    else:
        for i in last:
            at = i * itemsize
            if runs and at - runs[-1][1] <= max_gap:
                runs[-1][1] = at + itemsize
            else:
                runs.append([at, at + itemsize])
    leading = positions[:-1]
    if math.prod(len(p) for p in leading) * len(runs) > 64 * MAX_RANGES:  # type: ignore[arg-type]
        return None  # (before building them: far too many to read apart)
    strides = [itemsize * math.prod(shape[d + 1 :]) for d in range(len(leading))]
    merged: list[list[int]] = []
    for row in itertools.product(*leading):  # type: ignore[arg-type]
        base = sum(i * stride for i, stride in zip(row, strides, strict=True))
        for run_start, run_end in runs:
            # Across rows too: a gap of at most max_gap bytes is read through.
            if merged and base + run_start - merged[-1][1] <= max_gap:
                merged[-1][1] = base + run_end
            else:
                if len(merged) == MAX_RANGES:
                    return None
                merged.append([base + run_start, base + run_end])
    # (Each read counts as max_gap bytes more: the gap it saves reading through.)
    cost = sum(end - start for start, end in merged) + len(merged) * max_gap
    if cost > max_share * math.prod(shape) * itemsize:
        return None
    return [(start, end - start) for start, end in merged]


def ortho_set(arr: np.ndarray, sel: Sequence[Any], values: Any) -> None:
    """Orthogonal assignment: the inverse of :func:`ortho_get`.

    ``values`` must be broadcastable to the selected shape (one axis per dimension).
    Repeated indices follow NumPy: the last value written wins.
    """
    sel = tuple(sel)
    if not sel:
        arr[...] = values
        return
    n_arrays = sum(not isinstance(s, slice) for s in sel)
    if n_arrays <= 1:
        arr[sel] = values
    else:
        arr[_ix(sel, arr.shape)] = values


def place_projection(buffer: Any, projection: ChunkProjection, unit: Any, vectorized: bool) -> None:
    """Copy a projection's part of a decoded ``unit`` into an indexer's ``buffer``.

    ``vectorized``: the buffer belongs to a vectorized indexer (flat, point positions);
    otherwise selections are orthogonal. Works for NumPy and CuPy arrays alike.
    """
    if vectorized:
        buffer.reshape(-1)[projection.out_selection] = unit[projection.chunk_selection]
    else:
        ortho_set(buffer, projection.out_selection, ortho_get(unit, projection.chunk_selection))  # type: ignore[arg-type]


def fill_projection(buffer: Any, projection: ChunkProjection, fill: Any, vectorized: bool) -> None:
    """Set a projection's part of an indexer's ``buffer`` to ``fill`` (a unit not stored)."""
    selection: Any = projection.out_selection
    if vectorized:
        buffer.reshape(-1)[selection] = fill
    elif is_basic(selection):
        buffer[selection] = fill
    else:
        region = ortho_get(buffer, selection)
        region[...] = fill
        ortho_set(buffer, selection, region)


# --------------------------------------------------------------------------------------------
# Parsing selections
# --------------------------------------------------------------------------------------------

# Kinds of parsed selection items.
_NEW, _ELL, _INT, _SLICE, _ARR, _BOOL = "new", "ell", "int", "slice", "arr", "bool"


def _parse_item(item: Any) -> tuple[str, Any]:
    """Classify one entry of a selection tuple exactly as NumPy would accept it."""
    if item is None:
        return _NEW, None
    if item is Ellipsis:
        return _ELL, None
    if isinstance(item, slice):
        return _SLICE, item
    if isinstance(item, (bool, np.bool_)):
        # NumPy treats a scalar bool as a 0-d mask that adds an axis; too exotic to carry
        # through the chunk machinery, so refuse it clearly rather than guess.
        raise IndexError(_BOOL_SCALAR_MSG)
    if isinstance(item, (int, np.integer)):
        return _INT, int(item)
    if isinstance(item, (np.ndarray, list, tuple)) or hasattr(item, "__array__"):
        arr = np.asarray(item)
        if arr.dtype == np.bool_:
            if arr.ndim == 0:
                raise IndexError(_BOOL_SCALAR_MSG)
            return _BOOL, arr
        if arr.dtype.kind in "iu":
            if arr.ndim == 0:
                # NumPy treats a 0-d integer array like an integer.
                return _INT, int(arr)
            if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
                raise IndexError(f"index {int(arr.max())} is out of bounds")
            return _ARR, arr.astype(np.int64, copy=False)
        if arr.size == 0 and isinstance(item, (list, tuple)):
            # NumPy reads an empty list as an empty integer index.
            return _ARR, np.zeros(arr.shape, dtype=np.int64)
        raise IndexError(_BAD_ARRAY_MSG)
    try:
        return _INT, operator.index(item)
    except TypeError:
        raise IndexError(_BAD_INDEX_MSG) from None


def _parse(selection: Any, ndim: int) -> list[tuple[str, Any]]:
    """Parse a selection into items and check the number of indexed dimensions."""
    sel = selection if isinstance(selection, tuple) else (selection,)
    items = [_parse_item(s) for s in sel]
    n_ell = sum(kind == _ELL for kind, _ in items)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = sum(
        1 if kind in (_INT, _SLICE, _ARR) else (val.ndim if kind == _BOOL else 0)
        for kind, val in items
    )
    if consumed > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {consumed} were indexed"
        )
    return items


def slice_indices(item: slice, n: int) -> tuple[int, int, int]:
    """``item.indices(n)`` with a step no longer than the dimension: the same elements
    (a step of ``n`` or more takes at most one), in integers NumPy can hold (``::2**70``
    selects one element, as in NumPy, instead of overflowing int64)."""
    start, stop, step = item.indices(n)
    bound = max(n, 1)
    return start, stop, max(-bound, min(bound, step))


def _check_int(i: int, dim: int, n: int) -> int:
    """Bounds-check and normalise an integer index (NumPy's message)."""
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of bounds for axis {dim} with size {n}")
    return i + n if i < 0 else i


def _check_array(idx: np.ndarray, dim: int, n: int) -> np.ndarray:
    """Bounds-check and normalise an int64 index array; returns a flat int64 array."""
    flat = idx.reshape(-1)
    if flat.size == 0:
        return flat.astype(np.int64, copy=True)
    lo, hi = int(flat.min()), int(flat.max())
    if lo < -n or hi >= n:
        bad = flat[(flat < -n) | (flat >= n)][0]
        raise IndexError(f"index {int(bad)} is out of bounds for axis {dim} with size {n}")
    if lo < 0:
        return np.where(flat < 0, flat + n, flat).astype(np.int64, copy=False)
    # Copy so that later changes to the caller's array cannot alter this indexer.
    return flat.astype(np.int64, copy=True)


def _check_bool(mask: np.ndarray, first_dim: int, shape: tuple[int, ...]) -> None:
    """Check a boolean index against the dims it covers (NumPy's message)."""
    for k, m in enumerate(mask.shape):
        d = first_dim + k
        if m != shape[d]:
            raise IndexError(
                f"boolean index did not match indexed array along axis {d}; size of axis "
                f"is {shape[d]} but size of corresponding boolean axis is {m}"
            )


# --------------------------------------------------------------------------------------------
# Per-dimension projections for orthogonal indexers
# --------------------------------------------------------------------------------------------

# (chunk index along the dim, chunk-local selection, buffer selection, covers whole extent)
_DimProj = tuple[int, slice | np.ndarray, slice | np.ndarray, bool]


def whole_chunk_start(csel: slice | np.ndarray, osel: slice | np.ndarray, chunk: int, length: int) -> int | None:
    """Where along one buffer dimension (of ``length``) a projection puts a whole chunk
    (of extent ``chunk``): the start of its step-1 buffer slice; None unless the chunk
    selection is the whole chunk and the buffer slice a plain one inside the buffer."""
    if type(csel) is not slice or csel.start != 0 or csel.stop != chunk or csel.step != 1:
        return None
    if type(osel) is not slice or osel.step not in (None, 1):
        return None
    start = osel.start
    if type(start) is not int or osel.stop != start + chunk or not 0 <= start <= length - chunk:
        return None
    return start


def _single_projection(dims: list[list[_DimProj]]) -> ChunkProjection | None:
    """The projection of a selection that touches one chunk (one per dimension), else None."""
    if not dims:  # 0-d array: the single chunk, wholly selected
        return ChunkProjection((), (), (), True)
    for dim in dims:
        if len(dim) != 1:
            return None
    coords, csels, osels, covers = zip(*[dim[0] for dim in dims], strict=True)
    return ChunkProjection(coords, csels, osels, False not in covers)


def _int_dim(i: int, n: int, chunk: int) -> list[_DimProj]:
    c = i // chunk
    local = i - c * chunk
    extent = min(chunk, n - c * chunk)
    return [(c, slice(local, local + 1, 1), slice(0, 1, 1), extent == 1)]


#: Up to this many touched chunks, a slice's projections are computed with Python ints:
#: NumPy's per-call overhead dominates on such small arrays (small reads are common).
_FEW_CHUNKS = 16


def _slice_dim_few(lo: int, st: int, length: int, n: int, chunk: int, reverse: bool) -> list[_DimProj]:
    """The scalar twin of :func:`_slice_dim`'s ``st < chunk`` branch, for few chunks."""
    out: list[_DimProj] = []
    last = length - 1
    for c in range(lo // chunk, (lo + last * st) // chunk + 1):
        c0 = c * chunk
        j0 = max(0, -((lo - c0) // st))  # ceil((c0 - lo) / st)
        jl = min(last, (min(c0 + chunk, n) - 1 - lo) // st)
        p0, pl = lo + j0 * st, lo + jl * st
        covers = p0 == c0 and pl == c0 + min(chunk, n - c0) - 1 and (st == 1 or p0 == pl)
        if reverse:
            stop = last - 1 - jl
            osel = slice(last - j0, stop if stop >= 0 else None, -1)
        else:
            osel = slice(j0, jl + 1, 1)
        out.append((c, slice(p0 - c0, pl - c0 + 1, st), osel, covers))
    return out


def _slice_dim(start: int, step: int, length: int, n: int, chunk: int) -> list[_DimProj]:
    """Projections of a normalised slice.

    Works on arrays with one entry per touched chunk (never per element), then builds the
    slice objects in bulk.
    """
    if length == 0:
        return []
    reverse = step < 0
    if reverse:
        # Walk the same elements in ascending order so chunk-local slices have step >= 1;
        # the buffer side gets a negative step so values still land reversed.
        lo, st = start + (length - 1) * step, -step
    else:
        lo, st = start, step
    hi = lo + (length - 1) * st
    c = lo // chunk
    if st == 1 and hi // chunk == c:  # a run inside one chunk: most small reads
        c0 = c * chunk
        covers = lo == c0 and hi == c0 + min(chunk, n - c0) - 1
        osel = slice(length - 1, None, -1) if reverse else slice(0, length, 1)
        return [(c, slice(lo - c0, hi - c0 + 1, 1), osel, covers)]
    if st < chunk and hi // chunk - c < _FEW_CHUNKS:
        return _slice_dim_few(lo, st, length, n, chunk, reverse)
    if st >= chunk:
        # Elements at least a chunk apart never share a chunk: one chunk per element.
        j0 = np.arange(length, dtype=np.int64)
        jl = j0
        pos0 = lo + j0 * st
        pl = pos0
        c = pos0 // chunk
        c0 = c * chunk
    else:
        # Elements closer than a chunk touch every chunk between the first and the last.
        c = np.arange(lo // chunk, hi // chunk + 1, dtype=np.int64)
        c0 = c * chunk
        j0 = np.maximum(0, -((lo - c0) // st))  # ceil((c0 - lo) / st)
        jl = np.minimum(length - 1, (np.minimum(c0 + chunk, n) - 1 - lo) // st)
        pos0 = lo + j0 * st
        pl = lo + jl * st
    extent = np.minimum(chunk, n - c0)
    # Exact cover: the run spans the whole chunk extent without gaps (a lone element has no
    # gaps whatever the step).
    covers = (pos0 == c0) & (pl == c0 + extent - 1) & ((st == 1) | (pos0 == pl))
    csel = list(map(slice, (pos0 - c0).tolist(), (pl - c0 + 1).tolist(), itertools.repeat(st)))
    if reverse:
        osel = [
            slice(a, b if b >= 0 else None, -1)
            for a, b in zip((length - 1 - j0).tolist(), (length - 2 - jl).tolist(), strict=True)
        ]
    else:
        osel = list(map(slice, j0.tolist(), (jl + 1).tolist(), itertools.repeat(1)))
    return list(zip(c.tolist(), csel, osel, covers.tolist(), strict=True))


def _stable_argsort(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable argsort of int64 ``keys`` in ``[0, bound)``: returns (sorted keys, order).

    NumPy's stable argsort is several times slower than its (SIMD) plain sort, so when it
    fits in int64 the position is packed below the key: the packed values are unique, so a
    plain sort of them is a stable sort of the keys.
    """
    size = keys.size
    if bound * size < 2**63:
        packed = keys * size
        packed += np.arange(size, dtype=np.int64)
        packed.sort()
        skeys, order = np.divmod(packed, size)
        return skeys, order
    order = np.argsort(keys, kind="stable").astype(np.int64, copy=False)
    return keys[order], order


def _count_in_groups(positions: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """How many of the sorted ``positions`` fall in each ``[start, stop)`` range."""
    return np.searchsorted(positions, stops) - np.searchsorted(positions, starts)


def _array_dim(idx: np.ndarray, n: int, chunk: int) -> list[_DimProj]:
    """Group a normalised 1-d int64 index array by chunk (vectorised, no per-element loop)."""
    size = idx.size
    if size == 0:
        return []
    gaps = np.diff(idx)
    order: np.ndarray | None = None
    if size == 1 or gaps.min() >= 0:
        sidx, direction = idx, 1  # already sorted: buffer positions are plain slices
    elif gaps.max() < 0:
        # Strictly decreasing: walk it backwards; buffer slices get step -1.
        sidx, direction = idx[::-1], -1
        gaps = -gaps[::-1]
    else:
        # A stable sort groups by chunk, sorts within a chunk (better memory access) and
        # keeps repeated indices in their original order (last write wins, as in NumPy).
        sidx, order = _stable_argsort(idx, n)
        direction = 0
        gaps = np.diff(sidx)
    cid = sidx // chunk
    brk = np.flatnonzero(cid[1:] != cid[:-1]) + 1
    starts = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [size]))
    gchunk = cid[starts]
    c0 = gchunk * chunk
    local = sidx - cid * chunk
    first = local[starts]
    count = ends - starts
    extent = np.minimum(chunk, n - c0)
    # Runs of consecutive local indices can be slices (cheaper to apply than a gather):
    # a group is one run iff none of its internal gaps differs from 1.
    breaks = np.flatnonzero(gaps != 1)
    contiguous = _count_in_groups(breaks, starts, ends - 1) == 0
    covers = contiguous & (first == 0) & (count == extent)

    res: list[_DimProj] = []
    for s, e, c, f, cont, cov in zip(
        starts.tolist(),
        ends.tolist(),
        gchunk.tolist(),
        first.tolist(),
        contiguous.tolist(),
        covers.tolist(),
        strict=True,
    ):
        csel: slice | np.ndarray = slice(f, f + e - s, 1) if cont else local[s:e]
        osel: slice | np.ndarray
        if direction == 1:
            osel = slice(s, e, 1)
        elif direction == -1:
            stop = size - 1 - e
            osel = slice(size - 1 - s, stop if stop >= 0 else None, -1)
        else:
            osel = order[s:e]  # type: ignore[index]
        res.append((c, csel, osel, cov))
    return res


# --------------------------------------------------------------------------------------------
# Indexers
# --------------------------------------------------------------------------------------------


def _reshape_view(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """Reshape without copying; None if NumPy would need a copy."""
    try:
        return np.reshape(arr, shape, copy=False)
    except ValueError:
        return None
    except TypeError:  # NumPy < 2.1 has no copy= argument
        view = arr.view()
        try:
            view.shape = shape
        except AttributeError:
            return None
        return view


def array_module(value: Any) -> Any:
    """``cupy`` for a CuPy array, else ``numpy`` (never imports CuPy: a CuPy array can
    only exist once CuPy is imported)."""
    if type(value).__module__.split(".")[0] == "cupy":
        return sys.modules["cupy"]
    return np


def _broadcast_value(value: Any, out_shape: tuple[int, ...], scalar_index: bool) -> np.ndarray:
    """Broadcast an assigned value to ``out_shape`` with NumPy's assignment rules.

    ``scalar_index`` marks a NumPy "full integer" index (one integer per dim, nothing else).
    """
    if scalar_index and np.ndim(value) > 0:
        # NumPy assigns through its scalar path here and refuses any sequence, even a
        # size-1 one; match it so code behaves the same on gpuzarr and NumPy arrays.
        raise ValueError("setting an array element with a sequence.")
    xp = array_module(value)
    v = xp.asarray(value)
    # Assignment (unlike plain broadcasting) drops surplus leading length-1 axes.
    while v.ndim > len(out_shape) and v.shape[0] == 1:
        v = v[0]
    try:
        return xp.broadcast_to(v, out_shape)
    except ValueError:
        raise ValueError(
            f"could not broadcast input array from shape {np.shape(value)} into shape {out_shape}"
        ) from None


class Indexer:
    """Interface of an indexer: the result shape and the per-chunk projections.

    Attributes:
        mode: ``"vectorized"`` for coordinate selections, ``"orthogonal"`` otherwise (basic
            selections are represented as orthogonal ones).
        shape: Shape of the indexed array.
        chunk_shape: Chunk shape of the indexed array.
        buffer_shape: Shape of the intermediate buffer that the projections fill.
        out_shape: Shape NumPy would return for ``arr[selection]``.
    """

    __slots__ = ("_scalar_index", "buffer_shape", "chunk_shape", "mode", "out_shape", "shape")

    mode: SelectionMode
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    buffer_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def chunk_projections(self) -> Iterator[ChunkProjection]:
        """Yield one projection per touched chunk, in C order of the chunk coordinates."""
        raise NotImplementedError

    def whole_chunk_offsets(self, strides: Sequence[int]) -> list[int | None] | None:
        """Where each chunk of :meth:`chunk_projections` (in its order) lands whole in a
        buffer of ``buffer_shape`` with ``strides``: the byte offset of the block its
        chunk selection fills, where that selection is the whole chunk and its buffer
        selection plain step-1 slices; None for a chunk that does not. None for all when
        the indexer cannot tell (coordinate selections, whose chunks never land whole).

        The read pipeline decodes such chunks straight into the buffer; worked out per
        dimension, it costs a sum per chunk instead of a NumPy view.
        """
        return None

    def finalize(self, buffer: np.ndarray) -> np.ndarray:
        """Turn a filled buffer (``buffer_shape``) into the result (``out_shape``).

        Returns a view of ``buffer`` whenever possible.
        """
        raise NotImplementedError

    def buffer_view(self, out: np.ndarray) -> np.ndarray | None:
        """Return a view of ``out`` (shaped ``out_shape``) with ``buffer_shape``.

        Lets the pipeline write straight into a preallocated result. Returns None when no
        view exists (e.g. ``out`` is not contiguous in a way the reshape needs).
        """
        raise NotImplementedError

    def prepare_value(self, value: Any) -> np.ndarray:
        """Broadcast an assigned value like NumPy and return it with ``buffer_shape``.

        Raises ValueError when ``value`` cannot be broadcast to ``out_shape``. The result is
        a (possibly read-only) view of ``value`` where possible.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        name = type(self).__name__
        return (
            f"{name}(shape={self.shape}, chunk_shape={self.chunk_shape}, "
            f"out_shape={self.out_shape})"
        )


class OrthogonalIndexer(Indexer):
    """Indexer for basic and orthogonal selections.

    The buffer has one axis per array dimension (length 1 for integer-indexed dims, the
    flattened index length for an integer-array dim). :meth:`finalize` reshapes it to the
    NumPy result shape and, for NumPy's "advanced indices separated by a slice" rule, moves
    the advanced axes to the front.
    """

    __slots__ = ("_dims", "_inter_shape", "_move", "_single")

    def __init__(
        self,
        shape: tuple[int, ...],
        chunk_shape: tuple[int, ...],
        dims: list[tuple[str, Any]],
        inter_shape: tuple[int, ...],
        move: tuple[int, ...] = (),
        scalar_index: bool = False,
    ) -> None:
        """Build from normalised per-dim specs (use :func:`make_indexer` instead).

        ``dims`` holds per array dim ``("int", i)``, ``("slice", (start, step, length))`` or
        ``("arr", flat_int64)``; ``inter_shape`` is the buffer reshaped to the result's
        layout before ``move`` (axes of it to bring to the front, in order).
        ``scalar_index`` marks a NumPy "full integer" index (one int per dim, nothing else),
        for which NumPy only assigns 0-d values.
        """
        self.mode = "orthogonal"
        self.shape = shape
        self.chunk_shape = chunk_shape
        self._inter_shape = inter_shape
        self._move = move
        self._scalar_index = scalar_index
        buffer_shape = []
        projs: list[list[_DimProj]] = []
        for (kind, val), n, ch in zip(dims, shape, chunk_shape, strict=True):
            if kind == _INT:
                buffer_shape.append(1)
                projs.append(_int_dim(val, n, ch))
            elif kind == _SLICE:
                start, step, length = val
                buffer_shape.append(length)
                projs.append(_slice_dim(start, step, length, n, ch))
            else:
                buffer_shape.append(val.size)
                projs.append(_array_dim(val, n, ch))
        self._dims = projs
        self.buffer_shape = tuple(buffer_shape)
        self._single = _single_projection(projs)
        if move:
            rest = [ax for ax in range(len(inter_shape)) if ax not in move]
            self.out_shape = tuple(inter_shape[ax] for ax in (*move, *rest))
        else:
            self.out_shape = inter_shape

    def chunk_projections(self) -> Iterator[ChunkProjection]:
        """Yield one projection per touched chunk, in C order of the chunk coordinates."""
        if self._single is not None:  # one chunk (most small reads; a 0-d array's)
            return iter((self._single,))
        return self._many_projections()

    def _many_projections(self) -> Iterator[ChunkProjection]:
        # One itertools.product per field over ready-made per-dim entries, zipped into
        # projections by map(): no Python frame per chunk.
        if not all(self._dims):  # an empty selection along some dim touches no chunk
            return
        fields = [list(zip(*dim, strict=True)) for dim in self._dims]  # per dim: coords, csels, osels, covers
        coords, csels, osels, covers = (itertools.product(*(f[k] for f in fields)) for k in range(4))
        if all(all(f[3]) for f in fields):
            covered: Iterator[bool] = itertools.repeat(True)
        else:
            covered = (False not in c for c in covers)
        yield from map(ChunkProjection, coords, csels, osels, covered)

    def whole_chunk_offsets(self, strides: Sequence[int]) -> list[int | None] | None:
        if not self._dims:  # 0-d: the single chunk, wholly selected
            return [0]
        # One chunk (most small reads): a sum over dimensions, no list per dimension.
        offset: int | None = 0
        for dim, chunk, stride, length in zip(self._dims, self.chunk_shape, strides, self.buffer_shape, strict=True):
            if len(dim) != 1:
                break
            start = whole_chunk_start(dim[0][1], dim[0][2], chunk, length)
            offset = None if offset is None or start is None else offset + start * stride
        else:
            return [offset]
        along = [  # per dimension, per chunk along it
            [
                None if (start := whole_chunk_start(csel, osel, chunk, length)) is None else start * stride
                for _, csel, osel, _ in dim
            ]
            for dim, chunk, stride, length in zip(self._dims, self.chunk_shape, strides, self.buffer_shape, strict=True)
        ]
        if len(along) == 1:
            return along[0]
        # (Chunks come in C order of their coordinates: the product over dimensions.)
        return [None if None in offsets else sum(offsets) for offsets in itertools.product(*along)]

    def finalize(self, buffer: np.ndarray) -> np.ndarray:
        """Turn a filled buffer into the result; a view of ``buffer`` when possible."""
        res = buffer.reshape(self._inter_shape)
        if self._move:
            res = np.moveaxis(res, self._move, range(len(self._move)))
        return res

    def _to_buffer_layout(self, arr: np.ndarray) -> np.ndarray:
        """Undo the axis move of :meth:`finalize` (a view)."""
        if self._move:
            arr = array_module(arr).moveaxis(arr, range(len(self._move)), self._move)
        return arr

    def buffer_view(self, out: np.ndarray) -> np.ndarray | None:
        """Return a view of ``out`` with ``buffer_shape``, or None if impossible."""
        if tuple(out.shape) != self.out_shape:
            raise ValueError(f"out has shape {out.shape}, expected {self.out_shape}")
        return _reshape_view(self._to_buffer_layout(out), self.buffer_shape)

    def prepare_value(self, value: Any) -> np.ndarray:
        """Broadcast ``value`` like NumPy assignment and return it with ``buffer_shape``."""
        v = _broadcast_value(value, self.out_shape, self._scalar_index)
        return self._to_buffer_layout(v).reshape(self.buffer_shape)


class VectorizedIndexer(Indexer):
    """Indexer for coordinate (point) selections.

    The buffer is flat, ``(n_points,)``; each projection's ``out_selection`` is an array of
    positions into it, and :meth:`finalize` reshapes it to the broadcast index shape.
    """

    __slots__ = ("_coords",)

    def __init__(
        self,
        shape: tuple[int, ...],
        chunk_shape: tuple[int, ...],
        coords: list[np.ndarray],
        out_shape: tuple[int, ...],
        scalar_index: bool = False,
    ) -> None:
        """Build from normalised flat int64 coordinates, one array per array dim.

        ``scalar_index`` marks a selection of plain integers only (NumPy's scalar
        assignment path, which refuses non-0-d values).
        """
        self.mode = "vectorized"
        self._scalar_index = scalar_index
        self.shape = shape
        self.chunk_shape = chunk_shape
        self._coords = coords
        self.out_shape = out_shape
        self.buffer_shape = (coords[0].size,)

    def chunk_projections(self) -> Iterator[ChunkProjection]:
        """Yield one projection per touched chunk, in C order of the chunk coordinates."""
        coords, shape, chunk_shape = self._coords, self.shape, self.chunk_shape
        npts = coords[0].size
        if npts == 0:
            return
        cc = [c // ch for c, ch in zip(coords, chunk_shape, strict=True)]
        grid = tuple(-(-n // ch) for n, ch in zip(shape, chunk_shape, strict=True))
        csize = math.prod(chunk_shape)
        if math.prod(grid) * csize < 2**62:
            # One int64 key (chunk id, position in chunk): sorting it groups points by chunk
            # in C order and orders each chunk's points by memory position.
            local_flat = np.ravel_multi_index(
                [c - k * ch for c, k, ch in zip(coords, cc, chunk_shape, strict=True)],
                chunk_shape,
            )
            key = np.ravel_multi_index(cc, grid).astype(np.int64) * csize
            key += local_flat
            del local_flat
            skey, order = _stable_argsort(key, math.prod(grid) * csize)
            scid, slocal_flat = np.divmod(skey, csize)
            brk = np.flatnonzero(scid[1:] != scid[:-1]) + 1
            dups = np.flatnonzero(skey[1:] == skey[:-1])
            # Unravelling the sorted keys reads memory in order, unlike gathering by order.
            slocal = np.unravel_index(slocal_flat, chunk_shape)
            starts = np.concatenate(([0], brk))
            gcc = np.unravel_index(scid[starts], grid)
        else:
            # Huge grids would overflow the key; lexsort on the coordinates instead.
            local = [c - k * ch for c, k, ch in zip(coords, cc, chunk_shape, strict=True)]
            order = np.lexsort([*reversed(local), *reversed(cc)]).astype(np.int64, copy=False)
            new_chunk = np.zeros(npts - 1, dtype=bool)
            same_local = np.ones(npts - 1, dtype=bool)
            slocal = []
            scc = []
            for k, lc in zip(cc, local, strict=True):
                sk, sl = k[order], lc[order]
                new_chunk |= sk[1:] != sk[:-1]
                same_local &= sl[1:] == sl[:-1]
                slocal.append(sl)
                scc.append(sk)
            brk = np.flatnonzero(new_chunk) + 1
            dups = np.flatnonzero(same_local & ~new_chunk)
            starts = np.concatenate(([0], brk))
            gcc = [sk[starts] for sk in scc]
        ends = np.concatenate((brk, [npts]))
        extent = np.ones(starts.size, dtype=np.int64)
        for k, n, ch in zip(gcc, shape, chunk_shape, strict=True):
            extent *= np.minimum(ch, n - k * ch)
        # Exact cover: as many points as in-bounds elements and no point repeated.
        n_dup = _count_in_groups(dups, starts, ends - 1)
        covers = ((ends - starts == extent) & (n_dup == 0)).tolist()
        chunk_coords = list(zip(*(k.tolist() for k in gcc), strict=True))
        for g, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            yield ChunkProjection(
                chunk_coords[g],
                tuple([sl[s:e] for sl in slocal]),
                order[s:e],
                covers[g],
            )

    def finalize(self, buffer: np.ndarray) -> np.ndarray:
        """Reshape the flat buffer to the result shape (a view when possible)."""
        return buffer.reshape(self.out_shape)

    def buffer_view(self, out: np.ndarray) -> np.ndarray | None:
        """Return a flat view of ``out``, or None if ``out`` cannot be flattened in place."""
        if tuple(out.shape) != self.out_shape:
            raise ValueError(f"out has shape {out.shape}, expected {self.out_shape}")
        return _reshape_view(out, self.buffer_shape)

    def prepare_value(self, value: Any) -> np.ndarray:
        """Broadcast ``value`` like NumPy assignment and return it flat (``(n_points,)``)."""
        v = _broadcast_value(value, self.out_shape, self._scalar_index)
        return v.reshape(self.buffer_shape)


# --------------------------------------------------------------------------------------------
# Building indexers
# --------------------------------------------------------------------------------------------


def _expand(items: list[tuple[str, Any]], ndim: int) -> list[tuple[str, Any]]:
    """Replace Ellipsis by full slices and pad with trailing full slices.

    Keeps an ``_ELL`` marker where the ellipsis was, because it still matters for NumPy's
    adjacency rule of advanced indices.
    """
    consumed = sum(
        1 if kind in (_INT, _SLICE, _ARR) else (val.ndim if kind == _BOOL else 0)
        for kind, val in items
    )
    fill = [(_SLICE, slice(None))] * (ndim - consumed)
    out: list[tuple[str, Any]] = []
    for kind, val in items:
        if kind == _ELL:
            out.append((_ELL, None))
            out.extend(fill)
            fill = []
        else:
            out.append((kind, val))
    out.extend(fill)
    return out


def _coordinate_indexer(
    shape: tuple[int, ...],
    chunk_shape: tuple[int, ...],
    arrays: list[np.ndarray],
    pre: int = 0,
    post: int = 0,
    scalar_index: bool = False,
) -> Indexer:
    """Build a :class:`VectorizedIndexer` from integer arrays (one per dim, broadcast)."""
    try:
        bshape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = " ".join(str(a.shape) for a in arrays)
        raise IndexError(
            f"shape mismatch: indexing arrays could not be broadcast together with shapes {shapes}"
        ) from None
    coords = []
    for d, (a, n) in enumerate(zip(arrays, shape, strict=True)):
        flat = _check_array(a, d, n)
        if a.shape != bshape:
            flat = np.broadcast_to(flat.reshape(a.shape), bshape).reshape(-1)
        coords.append(flat)
    out_shape = (1,) * pre + tuple(bshape) + (1,) * post
    return VectorizedIndexer(shape, chunk_shape, coords, out_shape, scalar_index)


def _vectorized(selection: Any, shape: tuple[int, ...], chunk_shape: tuple[int, ...]) -> Indexer:
    """Parse a ``.vindex`` selection."""
    ndim = len(shape)
    items = _parse(selection, ndim)
    arrays: list[np.ndarray] = []
    dim = 0
    for kind, val in items:
        if kind == _INT:
            arrays.append(np.asarray(_check_int(val, dim, shape[dim]), dtype=np.int64))
            dim += 1
        elif kind == _ARR:
            arrays.append(val)
            dim += 1
        elif kind == _BOOL:
            _check_bool(val, dim, shape)
            arrays.extend(np.nonzero(val))
            dim += val.ndim
        elif kind == _SLICE:
            raise IndexError(
                "slices are not supported in vectorized (vindex) selections; "
                "use .oindex or integer arrays"
            )
        else:
            raise IndexError(
                "Ellipsis and None/np.newaxis are not supported in vectorized (vindex) selections"
            )
    if ndim == 0:
        # Nothing to vectorise over: a[()] on a 0-d array.
        return OrthogonalIndexer(shape, chunk_shape, [], ())
    if dim != ndim:
        raise IndexError(
            f"vectorized (vindex) selections need one index array per dimension: array is "
            f"{ndim}-dimensional, but {dim} were indexed"
        )
    scalar_index = all(kind == _INT for kind, _ in items)
    return _coordinate_indexer(shape, chunk_shape, arrays, scalar_index=scalar_index)


def _orthogonal(
    selection: Any, shape: tuple[int, ...], chunk_shape: tuple[int, ...], basic: bool
) -> Indexer:
    """Parse a basic (``a[sel]``) or orthogonal (``.oindex``) selection."""
    ndim = len(shape)
    items = _parse(selection, ndim)
    scalar_index = basic and len(items) == ndim and all(k == _INT for k, _ in items)
    advanced = [i for i, (kind, _) in enumerate(items) if kind in (_ARR, _BOOL)]
    if basic and len(advanced) > 1:
        raise IndexError(
            "only one integer or boolean array index is supported in basic selections; use "
            ".oindex for orthogonal (outer) indexing or .vindex for coordinate (vectorized) "
            "indexing"
        )
    for i in advanced:
        kind, val = items[i]
        if val.ndim != 1 and (kind == _BOOL or not basic):
            if (
                basic
                and val.ndim == ndim
                and all(k in (_NEW, _ELL) for j, (k, _) in enumerate(items) if j != i)
            ):
                # a[mask] with a mask over every dim is a coordinate selection.
                _check_bool(val, 0, shape)
                pre = sum(k == _NEW for k, _ in items[:i])
                post = sum(k == _NEW for k, _ in items[i + 1 :])
                return _coordinate_indexer(shape, chunk_shape, list(np.nonzero(val)), pre, post)
            if basic:
                raise IndexError(
                    f"a {val.ndim}-d boolean index must cover every dimension of the "
                    f"{ndim}-d array on its own (a[mask]); use .vindex for other coordinate "
                    f"selections"
                )
            raise IndexError(
                f"orthogonal (oindex) selections take 1-d integer or boolean arrays, got a "
                f"{val.ndim}-d array; use .vindex for coordinate selections"
            )

    items = _expand(items, ndim)
    # NumPy: with an array index present, integer indices join it as advanced indices; if
    # they are not adjacent in the index tuple, the advanced result axes go first.
    adv_pos = [i for i, (kind, _) in enumerate(items) if kind in (_ARR, _BOOL, _INT)]
    move_front = basic and bool(advanced) and adv_pos[-1] - adv_pos[0] + 1 != len(adv_pos)

    dims: list[tuple[str, Any]] = []
    inter: list[int] = []
    move: tuple[int, ...] = ()
    for kind, val in items:
        d = len(dims)
        if kind == _NEW:
            inter.append(1)
        elif kind == _INT:
            dims.append((_INT, _check_int(val, d, shape[d])))
        elif kind == _SLICE:
            start, stop, step = slice_indices(val, shape[d])
            length = len(range(start, stop, step))
            dims.append((_SLICE, (start, step, length)))
            inter.append(length)
        elif kind == _ARR:
            dims.append((_ARR, _check_array(val, d, shape[d])))
            if move_front:
                move = tuple(range(len(inter), len(inter) + val.ndim))
            inter.extend(val.shape)
        elif kind == _BOOL:
            _check_bool(val, d, shape)
            idx = np.flatnonzero(val).astype(np.int64, copy=False)
            dims.append((_ARR, idx))
            if move_front:
                move = (len(inter),)
            inter.append(idx.size)
    return OrthogonalIndexer(shape, chunk_shape, dims, tuple(inter), move, scalar_index)


def _plain_box(selection: Any, shape: tuple[int, ...]) -> tuple[list[tuple[str, Any]], tuple[int, ...]] | None:
    """The per-dim specs of a tuple of one plain slice per dim (``a[0:64, 128:256]``),
    or None for any other selection.

    The common selection of data loaders and tiled reads, so it skips the general
    parser, whose checks cost more than the rest of a small read's planning (the
    results are identical: bounds are ints or None, steps are nonzero).
    """
    # (A 0-d array's ``a[()]`` is NumPy's "full integer index", which the parser marks.)
    if type(selection) is not tuple or len(selection) != len(shape) or not shape:
        return None
    dims: list[tuple[str, Any]] = []
    inter: list[int] = []
    for item, n in zip(selection, shape, strict=True):
        if type(item) is not slice:
            return None
        start, stop, step = item.start, item.stop, item.step
        if step is None and type(start) is int and type(stop) is int and 0 <= start <= stop <= n:
            # (In bounds, step 1: what slice.indices would give back, without the call.)
            dims.append((_SLICE, (start, 1, stop - start)))
            inter.append(stop - start)
            continue
        if not (
            (start is None or type(start) is int)
            and (stop is None or type(stop) is int)
            and (step is None or (type(step) is int and step != 0))
        ):
            return None
        first, stop, step = slice_indices(item, n)
        length = len(range(first, stop, step))
        dims.append((_SLICE, (first, step, length)))
        inter.append(length)
    return dims, tuple(inter)


def block_selection_to_slices(
    selection: Any, shape: Sequence[int], block_shape: Sequence[int]
) -> tuple[slice, ...]:
    """The element slices that select whole blocks (chunks of ``block_shape``).

    zarr-python's block indexing: each dimension takes a block number (negative counts
    from the end) or a slice of block numbers with step 1, and ``Ellipsis`` stands for
    the dimensions not named. An integer keeps its dimension (one block of it), unlike
    NumPy's integer indexing; the blocks at the array's edge are as short as the array.

    Raises:
        IndexError: A float, array, ``None`` or stepped slice, too many indices, or a
            block number out of range (the message names the dimension and block count).
    """
    items = list(selection) if isinstance(selection, tuple) else [selection]
    # (by identity: ``Ellipsis in items`` compares with ==, which an array answers elementwise)
    ellipses = [i for i, item in enumerate(items) if item is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        at = ellipses[0]
        items[at : at + 1] = [slice(None)] * max(0, len(shape) - len(items) + 1)
    if len(items) > len(shape):
        raise IndexError(
            f"too many indices for block selection: the array is {len(shape)}-dimensional, "
            f"but {len(items)} were indexed"
        )
    items += [slice(None)] * (len(shape) - len(items))
    slices = []
    for dim, (item, n, block) in enumerate(zip(items, shape, block_shape, strict=True)):
        n_blocks = -(-n // block)
        if isinstance(item, slice):
            if item.step not in (None, 1):
                raise IndexError(
                    f"block selection slices take step 1, got step {item.step!r} for dimension {dim}"
                )
            first, stop, _ = item.indices(n_blocks)
            stop = max(first, stop)
        elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            first = int(item) + n_blocks if item < 0 else int(item)
            if not 0 <= first < n_blocks:
                raise IndexError(
                    f"block index {int(item)} is out of bounds for dimension {dim} "
                    f"with {n_blocks} blocks"
                )
            stop = first + 1
        else:
            raise IndexError(
                f"block selections take integers and slices with step 1, got "
                f"{type(item).__name__} for dimension {dim}"
            )
        slices.append(slice(min(first * block, n), min(stop * block, n)))
    return tuple(slices)


def _check_geometry(shape: Sequence[int], chunk_shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``shape`` and ``chunk_shape`` as tuples of ints, checked against each other."""
    shape_t = tuple(operator.index(s) for s in shape)
    chunks_t = tuple(operator.index(c) for c in chunk_shape)
    if len(shape_t) != len(chunks_t):
        raise ValueError(f"chunk_shape {chunks_t} does not match the array shape {shape_t}")
    if any(c < 1 for c in chunks_t) or any(s < 0 for s in shape_t):
        raise ValueError(f"invalid shape {shape_t} / chunk_shape {chunks_t}")
    return shape_t, chunks_t


def make_indexer(
    selection: Any,
    shape: Sequence[int],
    chunk_shape: Sequence[int],
    mode: SelectionMode = "basic",
) -> Indexer:
    """Build the indexer for ``selection`` on a regular-chunked array.

    Args:
        selection: The selection, as passed to ``__getitem__`` (``"basic"``), ``.oindex``
            (``"orthogonal"``) or ``.vindex`` (``"vectorized"``).
        shape: Array shape (may be ``()`` and may contain zeros).
        chunk_shape: Chunk shape, same length as ``shape``, every entry >= 1.
        mode: Which selection grammar to apply.

    Returns:
        An :class:`OrthogonalIndexer` (basic and orthogonal selections) or a
        :class:`VectorizedIndexer` (coordinate selections, including ``a[mask]``).

    Raises:
        IndexError: Out-of-bounds or unsupported indices, too many indices, bad index types,
            boolean shape mismatch, several arrays in a basic selection.
        ValueError: A zero slice step.
        TypeError: Non-integer slice bounds.
    """
    shape_t, chunks_t = _check_geometry(shape, chunk_shape)
    return indexer_for_geometry(selection, shape_t, chunks_t, mode)


def indexer_for_geometry(
    selection: Any, shape: tuple[int, ...], chunk_shape: tuple[int, ...], mode: SelectionMode = "basic"
) -> Indexer:
    """:func:`make_indexer` for a ``shape`` and ``chunk_shape`` known to be valid tuples
    of ints (an array's own): small reads skip checking them on every call."""
    if mode == "vectorized":
        return _vectorized(selection, shape, chunk_shape)
    if mode in ("basic", "orthogonal"):
        boxed = _plain_box(selection, shape)
        if boxed is not None:
            dims, inter = boxed
            return OrthogonalIndexer(shape, chunk_shape, dims, inter)
    if mode == "basic":
        return _orthogonal(selection, shape, chunk_shape, basic=True)
    if mode == "orthogonal":
        return _orthogonal(selection, shape, chunk_shape, basic=False)
    raise ValueError(f"unknown selection mode {mode!r}")
