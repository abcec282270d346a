"""The worker pool the CPU pipeline runs on (sized by ``config.threads``, fork-safe)."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

from gpuzarr import _cpu_hold
from gpuzarr.config import get_config, usable_cores
from gpuzarr.stores.base import ReadArena, Store

__all__ = [
    "ARENA_KEEP_BYTES",
    "compute_threads",
    "encode_arena",
    "parallel_map",
    "run_together",
    "tapering_cuts",
    "tapering_parts",
    "thread_arena",
]

T = TypeVar("T")
R = TypeVar("R")

#: Fetched bytes a thread's read arena keeps between uses (see :func:`thread_arena`).
ARENA_KEEP_BYTES = 16 * 2**20

_local = threading.local()
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def compute_threads(compute_bound: bool, nbytes: int | None, min_nbytes: int) -> int:
    """The threads work on pieces of ``nbytes`` (chunks, shards) keeps busy:
    ``config.threads``, but no more than the usable cores where the work is
    ``compute_bound`` and its pieces hold at least ``min_nbytes``. There a thread
    beyond the cores only takes turns with the others, each evicting the others'
    working memory from the caches; smaller pieces keep the extra thread, which
    overlaps one thread's file work with the others' computing."""
    threads = get_config().threads
    return min(threads, usable_cores()) if compute_bound and (nbytes or 0) >= min_nbytes else threads


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
            _pool = ThreadPoolExecutor(
                threads, thread_name_prefix="gpuzarr", initializer=_cpu_hold.free_started_thread
            )
            _pool_size = threads
        return _pool


def parallel_map(
    fn: Callable[[T], R], items: Sequence[T], *, use_caller: bool = False, max_threads: int | None = None
) -> list[R]:
    """``[fn(x) for x in items]`` on the worker pool (inline for one item or one thread).

    ``use_caller``: the calling thread works through the items too, alongside up to
    ``threads - 1`` helper threads (:func:`run_together`'s, not the pool's workers), each
    taking the next item not yet taken. The caller starts at once instead of waiting
    idle for a helper to wake up (on a VM a parked thread can take longer to wake than a
    small item takes to run), and items go to whichever thread is free, so cut the work
    into a few items per thread. ``max_threads`` caps the threads at work, the caller
    included (pure CPU work gains nothing from more threads than cores), with or without
    ``use_caller``.

    Without ``use_caller``, must not be called from inside a pool task (the pool could
    deadlock waiting on itself); the pipeline only calls it from the caller's thread.
    """
    configured = get_config().threads
    threads = configured if max_threads is None else min(max_threads, configured)
    if len(items) <= 1 or threads <= 1:
        return [fn(x) for x in items]
    if use_caller:
        return _shared_map(fn, items, min(threads - 1, len(items) - 1))
    pool = _executor()
    if threads < configured and len(items) > threads:
        # Capped: that many of the pool's workers, each taking the next item not yet taken.
        drain, finish = _drainer(fn, items)
        wait([pool.submit(drain) for _ in range(threads)])
        return finish()
    futures = [pool.submit(fn, x) for x in items]
    # Every task finishes before anything is raised: no work (a chunk write, say) may
    # outlive the call that failed, or the caller would see a store still changing.
    wait(futures)
    return [f.result() for f in futures]  # re-raises the first failure, in order


def _drainer(fn: Callable[[T], R], items: Sequence[T]) -> tuple[Callable[[], None], Callable[[], list[R]]]:
    """``drain``, which threads call together to run ``fn`` on ``items``, each taking the
    next item not yet taken, and ``finish``, called once they all returned: the results
    in order, or the first failed item's exception (every item has run by then)."""
    results: list[Any] = [None] * len(items)
    errors: dict[int, BaseException] = {}
    taken = itertools.count()  # next() on a count is atomic under the GIL

    def drain() -> None:
        while (i := next(taken)) < len(items):
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # re-raised by finish, once every item has run
                errors[i] = exc

    def finish() -> list[R]:
        if errors:
            raise errors[min(errors)]
        return results

    return drain, finish


def _shared_map(fn: Callable[[T], R], items: Sequence[T], helpers: int) -> list[R]:
    """``parallel_map`` with the caller and ``helpers`` workers taking items in turn."""
    drain, finish = _drainer(fn, items)
    run_together(drain, helpers + 1)
    return finish()


