"""Shared, lazily created thread pools for batched store I/O.

File reads and writes release the GIL, so a thread pool gives real parallelism
for ``get_many``/``set_many``. Pools are process-wide and shared by every store
asking for the same size (creating a pool per store or per call would cost thread
start-up on every batch). They are created on first use and dropped in a forked
child, whose copies of the parent's worker threads do not exist.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

from gpuzarr import _cpu_hold

__all__ = ["default_threads", "parallel_batches", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


@functools.cache
def default_threads() -> int:
    """Default pool size: I/O bound work, so several threads per core, capped at 32.

    Computed once: ``os.cpu_count()`` reads sysfs, about 20 us, on every store opened.
    """
    return min(32, (os.cpu_count() or 1) * 4)


def _get_pool(threads: int) -> ThreadPoolExecutor:
    pool = _pools.get(threads)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(threads)
            if pool is None:
                pool = ThreadPoolExecutor(
                    threads, thread_name_prefix=f"gpuzarr-io{threads}", initializer=_cpu_hold.free_started_thread
                )
                _pools[threads] = pool
    return pool


def _forget_pools_in_child() -> None:
    # The child inherits the dict but not the worker threads; submitting to those
    # executors would hang forever, so start from scratch.
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)


def _run_batch(fn: Callable[[T], R], batch: Sequence[T]) -> list[R]:
    return [fn(item) for item in batch]


def parallel_map(fn: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """Return ``[fn(x) for x in items]``, computed on the shared pool of ``threads``.

    Batches of 0 or 1 item, and ``threads <= 1``, run inline: handing a single
    read to another thread only adds latency. Items are grouped into a few
    contiguous batches per thread, because a pool task costs a few microseconds,
    comparable to a small cached file read. The first exception raised by ``fn``
    propagates (after all batches have finished, so no work outlives the call).
    """
    return parallel_batches(functools.partial(_run_batch, fn), items, threads)


def parallel_batches(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T], threads: int) -> list[R]:
    """:func:`parallel_map` for a ``fn`` that takes a whole batch of items and returns
    their results (a store's batched call: one per batch, not one per item)."""
    n = len(items)
    if n <= 1 or threads <= 1:
        return fn(items) if n else []
    pool = _get_pool(threads)
    n_batches = min(n, threads * 4)
    step = -(-n // n_batches)
    futures = [pool.submit(fn, items[i : i + step]) for i in range(0, n, step)]
    # Let every batch finish before raising, so no work outlives the call.
    wait(futures)
    results: list[R] = []
    for future in futures:
        results.extend(future.result())  # re-raises the first failure, in order
    return results
