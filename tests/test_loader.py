"""The ML data loader: order, rank sharding, resume, outputs, threads and processes."""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gpuzarr
from gpuzarr.errors import DeviceUnavailableError
from gpuzarr.loader import Loader
from gpuzarr.loader.order import make_schedule

N = 103  # not a multiple of the chunk, the batch or any world size
CHUNK = 4


def _samples(n: int = N, width: int = 3) -> np.ndarray:
    """Row i holds i * 10 + column: every value names its sample."""
    return (np.arange(n)[:, None] * 10 + np.arange(width)).astype(np.int32)


def _ids(batch: Any) -> np.ndarray:
    return np.asarray(batch)[:, 0] // 10


@pytest.fixture(scope="module")
def arr() -> gpuzarr.Array:
    a = gpuzarr.create_array({}, shape=(N, 3), chunks=(CHUNK, 3), dtype="int32")
    a[:] = _samples()
    return a


def _epoch_ids(loader: Loader) -> list[np.ndarray]:
    return [_ids(b) for b in loader]


def _loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gpuzarr-loader")]


def _loader_threads_end(timeout: float = 30.0) -> bool:
    """Whether the loader's threads all end within ``timeout`` (those of a collected
    iterator end on their own, soon after; close() waits for them)."""
    deadline = time.monotonic() + timeout
    while _loader_threads() and time.monotonic() < deadline:
        time.sleep(0.005)
    return not _loader_threads()


class CountingArray:
    """A NumPy-backed array-like that records every region read (and can fail on demand)."""

    def __init__(self, data: np.ndarray, chunks: tuple[int, ...], fail_at: int | None = None) -> None:
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.chunks = chunks
        self.fail_at = fail_at
        self.reads: list[tuple[slice, ...]] = []
        self._lock = threading.Lock()

    def __getitem__(self, region: tuple[slice, ...]) -> np.ndarray:
        with self._lock:
            self.reads.append(region)
        if self.fail_at is not None and region[0].start <= self.fail_at < region[0].stop:
            raise OSError(f"simulated read failure at sample {self.fail_at}")
        return self.data[region]


