"""The pool of freed read results' host memory (gpuzarr.memory.ResultPool)."""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuzarr
from gpuzarr.memory import CACHE_LINE, POOL_MIN_BYTES, ResultPool, _size_class, result_pool

MIB = 2**20
LIMIT = 64 * MIB


def _span(array: np.ndarray) -> tuple[int, int]:
    start = array.ctypes.data
    return start, start + array.nbytes


def _disjoint(arrays: list[np.ndarray]) -> bool:
    """Whether no two of ``arrays`` (contiguous, non-empty) share a byte."""
    spans = sorted(_span(a) for a in arrays if a.size)
    return all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))


def test_a_block_is_reused_only_once_nothing_uses_its_memory() -> None:
    pool = ResultPool()
    block = _size_class(4 * MIB + CACHE_LINE)
    # Everything that can hold on to a result's memory keeps its block out of the pool.
    holders = {
        "a view": lambda a: a[3:7, ::2],
        "a view of a view": lambda a: a.reshape(-1)[5:].view(np.uint8)[1:],
        "a memoryview": memoryview,
        "a ctypes array": lambda a: (ctypes.c_char * 16).from_buffer(a),
        "np.frombuffer": lambda a: np.frombuffer(a, dtype=np.uint8),
        "a DLPack capsule": lambda a: a.__dlpack__(),
    }
    for what, hold in holders.items():
        pool.free_all_blocks()
        result = pool.empty((1024, 1024), np.float32, LIMIT)
        assert result.ctypes.data % CACHE_LINE == 0 and result.flags.c_contiguous and result.flags.writeable
        assert result.shape == (1024, 1024) and result.dtype == np.float32
        address = result.ctypes.data
        held = hold(result)
        del result
        gc.collect()
        assert pool.free_bytes == 0, f"memory held by {what} went back to the pool"
        other = pool.empty((1024, 1024), np.float32, LIMIT)
        assert other.ctypes.data != address, f"memory held by {what} was handed out again"
        del other
        assert pool.free_bytes == block
        del held
        gc.collect()
        assert pool.free_bytes == 2 * block, f"memory was not returned once {what} was gone"
        assert pool.held_bytes == 2 * block


def test_live_results_never_share_memory_and_keep_their_values() -> None:
    pool = ResultPool()
    live: list[tuple[np.ndarray, int]] = []
    for step in range(40):
        if live and step % 3 == 0:
            live.pop(step % len(live))
        array = pool.empty(((step % 4 + 1) * MIB // 8,), np.int64, LIMIT)
        array.fill(step)
        live.append((array, step))
        assert _disjoint([a for a, _ in live])
        for a, value in live:
            assert (a == value).all()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["take", "drop", "view"]), st.integers(1, 6 * MIB)), max_size=30))
def test_pool_property_no_aliasing_under_any_sequence(ops: list[tuple[str, int]]) -> None:
    pool = ResultPool()
    live: list[tuple[np.ndarray, int]] = []
    for counter, (op, size) in enumerate(ops):
        if op == "take" or not live:
            array = pool.empty((size,), np.uint8, 16 * MIB)
            array.fill(counter % 251)
            live.append((array, counter % 251))
        elif op == "drop":
            live.pop(size % len(live))
        else:  # keep only a view of one result alive
            index = size % len(live)
            array, value = live[index]
            live[index] = (array[size % max(array.size, 1) :], value)
        assert _disjoint([a for a, _ in live])
        assert all((a == value).all() for a, value in live)
        assert pool.held_bytes <= 16 * MIB


