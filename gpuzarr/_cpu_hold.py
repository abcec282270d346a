"""The one thread gpuzarr holds on a single CPU at a time (the caller of
:func:`gpuzarr.pipeline.pool.run_together`, while its helpers work with it), and the
undoing of that hold in threads started meanwhile.

A thread starts with its creator's CPUs: a pool thread first started from inside a
held call (a store's I/O pool, say, whose workers start on demand) would otherwise
stay on that one CPU for good. Such pools run :func:`free_started_thread` as their
workers' initializer. (A module of its own, below both the stores and the pipeline:
both start such threads.)
"""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["begin", "end", "free_started_thread", "holding"]

_lock = threading.Lock()
#: (the CPU the held thread is on, the CPUs it had before), while one is held.
_held: tuple[int, set[int]] | None = None


def begin(cpu: int, own: set[int]) -> bool:
    """Record that the calling thread is about to be held on ``cpu`` (having had
    ``own``): False, recording nothing, where another thread is held already."""
    global _held
    with _lock:
        if _held is not None:
            return False
        _held = (cpu, set(own))
        return True


def end() -> None:
    """Record that the held thread is given its CPUs back."""
    global _held
    with _lock:
        _held = None


def holding() -> bool:
    """Whether a thread is held now."""
    return _held is not None


def free_started_thread() -> None:
    """Give a thread just started the CPUs its creator had before it was held, where
    it started on the held CPU alone while a thread is held (it inherited the hold)."""
    held = _held
    if held is None:
        return
    cpu, own = held
    with contextlib.suppress(OSError):
        if os.sched_getaffinity(0) == {cpu}:
            os.sched_setaffinity(0, own)


def _forget_in_child() -> None:
    # (A forked child's copy of the held thread does not exist.)
    global _held, _lock
    _held, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
