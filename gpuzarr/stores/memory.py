"""A store held in a Python ``dict``."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator

from .base import ByteRange, ObjectReader, SnapshotReader, Store, under_prefix

__all__ = ["MemoryStore"]


def _as_bytes(value: object) -> bytes:
    # Values placed in the shared dict by the user may be bytearray/memoryview;
    # hand out immutable bytes regardless.
    return value if type(value) is bytes else bytes(value)  # type: ignore[call-overload]


class _Identity:
    """A version token that is its value's identity. It holds the value, so the value's
    ``id`` cannot be handed to a new object while a cache keeps the token (a bare id
    could: a value put straight into the dict may land where a freed one was)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def _token_of(value: object) -> Hashable | None:
    """The version token of a stored value (None: missing). Values written through the
    store are immutable bytes, replaced on every write: their identity is the version.
    A mutable value put into the dict by the user (a bytearray) may change in place, so
    its token equals no other: nothing derived from it is cached."""
    if value is None:
        return None
    return _Identity(value) if type(value) is bytes else object()


class MemoryStore(Store):
    """Store objects in a ``dict`` mapping keys to ``bytes``.

    The dict passed as ``data`` is used directly (not copied), so the caller can
    inspect or pre-fill it; when omitted a new dict is created, available as
    :attr:`data`. Values are stored as immutable ``bytes`` copies, so later
    mutation of a written ``bytearray`` does not change the store.
    """

    cheap_reads = True
    tells_versions = True

    def __init__(self, data: dict[str, bytes] | None = None, *, read_only: bool = False) -> None:
        super().__init__(read_only=read_only)
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"MemoryStore data must be a dict, got {type(data).__name__}")
        self.data: dict[str, bytes] = {} if data is None else data
        # Single dict operations are atomic under the GIL, but listing iterates the
        # dict and would fail with "dict changed size" beside a concurrent writer;
        # writers and key snapshots take this lock.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        n = len(self.data)
        return f"MemoryStore(<{n} keys at {id(self.data):#x}>, read_only={self.read_only})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryStore):
            return NotImplemented
        return self.data is other.data and self.read_only == other.read_only

    def __hash__(self) -> int:
        return hash((MemoryStore, id(self.data), self.read_only))

    @property
    def cache_namespace(self) -> tuple[object, ...]:
        """The storage this handle reads (see :attr:`Store.cache_namespace`)."""
        return ("memory", id(self.data))

    def __getstate__(self) -> dict[str, object]:
        # Locks cannot be pickled; a fresh one is made on unpickling.
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reads

    def _object_token(self, key: str) -> Hashable | None:
        return _token_of(self.data.get(key))

    def _open_reader(self, key: str) -> ObjectReader | None:
        # Every write puts a new value, so holding the one read now pins that version.
        value = self.data.get(key)
        return None if value is None else SnapshotReader(self, key, _token_of(value), _as_bytes(value))

    def _get(self, key: str) -> bytes | None:
        value = self.data.get(key)
        return None if value is None else _as_bytes(value)

    def _get_ranges(self, key: str, ranges: list[ByteRange]) -> list[bytes] | None:
        value = self.data.get(key)
        if value is None:
            return None
        view = memoryview(value)
        return [bytes(view[offset : offset + length]) for offset, length in ranges]

    def _get_suffix(self, key: str, length: int) -> bytes | None:
        value = self.data.get(key)
        if value is None:
            return None
        view = memoryview(value)
        return bytes(view[max(0, len(view) - length) :])

    def _size(self, key: str) -> int | None:
        value = self.data.get(key)
        return None if value is None else memoryview(value).nbytes

    # ----------------------------------------------------------------- writes

    def _set(self, key: str, value: memoryview) -> None:
        # A view of a whole bytes object can be stored as is (bytes are immutable);
        # anything else is copied so later mutation by the caller cannot leak in.
        obj = value.obj
        data = obj if type(obj) is bytes and len(obj) == value.nbytes else value.tobytes()
        with self._lock:
            self.data[key] = data

    def _delete(self, key: str) -> None:
        with self._lock:
            self.data.pop(key, None)

    def _delete_prefix(self, prefix: str) -> None:
        start = under_prefix(prefix)
        with self._lock:
            for key in [k for k in self.data if k.startswith(start)]:
                del self.data[key]

    # ---------------------------------------------------------------- listing

    def _list_prefix(self, prefix: str) -> Iterator[str]:
        start = under_prefix(prefix)
        with self._lock:
            keys = [k for k in self.data if k.startswith(start)]
        return iter(keys)

    def _close(self) -> None:
        pass  # the dict stays with whoever passed it in
