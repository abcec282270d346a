"""Property tests: gpuzarr arrays behave like NumPy arrays.

Random shapes (0-3 dimensions, empty ones included), chunk shapes, data types and
codecs; random data written through gpuzarr (v2 and v3) must read back equal under
random basic, orthogonal and coordinate selections, and random sequences of
assignments applied to a NumPy array and a gpuzarr array must keep them equal.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gpuzarr
from gpuzarr.stores import MemoryStore

EXAMPLES = int(os.environ.get("GPUZARR_HYPOTHESIS_EXAMPLES", "100"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DTYPES = ["int16", "float32", "complex64", "bool", "string"]
CODECS = ["none", "zstd", "blosc", "gzip", "transpose"]

COMPRESSOR_JSON: dict[str, Any] = {
    "zstd": {"name": "zstd", "configuration": {"level": 1, "checksum": False}},
    "blosc": {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}},
    "gzip": {"name": "gzip", "configuration": {"level": 1}},
}


def numpy_dtype(name: str) -> np.dtype:
    return np.dtypes.StringDType() if name == "string" else np.dtype(name)


def values_from_ints(ints: np.ndarray, dtype_name: str) -> np.ndarray:
    """Values of ``dtype_name`` made from small integers (no NaN: equality stays exact)."""
    ints = np.asarray(ints, dtype=np.int64)
    if dtype_name == "string":
        flat = [("" if v % 5 == 0 else f"v{v}" * (1 + v % 3)) for v in ints.reshape(-1).tolist()]
        return np.array(flat, dtype=np.dtypes.StringDType()).reshape(ints.shape)
    # np.asarray: arithmetic on a 0-d array gives a NumPy scalar, and callers need arrays
    if dtype_name == "bool":
        return np.asarray(ints % 2).astype(bool)
    if dtype_name == "complex64":
        return np.asarray(ints + 1j * (ints // 3)).astype(np.complex64)
    if dtype_name == "float32":
        return np.asarray(ints / 4).astype(np.float32)
    return ints.astype(numpy_dtype(dtype_name))


@st.composite
def array_setups(draw: st.DrawFn) -> dict[str, Any]:
    """Shape, chunks, dtype, codec and format of an array to test."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9))
    chunks = tuple(draw(st.integers(1, max(1, s + 1))) for s in shape)
    return {
        "shape": shape,
        "chunks": chunks,
        "dtype": draw(st.sampled_from(DTYPES)),
        "codec": draw(st.sampled_from(CODECS)),
        "zarr_format": draw(st.sampled_from([2, 3])),
        "fill": draw(st.integers(-3, 3)),
    }


def make_array(setup: dict[str, Any], store: MemoryStore | None = None) -> gpuzarr.Array:
    kwargs: dict[str, Any] = {"compressors": None}
    codec = setup["codec"]
    if codec in COMPRESSOR_JSON:
        kwargs["compressors"] = COMPRESSOR_JSON[codec]
    elif codec == "transpose":
        if setup["zarr_format"] == 3:
            order = list(reversed(range(len(setup["shape"]))))
            kwargs["filters"] = [{"name": "transpose", "configuration": {"order": order}}]
        else:
            kwargs["order"] = "F"  # v2's way of storing a chunk transposed
    fill = values_from_ints(np.array(setup["fill"]), setup["dtype"])[()]
    return gpuzarr.create_array(
        store if store is not None else MemoryStore(),
        shape=setup["shape"],
        chunks=setup["chunks"],
        dtype=numpy_dtype(setup["dtype"]) if setup["dtype"] != "string" else str,
        fill_value=fill.item() if hasattr(fill, "item") else fill,
        zarr_format=setup["zarr_format"],
        **kwargs,
    )


def random_values(draw: st.DrawFn, shape: tuple[int, ...], dtype_name: str) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    ints = draw(hnp.arrays(np.int64, (n,), elements=st.integers(-20, 20)))
    return values_from_ints(ints.reshape(shape), dtype_name)


