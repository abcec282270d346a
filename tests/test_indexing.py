"""Tests for gpuzarr.indexing, with NumPy as the oracle.

The helpers below play the part of the pipeline: they cut an array into padded chunks, run
an indexer's projections against them and compare the outcome with NumPy indexing and
assignment on the whole array.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuzarr.indexing as indexing_module
from gpuzarr.indexing import (
    ChunkProjection,
    Indexer,
    OrthogonalIndexer,
    VectorizedIndexer,
    is_basic,
    make_indexer,
    ortho_get,
    ortho_set,
)

GARBAGE = -7  # fills the padding of edge chunks; never a valid value in the test data

SETTINGS = settings(
    max_examples=int(os.environ.get("GPUZARR_HYPOTHESIS_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


# --------------------------------------------------------------------------------------------
# Pipeline simulation
# --------------------------------------------------------------------------------------------


def grid_shape(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-(-n // c) for n, c in zip(shape, chunks, strict=True))


def chunk_region(coords: tuple[int, ...], shape: tuple[int, ...], chunks: tuple[int, ...]):
    """Slices of the array covered by a chunk, and the in-bounds part of the chunk."""
    arr_sl = tuple(
        slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(coords, chunks, shape, strict=True)
    )
    local_sl = tuple(slice(0, s.stop - s.start) for s in arr_sl)
    return arr_sl, local_sl


def split_chunks(data: np.ndarray, chunks: tuple[int, ...]) -> dict[tuple[int, ...], np.ndarray]:
    """Padded chunks of ``data`` (edge chunks filled with garbage beyond the shape)."""
    out = {}
    for coords in itertools.product(*(range(g) for g in grid_shape(data.shape, chunks))):
        arr_sl, local_sl = chunk_region(coords, data.shape, chunks)
        chunk = np.full(chunks, GARBAGE, dtype=data.dtype)
        chunk[local_sl] = data[arr_sl]
        out[coords] = chunk
    return out


def assemble(chunk_map: dict, shape: tuple[int, ...], chunks: tuple[int, ...]) -> np.ndarray:
    out = np.full(shape, 12345, dtype=np.int64)
    for coords, chunk in chunk_map.items():
        arr_sl, local_sl = chunk_region(coords, shape, chunks)
        out[arr_sl] = chunk[local_sl]
    return out


def check_contract(ix: Indexer, shape: tuple[int, ...], chunks: tuple[int, ...]) -> list:
    """Check structural promises of every projection; returns the projections."""
    projs = list(ix.chunk_projections())
    coords = [p.chunk_coords for p in projs]
    assert coords == sorted(coords), "projections must come in C order of chunk coords"
    assert len(set(coords)) == len(coords), "each chunk must appear once"
    grid = grid_shape(shape, chunks)
    for p in projs:
        assert isinstance(p, ChunkProjection)
        assert len(p.chunk_coords) == len(shape)
        assert all(
            isinstance(c, int) and 0 <= c < g for c, g in zip(p.chunk_coords, grid, strict=True)
        )
        assert len(p.chunk_selection) == len(shape)
        arr_sl, _ = chunk_region(p.chunk_coords, shape, chunks)
        extents = [s.stop - s.start for s in arr_sl]
        if ix.mode == "orthogonal":
            assert isinstance(p.out_selection, tuple)
            assert len(p.out_selection) == len(shape)
            for s, ext in zip(p.chunk_selection, extents, strict=True):
                if isinstance(s, slice):
                    assert type(s.start) is int and type(s.stop) is int
                    assert type(s.step) is int and s.step >= 1
                    assert 0 <= s.start < s.stop <= ext
                else:
                    assert s.dtype == np.int64 and s.ndim == 1 and s.size > 0
                    assert s.min() >= 0 and s.max() < ext
            for s in p.out_selection:
                assert isinstance(s, slice) or (s.dtype == np.int64 and s.ndim == 1)
        else:
            assert ix.mode == "vectorized"
            assert isinstance(p.out_selection, np.ndarray)
            assert p.out_selection.dtype == np.int64 and p.out_selection.ndim == 1
            n = p.out_selection.size
            assert n > 0
            for s, ext in zip(p.chunk_selection, extents, strict=True):
                assert s.dtype == np.int64 and s.shape == (n,)
                assert s.min() >= 0 and s.max() < ext
    return projs


def simulate_read(data: np.ndarray, chunks: tuple[int, ...], ix: Indexer) -> np.ndarray:
    """Read ``data[selection]`` through the projections, checking each slot is written once."""
    chunk_map = split_chunks(data, chunks)
    projs = check_contract(ix, data.shape, chunks)
    buf = np.full(ix.buffer_shape, 999999, dtype=data.dtype)
    hits = np.zeros(ix.buffer_shape, dtype=np.int64)
    for p in projs:
        chunk = chunk_map[p.chunk_coords]
        if ix.mode == "orthogonal":
            vals = ortho_get(chunk, p.chunk_selection)
            ortho_set(buf, p.out_selection, vals)
            ortho_set(hits, p.out_selection, ortho_get(hits, p.out_selection) + 1)
        else:
            flat, hflat = buf.reshape(-1), hits.reshape(-1)
            flat[p.out_selection] = chunk[p.chunk_selection]
            hflat[p.out_selection] += 1
    assert np.all(hits == 1), "every buffer element must be written exactly once"
    res = ix.finalize(buf)
    assert res.shape == ix.out_shape
    return res


def simulate_write(
    data: np.ndarray, chunks: tuple[int, ...], ix: Indexer, value: Any
) -> np.ndarray:
    """Apply ``data[selection] = value`` chunk by chunk; returns the new array."""
    chunk_map = split_chunks(data, chunks)
    vb = ix.prepare_value(value)
    assert vb.shape == ix.buffer_shape
    for p in check_contract(ix, data.shape, chunks):
        chunk = chunk_map[p.chunk_coords]
        if ix.mode == "orthogonal":
            ortho_set(chunk, p.chunk_selection, ortho_get(vb, p.out_selection))
        else:
            chunk[p.chunk_selection] = vb.reshape(-1)[p.out_selection]
    return assemble(chunk_map, data.shape, chunks)


def check_covers(ix: Indexer, shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
    """covers_chunk must be exactly 'every in-bounds element selected exactly once'."""
    for p in ix.chunk_projections():
        cnt = np.zeros(chunks, dtype=np.int64)
        sel = p.chunk_selection
        if not sel:
            cnt[...] += 1
        elif ix.mode == "vectorized":
            np.add.at(cnt, sel, 1)
        else:
            parts = [
                np.arange(*s.indices(c)) if isinstance(s, slice) else s
                for s, c in zip(sel, chunks, strict=True)
            ]
            np.add.at(cnt, np.ix_(*parts), 1)
        _, local_sl = chunk_region(p.chunk_coords, shape, chunks)
        exact = bool(np.all(cnt[local_sl] == 1))
        assert cnt.sum() == cnt[local_sl].sum(), "selected an out-of-bounds padding element"
        assert p.covers_chunk == exact, (p, cnt)


def make_data(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(1, int(np.prod(shape)) + 1, dtype=np.int64).reshape(shape)


def make_value(out_shape: tuple[int, ...], how: str) -> Any:
    """A value to assign, broadcastable to out_shape in various NumPy-legal ways."""
    if how == "scalar":
        return 424242
    full = -(np.arange(int(np.prod(out_shape)), dtype=np.int64) + 1).reshape(out_shape)
    if how == "exact":
        return full
    if how == "leading_ones":
        return full.reshape((1, 1, *out_shape))
    if how == "broadcast" and out_shape:
        # Keep only the trailing axis; NumPy broadcasts it over the rest.
        return -np.arange(1, out_shape[-1] + 1, dtype=np.int64)
    # An empty nested list loses its shape (NumPy reads [] as shape (0,)): keep arrays there.
    return full.tolist() if full.size else full


# --------------------------------------------------------------------------------------------
# Oracles
# --------------------------------------------------------------------------------------------


def expand_ellipsis(sel: tuple, ndim: int) -> tuple:
    consumed = sum(s is not Ellipsis and s is not None for s in sel)
    if Ellipsis in [s for s in sel if not isinstance(s, (np.ndarray, list))]:
        i = next(k for k, s in enumerate(sel) if not isinstance(s, (np.ndarray, list)) and s is ...)
        sel = sel[:i] + (slice(None),) * (ndim - consumed) + sel[i + 1 :]
    return sel + (slice(None),) * (ndim - len(sel))


def oindex_parts(data_shape: tuple[int, ...], sel: Any) -> tuple[list, list[int]]:
    sel = sel if isinstance(sel, tuple) else (sel,)
    sel = expand_ellipsis(sel, len(data_shape))
    parts, drop = [], []
    for d, (s, n) in enumerate(zip(sel, data_shape, strict=True)):
        if isinstance(s, slice):
            parts.append(np.arange(*s.indices(n)))
        elif isinstance(s, (int, np.integer)):
            parts.append(np.array([s]))
            drop.append(d)
        else:
            a = np.asarray(s)
            parts.append(np.flatnonzero(a) if a.dtype == bool else a.astype(np.intp))
    return parts, drop


def oindex_get(data: np.ndarray, sel: Any) -> np.ndarray:
    if data.ndim == 0:
        return data[()]
    parts, drop = oindex_parts(data.shape, sel)
    res = data[np.ix_(*parts)]
    return res.reshape([n for d, n in enumerate(res.shape) if d not in drop])


def oindex_set(data: np.ndarray, sel: Any, value: Any) -> None:
    if data.ndim == 0:
        data[...] = value
        return
    parts, drop = oindex_parts(data.shape, sel)
    full_shape = tuple(p.size for p in parts)
    out_shape = tuple(n for d, n in enumerate(full_shape) if d not in drop)
    v = np.asarray(value)
    while v.ndim > len(out_shape) and v.shape[0] == 1:
        v = v[0]
    data[np.ix_(*parts)] = np.broadcast_to(v, out_shape).reshape(full_shape)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


@st.composite
def shapes_and_chunks(draw, max_ndim: int = 4, min_ndim: int = 0):
    ndim = draw(st.integers(min_ndim, max_ndim))
    hi = 12 if ndim <= 3 else 7  # keep 4-d arrays small so the suite stays fast
    shape = tuple(draw(st.integers(0, hi)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    return shape, chunks


def slice_strategy():
    bound = st.none() | st.integers(-15, 15)
    step = st.none() | st.sampled_from([-4, -3, -2, -1, 1, 2, 3, 4])
    return st.builds(slice, bound, bound, step)


@st.composite
def int_index(draw, n: int):
    return draw(st.integers(-n, n - 1))


@st.composite
def int_array(draw, n: int, max_ndim: int = 2, as_list: bool | None = None):
    arr_ndim = draw(st.integers(1, max_ndim))
    arr_shape = [draw(st.integers(0, 5)) for _ in range(arr_ndim)]
    if n == 0:
        arr_shape[0] = 0
    size = int(np.prod(arr_shape))
    vals = draw(st.lists(st.integers(-n, n - 1), min_size=size, max_size=size)) if n else []
    arr = np.array(vals, dtype=np.int64).reshape(arr_shape)
    if as_list is None:
        as_list = draw(st.booleans())
    return arr.tolist() if as_list and size else arr


@st.composite
def bool_array(draw, n: int):
    return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)


@st.composite
def with_ellipsis_and_trailing(draw, entries: list, protected: set[int]) -> list:
    """Optionally collapse a run of full slices into Ellipsis or drop trailing full slices."""
    ndim = len(entries)
    choice = draw(st.sampled_from(["none", "ellipsis", "trailing"]))
    if choice == "ellipsis":
        i = draw(st.integers(0, ndim))
        j = draw(st.integers(i, ndim))
        if not any(k in protected for k in range(i, j)):
            return [*entries[:i], Ellipsis, *entries[j:]]
    elif choice == "trailing" and ndim:
        k = draw(st.integers(0, ndim))
        if not any(x in protected for x in range(k, ndim)):
            return entries[:k]
    return entries


@st.composite
def basic_selection(draw, shape: tuple[int, ...]):
    entries: list[Any] = []
    for n in shape:
        kinds = ["int", "slice", "full"] if n > 0 else ["slice", "full"]
        kind = draw(st.sampled_from(kinds))
        if kind == "int":
            entries.append(draw(int_index(n)))
        elif kind == "slice":
            entries.append(draw(slice_strategy()))
        else:
            entries.append(slice(None))
    protected: set[int] = set()
    adv = draw(st.sampled_from([None, None, "int_array", "bool"]))
    if adv and shape:
        d = draw(st.integers(0, len(shape) - 1))
        protected.add(d)
        if adv == "int_array":
            entries[d] = draw(int_array(shape[d]))
        else:
            entries[d] = draw(bool_array(shape[d]))
    # Entries that are not full slices cannot be dropped into an Ellipsis.
    protected |= {
        k for k, e in enumerate(entries) if not (isinstance(e, slice) and e == slice(None))
    }
    entries = draw(with_ellipsis_and_trailing(entries, protected))
    for _ in range(draw(st.integers(0, 2))):
        entries.insert(draw(st.integers(0, len(entries))), None)
    if len(entries) == 1 and draw(st.booleans()):
        return entries[0]
    return tuple(entries)


@st.composite
def oindex_selection(draw, shape: tuple[int, ...]):
    entries: list[Any] = []
    for n in shape:
        kinds = ["int", "slice", "full", "array", "bool"] if n > 0 else ["slice", "array", "bool"]
        kind = draw(st.sampled_from(kinds))
        if kind == "int":
            entries.append(draw(int_index(n)))
        elif kind == "slice":
            entries.append(draw(slice_strategy()))
        elif kind == "full":
            entries.append(slice(None))
        elif kind == "array":
            entries.append(draw(int_array(n, max_ndim=1)))
        else:
            entries.append(draw(bool_array(n)))
    protected = {
        k for k, e in enumerate(entries) if not (isinstance(e, slice) and e == slice(None))
    }
    entries = draw(with_ellipsis_and_trailing(entries, protected))
    if len(entries) == 1 and draw(st.booleans()):
        return entries[0]
    return tuple(entries)


@st.composite
def vindex_selection(draw, shape: tuple[int, ...]):
    if draw(st.integers(0, 3)) == 0:
        return draw(full_mask(shape))
    bshape = [draw(st.integers(0, 4)) for _ in range(draw(st.integers(0, 2)))]
    if 0 in shape and 0 not in bshape:
        bshape = [0, *bshape]
    arrays: list[Any] = []
    for n in shape:
        if n > 0 and not bshape and draw(st.booleans()):
            arrays.append(draw(int_index(n)))  # a plain int broadcasts as a 0-d array
            continue
        # Each array may use 1 (or drop leading axes) wherever the broadcast shape allows.
        ashape = list(bshape)
        if n > 0:
            ashape = [1 if draw(st.booleans()) else s for s in ashape]
            ashape = ashape[draw(st.integers(0, len(ashape))) :]
        size = int(np.prod(ashape))
        vals = draw(st.lists(st.integers(-n, n - 1), min_size=size, max_size=size)) if n else []
        arr = np.array(vals, dtype=np.int64).reshape(ashape)
        arrays.append(arr.tolist() if draw(st.booleans()) and arr.size else arr)
    return tuple(arrays)


@st.composite
def full_mask(draw, shape: tuple[int, ...]):
    size = int(np.prod(shape))
    density = draw(st.sampled_from(["random", "all", "none"]))
    if density == "random":
        vals = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    else:
        vals = [density == "all"] * size
    return np.array(vals, dtype=bool).reshape(shape)


VALUE_KINDS = st.sampled_from(["scalar", "exact", "leading_ones", "broadcast", "list"])


# --------------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------------


def int_equivalent(sel: Any) -> Any:
    """Replace boolean arrays by their nonzero() integer arrays (an equivalent NumPy index).

    Used for assignment oracles: NumPy's fast path for ``a[mask] = v`` refuses values with
    more than one dimension even where broadcasting is well defined; the integer form has
    the general assignment semantics the indexer implements.
    """
    items = sel if isinstance(sel, tuple) else (sel,)
    out: list[Any] = []
    for s in items:
        if isinstance(s, np.ndarray) and s.dtype == bool:
            out.extend(np.nonzero(s))
        else:
            out.append(s)
    return tuple(out)


def check_write(arr: np.ndarray, chunks: tuple, ix: Indexer, sel: Any, value: Any) -> None:
    """Compare chunked assignment with NumPy's; if NumPy refuses the value, so must we."""
    exp = arr.copy()
    try:
        exp[sel] = value
    except (ValueError, TypeError) as err:
        np_err: type[Exception] = type(err)
    else:
        np.testing.assert_array_equal(simulate_write(arr, chunks, ix, value), exp)
        return
    if np_err is TypeError:
        # NumPy's boolean-mask fast path refuses multi-dim values that broadcast fine; the
        # indexer follows general assignment semantics there, checked via integer arrays.
        exp = arr.copy()
        exp[int_equivalent(sel)] = value
        np.testing.assert_array_equal(simulate_write(arr, chunks, ix, value), exp)
        return
    with pytest.raises(np_err):
        ix.prepare_value(value)


