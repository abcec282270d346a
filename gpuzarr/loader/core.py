"""The :class:`Loader`: batches from Zarr arrays for a training loop, in one process."""

from __future__ import annotations

import os
import queue
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from gpuzarr._checks import is_integer
from gpuzarr.config import config
from gpuzarr.device import Device, resolve_device
from gpuzarr.loader.order import Balance, EpochOrder, epoch_order, make_schedule, samples_per_rank
from gpuzarr.loader.output import OUTPUTS, BatchBackend, HostBackend, make_backend
from gpuzarr.loader.space import MIN_BLOCKS, SampleSpace

if TYPE_CHECKING:
    from gpuzarr.loader.torch_dataset import TorchIterableDataset

__all__ = ["Loader", "LoaderIterator"]

#: 2: ranks share the epoch's samples, not whole blocks (a version 1 position means
#: other samples).
_STATE_VERSION = 2
#: Automatic blocks are kept small enough for this many per rank (storage allowing).
_BLOCKS_PER_RANK = 8
#: Default shuffle buffer: enough blocks for this many batches ...
_BUFFER_BATCHES = 4
#: ... but no more than this many bytes of blocks (unless one batch needs more).
_BUFFER_BYTES_CAP = 512 * 2**20


def _distributed_rank() -> tuple[int, int] | None:
    """(rank, world size) from torch.distributed, without importing torch."""
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None) if torch is not None else None
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return int(dist.get_rank()), int(dist.get_world_size())


