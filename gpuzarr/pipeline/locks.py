"""Per-key write locks: one writer at a time for each stored object, within a process.

Writing part of a chunk or shard is a read-modify-write of the whole object. Two
threads writing disjoint parts of one object would each read the old object, merge
their part and put the result: the later put drops the other's part. Every CPU and GPU
write of an object holds its key's lock from the read of the old object to the put of
the new one, so concurrent writes of one array from several threads are safe (writes
from several processes are not: nothing here spans processes).

The locks are a fixed table of stripes, keyed by the store's namespace and the key, so
memory stays bounded whatever is written; two objects that share a stripe only take
turns. A thread takes the stripes of a batch in ascending order (so two batches cannot
deadlock) and never waits for a stripe while holding one out of that order.
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
