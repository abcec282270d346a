"""The pool of freed read results' host memory (gpuzarr.memory.ResultPool)."""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import pathlib
import sys
import threading
import warnings

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
            live.append((pool.empty((size,), np.uint8, 16 * MIB), counter % 251))
            live[-1][0].fill(counter % 251)
        elif op == "drop":
            live.pop(size % len(live))
        else:  # keep only a view of one result alive
            index = size % len(live)
            live[index] = (live[index][0][size % max(live[index][0].size, 1) :], live[index][1])
        assert _disjoint([a for a, _ in live])
        assert all((a == value).all() for a, value in live)
        assert pool.held_bytes <= 16 * MIB
    live.clear()
    gc.collect()
    assert pool.held_bytes == pool.free_bytes  # nothing counted in use once all is dropped


def test_limit_bounds_the_blocks_and_zero_turns_pooling_off() -> None:
    pool = ResultPool()
    block = _size_class(3 * MIB + CACHE_LINE)
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
    assert pool.held_bytes == block  # a block in use stays counted until its result goes...
    del kept
    assert pool.held_bytes == 0  # ...and is then freed, not kept
    too_big = pool.empty((9 * MIB,), np.uint8, 8 * MIB)
    assert too_big.nbytes == 9 * MIB and pool.held_bytes == 0


def test_a_lowered_limit_applies_at_the_next_request() -> None:
    pool = ResultPool()
    results = [pool.empty((3 * MIB,), np.uint8, 64 * MIB) for _ in range(8)]
    del results
    assert pool.free_bytes == 8 * _size_class(3 * MIB + CACHE_LINE)
    again = pool.empty((3 * MIB,), np.uint8, 8 * MIB)
    assert pool.held_bytes <= 8 * MIB and again.nbytes == 3 * MIB


def test_blocks_of_results_alive_at_free_all_blocks_are_not_kept() -> None:
    pool = ResultPool()
    alive = [pool.empty((2 * MIB,), np.uint8, LIMIT) for _ in range(4)]
    pool.free_all_blocks()
    del alive
    gc.collect()
    assert pool.held_bytes == 0
    assert pool.empty((2 * MIB,), np.uint8, LIMIT).nbytes == 2 * MIB  # (still pooling afterwards)


@pytest.mark.parametrize("failing", ["from_buffer", "finalize"])
def test_an_exception_midway_loses_no_count(monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    import gpuzarr.memory as memory

    pool = ResultPool()
    kept = pool.empty((2 * MIB,), np.uint8, LIMIT)
    if failing == "finalize":
        def interrupted(*args: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(memory.weakref, "finalize", interrupted)
    else:
        class Unlucky:
            @staticmethod
            def from_buffer(block: object) -> None:
                raise KeyboardInterrupt

        monkeypatch.setattr(memory, "_lease_type", lambda size: Unlucky)
    with pytest.raises(KeyboardInterrupt):
        pool.empty((2 * MIB,), np.uint8, LIMIT)
    monkeypatch.undo()
    del kept
    gc.collect()
    size = _size_class(2 * MIB + CACHE_LINE)
    assert pool.held_bytes == pool.free_bytes == size  # nothing counted in use that is not
    for _ in range(20):  # the pool goes on working within its limit
        assert pool.empty((2 * MIB,), np.uint8, 4 * size).nbytes == 2 * MIB
    assert pool.held_bytes <= 4 * size


def test_a_call_on_the_thread_holding_the_lock_gets_fresh_memory() -> None:
    # (As a __del__ run by the garbage collector while the pool holds its lock would.)
    pool = ResultPool()
    pooled = pool.empty((2 * MIB,), np.uint8, LIMIT)
    with pool._locked() as locked:
        assert locked
        inner = pool.empty((2 * MIB,), np.uint8, LIMIT)  # no deadlock
        assert inner.nbytes == 2 * MIB and pool.held_bytes == _size_class(2 * MIB + CACHE_LINE)
        pool.free_all_blocks()  # (does nothing here)
    del pooled, inner
    assert pool.free_bytes == _size_class(2 * MIB + CACHE_LINE)


def test_pooled_memory_left_dirty_never_shows_through_a_read(tmp_path: pathlib.Path) -> None:
    # Pooled blocks hold old bytes where fresh pages held zeros: every read must write
    # all of its result (the fill value where chunks are missing).
    with gpuzarr.config.set(result_pool_bytes=LIMIT):
        dirty = [result_pool.empty((n * MIB,), np.uint8, LIMIT) for n in (1, 2, 4, 8) for _ in range(2)]
        for block in dirty:
            block.fill(0xFF)
        del dirty
        for store, shards, compressors in (
            ({}, None, "auto"),
            (str(tmp_path / "a.zarr"), None, None),
            (str(tmp_path / "b.zarr"), (512, 1024), "auto"),
        ):
            a = gpuzarr.create_array(
                store, shape=(1024, 1024), chunks=(128, 1024), shards=shards, dtype="f4",
                fill_value=0, compressors=compressors,
            )
            a[256:384] = 7.0  # one chunk stored, the rest missing
            expected = np.zeros((1024, 1024), "f4")
            expected[256:384] = 7.0
            for _ in range(3):
                np.testing.assert_array_equal(a[...], expected)
                for window, result in zip(
                    [np.s_[i * 128 : (i + 1) * 128] for i in range(8)],
                    a.read_batch([np.s_[i * 128 : (i + 1) * 128] for i in range(8)]),
                    strict=True,
                ):
                    np.testing.assert_array_equal(result, expected[window])


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
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with result_pool._locked():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(10)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # (fork() in a threaded process)
            pid = os.fork()
    finally:
        if pid != 0:
            release.set()
            holder.join()
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


def test_threads_reading_while_the_limit_changes_never_see_each_others_results() -> None:
    data = np.arange(512 * 1024, dtype="f4").reshape(512, 1024)  # 2 MiB, rows of 4 KiB
    a = gpuzarr.create_array({}, shape=data.shape, chunks=(64, 1024), dtype="f4")
    a[...] = data
    stop = threading.Event()
    errors: list[str] = []

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        kept: list[tuple[np.ndarray, np.ndarray]] = []
        while not stop.is_set():
            start = int(rng.integers(0, 256)) * 2
            if rng.random() < 0.5:
                results = [a[start : start + 256]]
                wanted = [data[start : start + 256]]
            else:
                windows = [np.s_[s : s + 64] for s in rng.integers(0, 448, 8).tolist()]
                results = a.read_batch(windows)
                wanted = [data[w] for w in windows]
            for result, expected in zip(results, wanted, strict=True):
                if not np.array_equal(result, expected):
                    errors.append("a fresh result is wrong")
            kept.extend(zip(results[:1], wanted[:1], strict=True))
            if len(kept) > 4:
                result, expected = kept.pop(int(rng.integers(0, len(kept))))
                if not np.array_equal(result, expected):
                    errors.append("a kept result changed")

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(3)]
    previous = gpuzarr.config.get().result_pool_bytes
    for thread in threads:
        thread.start()
    try:
        for step in range(40):
            limit = (0, 2 * MIB, 8 * MIB, LIMIT)[step % 4]
            gpuzarr.config.result_pool_bytes = limit
            if step % 7 == 0:
                result_pool.free_all_blocks()
            if step % 5 == 0:
                gc.collect()
            stop.wait(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        gpuzarr.config.result_pool_bytes = previous
    assert not errors, errors[:3]
    gc.collect()
    assert result_pool.held_bytes == result_pool.free_bytes
