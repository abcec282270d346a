"""Per-key write locks: one writer at a time for each stored object, within a process.

Writing part of a chunk or shard is a read-modify-write of the whole object. Two
threads writing disjoint parts of one object would each read the old object, merge
their part and put the result: the later put drops the other's part. So a write (CPU
or GPU) holds the locks of every key it replaces for its whole run, and threads writing
one array through the same store never lose each other's writes (writes from several
processes are not covered: nothing here spans processes; nor are two stores rooted at
different paths over the same files, whose keys differ).

The locks are a fixed table of stripes, keyed by the store's namespace and the key, so
memory stays bounded whatever is written; two objects that share a stripe only take
turns. Deadlock cannot arise: a write takes all its stripes at once, in ascending
order, from the calling thread, and the pool tasks that do the work never take one
(a lock held by a task waiting for a pool that is blocked on locks would be a cycle).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["write_locks"]

#: Stripes in the lock table (far more than the threads that write at once).
_STRIPES = 1024
_locks = tuple(threading.Lock() for _ in range(_STRIPES))


@contextmanager
def write_locks(store: Any, keys: Iterable[str]) -> Iterator[None]:
    """Hold the write locks of ``keys`` in ``store`` (see the module docstring)."""
    namespace = store.cache_namespace
    stripes = sorted({hash((namespace, key)) % _STRIPES for key in keys})
    taken = 0
    try:
        for stripe in stripes:
            _locks[stripe].acquire()
            taken += 1
        yield
    finally:
        for stripe in reversed(stripes[:taken]):
            _locks[stripe].release()