def _current_cpu_function() -> Callable[[], int] | None:
    """``sched_getcpu`` from the C library (the CPU the calling thread runs on), or None
    where there is none, or no ``sched_setaffinity`` to steer threads with."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError, TypeError):  # no such symbol (not glibc or musl)
        return None
    function.argtypes = ()
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_current_cpu = _current_cpu_function()


class _Helper:
    """A thread that joins callers of :func:`run_together` in their shared work.

    Its caller can keep it off the caller's own CPU (:meth:`keep_off`): on a VM, a
    thread woken after the machine sat idle is put on its waker's CPU and waits there for
    the waker's time slice to end, milliseconds, while the other CPU stays idle. Measured
    on 2 cores, 32 windows of 64 KiB read after 100 ms idle: the helper started
    1-3.5 ms after the caller on the same CPU in 19 of 30 reads; kept off it, 60 us after
    on the other CPU, and the read took 1.9 ms instead of 2.8-3.4.
    """

    __slots__ = ("_job", "_posted", "kept_off", "native_id")

    def __init__(self, name: str) -> None:
        self._job: Callable[[], Any] | None = None
        self._posted = threading.Lock()
        self._posted.acquire()  # (released by post(): a binary semaphore)
        self.kept_off: int | None = None  # the CPU its affinity leaves out, if any
        self.native_id: int | None = None
        started = threading.Event()
        thread = threading.Thread(target=self._serve, args=(started,), name=name, daemon=True)
        thread.start()
        started.wait()

    def _serve(self, started: threading.Event) -> None:
        self.native_id = threading.get_native_id()
        started.set()
        while True:
            self._posted.acquire()
            job, self._job = self._job, None
            try:
                job()  # type: ignore[misc]  # (run_together's join_in: it raises nothing)
            finally:
                del job
                _team.give_back(self)

    def keep_off(self, cpu: int, others: set[int]) -> None:
        """Let this thread run on ``others``, the CPUs its caller may run on but ``cpu``
        (none: a caller on one CPU, nothing to keep off)."""
        if others and self.native_id is not None:
            os.sched_setaffinity(self.native_id, others)
        self.kept_off = cpu

    def post(self, job: Callable[[], Any]) -> None:
        """Run ``job`` on this thread (which is idle: taken from the team)."""
        self._job = job
        self._posted.release()


class _Team:
    """The idle :class:`_Helper` threads, made as needed, up to ``config.threads - 1``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Helper] = []
        self._made = 0
        self._steer = _current_cpu is not None

    def take(self, count: int) -> list[_Helper]:
        """Up to ``count`` idle helpers (fewer where the others are still busy and the
        team is full), kept off the calling thread's CPU where the platform allows."""
        with self._lock:
            taken = self._idle[-count:] if count else []
            del self._idle[len(self._idle) - len(taken) :]
            first = self._made
            self._made += max(0, min(count - len(taken), get_config().threads - 1 - first))
            numbers = range(first, self._made)
        made = 0
        try:
            for number in numbers:
                taken.append(_Helper(f"gpuzarr-helper-{number}"))
                made += 1
        except BaseException:  # (a thread that could not be started: none is taken)
            with self._lock:
                self._idle.extend(taken)
                self._made -= len(numbers) - made
            raise
        if self._steer and taken:
            self._keep_off_caller(taken)
        return taken

    def _keep_off_caller(self, helpers: list[_Helper]) -> None:
        assert _current_cpu is not None
        cpu = _current_cpu()
        others: set[int] | None = None  # (asked once, and only where a helper moves)
        try:
            for helper in helpers:
                if helper.kept_off != cpu:
                    if others is None:
                        others = os.sched_getaffinity(0) - {cpu}
                    helper.keep_off(cpu, others)
        except OSError:  # (a sandbox that refuses affinity changes: run unsteered)
            self._steer = False

    def hold_caller(self, helpers: list[_Helper]) -> set[int] | None:
        """Keep the calling thread on the CPU ``helpers`` (just taken) are kept off, while
        they work with it; returns the CPUs to give it back (:meth:`release_caller`), or
        None where it was not moved (no helpers, no steering, or one CPU to begin with).

        Without this the caller drifts onto a helper's CPU: each time the GIL passes
        from a helper to the waiting caller, the wake-up may put the caller on the
        helper's CPU, where both then take turns in 4 ms slices while the other CPU
        idles. Measured on 2 cores, 32 windows of 1 MiB blosc chunks read 150 ms apart
        (as a data loader or the benchmark's quiet waits leave the machine): 22.8 ms,
        at 28 ms CPU, with the caller free; 16.0 ms held.

        One caller is held at a time: callers on several threads at once (a data
        loader's readers) could each be held on a CPU the other had left just before,
        and then share it while another CPU idles; the others run free. A thread the
        held caller starts inherits its one CPU: the pools gpuzarr starts threads in
        undo that (:mod:`gpuzarr._cpu_hold`).
        """
        cpu = helpers[0].kept_off if helpers else None
        if cpu is None or not self._steer:
            return None
        try:
            own = os.sched_getaffinity(0)
            if len(own) < 2 or cpu not in own or not _cpu_hold.begin(cpu, own):
                return None
        except OSError:  # (a sandbox that refuses affinity changes: run unsteered)
            self._steer = False
            return None
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            _cpu_hold.end()  # (not held after all)
            self._steer = False
            return None
        return own

    @staticmethod
    def release_caller(own: set[int]) -> None:
        """Give the calling thread back the CPUs :meth:`hold_caller` took from it."""
        try:
            with contextlib.suppress(OSError):  # (allowed a moment ago; nothing to do if not now)
                os.sched_setaffinity(0, own)
        finally:
            _cpu_hold.end()

    def give_back(self, helper: _Helper) -> None:
        with self._lock:
            self._idle.append(helper)