# -- every sample once, across ranks --------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize(
    ("drop_last", "balance"), [(False, "pad"), (False, "drop"), (True, "drop"), (True, "pad")]
)
def test_every_sample_once_per_epoch(arr: gpuzarr.Array, world: int, drop_last: bool, balance: str) -> None:
    batch = 8
    per_rank = []
    for rank in range(world):
        loader = Loader(arr, batch, rank=rank, world_size=world, drop_last=drop_last, balance=balance, seed=3)
        batches = _epoch_ids(loader)
        assert len(batches) == len(loader)
        assert all(len(b) == batch for b in batches[:-1])
        if drop_last:
            assert len(batches[-1]) == batch
        ids = np.concatenate(batches)
        np.testing.assert_array_equal(ids, loader.sample_order(0))
        assert len(ids) == loader.samples_per_epoch
        per_rank.append(ids)
    assert len({len(ids) for ids in per_rank}) == 1, "every rank yields the same number of samples"
    # As DistributedSampler: ceil(N / world) samples per rank when padding, the floor when
    # dropping; at most one sample per rank repeated or dropped.
    per = -(-N // world) if balance == "pad" else N // world
    assert loader.samples_per_epoch == (per // batch * batch if drop_last else per)
    if not drop_last:
        assert all(len(ids) == per for ids in per_rank)
    counts = Counter(np.concatenate(per_rank).tolist())
    if balance == "pad" and not drop_last:
        assert set(counts) == set(range(N)), "padding never skips a sample"
        assert sum(counts.values()) - N == per * world - N < world
    else:
        assert set(counts) <= set(range(N))
    if balance == "drop":
        assert max(counts.values()) == 1, "no sample repeats without padding"
        if not drop_last:
            assert len(counts) == per * world > N - world
    for ids in per_rank:
        assert len(set(ids.tolist())) >= len(ids) - 1, "a rank repeats at most one sample"
    # Ranks share only the blocks at the ends of their runs: at most world - 1 of them.
    block_sets = [set((ids // CHUNK).tolist()) for ids in per_rank]
    shared = {b for i in range(world) for j in range(i + 1, world) for b in block_sets[i] & block_sets[j]}
    assert len(shared) <= world - 1
    if world == 1 and not drop_last:
        assert sum(counts.values()) == N and max(counts.values()) == 1


@pytest.mark.parametrize(("samples", "world"), [(1, 4), (5, 8), (10, 4), (4096 * 64, 48)])
def test_ranks_split_samples_not_blocks(samples: int, world: int) -> None:
    """Many ranks on few blocks: each rank gets ceil(samples / world) samples (padding
    repeats at most one per rank), not whole blocks (which repeated or dropped up to a
    block per rank)."""
    a = gpuzarr.create_array({}, shape=(samples,), chunks=(4096,), dtype="int32")
    orders = [Loader(a, 16, rank=r, world_size=world, seed=2).sample_order() for r in range(world)]
    per = -(-samples // world)
    assert all(len(o) == per for o in orders)
    assert set(np.concatenate(orders).tolist()) == set(range(samples))
    if samples >= world:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dropped = [Loader(a, 1, rank=r, world_size=world, seed=2, balance="drop").sample_order()
                       for r in range(world)]
        assert all(len(o) == samples // world for o in dropped)
        flat = np.concatenate(dropped)
        assert len(set(flat.tolist())) == len(flat) == samples // world * world
    else:
        with pytest.raises(ValueError, match=f"{samples} samples cannot be shared by {world} ranks"):
            Loader(a, 1, rank=0, world_size=world, balance="drop")


def test_many_ranks_get_smaller_automatic_blocks() -> None:
    """Blocks shared by two ranks are read twice: automatic blocks stay small enough
    for several per rank (here 1024-sample chunks grown to 4 MiB blocks with one rank)."""
    a = gpuzarr.create_array({}, shape=(2**20,), chunks=(1024,), dtype="int32")
    assert Loader(a, 16).num_blocks == 64
    assert Loader(a, 16, rank=0, world_size=32).num_blocks >= 8 * 32


def test_drop_last_emptying_every_epoch_warns(arr: gpuzarr.Array) -> None:
    with pytest.warns(UserWarning, match="drop_last=True drops them all"):
        loader = Loader(arr, 64, rank=0, world_size=4, drop_last=True)
    assert len(loader) == 0 and list(loader) == []


def test_storage_order_without_shuffle(arr: gpuzarr.Array) -> None:
    ids = np.concatenate(_epoch_ids(Loader(arr, 10, shuffle=False)))
    np.testing.assert_array_equal(ids, np.arange(N))
    # Two ranks: contiguous halves (block-aligned), each in storage order.
    r0 = np.concatenate(_epoch_ids(Loader(arr, 10, shuffle=False, rank=0, world_size=2, balance="drop")))
    r1 = np.concatenate(_epoch_ids(Loader(arr, 10, shuffle=False, rank=1, world_size=2, balance="drop")))
    assert np.all(np.diff(r0) == 1) and np.all(np.diff(r1) == 1)
    assert r0[0] == 0 and r1[0] % CHUNK == 0 and r1[0] > r0[-1]


def test_order_is_a_function_of_seed_and_epoch(arr: gpuzarr.Array) -> None:
    a = Loader(arr, 10, seed=7)
    b = Loader(arr, 10, seed=7, prefetch=0)
    e0 = np.concatenate(_epoch_ids(a))
    np.testing.assert_array_equal(e0, np.concatenate(_epoch_ids(b)))
    assert a.epoch == 1, "a finished epoch moves to the next"
    e1 = np.concatenate(_epoch_ids(a))
    assert not np.array_equal(e0, e1), "epochs differ"
    assert sorted(e0) == sorted(e1) == list(range(N))
    b.set_epoch(1)
    np.testing.assert_array_equal(e1, np.concatenate(_epoch_ids(b)))
    other = np.concatenate(_epoch_ids(Loader(arr, 10, seed=8)))
    assert not np.array_equal(e0, other), "seeds differ"
    # Not just a permutation of blocks: samples from different chunks are interleaved.
    assert np.any(np.diff(e0[:10] // CHUNK) != 0)


def test_shuffle_buffer_bounds_held_blocks(arr: gpuzarr.Array) -> None:
    for buffer in (1, 2, 5):
        loader = Loader(arr, 8, shuffle_buffer=buffer, block_shape=4)
        order = loader._order(0)
        capacity = make_schedule(order, 8, 0).capacity
        assert capacity <= buffer + 8 // 4 + 2
        if buffer == 1:
            # One-block buffer: blocks are emitted one after another, shuffled inside.
            ids = loader.sample_order()
            assert 1 + np.count_nonzero(np.diff(ids // 4)) == loader.num_blocks
    assert Loader(arr, 8, shuffle_buffer_samples=10, block_shape=4).shuffle_buffer == 3


def test_each_block_read_once_and_chunk_aligned() -> None:
    data = CountingArray(_samples(), chunks=(CHUNK, 3))
    loader = Loader(data, 8, seed=1)
    ids = np.concatenate(_epoch_ids(loader))
    assert sorted(ids.tolist()) == list(range(N))
    starts = [r[0].start for r in data.reads]
    assert len(starts) == len(set(starts)) == loader.num_blocks
    for r in data.reads:
        assert r[0].start % CHUNK == 0 and (r[0].stop % CHUNK == 0 or r[0].stop == N)


# -- resume ------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 3])
def test_resume_yields_exactly_the_remaining_batches(arr: gpuzarr.Array, world: int) -> None:
    rank = world - 1
    kwargs: dict[str, Any] = {"seed": 5, "rank": rank, "world_size": world, "shuffle_buffer": 3}
    full = _epoch_ids(Loader(arr, 7, **kwargs))
    n = len(full)
    for k in sorted({0, 1, n // 2, n - 1, n}):
        first = Loader(arr, 7, **kwargs)
        it = iter(first)
        for _ in range(k):
            next(it)
        state = first.state_dict()
        assert state["epoch"] == 0 and state["batches_yielded"] == k
        it.close()
        resumed = Loader(arr, 7, **kwargs)
        resumed.load_state_dict(state)
        rest = _epoch_ids(resumed)
        assert len(rest) == n - k
        for x, y in zip(rest, full[k:], strict=True):
            np.testing.assert_array_equal(x, y)
        assert resumed.epoch == 1 and resumed.state_dict()["batches_yielded"] == 0


def test_resume_skips_without_reading() -> None:
    data = CountingArray(_samples(), chunks=(CHUNK, 3))
    loader = Loader(data, 8, seed=2, shuffle_buffer=1)
    state = loader.state_dict()
    state["batches_yielded"] = len(loader) - 1
    loader.load_state_dict(state)
    last = _epoch_ids(loader)
    assert len(last) == 1
    np.testing.assert_array_equal(last[0], loader.sample_order(0)[-len(last[0]):])
    needed = set((last[0] // CHUNK).tolist())
    assert {r[0].start // CHUNK for r in data.reads} == needed


def test_resume_state_is_rank_independent_and_checked(arr: gpuzarr.Array) -> None:
    r0 = Loader(arr, 5, rank=0, world_size=2)
    it = iter(r0)
    next(it)
    next(it)
    r1 = Loader(arr, 5, rank=1, world_size=2)
    r1.load_state_dict(r0.state_dict())
    assert len(_epoch_ids(r1)) == len(r1) - 2
    with pytest.raises(ValueError, match="batch_size"):
        Loader(arr, 6, rank=1, world_size=2).load_state_dict(r0.state_dict())
    with pytest.raises(ValueError, match="seed"):
        Loader(arr, 5, rank=1, world_size=2, seed=1).load_state_dict(r0.state_dict())


def test_iteration_continues_from_position(arr: gpuzarr.Array) -> None:
    loader = Loader(arr, 10, seed=4)
    full = loader.sample_order(0)
    got = []
    for i, b in enumerate(loader):
        got.append(_ids(b))
        if i == 2:
            break
    assert loader.state_dict()["batches_yielded"] == 3
    got += _epoch_ids(loader)
    np.testing.assert_array_equal(np.concatenate(got), full)
    loader.set_epoch(0)
    np.testing.assert_array_equal(np.concatenate(_epoch_ids(loader)), full)


# -- outputs -----------------------------------------------------------------------------


def test_numpy_batches(arr: gpuzarr.Array) -> None:
    batches = list(Loader(arr, 16))
    assert all(isinstance(b, np.ndarray) and b.dtype == np.int32 and b.flags.c_contiguous for b in batches)
    assert [b.shape for b in batches] == [(16, 3)] * 6 + [(N - 96, 3)]
    for b in batches:
        np.testing.assert_array_equal(b, _samples()[_ids(b)])
    # Every batch is its own buffer: kept batches stay valid.
    assert len({b.ctypes.data for b in batches}) == len(batches)


def test_sample_axis_not_first() -> None:
    data = np.stack([_samples(40) + 1000 * c for c in range(2)], axis=1).transpose(1, 0, 2)  # (2, 40, 3)
    a = gpuzarr.create_array({}, shape=data.shape, chunks=(1, 8, 3), dtype="int32")
    a[:] = data
    batches = list(Loader(a, 6, axis=1, seed=0))
    assert batches[0].shape == (6, 2, 3)
    for b in batches:
        ids = b[:, 0, 0] // 10
        np.testing.assert_array_equal(b, data[:, ids].transpose(1, 0, 2))


def test_torch_batches(arr: gpuzarr.Array) -> None:
    torch = pytest.importorskip("torch")
    batches = list(Loader(arr, 16, output="torch", pin_memory=False))
    assert all(isinstance(b, torch.Tensor) and b.dtype == torch.int32 for b in batches)
    assert batches[0].shape == (16, 3)
    np.testing.assert_array_equal(batches[0].numpy(), _samples()[_ids(batches[0].numpy())])
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="pin_memory"):
            pinned = Loader(arr, 16, output="torch", pin_memory=True)
        assert isinstance(next(iter(pinned)), torch.Tensor)


def test_jax_batches_zero_copy(arr: gpuzarr.Array) -> None:
    jax = pytest.importorskip("jax")
    batches = list(Loader(arr, 16, output="jax"))
    assert all(isinstance(b, jax.Array) for b in batches)
    assert batches[0].shape == (16, 3) and batches[0].dtype == np.int32
    host = np.asarray(batches[0])
    np.testing.assert_array_equal(host, _samples()[_ids(host)])
    # Adopted through DLPack: the JAX buffer is the loader's 64-byte aligned batch buffer.
    assert batches[0].unsafe_buffer_pointer() % 64 == 0


def test_dict_of_aligned_arrays() -> None:
    inputs = gpuzarr.create_array({}, shape=(N, 2, 2), chunks=(CHUNK, 2, 2), dtype="float32")
    inputs[:] = np.arange(N * 4, dtype="float32").reshape(N, 2, 2)
    targets = gpuzarr.create_array({}, shape=(N,), chunks=(6,), dtype="int64")  # other chunking: blocks of 12
    targets[:] = np.arange(N) * 4
    loader = Loader({"x": inputs, "y": targets}, 9, seed=11)
    assert loader.block_samples % 12 == 0
    seen = []
    for b in loader:
        assert set(b) == {"x", "y"}
        assert b["x"].shape[1:] == (2, 2) and b["x"].dtype == np.float32 and b["y"].dtype == np.int64
        np.testing.assert_array_equal(b["x"][:, 0, 0], b["y"])
        seen += (b["y"] // 4).tolist()
    assert sorted(seen) == list(range(N))
    with pytest.raises(ValueError, match="length"):
        Loader({"x": inputs, "y": gpuzarr.create_array({}, shape=(N - 1,), chunks=(6,), dtype="int64")}, 4)


# -- patches -----------------------------------------------------------------------------


def _check_patches(loader: Loader, full: np.ndarray, patch: tuple[int, ...], lead: int) -> None:
    ids = loader.sample_order()
    out = np.concatenate(list(loader))
    if loader.world_size == 1:
        assert sorted(ids.tolist()) == list(range(int(np.prod(loader.grid_shape))))
    else:
        assert len(set(ids.tolist())) == len(ids)
    for k, coords in enumerate(zip(*np.unravel_index(ids, loader.grid_shape), strict=True)):
        sel = tuple(coords[:lead]) + tuple(
            slice(c * p, (c + 1) * p) for c, p in zip(coords[lead:], patch, strict=False)
        )
        np.testing.assert_array_equal(out[k], full[sel])


def test_patches_of_an_image_stack() -> None:
    full = np.arange(3 * 40 * 36, dtype="uint16").reshape(3, 40, 36)
    a = gpuzarr.create_array({}, shape=full.shape, chunks=(1, 16, 12), dtype="uint16")
    a[:] = full
    loader = Loader(a, 5, patch_shape=(8, 12), seed=2)
    assert loader.grid_shape == (3, 5, 3)
    assert next(iter(loader)).shape == (5, 8, 12)
    loader.set_epoch(0)
    _check_patches(loader, full, (8, 12), lead=1)
    # Storage order: block by block.
    ordered = Loader(a, 5, patch_shape=(8, 12), shuffle=False).sample_order()
    assert sorted(ordered.tolist()) == list(range(45)) and ordered[0] == 0


def test_patches_channel_last_and_dict() -> None:
    image = np.arange(32 * 24 * 3, dtype="float32").reshape(32, 24, 3)
    mask = (np.arange(32 * 24).reshape(32, 24, 1) % 7).astype("uint8")
    a = gpuzarr.create_array({}, shape=image.shape, chunks=(16, 16, 3), dtype="float32")
    m = gpuzarr.create_array({}, shape=mask.shape, chunks=(8, 8, 1), dtype="uint8")
    a[:] = image
    m[:] = mask
    loader = Loader({"image": a, "mask": m}, 4, patch_shape=(8, 8, None), seed=1)
    assert loader.grid_shape == (4, 3)
    ids = loader.sample_order()
    batches = list(loader)
    got = {k: np.concatenate([b[k] for b in batches]) for k in ("image", "mask")}
    assert got["image"].shape == (12, 8, 8, 3) and got["mask"].shape == (12, 8, 8, 1)
    for k, (r, c) in enumerate(zip(*np.unravel_index(ids, (4, 3)), strict=True)):
        np.testing.assert_array_equal(got["image"][k], image[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8])
        np.testing.assert_array_equal(got["mask"][k], mask[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8])


def test_patches_not_dividing_chunks() -> None:
    full = np.arange(50 * 50, dtype="int32").reshape(50, 50)
    a = gpuzarr.create_array({}, shape=full.shape, chunks=(16, 16), dtype="int32")
    a[:] = full
    loader = Loader(a, 3, patch_shape=(10, 10), seed=0, world_size=2, rank=1, balance="drop")
    _check_patches(loader, full, (10, 10), lead=0)


# -- sharded arrays ----------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2])
def test_sharded_blocks_are_shards(tmp_path: Path, world: int) -> None:
    data = np.arange(560 * 4 * 4, dtype="float32").reshape(560, 4, 4)  # 70 shards
    a = gpuzarr.create_array(tmp_path / "s.zarr", shape=data.shape, dtype=data.dtype, chunks=(1, 4, 4),
                             shards=(8, 4, 4))
    a[:] = data
    a = gpuzarr.open_array(tmp_path / "s.zarr")
    assert a.chunks == (1, 4, 4) and a.shards == (8, 4, 4)
    seen = []
    for rank in range(world):
        loader = Loader(a, 6, seed=9, world_size=world, rank=rank, balance="drop")
        assert loader.block_samples == 8, "blocks are whole shards, not inner chunks"
        ids = loader.sample_order()
        out = np.concatenate(list(loader))
        np.testing.assert_array_equal(out, data[ids])
        seen.append(set((ids // 8).tolist()))
    if world == 2:
        assert len(seen[0] & seen[1]) <= 1, "ranks share at most the shard where their runs meet"


def test_few_shards_give_blocks_of_inner_chunks(tmp_path: Path) -> None:
    """9 shards make too few blocks to shuffle (or to share among ranks): blocks are
    inner chunks then, which a read decodes without the rest of the shard."""
    data = np.arange(70 * 4 * 4, dtype="float32").reshape(70, 4, 4)
    a = gpuzarr.create_array(tmp_path / "s.zarr", shape=data.shape, dtype=data.dtype, chunks=(2, 4, 4),
                             shards=(8, 4, 4), data=data)
    for world in (1, 16):
        loaders = [Loader(a, 4, seed=1, world_size=world, rank=r) for r in range(world)]
        assert loaders[0].block_samples == 2 and loaders[0].num_blocks == 35
        for loader in loaders:
            ids = loader.sample_order()  # (before iterating: the epoch ends with it)
            np.testing.assert_array_equal(np.concatenate(list(loader)), data[ids])


# -- threads, errors, processes ----------------------------------------------------------


def test_prefetch_thread_stops_on_break(arr: gpuzarr.Array) -> None:
    loader = Loader(arr, 4, prefetch=3)
    for i, _ in enumerate(loader):
        if i == 1:
            assert _loader_threads()
            break
    gc.collect()
    assert _loader_threads_end()
    # Garbage-collected iterator and explicit close.
    it = iter(loader)
    next(it)
    del it
    assert _loader_threads_end()
    with iter(loader) as it2:
        next(it2)
    assert not _loader_threads()
    with pytest.raises(StopIteration):
        next(it2)


def test_no_threads_before_iteration(arr: gpuzarr.Array) -> None:
    loader = Loader(arr, 4)
    it = iter(loader)
    assert not _loader_threads()
    next(it)
    it.close()
    assert not _loader_threads()


def test_consumer_exception_stops_thread(arr: gpuzarr.Array) -> None:
    loader = Loader(arr, 4)

    def train() -> None:
        for i, _ in enumerate(loader):
            if i == 2:
                raise KeyError("consumer failed")

    with pytest.raises(KeyError):
        train()
    gc.collect()
    assert _loader_threads_end()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_reader_exception_propagates(prefetch: int) -> None:
    data = CountingArray(_samples(), chunks=(CHUNK, 3), fail_at=50)
    loader = Loader(data, 8, shuffle=False, prefetch=prefetch)
    got = []
    with pytest.raises(OSError, match="simulated read failure"):
        for b in loader:
            got.append(b)
    assert len(got) == 50 // 8, "every batch before the failing block's is delivered"
    assert loader.state_dict()["batches_yielded"] == len(got)
    assert not _loader_threads()


def test_corrupt_chunk_propagates(tmp_path: Path) -> None:
    a = gpuzarr.create_array(tmp_path / "c.zarr", shape=(40, 3), chunks=(4, 3), dtype="int32")
    a[:] = _samples(40)
    (tmp_path / "c.zarr" / "c" / "5" / "0").write_bytes(b"not zstd")
    with pytest.raises(Exception) as info:
        list(Loader(gpuzarr.open_array(tmp_path / "c.zarr"), 4))
    assert not isinstance(info.value, StopIteration)
    assert not _loader_threads()


def _child_epoch(loader: Loader, conn: Any) -> None:
    conn.send((np.concatenate([_ids(b) for b in loader]).tolist(), len(_loader_threads())))
    conn.close()


@pytest.mark.parametrize("mid_epoch", [False, True])
def test_forked_child_after_parent_iterated(arr: gpuzarr.Array, mid_epoch: bool) -> None:
    ctx = multiprocessing.get_context("fork")
    loader = Loader(arr, 8, seed=6)
    list(loader)  # the parent used threads (loader's and gpuzarr's pool)
    live = iter(loader)
    if mid_epoch:
        next(live)  # and still has a prefetch thread running while forking
    expected = loader.sample_order(1)[8 if mid_epoch else 0:]
    parent, child = ctx.Pipe()
    with warnings.catch_warnings():
        # Forking with threads alive warns (Python >= 3.12; JAX when imported by another test).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        proc = ctx.Process(target=_child_epoch, args=(loader, child))
        proc.start()
    ids, threads_in_child = parent.recv()
    proc.join(30)
    assert proc.exitcode == 0
    np.testing.assert_array_equal(ids, expected)
    assert threads_in_child == 0
    live.close()
    assert not _loader_threads()


def test_spawned_child_gets_a_pickled_loader(tmp_path: Path) -> None:
    a = gpuzarr.create_array(tmp_path / "s.zarr", shape=(N, 3), chunks=(CHUNK, 3), dtype="int32")
    a[:] = _samples()
    loader = Loader(gpuzarr.open_array(tmp_path / "s.zarr"), 8, seed=6)
    clone = pickle.loads(pickle.dumps(loader))
    np.testing.assert_array_equal(np.concatenate(_epoch_ids(clone)), loader.sample_order(0))
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child_epoch, args=(loader, child))
    proc.start()
    ids, _ = parent.recv()
    proc.join(60)
    assert proc.exitcode == 0
    np.testing.assert_array_equal(ids, loader.sample_order(0))


# -- torch integration -------------------------------------------------------------------


def test_torch_dataloader_num_workers_0(arr: gpuzarr.Array) -> None:
    torch = pytest.importorskip("torch")
    loader = Loader(arr, 8, output="torch", seed=1)
    ds = loader.as_torch_dataset()
    assert isinstance(ds, torch.utils.data.IterableDataset)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    assert len(dl) == len(loader)
    for epoch in range(2):
        ds.set_epoch(epoch)
        ids = torch.cat([b[:, 0] // 10 for b in dl]).numpy()
        np.testing.assert_array_equal(ids, loader.sample_order(epoch))


def test_torch_dataloader_workers_refused(arr: gpuzarr.Array, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    ds = Loader(arr, 8).as_torch_dataset()
    # Inside a DataLoader worker (faked: real workers cost seconds to start and stop).
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    with pytest.raises(RuntimeError, match="num_workers=0"):
        iter(ds)


def test_rank_from_torch_distributed(arr: gpuzarr.Array, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        loader = Loader(arr, 8)
        assert (loader.rank, loader.world_size) == (0, 1)
        assert Loader(arr, 8, rank=1, world_size=3).world_size == 3, "explicit arguments win"
    finally:
        dist.destroy_process_group()


def test_import_does_not_pull_frameworks() -> None:
    code = (
        "import sys, gpuzarr, gpuzarr.loader\n"
        "from gpuzarr.loader import Loader\n"
        "bad = [m for m in ('torch', 'jax', 'cupy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# -- arguments ---------------------------------------------------------------------------


def test_device_seam(arr: gpuzarr.Array) -> None:
    with pytest.raises(DeviceUnavailableError):
        Loader(arr, 4, device="cuda")
    with pytest.raises(ValueError, match="cupy"):
        Loader(arr, 4, output="cupy")
    assert str(Loader(arr, 4, device="auto").device) == "cpu"


def test_bad_arguments(arr: gpuzarr.Array) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Loader(arr, 0)
    with pytest.raises(ValueError, match="batch_size"):
        Loader(arr, True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rank"):
        Loader(arr, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="both"):
        Loader(arr, 4, rank=0)
    for rank, world in ((0, 2.5), (1.5, 2), ("0", 2), (0, True)):
        with pytest.raises(ValueError, match="must be an integer"):
            Loader(arr, 4, rank=rank, world_size=world)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ranks"):
        Loader(arr, 4, world_size=200, rank=0, balance="drop")
    with pytest.raises(ValueError, match="patch_shape"):
        Loader(arr, 4, patch_shape=(200, 3))
    with pytest.raises(ValueError, match="block_shape"):
        Loader(arr, 4, patch_shape=(2, 3), block_shape=(3, None))


def test_small_units_grouped_into_large_reads() -> None:
    data = CountingArray(np.zeros((4096, 64), dtype="float32"), chunks=(1, 64))  # 256-byte chunks
    loader = Loader(data, 32)
    assert loader.block_samples == 4096 // 64, "grouped, but still 64 blocks to shuffle"
    list(loader)
    assert len(data.reads) == loader.num_blocks



def test_other_array_likes(tmp_path: Path) -> None:
    # A NumPy array and a zarr-python array are read by slicing; blocks follow zarr's chunks.
    data = _samples()
    ids = np.concatenate(_epoch_ids(Loader(data, 8, seed=1, block_shape=4)))
    assert sorted(ids.tolist()) == list(range(N))
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(tmp_path / "z.zarr", shape=data.shape, dtype=data.dtype, chunks=(5, 3))
    z[:] = data
    loader = Loader({"x": z, "y": data[:, 0]}, 8, seed=1)
    assert loader.block_samples % 5 == 0
    for b in loader:
        np.testing.assert_array_equal(b["x"][:, 0], b["y"])


@pytest.mark.parametrize("read_threads", [1, 5])
def test_read_threads_and_whole_buffer(arr: gpuzarr.Array, read_threads: int) -> None:
    # A buffer as large as the rank's blocks: a uniform shuffle of all samples.
    loader = Loader(arr, 8, read_threads=read_threads, shuffle_buffer=1000, seed=3, prefetch=1)
    ids = np.concatenate(_epoch_ids(loader))
    np.testing.assert_array_equal(ids, loader.sample_order(0))
    assert sorted(ids.tolist()) == list(range(N))


def test_blocks_follow_the_dominant_array() -> None:
    images = CountingArray(np.repeat(np.arange(N, dtype="float32")[:, None], 256, axis=1), chunks=(4, 256))
    labels = CountingArray(np.arange(N, dtype="int64"), chunks=(1000,))  # one chunk for all labels
    loader = Loader({"image": images, "label": labels}, 8, seed=0)
    assert loader.block_samples == 4
    for b in loader:
        np.testing.assert_array_equal(b["image"][:, 0], b["label"])


def test_collecting_an_iterator_on_one_of_its_read_threads_does_not_deadlock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cyclic garbage collector may free a mid-epoch iterator on any thread, one of
    the loader's own read threads included: its finalizer must only tell the threads to
    stop, never wait for them (the prefetch thread waits for that very read)."""
    from gpuzarr.loader.space import SampleSpace

    read_block = SampleSpace.read_block
    finalizers: list[Any] = []
    collected = threading.Event()

    def read_block_then_collect(self: SampleSpace, block: int, slots: Any) -> None:
        read_block(self, block, slots)
        if finalizers and not collected.is_set():
            collected.set()
            finalizers[0]()  # what a collection of the iterator on this read thread runs

    monkeypatch.setattr(SampleSpace, "read_block", read_block_then_collect)
    loader = Loader(np.arange(8192 * 8, dtype="float32").reshape(8192, 8), 64, block_shape=16, read_threads=2)
    it = iter(loader)
    next(it)  # starts the prefetch thread, which reads ahead (more than it can queue)
    finalizers.append(it._finalizer)
    assert collected.wait(30)
    assert _loader_threads_end(), "the loader's threads did not stop (deadlocked)"
    it.close()


def test_variable_length_arrays_are_refused_at_construction() -> None:
    """Batches are gathered into fixed-size pools: strings and objects are refused when
    the loader is made, naming the array, not at the first batch."""
    text = gpuzarr.create_array({}, shape=(4,), chunks=(2,), dtype="str")
    with pytest.raises(TypeError, match=r"loader: array 'text': .*variable-length"):
        Loader({"text": text, "label": np.arange(4)}, 2)
    with pytest.raises(TypeError, match=r"loader: the array: .*variable-length"):
        Loader(np.array(["a", "bb", "c", "d"], dtype=object), 2)
    fixed = Loader(np.array(["a", "bb", "c", "d"]), 2, shuffle=False)  # fixed-size '<U2' is fine
    assert next(iter(fixed)).tolist() == ["a", "bb"]


def test_a_batch_size_beyond_the_data_does_not_size_the_pool() -> None:
    """The read-ahead is at most every block: a batch_size far beyond the samples costs
    no more memory than one as large as the data."""
    import tracemalloc

    data = np.arange(30, dtype="int32").reshape(10, 3)
    tracemalloc.start()
    try:
        batch = next(iter(Loader(data, 10_000_000, shuffle=False)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert batch.tolist() == data.tolist()
    assert peak < 8 * 2**20  # (the pool sized by batch_size took hundreds of MiB)


@pytest.mark.parametrize(
    ("arguments", "error", "word"),
    [
        ({"patch_shape": (None, None)}, ValueError, "patch_shape"),
        ({"axis": 1.0}, TypeError, "axis"),
        ({"block_shape": True}, ValueError, "block_shape"),
        ({"patch_shape": (2, None), "block_shape": (True, None)}, ValueError, "block_shape"),
    ],
)
def test_argument_errors_name_the_argument(arguments: dict[str, Any], error: type[Exception], word: str) -> None:
    with pytest.raises(error, match=f"loader: {word}"):
        Loader(np.zeros((10, 3)), 2, **arguments)


def test_positions_must_be_integers() -> None:
    """Epochs and positions that are not integers are refused, not truncated."""
    loader = Loader(np.arange(40), 4, seed=1)
    state = loader.state_dict()
    for epoch, batches in [(2.9, 1), (2, 1.5), ("2", 1), (True, 1)]:
        with pytest.raises(ValueError, match="integer 'epoch' and 'batches_yielded'"):
            loader.load_state_dict({**state, "epoch": epoch, "batches_yielded": batches})
    for epoch in (1.9, -1, "x", True):
        with pytest.raises(ValueError, match="loader: epoch must be a non-negative integer"):
            loader.sample_order(epoch)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="loader: epoch must be a non-negative integer"):
            loader.set_epoch(epoch)  # type: ignore[arg-type]
    assert loader.sample_order(np.int64(1)).tolist() == loader.sample_order(1).tolist()


def test_big_endian_sources_for_torch_are_refused_naming_the_dtype() -> None:
    pytest.importorskip("torch")
    with pytest.raises(TypeError, match="output='torch' cannot hold dtype >i4"):
        Loader(np.arange(8, dtype=">i4"), 2, output="torch")


def test_closing_from_another_thread_ends_iteration_cleanly() -> None:
    """set_epoch / close / a new iter() on another thread end a running iteration with
    StopIteration (never the prefetch thread's "ended without a result"), and closing
    an iterator whose thread is being started does not try to join it unstarted."""
    a = gpuzarr.create_array({}, shape=(4000, 8), chunks=(50, 8), shards=(200, 8), dtype="f4")
    a[:] = 1
    loader = Loader(a, batch_size=32, prefetch=2, read_threads=2)
    stop = threading.Event()
    failures: list[BaseException] = []

    def reposition() -> None:
        try:
            while not stop.is_set():
                loader.set_epoch(0)
                time.sleep(0.002)
        except BaseException as exc:  # pragma: no cover - the failure this test is about
            failures.append(exc)

    other = threading.Thread(target=reposition)
    other.start()
    try:
        for _ in range(100):
            for _batch in iter(loader):
                pass
    finally:
        stop.set()
        other.join()
    assert not failures
    assert _loader_threads_end()
