"""Host memory helpers shared by the layers above (no gpuzarr imports)."""

from __future__ import annotations

import collections
import ctypes
import functools
import math
import operator
import os
import threading
import weakref

import numpy as np

__all__ = ["CACHE_LINE", "POOL_MIN_BYTES", "ResultPool", "aligned_empty", "result_pool"]

#: The alignment gpuzarr gives buffers that reads land in: a cache line. On the AMD
#: EPYC CI machine the kernel copies page-cache bytes into memory 16 bytes off a cache
#: line (where NumPy and ``malloc`` put large buffers) about 3.5x slower.
CACHE_LINE = 64


def aligned_empty(
    shape: int | tuple[int, ...], dtype: np.dtype | type = np.uint8, align: int = CACHE_LINE
) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte
    boundary (a view of a slightly larger buffer). Not for object dtypes."""
    try:
        shape = (operator.index(shape),)  # type: ignore[arg-type]
    except TypeError:
        shape = tuple(operator.index(n) for n in shape)  # type: ignore[union-attr]
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise TypeError(f"aligned_empty cannot hold object dtype {dtype}")
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    offset = -raw.ctypes.data % align
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


#: Results smaller than this are left to ``malloc``, which keeps freed blocks that small
#: for reuse itself (larger ones it maps afresh and unmaps when freed).
POOL_MIN_BYTES = 2**20


def _size_class(nbytes: int) -> int:
    """``nbytes`` rounded up to its size class: four significant bits (at most 1/8 more,
    in whole pages). Classes make a block fit the next result of about the same size,
    and keep the number of ctypes array types the leases need small."""
    shift = max(nbytes.bit_length() - 4, 12)
    return -(-nbytes >> shift) << shift


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
    the block returns when the lease is collected. A block in use is never handed out
    again. Results of the pool are uninitialised, as ``np.empty``'s are.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[np.ndarray] = []  # blocks no result uses, least recently freed first
        self._leased_bytes = 0  # bytes of the blocks results use
        self._limit = 0  # the limit of the latest request (blocks returned later are kept within it)
        # Blocks whose lease was collected (appended by the lease's finalizer, which may run
        # on any thread, inside the garbage collector too: never under the lock).
        self._returned: collections.deque[np.ndarray] = collections.deque()

    @property
    def held_bytes(self) -> int:
        """Bytes of the blocks the pool holds: free ones and those results use."""
        with self._lock:
            self._take_returned()
            return self._leased_bytes + sum(block.nbytes for block in self._free)

    @property
    def free_bytes(self) -> int:
        """Bytes of the blocks the pool holds that no result uses."""
        with self._lock:
            self._take_returned()
            return sum(block.nbytes for block in self._free)

    def free_all_blocks(self) -> None:
        """Release the blocks no result uses (blocks in use return when their results are
        freed, as the limit allows)."""
        with self._lock:
            self._take_returned()
            self._free.clear()

    def empty(self, shape: int | tuple[int, ...], dtype: np.dtype | type, limit: int) -> np.ndarray:
        """An uninitialised C-contiguous array starting on a cache line, as
        :func:`aligned_empty` gives, in pooled memory where it is at least
        :data:`POOL_MIN_BYTES` and its block fits within ``limit`` bytes of blocks
        (0: fresh memory, not pooled; the blocks the pool holds stay until
        :meth:`free_all_blocks`)."""
        array_shape = (operator.index(shape),) if not isinstance(shape, tuple) else shape
        dtype = np.dtype(dtype)
        nbytes = math.prod(array_shape) * dtype.itemsize
        if limit <= 0 or nbytes < POOL_MIN_BYTES or dtype.hasobject:
            return aligned_empty(array_shape, dtype)
        size = _size_class(nbytes + CACHE_LINE)
        with self._lock:
            self._limit = limit
            self._take_returned()
            block = self._reuse(size)
            if block is None:
                block = self._new(size, limit)
            if block is None:
                return aligned_empty(array_shape, dtype)
            self._leased_bytes += size
        try:
            lease = _lease_type(size).from_buffer(block)  # (holds the block)
        except BaseException:
            self._returned.append(block)  # (no result uses it)
            raise
        weakref.finalize(lease, self._returned.append, block).atexit = False
        flat = np.frombuffer(lease, dtype=np.uint8)
        offset = -flat.ctypes.data % CACHE_LINE
        return flat[offset : offset + nbytes].view(dtype).reshape(array_shape)

    def _take_returned(self) -> None:
        """Move blocks whose results are gone back to the free list (under the lock),
        keeping what fits the latest limit."""
        while self._returned:
            block = self._returned.popleft()
            self._leased_bytes -= block.nbytes
            if self._leased_bytes + sum(b.nbytes for b in self._free) + block.nbytes <= self._limit:
                self._free.append(block)

    def _reuse(self, size: int) -> np.ndarray | None:
        """A free block of ``size`` bytes, taken off the free list (the most recently
        freed: its pages are the likeliest to be in cache)."""
        for i in range(len(self._free) - 1, -1, -1):
            if self._free[i].nbytes == size:
                return self._free.pop(i)
        return None

    def _new(self, size: int, limit: int) -> np.ndarray | None:
        """A new block of ``size`` bytes, making room for it within ``limit`` by
        releasing free blocks (least recently freed first); None where the blocks in
        use leave no room."""
        if self._leased_bytes + size > limit:
            return None
        free_bytes = sum(block.nbytes for block in self._free)
        while self._free and self._leased_bytes + free_bytes + size > limit:
            free_bytes -= self._free.pop(0).nbytes
        return np.empty(size, dtype=np.uint8)

    def _after_fork(self) -> None:
        # A fork while another thread held the lock would leave the child's copy locked.
        self._lock = threading.Lock()


#: The process's pool of result memory (see :class:`ResultPool`).
result_pool = ResultPool()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=result_pool._after_fork)
