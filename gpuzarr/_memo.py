"""A small thread-safe memo that forgets its least recently used entries (a leaf module)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedMemo"]

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class BoundedMemo(Generic[_K, _V]):
    """At most ``limit`` entries; :meth:`get` marks an entry as recently used and
    :meth:`put` drops the least recently used one once the memo is full. Safe to share
    between threads (each call holds a lock for a dictionary operation or two)."""

    __slots__ = ("_entries", "_lock", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = max(1, int(limit))
        self._entries: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        """The value stored for ``key``, or None."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: _K, value: _V) -> None:
        """Store ``value`` for ``key`` (replacing any value stored for it)."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)

    def discard(self, key: _K) -> None:
        """Forget ``key`` (nothing happens if it is not stored)."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