def test_limit_bounds_the_blocks_and_zero_turns_pooling_off() -> None:
    pool = ResultPool()
    results = [pool.empty((3 * MIB,), np.uint8, 8 * MIB) for _ in range(4)]
    assert pool.held_bytes <= 8 * MIB  # the results past the limit are plain memory
    assert all(r.shape == (3 * MIB,) for r in results)
    del results
    gc.collect()
    assert 0 < pool.free_bytes <= 8 * MIB
    small = pool.empty((POOL_MIN_BYTES // 2,), np.uint8, 8 * MIB)  # left to malloc
    assert small.ctypes.data % CACHE_LINE == 0
    held = pool.held_bytes
    plain = pool.empty((3 * MIB,), np.uint8, 0)  # not pooled; what the pool holds stays
    assert plain.shape == (3 * MIB,) and pool.held_bytes == held
    pool.free_all_blocks()
    assert pool.held_bytes == 0
    kept = pool.empty((3 * MIB,), np.uint8, 8 * MIB)
    pool.free_all_blocks()
    assert pool.held_bytes == _size_class(3 * MIB + CACHE_LINE)  # blocks in use stay counted
    del kept
    assert pool.free_bytes == _size_class(3 * MIB + CACHE_LINE)
    too_big = pool.empty((9 * MIB,), np.uint8, 8 * MIB)
    assert too_big.nbytes == 9 * MIB and pool.free_bytes == _size_class(3 * MIB + CACHE_LINE)


def test_size_classes_waste_at_most_an_eighth() -> None:
    for nbytes in (MIB, MIB + 1, 3 * MIB + 64, 33 * MIB, 128 * MIB + 64, 10**9):
        size = _size_class(nbytes)
        assert nbytes <= size <= nbytes + nbytes // 8 + 4096 and size % 4096 == 0


def test_reads_in_a_loop_reuse_result_memory(tmp_path: pathlib.Path) -> None:
    data = np.arange(2 * MIB, dtype="f4").reshape(1024, 2048)  # 8 MiB
    a = gpuzarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(128, 2048), dtype="f4")
    a[...] = data
    windows = [np.s_[i * 128 : (i + 1) * 128] for i in range(8)]
    with gpuzarr.config.set(result_pool_bytes=LIMIT):
        first = a[...]
        address = first.ctypes.data
        np.testing.assert_array_equal(first, data)
        second = a[...]  # the first result is alive: fresh memory
        assert second.ctypes.data != address
        np.testing.assert_array_equal(second, data)
        second_address = second.ctypes.data
        del first, second
        third = a[...]
        assert third.ctypes.data in (address, second_address)  # reused
        np.testing.assert_array_equal(third, data)
        batch = a.read_batch(windows)  # one shared buffer, views of it
        for window, result in zip(windows, batch, strict=True):
            np.testing.assert_array_equal(result, data[window])
        kept = batch[3]
        del batch, third
        again = a.read_batch(windows)
        assert all(_disjoint([kept, r]) for r in again), "a window still in use shares memory with a new result"
        np.testing.assert_array_equal(kept, data[windows[3]])
        del again, kept
    with gpuzarr.config.set(result_pool_bytes=0):
        held = result_pool.held_bytes
        fresh = a[...]  # not from the pool, which keeps what it holds
        np.testing.assert_array_equal(fresh, data)
        assert result_pool.held_bytes == held > 0
        result_pool.free_all_blocks()
        assert result_pool.free_bytes == 0


def test_result_pool_bytes_is_validated() -> None:
    with pytest.raises(ValueError, match="result_pool_bytes must be a non-negative integer"):
        gpuzarr.config.set(result_pool_bytes=-1)
    with pytest.raises(ValueError, match="result_pool_bytes"):
        gpuzarr.config.set(result_pool_bytes=True)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_pool_works_in_a_forked_child() -> None:
    pool_result = result_pool.empty((2 * MIB,), np.uint8, LIMIT)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            child = result_pool.empty((2 * MIB,), np.uint8, LIMIT)
            child.fill(1)
            os._exit(0 if child.ctypes.data != pool_result.ctypes.data else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("output", ["numpy", "torch"])
def test_loader_batches_come_from_the_pool_and_kept_ones_stay_intact(output: str) -> None:
    if output == "torch":
        pytest.importorskip("torch")
    data = np.arange(64 * 128 * 128, dtype="f4").reshape(64, 128, 128)  # 4 MiB; batches of 1 MiB
    a = gpuzarr.create_array({}, shape=data.shape, chunks=(1, 128, 128), shards=(8, 128, 128), dtype="f4")
    a[...] = data
    with gpuzarr.config.set(result_pool_bytes=LIMIT):
        for epoch in range(3):
            loader = gpuzarr.Loader(a, batch_size=16, shuffle=True, seed=epoch, output=output)
            kept = []
            for i, batch in enumerate(loader):
                values = np.asarray(batch)
                assert all(np.array_equal(v, data[int(v[0, 0]) // (128 * 128)]) for v in values)
                if i % 2:
                    kept.append(batch)  # the others are dropped and their memory reused
            assert _disjoint([np.asarray(b) for b in kept])
            for batch in kept:  # untouched by the batches read after them
                values = np.asarray(batch)
                assert all(np.array_equal(v, data[int(v[0, 0]) // (128 * 128)]) for v in values)
        assert result_pool.held_bytes > 0
