"""Host memory helpers shared by the layers above (no gpuzarr imports)."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import math
import operator
import os
import threading
import weakref
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["CACHE_LINE", "POOL_MIN_BYTES", "ResultPool", "aligned_empty", "result_pool"]

#: The alignment gpuzarr gives buffers that reads land in: a cache line. On the AMD
#: EPYC CI machine the kernel copies page-cache bytes into memory 16 bytes off a cache
#: line (where NumPy and ``malloc`` put large buffers) about 3.5x slower.
CACHE_LINE = 64


def _array_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple of ints (an int is one dimension); ValueError if negative."""
    try:
        dims = (operator.index(shape),)  # type: ignore[arg-type]
    except TypeError:
        dims = tuple(operator.index(n) for n in shape)  # type: ignore[union-attr]
    if any(n < 0 for n in dims):
        raise ValueError(f"negative dimensions are not allowed: {dims}")
    return dims


def aligned_empty(
    shape: int | Sequence[int], dtype: np.dtype | type = np.uint8, align: int = CACHE_LINE
) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte
    boundary (a view of a slightly larger buffer). Not for object dtypes."""
    dims = _array_shape(shape)
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise TypeError(f"aligned_empty cannot hold object dtype {dtype}")
    nbytes = math.prod(dims) * dtype.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    offset = -raw.ctypes.data % align
    return raw[offset : offset + nbytes].view(dtype).reshape(dims)


#: Results smaller than this are left to ``malloc``, which keeps freed blocks that small
#: for reuse itself (larger ones it maps afresh and unmaps when freed).
POOL_MIN_BYTES = 2**20


def _size_class(nbytes: int) -> int:
    """``nbytes`` rounded up to its size class: four significant bits (at most 1/8 more,
    in whole pages). Classes make a block fit the next result of about the same size,
    and keep the number of ctypes array types the leases need small."""
    shift = max(nbytes.bit_length() - 4, 12)
    return -(-nbytes >> shift) << shift


def _total_bytes(blocks: list[np.ndarray]) -> int:
    """The size of ``blocks`` together."""
    return sum(block.nbytes for block in blocks)


@functools.cache
def _lease_type(nbytes: int) -> type[ctypes.Array[ctypes.c_char]]:
    """The ctypes array type a lease of a block of ``nbytes`` is (one per size class)."""
    return ctypes.c_char * nbytes


class ResultPool:
    """Host memory of read results that have been freed, kept to back new results.

    A fresh array of a few MiB or more is memory the kernel maps and zeroes page by
    page as it is first written, and unmaps again when the array is freed: for a read
    in a loop (a data loader's batches, or the same array read again) that costs about
    as much CPU time as decoding. (Measured: zeroing took 10% of the CPU time of 32
    int16 windows of 1 MiB read in a loop; a 128 MiB full read of 1 MiB chunks stored
    as is took 45 ms into fresh memory, 17 ms into reused memory.) The pool keeps
    blocks whose results have all been freed, up to a limit in bytes
    (``config.result_pool_bytes``, counting the blocks results still use), and hands
    them to new results of the same size class. This is what CuPy's memory pools do
    for device memory.

    A block goes back to the pool only once no array uses any of its memory: each
    result is a view of a *lease*, a ctypes array over the block that every view of the
    result keeps alive (NumPy's view bases end at it, since it is not an ndarray), and
    the block returns when the lease is collected. (One contrived case escapes this: a
    ``__del__`` method that, run by the garbage collector on a reference cycle holding
    the lease, stores a new reference to it. The collector calls the lease's finalizer
    before that ``__del__``, so the block returns while the revived lease can still
    reach it.) Results of the pool are uninitialised, as ``np.empty``'s are.

    The books survive an exception at any point (a ``KeyboardInterrupt`` included):
    every change to them is one list or dict operation, and sizes are summed from the
    lists rather than kept in counters, so an interrupted step loses at most a block
    (freed, not reused), never a count. A call that reaches the pool again on the
    thread holding its lock (from a ``__del__`` the garbage collector runs there, or a
    signal handler) gets fresh memory instead of waiting for the lock it holds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread holding the lock
        # Blocks no result uses, least recently freed first.
        self._free: list[np.ndarray] = []
        # Blocks results use, by id (the block itself is held, so the id stays its own),
        # with the generation they were leased in.
        self._leased: dict[int, tuple[np.ndarray, int]] = {}
        # free_all_blocks() starts a new generation: blocks leased before it are not kept.
        self._generation = 0
        self._limit = 0  # the limit of the latest pooled request, which returned blocks are kept within
        # Blocks whose lease was collected, appended by the lease's finalizer (which may
        # run on any thread, inside the garbage collector too, so it takes no lock).
        self._returned: collections.deque[np.ndarray] = collections.deque()

    @property
    def held_bytes(self) -> int:
        """Bytes of the blocks the pool holds: free ones and those results use."""
        with self._locked() as locked:
            if locked:
                self._take_returned()
            return self._leased_bytes() + _total_bytes(self._free)

    @property
    def free_bytes(self) -> int:
        """Bytes of the blocks the pool holds that no result uses."""
        with self._locked() as locked:
            if locked:
                self._take_returned()
            return _total_bytes(self._free)

    def free_all_blocks(self) -> None:
        """Release the blocks no result uses, and let go of those results use: they are
        freed with their results instead of coming back to the pool."""
        with self._locked() as locked:
            if not locked:
                return
            self._take_returned()
            self._generation += 1
            self._free.clear()

    def empty(self, shape: int | Sequence[int], dtype: np.dtype | type, limit: int) -> np.ndarray:
        """An uninitialised C-contiguous array starting on a cache line, as
        :func:`aligned_empty` gives, in pooled memory where it is at least
        :data:`POOL_MIN_BYTES` and its block fits within ``limit`` bytes of blocks
        (0: fresh memory, and the pool is left as it is: blocks it holds stay until
        :meth:`free_all_blocks`)."""
        dims = _array_shape(shape)
        dtype = np.dtype(dtype)
        nbytes = math.prod(dims) * dtype.itemsize
        if limit <= 0 or nbytes < POOL_MIN_BYTES or dtype.hasobject:
            return aligned_empty(dims, dtype)
        size = _size_class(nbytes + CACHE_LINE)
        with self._locked() as locked:
            block = self._take(size, limit) if locked else None
            generation = self._generation
        if block is None:
            return aligned_empty(dims, dtype)
        lease = _lease_type(size).from_buffer(block)  # (holds the block)
        # (atexit=False: nothing needs returning while the interpreter shuts down.)
        weakref.finalize(lease, self._returned.append, block).atexit = False
        # Counted only once the finalizer is there to return it: after an exception
        # before this, the block is in no list (and, should it come back, dropped).
        with self._locked() as locked:
            if locked:
                self._leased[id(block)] = (block, generation)
        flat = np.frombuffer(lease, dtype=np.uint8)
        offset = -flat.ctypes.data % CACHE_LINE
        return flat[offset : offset + nbytes].view(dtype).reshape(dims)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[bool]:
        """Hold the pool's lock; yields False, without it, on the thread that holds it
        already (a ``__del__`` or signal handler run while it does)."""
        me = threading.get_ident()
        if self._owner == me:
            yield False
            return
        with self._lock:
            self._owner = me
            try:
                yield True
            finally:
                self._owner = None

    def _leased_bytes(self) -> int:
        """Bytes of the blocks results use (summed, not counted: see the class docs)."""
        return _total_bytes([block for block, _ in list(self._leased.values())])

    def _take(self, size: int, limit: int) -> np.ndarray | None:
        """A block of ``size`` bytes for a new result (under the lock): a free one, else
        a new one within ``limit``; None where the blocks in use leave no room."""
        self._limit = limit
        self._take_returned()
        leased = self._leased_bytes()
        free = _total_bytes(self._free)
        while self._free and leased + free > limit:  # (the limit was lowered)
            free -= self._free.pop(0).nbytes
        for i in range(len(self._free) - 1, -1, -1):  # (the most recently freed: likeliest in cache)
            if self._free[i].nbytes == size:
                return self._free.pop(i)
        if leased + size > limit:
            return None
        while self._free and leased + free + size > limit:
            free -= self._free.pop(0).nbytes
        return np.empty(size, dtype=np.uint8)

    def _take_returned(self) -> None:
        """Move the blocks whose results are gone from ``_returned`` to the free list
        (under the lock), as far as the latest limit allows and only those leased in
        this generation. Interrupted anywhere, this can run again: a block leaves
        ``_leased`` before it joins the free list, and ``_returned`` last."""
        while self._returned:
            block = self._returned[0]
            entry = self._leased.pop(id(block), None)
            if entry is not None and entry[1] == self._generation:
                in_use = self._leased_bytes() + _total_bytes(self._free)
                if in_use + block.nbytes <= self._limit:
                    self._free.append(block)
            self._returned.popleft()

    def _after_fork(self) -> None:
        # A fork while another thread held the lock would leave the child's copy locked.
        self._lock = threading.Lock()
        self._owner = None


#: The process's pool of result memory (see :class:`ResultPool`).
result_pool = ResultPool()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=result_pool._after_fork)
