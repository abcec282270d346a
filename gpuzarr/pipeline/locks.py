"""Per-key write locks: one writer at a time for each stored object, within a process.

Writing part of a chunk or shard is a read-modify-write of the whole object. Two
threads writing disjoint parts of one object would each read the old object, merge
their part and put the result: the later put drops the other's part. So a write (CPU
or GPU) holds the locks of every key it replaces for its whole run, and threads writing
one array through the same store never lose each other's writes (writes from several
processes are not covered: nothing here spans processes; nor are two stores rooted at
different paths over the same files, whose keys differ).

A lock exists only while some write holds or waits for it (a table of the keys in use,
keyed by the store's namespace and the key), so memory stays bounded and writes of
different objects never wait for each other. Deadlock cannot arise: a write takes all
its keys at once, in sorted order, from the calling thread, and the pool tasks that do
the work never take one (a lock holder waiting for a pool whose workers wait on its
locks would be a cycle).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["write_locks"]

_table_lock = threading.Lock()
#: (namespace, key) -> [lock, writes holding or waiting for it]
_in_use: dict[tuple[Any, str], list[Any]] = {}


def _reset_after_fork() -> None:
    # A forked child has only the forking thread: locks held by the parent's other
    # threads would never be released there (a write of their keys would hang).
    global _table_lock, _in_use
    _table_lock, _in_use = threading.Lock(), {}


os.register_at_fork(after_in_child=_reset_after_fork)


@contextmanager
def write_locks(store: Any, keys: Iterable[str]) -> Iterator[None]:
    """Hold the write locks of ``keys`` in ``store`` (see the module docstring)."""
    namespace = store.cache_namespace
    entries: list[tuple[tuple[Any, str], list[Any]]] = []
    with _table_lock:
        for key in sorted(set(keys)):
            ident = (namespace, key)
            entry = _in_use.get(ident)
            if entry is None:
                entry = _in_use[ident] = [threading.Lock(), 0]
            entry[1] += 1
            entries.append((ident, entry))
    acquired = 0
    try:
        for _, entry in entries:
            entry[0].acquire()
            acquired += 1
        yield
    finally:
        for _, entry in entries[:acquired]:
            entry[0].release()
        with _table_lock:
            for ident, entry in entries:
                entry[1] -= 1
                if not entry[1]:
                    del _in_use[ident]