class Loader:
    """Batches of samples from one or more aligned Zarr arrays, for a training loop.

    ``for batch in loader`` yields this rank's batches of the current epoch, then moves
    to the next epoch. Reads are whole storage blocks decoded on gpuzarr's thread pool,
    assembled by one background thread: no worker processes.

    Args:
        arrays: one array (batches are arrays) or a mapping of names to arrays (batches
            are dicts with those names). :class:`gpuzarr.Array` objects are read with
            ``read(out=...)``; anything with ``shape``, ``dtype`` and NumPy slicing (a
            NumPy array, a zarr-python array) is read by slicing.
        batch_size: samples per batch.
        axis: the sample axis (when ``patch_shape`` is None): sample ``i`` is index ``i``
            along it, of every array; the arrays must have the same length there.
        patch_shape: samples are grid-aligned patches instead. Entries cover the trailing
            dimensions: an int tiles that dimension in patches of that extent (an edge
            remainder is skipped), None takes it whole; leading dimensions not covered
            are tiled one index at a time and dropped from the batch.
            ``patch_shape=(256, 256)`` on ``(N, H, W)`` images gives batches of shape
            ``(batch_size, 256, 256)``. All arrays share the tiled extents.
        shuffle: shuffle blocks and samples (see below); False yields storage order.
        seed: the order of an epoch is a function of ``(seed, epoch)``, the rank and
            the settings that shape it (world size, blocks, shuffle buffer, batch size).
        shuffle_buffer: blocks the shuffle buffer mixes (default: enough for 4 batches,
            at least 4, at most 512 MiB unless a batch needs more).
        shuffle_buffer_samples: the same, in samples (rounded up to whole blocks).
        block_shape: override the read unit: samples per block along ``axis``, or block
            extents per array dimension for patches (None entries: automatic).
        drop_last: drop a final partial batch.
        balance: how ranks are evened out to the same number of samples, as
            ``DistributedSampler`` does: ``"pad"`` repeats at most one sample per rank
            (none is skipped), ``"drop"`` skips at most one per rank. Default: ``"drop"``
            with ``drop_last``, else ``"pad"``.
        rank, world_size: this process's part of every epoch; default
            torch.distributed's when it is initialised (torch is never imported for
            this), else a single rank.
        prefetch: batches assembled ahead; 0 runs everything in the caller's thread.
        read_threads: blocks read at once (default ``config.threads``, within 2..8).
        output: ``"numpy"`` (default on the CPU), ``"torch"`` or ``"jax"`` (the batch
            buffer is adopted through DLPack, no copy); ``"cupy"`` is for the GPU path.
        device: where batches are assembled. ``"cpu"`` (``"auto"`` too: batches are
            assembled on the CPU until the loader's GPU batch backend exists);
            ``"cuda"`` raises :class:`gpuzarr.errors.DeviceUnavailableError` until then.
        pin_memory: with ``output="torch"``, gather into pinned memory (ignored, with a
            warning, when no accelerator is present).

    Order. Reads are storage blocks: a run of whole shards along the sample dimensions
    (of chunks when unsharded, or when there are too few shards to make enough blocks),
    grouped to a few MiB when they are small. Each epoch
    permutes the blocks with a generator seeded by ``(seed, epoch)``; every rank
    computes the same permutation and takes a disjoint run of its samples, so only the
    blocks at the ends of a rank's run may be read by a neighbouring rank too (automatic
    blocks stay small enough for at least 8 per rank where storage allows). Within a
    rank, a shuffle buffer of ``shuffle_buffer`` blocks mixes samples of neighbouring
    blocks; every block is read once per epoch and held only while its samples are
    handed out. Storage order (``shuffle=False``) is blocks in C order, samples in a
    block in C order: ``0, 1, 2, ...`` along an axis. The exact definition is in
    :mod:`gpuzarr.loader.order`; :meth:`sample_order` lists it.

    Position. The loader has one position (epoch, batches yielded); a new ``iter()``
    continues from it and closes any previous iterator. :meth:`set_epoch` restarts at
    the start of an epoch; :meth:`state_dict` / :meth:`load_state_dict` save and
    resume it mid-epoch (skipped batches are not read).

    Threads start on the first ``next()``, never at construction, and stop when the
    epoch ends, the iterator is closed or garbage-collected, the loader is
    re-positioned, or reading fails (the exception is raised to the consumer). Closing
    waits for them; a collected iterator's threads end on their own shortly after.
    Every batch is a new buffer, safe to keep.

    Memory: a pool of about ``shuffle_buffer`` + one batch's + ``read_threads`` blocks
    per array (the schedule's exact peak), allocated on the first iteration and kept for
    the next epochs, plus ``prefetch`` + 1 batches.
    """

    def __init__(
        self,
        arrays: Any | Mapping[str, Any],
        batch_size: int,
        *,
        axis: int = 0,
        patch_shape: Sequence[int | None] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_buffer: int | None = None,
        shuffle_buffer_samples: int | None = None,
        block_shape: int | Sequence[int | None] | None = None,
        drop_last: bool = False,
        balance: Balance | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        prefetch: int = 2,
        read_threads: int | None = None,
        output: str | None = None,
        device: str | Device = "cpu",
        pin_memory: bool = False,
    ) -> None:
        if not is_integer(batch_size) or batch_size < 1:
            raise ValueError(f"loader: batch_size must be a positive integer, got {batch_size!r}")
        if not is_integer(seed) or seed < 0:
            raise ValueError(f"loader: seed must be a non-negative integer, got {seed!r}")
        for name, value in (("prefetch", prefetch), ("read_threads", read_threads)):
            if value is not None and (not is_integer(value) or value < 0):
                raise ValueError(f"loader: {name} must be a non-negative integer, got {value!r}")
        if shuffle_buffer is not None and shuffle_buffer_samples is not None:
            raise ValueError("loader: give shuffle_buffer (blocks) or shuffle_buffer_samples, not both")
        if balance is None:
            balance = "drop" if drop_last else "pad"
        if balance not in ("pad", "drop"):
            raise ValueError(f"loader: balance must be 'pad' or 'drop', got {balance!r}")
        if output is not None and output not in OUTPUTS:
            raise ValueError(f"loader: output must be one of {OUTPUTS}, got {output!r}")

        if (rank is None) != (world_size is None):
            raise ValueError("loader: give both rank and world_size, or neither")
        if rank is None or world_size is None:
            rank, world_size = _distributed_rank() or (0, 1)
        for name, value in (("rank", rank), ("world_size", world_size)):
            if not is_integer(value):
                raise ValueError(f"loader: {name} must be an integer, got {value!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"loader: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")

        self._single = not isinstance(arrays, Mapping)
        named = {"": arrays} if self._single else dict(arrays)
        if not self._single and not all(isinstance(k, str) for k in named):
            raise TypeError("loader: array names must be strings")
        # Enough blocks that the blocks two ranks share (see gpuzarr.loader.order) are few
        # next to those each reads alone.
        self._space = SampleSpace(
            named,
            axis=axis,
            patch_shape=patch_shape,
            block_shape=block_shape,
            min_blocks=max(MIN_BLOCKS, _BLOCKS_PER_RANK * int(world_size)),
        )
        # "auto" stays on the CPU: the GPU batch backend (CuPy gathers, device pool) is not
        # built yet, even where the GPU read path is available.
        self._device = resolve_device("cpu" if device in ("auto", None) else device)
        self._output = output
        self._pin_memory = bool(pin_memory)
        self._backend = self._make_backend()

        num_samples = self._space.num_samples
        if balance == "drop" and 0 < num_samples < world_size:
            raise ValueError(
                f"loader: {num_samples} samples cannot be shared by {world_size} ranks with balance='drop' "
                "(every rank would get none); use balance='pad'"
            )

        block = self._space.max_block_samples
        if shuffle_buffer_samples is not None:
            if not is_integer(shuffle_buffer_samples) or shuffle_buffer_samples < 1:
                raise ValueError(f"loader: shuffle_buffer_samples must be positive, got {shuffle_buffer_samples}")
            buffer_blocks = -(-int(shuffle_buffer_samples) // block)
        elif shuffle_buffer is not None:
            if not is_integer(shuffle_buffer) or shuffle_buffer < 1:
                raise ValueError(f"loader: shuffle_buffer must be at least 1 block, got {shuffle_buffer}")
            buffer_blocks = int(shuffle_buffer)
        else:
            block_bytes = block * sum(r.sample_nbytes for r in self._space.readers.values())
            wanted = max(4, -(-_BUFFER_BATCHES * batch_size // block))
            cap = max(-(-batch_size // block), _BUFFER_BYTES_CAP // max(1, block_bytes))
            buffer_blocks = max(1, min(wanted, cap))

        self._batch_size = int(batch_size)
        self._shuffle = bool(shuffle)
        self._seed = int(seed)
        self._buffer_blocks = buffer_blocks
        self._drop_last = bool(drop_last)
        self._balance: Balance = balance
        self._rank = int(rank)
        self._world_size = int(world_size)
        self._prefetch = int(prefetch)
        self._read_threads = None if read_threads is None else int(read_threads)
        self._per_rank = samples_per_rank(num_samples, self._world_size, balance)
        if self._drop_last and 0 < self._per_rank < self._batch_size:
            warnings.warn(
                f"loader: each rank gets {self._per_rank} samples per epoch, fewer than batch_size="
                f"{self._batch_size}, and drop_last=True drops them all: every epoch is empty",
                stacklevel=2,
            )
        self._epoch = 0
        self._position = 0  # batches of the current epoch already handed out
        self._generation = 0  # bumped on every re-positioning; stale iterators stop counting
        self._active: weakref.ref[LoaderIterator] | None = None
        self._pools = _PoolCache()

    def _make_backend(self) -> BatchBackend:
        backend = make_backend(self._device, self._output, self._pin_memory)
        if isinstance(backend, HostBackend):
            for name, reader in self._space.readers.items():
                try:
                    backend.check_dtype(reader.dtype)
                except TypeError as e:
                    raise TypeError(f"loader: {f'array {name!r}' if name else 'the array'}: {e}") from None
        return backend

    # -- description ----------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        """Samples per batch (the last batch of an epoch may be smaller unless ``drop_last``)."""
        return self._batch_size

    @property
    def num_samples(self) -> int:
        """Samples in the data (all ranks together, without padding)."""
        return self._space.num_samples

    @property
    def samples_per_epoch(self) -> int:
        """Samples this rank yields per epoch (padding included, ``drop_last`` applied)."""
        n = self._per_rank
        return (n // self._batch_size) * self._batch_size if self._drop_last else n

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Shape of the sample grid: ``(length,)`` along an axis, patch counts per tiled dimension."""
        return self._space.grid_shape

    @property
    def num_blocks(self) -> int:
        """Storage blocks the samples are read in."""
        return self._space.num_blocks

    @property
    def block_samples(self) -> int:
        """Samples in a (whole) block."""
        return self._space.max_block_samples

    @property
    def shuffle_buffer(self) -> int:
        """Shuffle buffer size, in blocks."""
        return self._buffer_blocks

    @property
    def rank(self) -> int:
        """This process's rank."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Number of ranks sharing each epoch."""
        return self._world_size

    @property
    def device(self) -> Device:
        """Where batches are assembled."""
        return self._device

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._epoch

    def __len__(self) -> int:
        """Batches per epoch for this rank (the same on every rank and in every epoch)."""
        n = self._per_rank
        return n // self._batch_size if self._drop_last else -(-n // self._batch_size)

    def __repr__(self) -> str:
        return (
            f"<gpuzarr.Loader samples={self.num_samples} batch_size={self._batch_size} batches={len(self)} "
            f"blocks={self.num_blocks}x{self.block_samples} shuffle={self._shuffle} "
            f"rank={self._rank}/{self._world_size} device={self._device}>"
        )

    # -- order ----------------------------------------------------------------------

    def _order(self, epoch: int) -> EpochOrder:
        return epoch_order(
            self._space.block_sizes,
            seed=self._seed,
            epoch=epoch,
            shuffle=self._shuffle,
            buffer_blocks=self._buffer_blocks,
            rank=self._rank,
            world_size=self._world_size,
            balance=self._balance,
            batch_size=self._batch_size,
            drop_last=self._drop_last,
        )

    def sample_order(self, epoch: int | None = None) -> np.ndarray:
        """Sample ids this rank yields in ``epoch`` (default: the current one), in order.

        Batch ``i`` holds ``sample_order()[i * batch_size:(i + 1) * batch_size]``. Ids are
        indices along the sample axis, or C-order positions in :attr:`grid_shape` for
        patches (``np.unravel_index(ids, loader.grid_shape)`` times the patch shape gives
        patch origins). Computed without reading any data.
        """
        if epoch is not None and (not is_integer(epoch) or epoch < 0):
            raise ValueError(f"loader: epoch must be a non-negative integer, got {epoch!r}")
        order = self._order(self._epoch if epoch is None else int(epoch))
        return self._space.sample_ids(order.blocks, order.local)

    # -- position -------------------------------------------------------------------

    def _reposition(self, epoch: int, position: int) -> None:
        self.close()
        self._epoch = epoch
        self._position = position
        self._generation += 1

    def set_epoch(self, epoch: int) -> None:
        """Start over at the beginning of ``epoch`` (closes a running iteration)."""
        if not is_integer(epoch) or epoch < 0:
            raise ValueError(f"loader: epoch must be a non-negative integer, got {epoch!r}")
        self._reposition(int(epoch), 0)

    def _fingerprint(self) -> dict[str, Any]:
        # What the order depends on, except the rank: ranks move in lockstep, so any
        # rank's state resumes every rank.
        return {
            "num_samples": self.num_samples,
            "grid_shape": list(self.grid_shape),
            "num_blocks": self.num_blocks,
            "block_samples": self.block_samples,
            "batch_size": self._batch_size,
            "shuffle": self._shuffle,
            "seed": self._seed,
            "shuffle_buffer": self._buffer_blocks,
            "world_size": self._world_size,
            "balance": self._balance,
            "drop_last": self._drop_last,
        }

    def state_dict(self) -> dict[str, Any]:
        """The position: epoch and batches already handed out, plus what the order depends on."""
        return {
            "version": _STATE_VERSION,
            "epoch": self._epoch,
            "batches_yielded": self._position,
            "config": self._fingerprint(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at a :meth:`state_dict` position: the next batch is the first not yet yielded.

        The order is regenerated and the batches already yielded are skipped without
        reading their data. Raises ValueError when the state comes from a loader whose
        order differs (other data, batch size, seed, ranks, ...).
        """
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"loader: unsupported state version {state.get('version')!r} (this gpuzarr writes {_STATE_VERSION})"
            )
        mine = self._fingerprint()
        theirs = dict(state.get("config", {}))
        diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if diff:
            details = ", ".join(f"{k}: state {theirs.get(k)!r} vs loader {mine.get(k)!r}" for k in diff)
            raise ValueError(f"loader: state_dict is from a differently configured loader ({details})")
        epoch, position = state.get("epoch"), state.get("batches_yielded")
        if not (is_integer(epoch) and is_integer(position)):
            raise ValueError(
                f"loader: state_dict needs integer 'epoch' and 'batches_yielded', got {epoch!r} and {position!r}"
            )
        epoch, position = int(epoch), int(position)
        if epoch < 0 or not 0 <= position <= len(self):
            raise ValueError(f"loader: bad position in state_dict: epoch {epoch}, batch {position}")
        self._reposition(epoch, position)

    # -- iteration ------------------------------------------------------------------

    def __iter__(self) -> LoaderIterator:
        """Iterate from the current position to the end of the epoch (closes a running iteration)."""
        self.close()
        it = LoaderIterator(self, self._generation)
        self._active = weakref.ref(it)
        return it

    def close(self) -> None:
        """Stop a running iteration and its threads (it then raises StopIteration)."""
        it = self._active() if self._active is not None else None
        self._active = None
        if it is not None:
            it.close()

    def _produce(self, epoch: int, start: int, parallel: bool) -> Callable[[threading.Event], Iterator[Any]]:
        """A function producing the batches of ``epoch`` from ``start`` (run by the iterator)."""
        space, backend, batch_size = self._space, self._backend, self._batch_size
        single = self._single
        order_of = self._order
        pools = self._pools
        read_threads = 0
        if parallel:
            # Default: as many block reads in flight as decode threads (a block whose chunks
            # decode as one task, e.g. a whole shard, keeps one thread busy), 2 to 8.
            read_threads = self._read_threads if self._read_threads is not None else min(8, max(2, config.threads))

        def produce(stop: threading.Event) -> Iterator[Any]:
            order = order_of(epoch)
            yield from _assemble(space, backend, pools, order, batch_size, start, read_threads, single, stop)

        return produce

    def _advance(self, generation: int) -> None:
        if generation == self._generation:
            self._position += 1

    def _finish_epoch(self, generation: int) -> None:
        if generation == self._generation:
            self._epoch += 1
            self._position = 0
            self._generation += 1

    # -- integration ----------------------------------------------------------------

    def as_torch_dataset(self) -> TorchIterableDataset:
        """This loader as a ``torch.utils.data.IterableDataset`` yielding whole batches.

        Use it with ``torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)``:
        the loader batches and reads in parallel itself.
        """
        from gpuzarr.loader.torch_dataset import TorchIterableDataset

        return TorchIterableDataset(self)

    def __getstate__(self) -> dict[str, Any]:
        # Pickling (spawn/forkserver start methods) carries configuration and position,
        # not a running iteration nor imported modules.
        state = self.__dict__.copy()
        state["_active"] = None
        state["_backend"] = None
        state["_pools"] = _PoolCache()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._backend = self._make_backend()


class _PoolCache:
    """The block pool kept between iterations, so each epoch does not fault in fresh memory.

    An iteration checks the pool out and back in with single dict operations (atomic, no
    lock to inherit across fork); an iteration that finds it checked out by one still
    winding down allocates its own.
    """

    def __init__(self) -> None:
        self._slot: dict[str, tuple[int, dict[str, Any]]] = {}

    def take(self, samples: int, make: Callable[[int], dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        """Pools holding at least ``samples`` samples: (their size, pools by array name)."""
        cached = self._slot.pop("pools", None)
        if cached is not None and cached[0] >= samples:
            return cached
        return samples, make(samples)

    def give(self, size: int, pools: dict[str, Any]) -> None:
        """Return pools after an iteration."""
        self._slot.setdefault("pools", (size, pools))


def _assemble(
    space: SampleSpace,
    backend: BatchBackend,
    pool_cache: _PoolCache,
    order: EpochOrder,
    batch_size: int,
    start: int,
    read_threads: int,
    single: bool,
    stop: threading.Event,
) -> Iterator[Any]:
    """Read blocks as the schedule says and gather each batch from them.

    Blocks are read into slots of a pool (``capacity`` blocks per array), in order of
    first use and up to ``lookahead`` blocks early so reads overlap the gathering; a
    slot is reused once the last batch needing its block has been gathered.
    """
    schedule = make_schedule(order, batch_size, start)
    if not schedule.loads:
        return
    block = space.max_block_samples
    # (Never more blocks than there are: a batch_size far beyond the data must not size the pool.)
    lookahead = min(max(read_threads, -(-batch_size // block)), space.num_blocks) if read_threads else 0
    capacity = schedule.capacity + lookahead
    pool_size, pools = pool_cache.take(capacity * block, lambda n: {
        name: backend.empty_pool((n, *r.pool_sample_shape), r.dtype) for name, r in space.readers.items()
    })
    sequence = schedule.load_sequence
    needed = np.cumsum([len(x) for x in schedule.loads])  # loads done before batch i is gathered
    slot_of = np.full(space.num_blocks, -1, dtype=np.int64)
    free = list(range(capacity - 1, -1, -1))
    pending: list[Future[None] | None] = []
    executor = ThreadPoolExecutor(read_threads, thread_name_prefix="gpuzarr-loader-read") if read_threads else None

    def submit(upto: int) -> None:
        while len(pending) < min(upto, len(sequence)) and free:
            b = int(sequence[len(pending)])
            slot = free.pop()
            slot_of[b] = slot
            views = {name: pool[slot * block:(slot + 1) * block] for name, pool in pools.items()}
            if executor is None:
                space.read_block(b, views)
                pending.append(None)
            else:
                pending.append(executor.submit(space.read_block, b, views))

    try:
        waited = 0
        for i in range(len(schedule.loads)):
            if stop.is_set():
                return
            submit(int(needed[i]) + lookahead)
            # The pool holds the schedule's peak plus the lookahead, so this never fails.
            assert len(pending) >= needed[i], "loader: block pool smaller than the schedule needs"
            for j in range(waited, int(needed[i])):
                future = pending[j]
                if future is not None:
                    future.result()
                    pending[j] = None
            waited = int(needed[i])
            lo = (start + i) * batch_size
            hi = min(lo + batch_size, len(order))
            addresses = slot_of[order.blocks[lo:hi]] * block + order.local[lo:hi]
            batch: dict[str, Any] = {}
            for name, reader in space.readers.items():
                host, handle = backend.empty_batch((hi - lo, *space.out_sample_shapes[name]), reader.dtype)
                backend.gather(pools[name], addresses, host.reshape(hi - lo, *reader.pool_sample_shape))
                batch[name] = backend.finish(handle)
            for b in schedule.frees[i]:
                free.append(int(slot_of[b]))
            # Start the next reads before handing the batch over (the hand-over may block);
            # without read threads they wait for the next batch (read here, they would
            # only delay this one, and a failing read would fail a batch early).
            if executor is not None and i + 1 < len(schedule.loads):
                submit(int(needed[i + 1]) + lookahead)
            yield batch[""] if single else batch
    finally:
        if executor is not None:
            # Wait for reads in flight: they write into the pool.
            executor.shutdown(wait=True, cancel_futures=True)
        pool_cache.give(pool_size, pools)


def _put(q: queue.Queue[tuple[str, Any]], item: tuple[str, Any], stop: threading.Event) -> bool:
    """Put unless asked to stop (a consumer that went away never frees a place)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _run_worker(
    produce: Callable[[threading.Event], Iterator[Any]], q: queue.Queue[tuple[str, Any]], stop: threading.Event
) -> None:
    """The prefetch thread: batches, then ``("end", None)`` or ``("error", exception)``."""
    batches = produce(stop)
    try:
        for batch in batches:
            if not _put(q, ("batch", batch), stop):
                return
        _put(q, ("end", None), stop)
    except BaseException as e:  # handed to the consumer, who re-raises it
        _put(q, ("error", e), stop)
    finally:
        batches.close()  # type: ignore[attr-defined]


class _Worker:
    """The prefetch thread of one iteration and its queue (holds no reference to the iterator)."""

    def __init__(self, produce: Callable[[threading.Event], Iterator[Any]], prefetch: int) -> None:
        self.produce = produce
        self.stop = threading.Event()
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=prefetch)
        self.thread: threading.Thread | None = None
        # Guards starting the thread against close() on another thread (which must see
        # either no thread or a started one).
        self._starting = threading.Lock()
        self.pid = os.getpid()

    def get(self) -> tuple[str, Any]:
        """The next item: ``("batch", b)``, ``("end", None)``, ``("error", e)``, or
        ``("closed", None)`` once the iteration was closed (from any thread)."""
        with self._starting:
            if self.thread is None:
                if self.stop.is_set():
                    return ("closed", None)
                # Started on first use, never at construction: a loader made before
                # fork() has no thread to lose.
                thread = threading.Thread(
                    target=_run_worker, args=(self.produce, self.queue, self.stop), name="gpuzarr-loader", daemon=True
                )
                thread.start()
                self.thread = thread
        while True:
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return ("closed", None)  # (stopped without a result: closed meanwhile)
                if not self.thread.is_alive() and self.queue.empty():
                    return ("error", RuntimeError("gpuzarr loader: the prefetch thread ended without a result"))

    def close(self) -> None:
        self.stop.set()
        with self._starting:
            thread = self.thread
        if os.getpid() != self.pid:
            return  # a forked copy: the thread exists only in the parent
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class LoaderIterator(Iterator[Any]):
    """One pass over the rest of an epoch; see :class:`Loader`. Also a context manager."""

    def __init__(self, loader: Loader, generation: int) -> None:
        self._loader = loader
        self._generation = generation
        self._epoch = loader.epoch
        start = loader._position
        self._done = False
        parallel = loader._prefetch > 0
        produce = loader._produce(self._epoch, start, parallel)
        self._sync: Iterator[Any] | None = None
        self._worker: _Worker | None = None
        if parallel:
            self._worker = _Worker(produce, loader._prefetch)
            # Collection only signals the threads to stop: a finalizer may run on any
            # thread (one of the loader's own read threads, or one holding a lock the
            # loader's threads need to end), so it must not wait for them. close() waits.
            self._finalizer = weakref.finalize(self, self._worker.stop.set)
        else:
            self._sync = produce(threading.Event())
            self._finalizer = weakref.finalize(self, self._sync.close)  # type: ignore[attr-defined]

    @property
    def epoch(self) -> int:
        """The epoch this iterator walks."""
        return self._epoch

    def __iter__(self) -> LoaderIterator:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if self._sync is not None:
            try:
                batch = next(self._sync)
            except StopIteration:
                self._end()
                raise
            except BaseException:
                self.close()
                raise
        else:
            assert self._worker is not None
            kind, value = self._worker.get()
            if kind == "closed":  # by another thread, meanwhile
                self._done = True
                raise StopIteration
            if kind == "end":
                self._end()
                raise StopIteration
            if kind == "error":
                self.close()
                raise value
            batch = value
        self._loader._advance(self._generation)
        return batch

    def _end(self) -> None:
        self.close()
        self._loader._finish_epoch(self._generation)

    def close(self) -> None:
        """Stop reading ahead and release the thread; further ``next()`` raises StopIteration."""
        self._done = True
        self._finalizer()
        if self._worker is not None:
            self._worker.close()  # (waits for the prefetch thread, once it has stopped)

    def __enter__(self) -> LoaderIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Batches left in this pass."""
        return 0 if self._done else max(0, len(self._loader) - self._loader._position)