def _same(result: np.ndarray, expected: Any) -> None:
    expected = np.asarray(expected)
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


@pytest.fixture(params=["scalar", "vectorised"])
def slice_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through both implementations of slice projections."""
    if request.param == "vectorised":
        monkeypatch.setattr(indexing_module, "_FEW_CHUNKS", 0)
    return str(request.param)


@SETTINGS
@given(st.data())
def test_basic_read_write(slice_path: str, data) -> None:
    shape, chunks = data.draw(shapes_and_chunks())
    sel = data.draw(basic_selection(shape))
    arr = make_data(shape)
    ix = make_indexer(sel, shape, chunks, "basic")
    assert isinstance(ix, OrthogonalIndexer)
    assert ix.mode == "orthogonal"
    expected = arr[sel]
    assert ix.out_shape == np.shape(expected)
    _same(simulate_read(arr, chunks, ix), expected)
    check_covers(ix, shape, chunks)

    value = make_value(ix.out_shape, data.draw(VALUE_KINDS))
    check_write(arr, chunks, ix, sel, value)


@SETTINGS
@given(st.data())
def test_basic_full_mask_is_coordinate_selection(data) -> None:
    shape, chunks = data.draw(shapes_and_chunks(min_ndim=2))
    mask = data.draw(full_mask(shape))
    n_before, n_after = data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1))
    sel = (None,) * n_before + (mask,) + (None,) * n_after
    sel = sel[0] if len(sel) == 1 else sel
    arr = make_data(shape)
    ix = make_indexer(sel, shape, chunks)
    assert ix.mode == "vectorized"
    expected = arr[sel]
    assert ix.out_shape == expected.shape
    _same(simulate_read(arr, chunks, ix), expected)
    check_covers(ix, shape, chunks)
    value = make_value(ix.out_shape, data.draw(VALUE_KINDS))
    check_write(arr, chunks, ix, sel, value)


@SETTINGS
@given(st.data())
def test_orthogonal_read_write(data) -> None:
    shape, chunks = data.draw(shapes_and_chunks())
    sel = data.draw(oindex_selection(shape))
    arr = make_data(shape)
    ix = make_indexer(sel, shape, chunks, "orthogonal")
    assert ix.mode == "orthogonal"
    expected = oindex_get(arr, sel)
    assert ix.out_shape == np.shape(expected)
    _same(simulate_read(arr, chunks, ix), expected)
    check_covers(ix, shape, chunks)

    value = make_value(ix.out_shape, data.draw(VALUE_KINDS))
    exp = arr.copy()
    oindex_set(exp, sel, value)
    np.testing.assert_array_equal(simulate_write(arr, chunks, ix, value), exp)


@SETTINGS
@given(st.data())
def test_vectorized_read_write(data) -> None:
    shape, chunks = data.draw(shapes_and_chunks(min_ndim=1))
    sel = data.draw(vindex_selection(shape))
    arr = make_data(shape)
    ix = make_indexer(sel, shape, chunks, "vectorized")
    assert isinstance(ix, VectorizedIndexer)
    np_sel = (
        sel
        if isinstance(sel, np.ndarray)
        else tuple(np.asarray(s, dtype=np.int64) for s in sel)  # [] must stay an int index
    )
    expected = arr[np_sel]
    assert ix.out_shape == expected.shape
    assert ix.buffer_shape == (expected.size,)
    _same(simulate_read(arr, chunks, ix), expected)
    check_covers(ix, shape, chunks)

    value = make_value(ix.out_shape, data.draw(VALUE_KINDS))
    check_write(arr, chunks, ix, np_sel, value)


@SETTINGS
@given(st.data())
def test_buffer_view_and_finalize_views(data) -> None:
    shape, chunks = data.draw(shapes_and_chunks())
    mode = data.draw(st.sampled_from(["basic", "orthogonal"]))
    strat = basic_selection(shape) if mode == "basic" else oindex_selection(shape)
    ix = make_indexer(data.draw(strat), shape, chunks, mode)
    out = np.empty(ix.out_shape, dtype=np.int64)
    view = ix.buffer_view(out)
    assert view is not None and view.shape == ix.buffer_shape
    if out.size:
        assert np.shares_memory(view, out)
        view[...] = 5
        assert np.all(out == 5)
        buf = np.empty(ix.buffer_shape)
        assert np.shares_memory(ix.finalize(buf), buf)


# --------------------------------------------------------------------------------------------
# Example-based tests
# --------------------------------------------------------------------------------------------


def test_public_names() -> None:
    import gpuzarr.indexing as m

    for name in m.__all__:
        assert hasattr(m, name)
    assert {"ChunkProjection", "Indexer", "make_indexer", "ortho_get", "ortho_set"} <= set(
        m.__all__
    )


def test_numpy_quirk_advanced_indices_separated_by_slice() -> None:
    # NumPy moves the advanced axes to the front when ints and an array are not adjacent.
    shape, chunks = (3, 4, 5), (2, 3, 2)
    arr = make_data(shape)
    for sel in [
        (0, slice(None), [0, 1]),
        ([0, 2], slice(None), 1),
        (slice(None), 0, Ellipsis, [[1, 2], [3, 4]]),
        (0, None, slice(None), [1, 2]),
        (slice(None), 0, [1, 3]),
        (1, np.array([True, False, True, True]), slice(1, 4)),
    ]:
        ix = make_indexer(sel, shape, chunks)
        assert ix.out_shape == arr[sel].shape, sel
        _same(simulate_read(arr, chunks, ix), arr[sel])
        out = np.empty(ix.out_shape, dtype=np.int64)
        view = ix.buffer_view(out)
        assert view is not None and np.shares_memory(view, out)
        exp = arr.copy()
        exp[sel] = 7 + np.arange(int(np.prod(ix.out_shape))).reshape(ix.out_shape)
        got = simulate_write(arr, chunks, ix, exp[sel])
        np.testing.assert_array_equal(got, exp)


def test_zero_d_array() -> None:
    arr = np.array(42, dtype=np.int64)
    for sel in [(), Ellipsis, None, (None, Ellipsis, None)]:
        for mode in ["basic", "orthogonal"]:
            ix = make_indexer(sel, (), (), mode)
            assert ix.out_shape == np.shape(arr[sel])
            _same(simulate_read(arr, (), ix), arr[sel])
            projs = list(ix.chunk_projections())
            assert len(projs) == 1 and projs[0].chunk_coords == () and projs[0].covers_chunk
    ix = make_indexer((), (), (), "vectorized")
    _same(simulate_read(arr, (), ix), arr[()])
    np.testing.assert_array_equal(simulate_write(arr, (), make_indexer((), (), ()), 3), 3)
    with pytest.raises(IndexError):
        make_indexer(0, (), ())


@pytest.mark.parametrize("mode", ["basic", "orthogonal"])
def test_huge_slice_steps_select_like_numpy(mode: str) -> None:
    # (Python ints beyond int64: NumPy takes at most one element; they once overflowed.)
    arr = np.arange(70).reshape(10, 7)
    for sel in (np.s_[::2**70], np.s_[::-(2**70), 1:], np.s_[2**70:], np.s_[-(2**70) : 2**70 : 3, :: 2**65]):
        ix = make_indexer(sel, arr.shape, (3, 2), mode)
        _same(simulate_read(arr, (3, 2), ix), arr[sel])


def test_zero_length_dims_select_nothing() -> None:
    ix = make_indexer((slice(None), slice(1, 3)), (0, 5), (2, 2))
    assert ix.out_shape == (0, 2)
    assert list(ix.chunk_projections()) == []
    ix = make_indexer((slice(0, 0), slice(None)), (4, 5), (2, 2))
    assert ix.out_shape == (0, 5) and list(ix.chunk_projections()) == []
    ix = make_indexer(([], [1, 2]), (4, 5), (2, 2), "orthogonal")
    assert ix.out_shape == (0, 2) and list(ix.chunk_projections()) == []
    ix = make_indexer((np.zeros(0, np.int64), np.zeros(0, np.int64)), (4, 5), (2, 2), "vectorized")
    assert ix.out_shape == (0,) and list(ix.chunk_projections()) == []


def test_negative_step_uses_positive_chunk_slices() -> None:
    shape, chunks = (1000,), (7,)
    arr = make_data(shape)
    sel = slice(None, None, -3)
    ix = make_indexer(sel, shape, chunks)
    for p in ix.chunk_projections():
        (cs,), (os_,) = p.chunk_selection, p.out_selection
        assert isinstance(cs, slice) and cs.step == 3
        assert isinstance(os_, slice) and os_.step == -1
    _same(simulate_read(arr, chunks, ix), arr[sel])


def test_sorted_and_reversed_arrays_become_slices() -> None:
    shape, chunks = (20,), (5,)
    ix = make_indexer(np.arange(20), shape, chunks)
    projs = list(ix.chunk_projections())
    assert all(isinstance(p.chunk_selection[0], slice) for p in projs)
    assert all(isinstance(p.out_selection[0], slice) and p.covers_chunk for p in projs)
    ix = make_indexer(np.arange(19, -1, -1), shape, chunks)
    projs = list(ix.chunk_projections())
    assert all(p.covers_chunk for p in projs)
    assert all(p.out_selection[0].step == -1 for p in projs)
    arr = make_data(shape)
    _same(simulate_read(arr, chunks, ix), arr[::-1])


def test_covers_chunk_examples() -> None:
    shape, chunks = (10, 10), (4, 4)
    ix = make_indexer((slice(None), slice(None)), shape, chunks)
    assert all(p.covers_chunk for p in ix.chunk_projections())
    ix = make_indexer((slice(0, 8, 2), slice(None)), shape, chunks)
    assert not any(p.covers_chunk for p in ix.chunk_projections())
    ix = make_indexer(([0, 1, 2, 3, 3], slice(None)), shape, chunks, "orthogonal")
    assert not any(p.covers_chunk for p in ix.chunk_projections())  # duplicate index
    # Edge chunk of extent 2 along dim 0: rows 8, 9 cover it.
    ix = make_indexer((slice(8, 10), slice(8, 10)), shape, chunks)
    (p,) = ix.chunk_projections()
    assert p.chunk_coords == (2, 2) and p.covers_chunk
    ix = make_indexer(np.ones(shape, bool), shape, chunks)
    assert all(p.covers_chunk for p in ix.chunk_projections())


def test_duplicates_read_and_last_write_wins() -> None:
    shape, chunks = (10,), (3,)
    arr = make_data(shape)
    sel = [4, 1, 4, 9, 1, 1]
    ix = make_indexer(sel, shape, chunks)
    _same(simulate_read(arr, chunks, ix), arr[sel])
    exp = arr.copy()
    exp[sel] = [10, 20, 30, 40, 50, 60]
    np.testing.assert_array_equal(simulate_write(arr, chunks, ix, [10, 20, 30, 40, 50, 60]), exp)
    ix = make_indexer((sel,), shape, chunks, "vectorized")
    np.testing.assert_array_equal(simulate_write(arr, chunks, ix, [10, 20, 30, 40, 50, 60]), exp)


def test_huge_grid_vectorized_path() -> None:
    # The chunk-id key would overflow int64 here, so the lexsort path is taken.
    shape, chunks = (2**40, 2**40), (2, 2)
    pts = (np.array([5, 4, 2**40 - 1, 4, 5, 4]), np.array([7, 6, 0, 7, 6, 6]))
    ix = make_indexer(pts, shape, chunks, "vectorized")
    projs = list(ix.chunk_projections())
    assert [p.chunk_coords for p in projs] == [(2, 3), (2**39 - 1, 0)]
    # (4,6) (5,7) (4,7) (5,6) fill chunk (2, 3), but (4,6) comes twice: not an exact cover.
    assert not projs[0].covers_chunk
    assert sorted(projs[0].out_selection.tolist()) == [0, 1, 3, 4, 5]
    assert projs[1].out_selection.tolist() == [2] and not projs[1].covers_chunk
    ix = make_indexer((pts[0][:5], pts[1][:5]), shape, chunks, "vectorized")
    assert [p.covers_chunk for p in ix.chunk_projections()] == [True, False]


def test_orthogonal_large_array_is_fast() -> None:
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 10**7, size=10**6)
    t0 = time.perf_counter()
    ix = make_indexer((idx,), (10**7,), (1000,), "orthogonal")
    n = sum(1 for _ in ix.chunk_projections())
    assert n == 10**4
    ix = make_indexer((idx, idx[::-1]), (10**7, 10**7), (10**6, 10**6), "vectorized")
    assert sum(1 for _ in ix.chunk_projections()) <= 100
    assert time.perf_counter() - t0 < 10


def test_buffer_view_none_when_impossible() -> None:
    ix = make_indexer([[0, 1], [2, 3]], (10,), (3,))
    assert ix.buffer_shape == (4,)
    out = np.empty((2, 4), dtype=np.int64)[:, :2]
    assert ix.buffer_view(out) is None
    out = np.empty((2, 2), dtype=np.int64)
    view = ix.buffer_view(out)
    assert view is not None and np.shares_memory(view, out)
    ixv = make_indexer(([[0, 1], [2, 3]],), (10,), (3,), "vectorized")
    assert ixv.buffer_view(np.empty((2, 4))[:, :2]) is None
    assert np.shares_memory(ixv.buffer_view(out), out)


def test_prepare_value() -> None:
    ix = make_indexer((slice(0, 3), 1), (5, 5), (2, 2))
    assert ix.buffer_shape == (3, 1) and ix.out_shape == (3,)
    v = np.arange(3)
    pv = ix.prepare_value(v)
    assert pv.shape == (3, 1) and np.shares_memory(pv, v)
    assert ix.prepare_value(5).shape == (3, 1)
    assert ix.prepare_value([[[1, 2, 3]]]).shape == (3, 1)  # leading ones are dropped
    with pytest.raises(ValueError):
        ix.prepare_value(np.arange(4))
    with pytest.raises(ValueError):
        ix.prepare_value(np.ones((2, 3)))
    with pytest.raises(ValueError):
        make_indexer(([1, 2], [3, 4]), (5, 5), (2, 2), "vectorized").prepare_value([1, 2, 3])


def test_ortho_helpers() -> None:
    a = np.arange(60).reshape(3, 4, 5)
    sel = (np.array([2, 0]), slice(1, 4, 2), np.array([4, 4, 1]))
    exp = a[np.ix_([2, 0], [1, 3], [4, 4, 1])]
    np.testing.assert_array_equal(ortho_get(a, sel), exp)
    np.testing.assert_array_equal(
        ortho_get(a, (slice(0, 2), np.array([3, 1]), slice(None))), a[0:2][:, [3, 1]]
    )
    b = np.zeros_like(a)
    ortho_set(b, sel, exp)
    np.testing.assert_array_equal(
        b[np.ix_([2, 0], [1, 3], [4, 1])], a[np.ix_([2, 0], [1, 3], [4, 1])]
    )
    assert ortho_get(np.array(3), ()).shape == ()
    assert isinstance(ortho_get(np.array(3), ()), np.ndarray)
    assert is_basic((slice(None), slice(1, 2)))
    assert is_basic(())
    assert not is_basic((slice(None), np.array([1])))


def test_projection_is_frozen() -> None:
    (p,) = make_indexer(0, (3,), (5,)).chunk_projections()
    with pytest.raises(AttributeError):
        p.covers_chunk = False  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

NUMPY_ERROR_CASES = [
    ((5,), 5),
    ((5,), -6),
    ((5,), [0, 5]),
    ((5,), np.array([-6])),
    ((5, 4), (1, 2, 3)),
    ((5,), (0, Ellipsis, Ellipsis)),
    ((), 0),
    ((5,), slice(None, None, 0)),
    ((5,), 1.0),
    ((5,), "a"),
    ((5,), slice(0, 2.5)),
    ((5,), np.array([1.0])),
    ((5,), np.array([])),
    ((5,), [1.5]),
    ((5,), np.array([True, False])),
    ((5, 4), (slice(None), np.ones(3, bool))),
    ((5, 4), np.ones((5, 3), bool)),
    ((5,), 2**70),
    ((3, 4), (1, slice(None), 4)),
]


@pytest.mark.parametrize(("shape", "sel"), NUMPY_ERROR_CASES)
def test_errors_match_numpy(shape: tuple[int, ...], sel: Any) -> None:
    arr = np.zeros(shape)
    with pytest.raises(Exception) as np_err:
        arr[sel]
    with pytest.raises(np_err.type):
        make_indexer(sel, shape, tuple(2 for _ in shape))


@pytest.mark.parametrize(
    ("shape", "sel", "mode", "exc"),
    [
        ((5, 4), ([0, 1], [1, 2]), "basic", IndexError),
        ((5, 4), (np.array([True] * 5), [1, 2]), "basic", IndexError),
        ((5, 4, 3), (np.ones((5, 4), bool), 0), "basic", IndexError),
        ((5, 4, 3), (np.ones((5, 4), bool), slice(None)), "basic", IndexError),
        ((5, 4), True, "basic", IndexError),
        ((5, 4), ([0, 5], slice(None)), "orthogonal", IndexError),
        ((5, 4), ([[0, 1]], slice(None)), "orthogonal", IndexError),
        ((5, 4), (slice(None, None, 0), [1]), "orthogonal", ValueError),
        ((5, 4), ([0, 1], np.ones(3, bool)), "orthogonal", IndexError),
        ((5, 4), ([0, 1], [0, 1], [0]), "orthogonal", IndexError),
        ((5, 4), ([0, 1], [0, 4]), "vectorized", IndexError),
        ((5, 4), ([0, 1], [0, 1, 2]), "vectorized", IndexError),
        ((5, 4), ([0, 1],), "vectorized", IndexError),
        ((5, 4), ([0, 1], slice(None)), "vectorized", IndexError),
        ((5, 4), ([0, 1], [1.0, 2.0]), "vectorized", IndexError),
        ((5, 4), np.ones((5, 3), bool), "vectorized", IndexError),
        ((5, 4), ([0], [0], [0]), "vectorized", IndexError),
    ],
)
def test_errors_other(shape: tuple[int, ...], sel: Any, mode: str, exc: type) -> None:
    with pytest.raises(exc):
        make_indexer(sel, shape, tuple(2 for _ in shape), mode)  # type: ignore[arg-type]


def test_two_advanced_message_mentions_oindex_vindex() -> None:
    with pytest.raises(IndexError, match=r"\.oindex.*\.vindex"):
        make_indexer(([0, 1], [1, 2]), (5, 4), (2, 2))


def test_bad_shapes() -> None:
    with pytest.raises(ValueError):
        make_indexer(0, (5,), (0,))
    with pytest.raises(ValueError):
        make_indexer(0, (5,), (2, 2))
    with pytest.raises(ValueError):
        make_indexer(0, (5,), (2,), "fancy")  # type: ignore[arg-type]


def test_orthogonal_huge_dim_falls_back_to_argsort() -> None:
    # n * len(idx) overflows the packed sort key, so the stable argsort path is taken.
    idx = np.array([5, 3, 5, 2**61, 3, 0])
    ix = make_indexer(idx, (2**62,), (4,))
    got = [
        (p.chunk_coords, np.asarray(p.chunk_selection[0]).tolist(), p.out_selection[0])
        for p in ix.chunk_projections()
    ]
    assert [g[0] for g in got] == [(0,), (1,), (2**59,)]
    assert got[0][1] == [0, 3, 3] and got[0][2].tolist() == [5, 1, 4]
    assert got[1][1] == [1, 1] and got[1][2].tolist() == [0, 2]
    assert got[2][1] == slice(0, 1, 1) and got[2][2].tolist() == [3]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_plain_slice_fast_path_matches_the_parser(data: st.DataObject) -> None:
    """Tuples of plain slices skip the general parser; the indexer must be the same."""
    from gpuzarr.indexing import _orthogonal

    shape = data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=3).map(tuple))
    chunks = tuple(data.draw(st.integers(1, 12)) for _ in shape)
    bound = st.none() | st.integers(-50, 50)
    step = st.none() | st.integers(-7, 7).filter(bool)
    sel = tuple(slice(data.draw(bound), data.draw(bound), data.draw(step)) for _ in shape)
    for basic in (True, False):
        fast = make_indexer(sel, shape, chunks, "basic" if basic else "orthogonal")
        parsed = _orthogonal(sel, shape, chunks, basic=basic)
        assert (fast.buffer_shape, fast.out_shape) == (parsed.buffer_shape, parsed.out_shape)
        assert list(fast.chunk_projections()) == list(parsed.chunk_projections())


def _slice_dim_reference(start: int, step: int, length: int, n: int, chunk: int) -> list[tuple]:
    """Per-dimension projections of a normalised slice, element by element."""
    if length == 0:
        return []
    reverse = step < 0
    lo, st = (start + (length - 1) * step, -step) if reverse else (start, step)
    by_chunk: dict[int, list[int]] = {}
    for j in range(length):  # (j: position in the ascending walk)
        by_chunk.setdefault((lo + j * st) // chunk, []).append(j)
    out = []
    for c, js in sorted(by_chunk.items()):
        j0, jl = js[0], js[-1]
        p0, pl, c0 = lo + j0 * st, lo + jl * st, c * chunk
        covers = p0 == c0 and pl == c0 + min(chunk, n - c0) - 1 and (st == 1 or p0 == pl)
        if reverse:
            stop = length - 2 - jl
            osel = slice(length - 1 - j0, stop if stop >= 0 else None, -1)
        else:
            osel = slice(j0, jl + 1, 1)
        out.append((c, slice(p0 - c0, pl - c0 + 1, st), osel, covers))
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_slice_dim_matches_an_element_by_element_reference(data: st.DataObject) -> None:
    """Every branch of the per-dimension slice projection (one chunk, few chunks, many
    chunks, steps longer than a chunk, reversed) agrees with grouping the elements."""
    from gpuzarr.indexing import _slice_dim, slice_indices

    n = data.draw(st.integers(1, 300))
    chunk = data.draw(st.integers(1, 40))
    item = slice(
        data.draw(st.none() | st.integers(-n, n)),
        data.draw(st.none() | st.integers(-n, n)),
        data.draw(st.none() | st.integers(-60, 60).filter(bool)),
    )
    start, stop, step = slice_indices(item, n)
    length = len(range(start, stop, step))
    assert _slice_dim(start, step, length, n, chunk) == _slice_dim_reference(start, step, length, n, chunk)
