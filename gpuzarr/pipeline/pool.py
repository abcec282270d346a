"""The worker pool the CPU pipeline runs on (sized by ``config.threads``, fork-safe)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

from gpuzarr.config import get_config

__all__ = ["contiguous_parts", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _reset_pool_after_fork() -> None:
    # Threads do not survive fork: the child must build its own pool on first use.
    global _pool, _pool_size
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_reset_pool_after_fork)


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_size
    threads = get_config().threads
    with _pool_lock:
        if _pool is None or _pool_size != threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="gpuzarr")
            _pool_size = threads
        return _pool


def parallel_map(fn: Callable[[T], R], items: Sequence[T], *, use_caller: bool = False) -> list[R]:
    """``[fn(x) for x in items]`` on the worker pool (inline for one item or one thread).

    ``use_caller``: the calling thread runs the first item itself instead of waiting
    idle, which saves one task handoff (for pure CPU work cut into one part per core).

    Must not be called from inside a pool task (the pool could deadlock waiting on
    itself); the pipeline only calls it from the caller's thread.
    """
    if len(items) <= 1 or get_config().threads == 1:
        return [fn(x) for x in items]
    pool = _executor()
    futures = [pool.submit(fn, x) for x in items[1:]] if use_caller else [pool.submit(fn, x) for x in items]
    first: list[R] = []
    try:
        if use_caller:
            first.append(fn(items[0]))
    finally:
        # Every task finishes before anything is raised: no work (a chunk write, say) may
        # outlive the call that failed, or the caller would see a store still changing.
        wait(futures)
    return first + [f.result() for f in futures]  # re-raises the first failure, in order


def contiguous_parts(items: Sequence[T], parts: int) -> list[Sequence[T]]:
    """``items`` cut into at most ``parts`` runs of consecutive items, of about equal
    lengths (the work list of one task each)."""
    size = max(1, -(-len(items) // max(1, parts)))
    return [items[i : i + size] for i in range(0, len(items), size)]
