"""The worker pool the CPU pipeline runs on (sized by ``config.threads``, fork-safe)."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

from gpuzarr.config import get_config
from gpuzarr.stores.base import ReadArena, Store

__all__ = ["ARENA_KEEP_BYTES", "parallel_map", "run_together", "tapering_cuts", "tapering_parts", "thread_arena"]

T = TypeVar("T")
R = TypeVar("R")

#: Fetched bytes a thread's read arena keeps between uses (see :func:`thread_arena`).
ARENA_KEEP_BYTES = 16 * 2**20

_local = threading.local()
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _reset_pool_after_fork() -> None:
    # Threads do not survive fork: the child must build its own pool on first use (and
    # its own lock, which another parent thread may have held).
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_reset_pool_after_fork)


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_size
    threads = get_config().threads
    with _pool_lock:
        if _pool is None or _pool_size != threads:
            # The old pool is dropped, not shut down: callers on other threads may still
            # be submitting to it (a shut-down pool refuses them). Its workers exit once
            # the last reference to it is gone.
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="gpuzarr")
            _pool_size = threads
        return _pool


def parallel_map(
    fn: Callable[[T], R], items: Sequence[T], *, use_caller: bool = False, max_threads: int | None = None
) -> list[R]:
    """``[fn(x) for x in items]`` on the worker pool (inline for one item or one thread).

    ``use_caller``: the calling thread works through the items too, alongside
    ``threads - 1`` workers, each taking the next item not yet taken. The caller starts
    at once instead of waiting idle for a worker to wake up (on a VM a parked thread can
    take longer to wake than a small item takes to run), and items go to whichever
    thread is free, so cut the work into a few items per thread. ``max_threads`` caps
    the threads at work, the caller included (pure CPU work gains nothing from more
    threads than cores).

    Without ``use_caller``, must not be called from inside a pool task (the pool could
    deadlock waiting on itself); the pipeline only calls it from the caller's thread.
    """
    threads = get_config().threads if max_threads is None else min(max_threads, get_config().threads)
    if len(items) <= 1 or threads <= 1:
        return [fn(x) for x in items]
    if use_caller:
        return _shared_map(fn, items, min(threads - 1, len(items) - 1))
    pool = _executor()
    futures = [pool.submit(fn, x) for x in items]
    # Every task finishes before anything is raised: no work (a chunk write, say) may
    # outlive the call that failed, or the caller would see a store still changing.
    wait(futures)
    return [f.result() for f in futures]  # re-raises the first failure, in order


def _shared_map(fn: Callable[[T], R], items: Sequence[T], helpers: int) -> list[R]:
    """``parallel_map`` with the caller and ``helpers`` workers taking items in turn."""
    results: list[Any] = [None] * len(items)
    errors: dict[int, BaseException] = {}
    taken = itertools.count()  # next() on a count is atomic under the GIL

    def drain() -> None:
        while (i := next(taken)) < len(items):
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # re-raised below, once every item has run
                errors[i] = exc

    run_together(drain, helpers + 1)
    if errors:
        raise errors[min(errors)]
    return results


def run_together(work: Callable[[], Any], threads: int) -> None:
    """Call ``work()`` on the calling thread and, at the same time, on up to
    ``threads - 1`` pool workers; return once every call that started has returned.

    ``work`` shares its work out itself (threads take items from a shared counter until
    none is left), so it does not matter how many workers join in, or when. A worker
    that starts only after the caller's own call has returned finds the work done: it
    skips ``work`` and the caller does not wait for it (on a VM a parked thread can take
    milliseconds to wake, longer than the work). Nothing runs ``work`` after this
    returns. The caller's exception is raised, else the first worker's.
    """
    helpers = min(threads, get_config().threads) - 1
    if helpers < 1:
        work()
        return
    lock = threading.Lock()
    closed = False
    running = 0
    finished = threading.Event()
    errors: list[BaseException] = []
    # A worker that is still queued when the caller is done must not keep `work` (and
    # the buffers it refers to) alive: it reaches it through this slot, emptied then.
    shared_work: list[Callable[[], Any]] = [work]

    def join_in() -> None:
        nonlocal running
        with lock:
            if closed:
                return
            running += 1
            joined = shared_work[0]
        try:
            joined()
        except BaseException as exc:  # raised by the caller, below
            errors.append(exc)
        finally:
            with lock:
                running -= 1
                if closed and not running:
                    finished.set()

    try:
        pool = _executor()
        for _ in range(helpers):  # (inside the try: a failed submit still closes the call)
            pool.submit(join_in)
        work()
    finally:
        with lock:
            closed = True
            shared_work.clear()
            wait_for_workers = running > 0
        if wait_for_workers:
            finished.wait()
    if errors:
        raise errors[0]


def tapering_parts(items: Sequence[T], parts: int, threads: int, min_length: int = 1) -> list[Sequence[T]]:
    """``items`` cut into runs of consecutive items for ``threads`` threads taking them
    in turn: runs of ``len(items) / parts`` items at first, then shorter ones as the
    work runs out (each at most a ``2 * threads``-th of what is left, and at least
    ``min_length``).

    Equal runs leave threads idle at the end while one finishes the last long run
    alone (measured on 2048 chunks of 64 KiB in 12 runs on 2 cores: up to 20 ms of a
    230 ms read with one core idle); short runs throughout would cost a handoff each.
    """
    cuts = tapering_cuts(len(items), parts, threads, min_length)
    return [items[start:stop] for start, stop in itertools.pairwise(cuts)]


def tapering_cuts(total: int, parts: int, threads: int, min_length: int = 1, bounds: Sequence[int] = ()) -> list[int]:
    """Where :func:`tapering_parts` cuts ``total`` items: ``[0, ..., total]``, each run
    from one cut to the next (``parts``, ``threads`` and ``min_length`` below 1 count
    as 1).

    A run also ends at every position in ``bounds`` (the end of each shard's units,
    say; bounds outside ``(0, total)`` are ignored), so that none crosses one. There a
    run may be cut short of ``min_length``, where the whole stretch between two bounds
    is shorter; and a run stopping fewer than ``min_length`` items before a bound takes
    them along (no run of a few leftover items, each a task of its own).
    """
    cap = max(1, -(-total // max(1, parts)))
    floor = max(1, min(min_length, cap))
    divisor = 2 * max(1, threads)  # (a run takes at most this fraction of what is left)
    ends = iter(sorted({int(b) for b in bounds if 0 < b < total} | {total}))
    bound = next(ends, total)
    cuts = [0]
    start = 0
    while start < total:
        size = min(cap, max(floor, -(-(total - start) // divisor)))
        stop = min(start + size, bound)
        if bounds and bound - stop < floor:
            stop = bound
        cuts.append(stop)
        start = stop
        if start == bound:
            bound = next(ends, total)
    return cuts


@contextmanager
def thread_arena(store: Store) -> Iterator[ReadArena | None]:
    """This thread's arena for fetched bytes while the block runs (None if ``store``
    does not read into arenas); reset when the block ends, so every view taken from it
    must be dead by then.

    A worker fetches a group and is done with its bytes before fetching the next (a
    read decodes them, a write re-encodes them), so the same memory serves every group:
    fresh memory per object would be page-faulted in on every read (measured 27 ms
    against 6.6 ms for 40 MiB in 128 files). A nested block on the same thread gets
    None (fresh bytes) rather than memory the outer block still uses.
    """
    if not store.fills_arenas or getattr(_local, "arena_in_use", False):
        yield None
        return
    arena = getattr(_local, "arena", None)
    if arena is None:
        arena = _local.arena = ReadArena(ARENA_KEEP_BYTES)
    _local.arena_in_use = True
    try:
        yield arena
    finally:
        arena.reset()
        _local.arena_in_use = False