def assert_same(got: Any, want: np.ndarray) -> None:
    if want.ndim == 0 and not isinstance(got, np.ndarray):
        # 0-d results come back as scalars (as in zarr-python); compare them as such
        assert np.asarray(got, dtype=want.dtype) == want, (got, want)
        return
    got = np.asarray(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert np.array_equal(got, want), (got, want)


# --------------------------------------------------------------------------------------
# reads


@SETTINGS
@given(setup=array_setups(), data=st.data())
def test_basic_selections_read_like_numpy(setup: dict[str, Any], data: st.DataObject) -> None:
    ref = random_values(data.draw, setup["shape"], setup["dtype"])
    a = make_array(setup)
    a[...] = ref
    assert_same(a[...], ref)
    for _ in range(4):
        selection = data.draw(
            hnp.basic_indices(setup["shape"], min_dims=0, allow_newaxis=True, allow_ellipsis=True), label="sel"
        )
        want = ref[selection]
        got = a[selection]
        if np.ndim(want) == 0:
            # a scalar selection returns a scalar, as zarr-python does
            assert np.asarray(got).shape == ()
            assert np.array_equal(np.asarray(got), np.asarray(want))
        else:
            assert_same(got, want)
            out = np.empty(want.shape, dtype=ref.dtype)
            assert_same(a.read(selection, out=out), want)


@st.composite
def orthogonal_selections(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """An orthogonal selection and its NumPy equivalent (np.ix_ index arrays, int axes)."""
    sel: list[Any] = []
    ix: list[np.ndarray] = []
    for n in shape:
        kinds = ["slice"] + (["int", "array", "mask"] if n else ["mask"])
        kind = draw(st.sampled_from(kinds))
        if kind == "int":
            i = draw(st.integers(-n, n - 1))
            sel.append(i)
            ix.append(np.array([i % n]))
        elif kind == "array":
            idx = draw(st.lists(st.integers(-n, n - 1), min_size=0, max_size=n, unique_by=lambda v, n=n: v % n))
            sel.append(np.array(idx, dtype=np.intp))
            ix.append(np.array(idx, dtype=np.intp) % n)
        elif kind == "mask":
            mask = draw(hnp.arrays(bool, (n,)))
            sel.append(mask)
            ix.append(np.flatnonzero(mask))
        else:
            start = draw(st.none() | st.integers(-n - 2, n + 2))
            stop = draw(st.none() | st.integers(-n - 2, n + 2))
            step = draw(st.none() | st.integers(1, 4))  # oindex slices take positive steps
            s = slice(start, stop, step)
            sel.append(s)
            ix.append(np.arange(n)[s])
    return tuple(sel), tuple(ix)


def _ortho_ref_view_shape(sel: tuple[Any, ...], ix: tuple[np.ndarray, ...]) -> tuple[int, ...]:
    return tuple(len(i) for s, i in zip(sel, ix, strict=True) if not isinstance(s, int))


@st.composite
def coordinate_selections(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Integer coordinate arrays (distinct points, so write order cannot matter)."""
    if any(n == 0 for n in shape):
        return tuple(np.zeros(0, dtype=np.intp) for _ in shape)
    points = draw(
        st.lists(st.tuples(*(st.integers(0, n - 1) for n in shape)), min_size=1, max_size=12, unique=True)
    )
    coords = np.array(points, dtype=np.intp).T.reshape(len(shape), -1)
    negate = draw(st.booleans())
    if negate:  # negative coordinates count from the end, as in NumPy
        coords = coords - np.array(shape, dtype=np.intp)[:, None]
    return tuple(coords)


@SETTINGS
@given(setup=array_setups().filter(lambda s: len(s["shape"]) > 0), data=st.data())
def test_fancy_selections_read_like_numpy(setup: dict[str, Any], data: st.DataObject) -> None:
    ref = random_values(data.draw, setup["shape"], setup["dtype"])
    a = make_array(setup)
    a[...] = ref
    sel, ix = data.draw(orthogonal_selections(setup["shape"]))
    want = ref[np.ix_(*ix)].reshape(_ortho_ref_view_shape(sel, ix))
    assert_same(a.oindex[sel], want)
    coords = data.draw(coordinate_selections(setup["shape"]))
    assert_same(a.vindex[coords], ref[coords])


# --------------------------------------------------------------------------------------
# writes


@st.composite
def operations(draw: st.DrawFn, shape: tuple[int, ...], dtype_name: str) -> list[tuple[str, Any, Any]]:
    ops = []
    for _ in range(draw(st.integers(1, 5))):
        kinds = ["basic", "scalar"] + (["oindex", "vindex"] if shape else [])
        kind = draw(st.sampled_from(kinds))
        if kind in ("basic", "scalar"):
            sel = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
            target_shape = np.empty(shape, dtype=np.int8)[sel].shape
            value = (
                values_from_ints(np.array(draw(st.integers(-20, 20))), dtype_name)[()]
                if kind == "scalar"
                else random_values(draw, target_shape, dtype_name)
            )
            ops.append(("basic", sel, value))
        elif kind == "oindex":
            sel, ix = draw(orthogonal_selections(shape))
            value = random_values(draw, _ortho_ref_view_shape(sel, ix), dtype_name)
            ops.append(("oindex", (sel, ix), value))
        else:
            coords = draw(coordinate_selections(shape))
            value = random_values(draw, coords[0].shape, dtype_name)
            ops.append(("vindex", coords, value))
    return ops


def apply_numpy(ref: np.ndarray, kind: str, sel: Any, value: Any) -> None:
    if kind == "basic":
        ref[sel] = value
    elif kind == "oindex":
        _, ix = sel
        full_shape = tuple(len(i) for i in ix)
        ref[np.ix_(*ix)] = np.asarray(value).reshape(full_shape)
    else:
        ref[sel] = value


def apply_gpuzarr(a: gpuzarr.Array, kind: str, sel: Any, value: Any) -> None:
    if kind == "basic":
        a[sel] = value
    elif kind == "oindex":
        a.oindex[sel[0]] = value
    else:
        a.vindex[sel] = value


@SETTINGS
@given(setup=array_setups(), data=st.data())
def test_assignment_sequences_match_numpy(setup: dict[str, Any], data: st.DataObject) -> None:
    a = make_array(setup)
    ref = np.full(setup["shape"], a.fill_value, dtype=numpy_dtype(setup["dtype"]))
    assert_same(a[...], ref)  # never written: all fill value
    start_written = data.draw(st.booleans())
    if start_written:
        initial = random_values(data.draw, setup["shape"], setup["dtype"])
        a[...] = initial
        ref[...] = initial
    for kind, sel, value in data.draw(operations(setup["shape"], setup["dtype"])):
        apply_numpy(ref, kind, sel, value)
        apply_gpuzarr(a, kind, sel, value)
        assert_same(a[...], ref)
    # what is stored is what a fresh open reads
    reopened = gpuzarr.open_array(a.store)
    assert_same(reopened[...], ref)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zero_dim_arrays(zarr_format: int, dtype: str, codec: str) -> None:
    """0-d arrays, deterministically: reads into a sentinel-filled ``out`` must overwrite it.

    (A read that decodes "straight into the output" once wrote into ``buffer[()]``, a
    scalar copy, for 0-d arrays, and returned whatever the buffer held.)
    """
    setup = {"shape": (), "chunks": (), "dtype": dtype, "codec": codec, "zarr_format": zarr_format, "fill": 2}
    a = make_array(setup)
    fill = values_from_ints(np.array(2), dtype)
    value = values_from_ints(np.array(17), dtype)
    # each sentinel differs from what the read must produce (bool has only two values)
    out = values_from_ints(np.array(3), dtype)
    a.read(out=out)
    assert_same(out, fill)
    a[()] = value
    out = values_from_ints(np.array(-12), dtype)
    assert a.read(out=out) is out
    assert_same(out, value)
    assert_same(np.asarray(gpuzarr.open_array(a.store)[...], dtype=value.dtype), value)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_fill_value_chunks_are_dropped_under_random_writes(zarr_format: int) -> None:
    """A deterministic companion: after writes, stored chunks never equal the fill value."""
    rng = np.random.default_rng(5)
    store = MemoryStore()
    a = gpuzarr.create_array(store, shape=(20, 20), chunks=(4, 4), dtype="i2", zarr_format=zarr_format)
    ref = np.zeros((20, 20), dtype="i2")
    for _ in range(30):
        r0, c0 = rng.integers(0, 20, 2)
        value = rng.integers(0, 2)
        ref[r0 : r0 + 5, c0 : c0 + 3] = value
        a[r0 : r0 + 5, c0 : c0 + 3] = value
    np.testing.assert_array_equal(a[...], ref)
    for key in a.stored_chunk_keys():
        chunk = a._chain.decode(store.get(key))
        assert chunk.any(), f"{key} holds only the fill value but was stored"


@st.composite
def sharded_setups(draw: st.DrawFn) -> dict[str, Any]:
    """A sharded v3 array: shape, inner chunks, shards (a multiple of them), codec."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 12)) for _ in range(ndim))
    inner = tuple(draw(st.integers(1, max(1, s))) for s in shape)
    shards = tuple(c * draw(st.integers(1, 3)) for c in inner)
    return {
        "shape": shape,
        "inner": inner,
        "shards": shards,
        "codec": draw(st.sampled_from(["none", "zstd", "gzip"])),
        "index_location": draw(st.sampled_from(["start", "end"])),
    }


def make_sharded(setup: dict[str, Any], store: MemoryStore, dtype: str) -> gpuzarr.Array:
    """The sharded array a :func:`sharded_setups` example describes, fill value 0."""
    return gpuzarr.create_array(
        store,
        shape=setup["shape"],
        chunks=setup["inner"],
        shards={"shape": setup["shards"], "index_location": setup["index_location"]},
        dtype=dtype,
        fill_value=0,
        compressors=COMPRESSOR_JSON.get(setup["codec"]),
    )


def _basic_selection(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[Any, ...]:
    sel: list[Any] = []
    for n in shape:
        if draw(st.booleans()):
            sel.append(draw(st.integers(-n, n - 1)))
        else:
            start = draw(st.integers(0, n))
            stop = draw(st.integers(start, n))
            sel.append(slice(start, stop, draw(st.sampled_from([1, 1, 2, 3]))))
    return tuple(sel)


@SETTINGS
@given(setup=sharded_setups(), data=st.data())
def test_sharded_batches_read_like_numpy(setup: dict[str, Any], data: st.DataObject) -> None:
    """Batches of selections over many shards (some absent, some inner chunks empty) read
    like NumPy on the CPU pipeline, one thread or several, and on the emulated GPU path."""
    from gpuzarr.gpu.backend import HostBackend
    from gpuzarr.pipeline import shard_index_cache

    shape = setup["shape"]
    ints = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-3, 3)))
    expected = ints.astype("float32")  # zeros (the fill value) leave inner chunks unstored
    store = MemoryStore()
    a = make_sharded(setup, store, "float32")
    a[...] = expected
    selections = [_basic_selection(data.draw, shape) for _ in range(data.draw(st.integers(1, 6)))]
    wants = [expected[sel] for sel in selections]
    for threads in (1, 3):
        shard_index_cache.clear()
        with gpuzarr.config.set(threads=threads, coalesce_gap_bytes=data.draw(st.sampled_from([0, 64, 65536]))):
            for got, want in zip(gpuzarr.open_array(store).read_batch(selections), wants, strict=True):
                assert_same(got, want)
    reader = gpuzarr.open_array(store)
    indexers = [reader._indexer(sel, "basic") for sel in selections]
    for got, want in zip(reader._read_on_backend(indexers, [None] * len(indexers), HostBackend()), wants, strict=True):
        assert_same(got[()] if got.ndim == 0 else got, want)


@SETTINGS
@given(setup=sharded_setups(), data=st.data())
def test_sharded_assignment_sequences_match_numpy(setup: dict[str, Any], data: st.DataObject) -> None:
    """Random partial and whole writes to a sharded array keep it equal to a NumPy array
    (shards rewritten by the workers, emptied shards deleted, indexes re-read)."""
    shape = setup["shape"]
    expected = np.zeros(shape, dtype="int32")
    store = MemoryStore()
    a = make_sharded(setup, store, "int32")
    threads = data.draw(st.sampled_from([1, 3]))
    with gpuzarr.config.set(threads=threads):
        for _ in range(data.draw(st.integers(1, 5))):
            sel = _basic_selection(data.draw, shape)
            value = data.draw(st.integers(-2, 2))  # 0 empties inner chunks
            expected[sel] = value
            a[sel] = value
            assert_same(a[...], expected)
        assert_same(gpuzarr.open_array(store)[...], expected)
    if not expected.any():
        assert not [k for k in store.list_prefix("c")], "a shard holding only fill values is deleted"


# --------------------------------------------------------------------------------------
# the GPU write path (on the host backend, which emulates the device)

_DEVICE_MODES = {"basic": "basic", "oindex": "orthogonal", "vindex": "vectorized"}


@SETTINGS
@given(setup=array_setups().filter(lambda s: s["dtype"] != "string"), data=st.data())
def test_device_assignment_sequences_match_numpy(setup: dict[str, Any], data: st.DataObject) -> None:
    """Random writes through the GPU write path keep the array equal to a NumPy array and
    store the same chunks as the CPU path (fill-value chunks dropped alike)."""
    from gpuzarr.gpu.backend import HostBackend

    backend = HostBackend()
    device, cpu = make_array(setup), make_array(setup)
    ref = np.full(setup["shape"], device.fill_value, dtype=numpy_dtype(setup["dtype"]))
    for kind, sel, value in data.draw(operations(setup["shape"], setup["dtype"])):
        apply_numpy(ref, kind, sel, value)
        apply_gpuzarr(cpu, kind, sel, value)
        indexer = device._indexer(sel[0] if kind == "oindex" else sel, _DEVICE_MODES[kind])
        device._write_on_backend(indexer, value, backend)
        assert_same(device[...], ref)
    assert sorted(device.store.list_prefix("")) == sorted(cpu.store.list_prefix(""))


@SETTINGS
@given(setup=sharded_setups(), data=st.data())
def test_sharded_device_assignment_sequences_match_numpy(setup: dict[str, Any], data: st.DataObject) -> None:
    """Random partial and whole writes of a sharded array through the GPU write path."""
    from gpuzarr.gpu.backend import HostBackend
    from gpuzarr.pipeline import shard_index_cache

    shape = setup["shape"]
    expected = np.zeros(shape, dtype="int32")
    store = MemoryStore()
    a = make_sharded(setup, store, "int32")
    for _ in range(data.draw(st.integers(1, 5))):
        sel = _basic_selection(data.draw, shape)
        value = data.draw(st.integers(-2, 2))  # 0 empties inner chunks
        expected[sel] = value
        a._write_on_backend(a._indexer(sel, "basic"), value, HostBackend())
        assert_same(a[...], expected)
    shard_index_cache.clear()
    assert_same(gpuzarr.open_array(store)[...], expected)
    if not expected.any():
        assert not [k for k in store.list_prefix("c")], "a shard holding only fill values is deleted"


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(0, 5000),
    parts=st.integers(1, 64),
    threads=st.integers(1, 16),
    min_length=st.integers(1, 64),
)
def test_tapering_parts_cover_everything_in_order(total: int, parts: int, threads: int, min_length: int) -> None:
    # The work lists of a read's tasks: every item once, in order; runs never longer
    # than an equal split into `parts`, never longer than those before them, and never
    # shorter than `min_length` (the last excepted, which takes what is left).
    from gpuzarr.pipeline.pool import tapering_parts

    items = list(range(total))
    runs = tapering_parts(items, parts, threads, min_length)
    assert [x for run in runs for x in run] == items
    lengths = [len(run) for run in runs]
    cap = -(-total // parts) if total else 0
    assert all(0 < n <= cap for n in lengths)
    assert lengths == sorted(lengths, reverse=True)
    assert all(n >= min(min_length, cap) for n in lengths[:-1])
    # Tapering adds few runs: about 2 * threads * ln(cap) beyond the `parts` equal ones.
    assert len(runs) <= parts + 2 * threads * (1 + int(np.log(max(cap, 1)) + 1))


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(0, 300), max_size=40),
    junk=st.lists(st.integers(-50, 12000), max_size=4),
    parts=st.integers(1, 8),
    threads=st.integers(1, 16),
    min_length=st.integers(1, 64),
    span=st.one_of(st.just(0), st.integers(1, 400)),
    data=st.data(),
)
def test_tapering_cuts_never_cross_a_bound(
    counts: list[int], junk: list[int], parts: int, threads: int, min_length: int, span: int, data: st.DataObject
) -> None:
    # A sharded read's groups: runs of each shard's units (`counts`, in order) that never
    # cross a shard's end (bounds given in any order, repeated, or out of range are
    # fine), each of the tapering size (at most a 2 * threads-th of what is left, at
    # least `min_length`, at most total / parts) unless a bound ends it: cut short by
    # it, or taking along a rest of fewer than `min_length` items up to it. With `span`,
    # a run reaching bounds within that many items takes the whole shards up to the
    # last of them: it crosses bounds, but ends at one.
    from gpuzarr.pipeline.pool import tapering_cuts

    ends = np.cumsum(counts, dtype=np.int64).tolist()
    total = ends[-1] if ends else 0
    bounds = data.draw(st.permutations([*ends, *ends[:2], *junk]))
    cuts = tapering_cuts(total, parts, threads, min_length, bounds, span=span)
    assert all(type(c) is int for c in cuts)
    assert cuts[0] == 0 and cuts[-1] == total and cuts == sorted(set(cuts))
    inner_bounds = {b for b in bounds if 0 < b < total}
    if not span:
        assert inner_bounds <= set(cuts)  # every shard ends a run
    cap = max(1, -(-total // parts))
    floor = min(min_length, cap)
    stops = inner_bounds | {total}
    for start, stop in itertools.pairwise(cuts):
        size = min(cap, max(floor, -(-(total - start) // (2 * threads))))
        if any(start < b < stop for b in inner_bounds):
            # Whole shards, within the span and the tapering size, ending at a bound;
            # the next bound lies past the reach.
            assert span and stop in stops and stop - start <= min(size, span)
            assert min(b for b in stops if b > stop) > start + min(size, span) if stop < total else True
            continue
        if stop not in stops:
            assert stop - start == size  # tapering, as tapering_parts cuts
        else:
            assert stop - start < size + floor  # (at most a short rest taken along)
            if stop - start > size:
                assert stop - start - size < floor


@SETTINGS
@given(setup=array_setups().filter(lambda s: s["dtype"] != "string" and all(s["shape"])), data=st.data())
def test_unit_addresses_match_whole_unit_views(setup: dict[str, Any], data: st.DataObject) -> None:
    # The read pipeline decodes whole units straight into the output at addresses it
    # works out by arithmetic; they must be exactly where a NumPy view of the unit lies,
    # and only where that view is contiguous and writable (anything else: 0, staged).
    from gpuzarr.pipeline.read import _Destination, _direct_target

    a = make_array(setup)
    selection = data.draw(st.sampled_from(["whole", "basic", "orthogonal"]))
    if selection == "whole":  # (every unit whole)
        indexer = a._indexer(Ellipsis, "basic")
    elif selection == "basic":  # (negative steps too)
        indexer = a._indexer(data.draw(hnp.basic_indices(setup["shape"], min_dims=len(setup["shape"]))), "basic")
    else:  # index arrays and masks (sorted ones become slices)
        indexer = a._indexer(data.draw(orthogonal_selections(setup["shape"]))[0], "orthogonal")
    shape = indexer.buffer_shape
    dtype = numpy_dtype(setup["dtype"])
    kind = data.draw(st.sampled_from(["c", "f", "strided", "offset", "reversed", "read-only"]))
    if kind == "f":
        buffer = np.empty(shape, dtype=dtype, order="F")
    elif kind == "reversed":  # (negative strides)
        buffer = np.empty(shape, dtype=dtype)[(slice(None, None, -1),) * len(shape)]
    elif kind in ("strided", "offset"):
        step = 2 if kind == "strided" else 1
        pads = [data.draw(st.integers(0, 2)) for _ in shape]
        larger = np.empty(tuple(step * n + pad for n, pad in zip(shape, pads, strict=True)), dtype=dtype)
        buffer = larger[tuple(slice(pad, pad + step * n, step) for n, pad in zip(shape, pads, strict=True))]
    else:
        buffer = np.empty(shape, dtype=dtype)
        buffer.flags.writeable = kind != "read-only"
    unit_shape = a.metadata.chunks
    projections = list(indexer.chunk_projections())
    addresses = _Destination(indexer, buffer, True, dtype).unit_addresses(indexer, unit_shape)
    views = [_direct_target(buffer, p, unit_shape) if buffer.flags.writeable else None for p in projections]
    expected = [0 if view is None else view.ctypes.data for view in views]
    assert (addresses if addresses is not None else [0] * len(projections)) == expected


@st.composite
def block_selections(draw: st.DrawFn, n_blocks: tuple[int, ...]) -> tuple[Any, ...]:
    """A valid block selection: per dimension a block number (maybe negative) or a
    step-1 slice (maybe open or negative), sometimes shortened or with an Ellipsis."""
    sel: list[Any] = []
    for n in n_blocks:
        if n and draw(st.booleans()):
            sel.append(draw(st.integers(-n, n - 1)))
        else:
            # (zarr-python refuses a start outside the blocks where Python's slices
            # clamp it: starts stay inside, see test_block_slices_clamp_like_python)
            start = draw(st.none() | st.integers(-n, n - 1))
            stop = draw(st.none() | st.integers(-n, n))
            sel.append(slice(start, stop, draw(st.sampled_from([None, 1]))))
    form = draw(st.sampled_from(["full", "short", "ellipsis"]))
    if form == "short" and sel:
        sel = sel[: draw(st.integers(0, len(sel) - 1))]
    elif form == "ellipsis" and sel:
        at = draw(st.integers(0, len(sel) - 1))
        sel[at : at + 1] = [Ellipsis]
    return tuple(sel)


@SETTINGS
@given(setup=sharded_setups(), sharded=st.booleans(), data=st.data())
def test_block_selections_match_zarr_python(setup: dict[str, Any], sharded: bool, data: st.DataObject) -> None:
    """``blocks[...]`` reads and writes the same elements as zarr-python's: blocks are the
    chunk grid's cells (shards when sharded), edge blocks cut short by the array."""
    import zarr

    shape = setup["shape"]
    grid = setup["shards"] if sharded else setup["inner"]
    kwargs: dict[str, Any] = {"shape": shape, "chunks": setup["inner"], "dtype": "i4", "fill_value": 0}
    if sharded:
        kwargs["shards"] = setup["shards"]
    ours = gpuzarr.create_array(MemoryStore(), **kwargs)
    theirs = zarr.create_array({}, **kwargs)
    source = np.arange(math.prod(shape), dtype="i4").reshape(shape)
    ours[...] = source
    theirs[...] = source
    n_blocks = tuple(-(-s // c) for s, c in zip(shape, grid, strict=True))
    selection = data.draw(block_selections(n_blocks), label="selection")
    expected = theirs.blocks[selection]
    np.testing.assert_array_equal(ours.blocks[selection], expected)
    np.testing.assert_array_equal(ours.get_block_selection(selection), expected)
    if expected.size:
        value = -np.arange(expected.size, dtype="i4").reshape(expected.shape)
        ours.blocks[selection] = value
        theirs.blocks[selection] = value
        np.testing.assert_array_equal(ours[...], theirs[...])