_team = _Team()


def _reset_team_after_fork() -> None:
    # (The helpers' threads did not survive the fork.)
    global _team
    _team = _Team()


os.register_at_fork(after_in_child=_reset_team_after_fork)


def run_together(work: Callable[[], Any], threads: int) -> None:
    """Call ``work()`` on the calling thread and, at the same time, on up to
    ``threads - 1`` helper threads; return once every call that started has returned.

    ``work`` shares its work out itself (threads take items from a shared counter until
    none is left), so it does not matter how many helpers join in, or when. A helper
    that starts only after the caller's own call has returned finds the work done: it
    skips ``work`` and the caller does not wait for it (on a VM a parked thread can take
    milliseconds to wake, longer than the work). Nothing runs ``work`` after this
    returns. The caller's exception is raised, else the first helper's.

    Helpers are threads of their own (not the pool's workers, which stay free for other
    tasks), kept off the caller's CPU (see :class:`_Helper`); the caller is held on that
    CPU until it returns (see :meth:`_Team.hold_caller`), then given back the CPUs it had.
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
    # A helper that starts only once the caller is done must not keep `work` (and the
    # buffers it refers to) alive: it reaches it through this slot, emptied then.
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

    restore: set[int] | None = None  # (the caller's own CPUs, while it is held on one)
    try:
        taken = _team.take(helpers)  # (inside the try: a failed start still closes the call)
        restore = _team.hold_caller(taken)
        for helper in taken:
            helper.post(join_in)
        work()
    finally:
        with lock:
            closed = True
            shared_work.clear()
            wait_for_workers = running > 0
        if wait_for_workers:
            finished.wait()
        if restore is not None:
            _team.release_caller(restore)
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


def tapering_cuts(
    total: int, parts: int, threads: int, min_length: int = 1, bounds: Sequence[int] = (), *, span: int = 0
) -> list[int]:
    """Where :func:`tapering_parts` cuts ``total`` items: ``[0, ..., total]``, each run
    from one cut to the next (``parts``, ``threads`` and ``min_length`` below 1 count
    as 1).

    A run also ends at every position in ``bounds`` (the end of each shard's units,
    say; bounds outside ``(0, total)`` are ignored), so that none crosses one. There a
    run may be cut short of ``min_length``, where the whole stretch between two bounds
    is shorter; and a run stopping fewer than ``min_length`` items before a bound takes
    them along (no run of a few leftover items, each a task of its own).

    With ``span``, a run whose length (as above, but at most ``span``) reaches past one
    or more bounds takes the whole stretches up to the last of them instead: it
    crosses bounds, but only ever ends at one (several small shards' units, say, in
    one run). A run that reaches no bound is cut as above.
    """
    cap = max(1, -(-total // max(1, parts)))
    floor = max(1, min(min_length, cap))
    divisor = 2 * max(1, threads)  # (a run takes at most this fraction of what is left)
    marks = sorted({int(b) for b in bounds if 0 < b < total} | {total})  # (every bound, in order)
    cuts = [0]
    start = 0
    while start < total:
        bound = marks[bisect.bisect_right(marks, start)]  # (the first past start)
        size = min(cap, max(floor, -(-(total - start) // divisor)))
        reach = start + min(size, span)
        if span > 0 and reach >= bound:
            stop = marks[bisect.bisect_right(marks, reach) - 1]  # (the last bound within reach)
        else:
            stop = min(start + size, bound)
            if bounds and bound - stop < floor:
                stop = bound
        cuts.append(stop)
        start = stop
    return cuts


@contextmanager
def encode_arena(store: Store) -> Iterator[ReadArena | None]:
    """This thread's arena for encoded chunks while the block runs, for a writer that
    stores what it encoded before the block ends (None if ``store`` may keep views of
    what it is given: :attr:`~gpuzarr.stores.base.Store.keeps_no_views`); reset when
    the block ends. A nested block on the same thread gets None.

    Encoded into a fresh ``bytes`` object each, every compressed chunk page-faults its
    memory in, write after write (measured: 128 chunks of 1 MiB float32 at zstd level
    3, 10,100 page faults and 28-60 ms of system time per pass on one thread; none into
    an arena).
    """
    if not store.keeps_no_views:
        yield None
        return
    with _arena_in("encode_arena") as arena:
        yield arena


@contextmanager
def _arena_in(name: str) -> Iterator[ReadArena | None]:
    """This thread's arena called ``name`` for the block (None when a block on this
    thread already uses it); reset when the block ends."""
    in_use = f"{name}_in_use"
    if getattr(_local, in_use, False):
        yield None
        return
    arena = getattr(_local, name, None)
    if arena is None:
        arena = ReadArena(ARENA_KEEP_BYTES)
        setattr(_local, name, arena)
    setattr(_local, in_use, True)
    try:
        yield arena
    finally:
        arena.reset()
        setattr(_local, in_use, False)


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
    if not store.fills_arenas:
        yield None
        return
    with _arena_in("arena") as arena:
        yield arena
