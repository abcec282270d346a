"""The abstract :class:`Store` interface and the key rules every store shares.

A store maps ``/``-separated string keys (``zarr.json``, ``a/c/0/1``, ``.zmetadata``)
to byte strings. The public methods of :class:`Store` validate keys, check that the
store is open and writable, and then call a small set of protected hooks
(``_get``, ``_set``, ...) that concrete stores implement. Keeping the checks here
means every store rejects the same bad keys with the same error, and a concrete
store only has to deal with already-valid input.

This module (like the whole ``gpuzarr.stores`` package) imports nothing from
gpuzarr above it (only leaf modules: :mod:`gpuzarr.errors`, :mod:`gpuzarr.memory`),
so the storage layer can be used and tested on its own.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Self

import numpy as np

from gpuzarr.errors import ReadOnlyError, StoreError
from gpuzarr.memory import CACHE_LINE, aligned_empty

__all__ = [
    "ARENA_ALIGN",
    "ByteRange",
    "BytesLike",
    "ObjectReader",
    "ObjectWriter",
    "ReadArena",
    "Store",
    "arena_keyword",
    "on_closed_namespace",
    "as_byte_view",
    "validate_key",
    "validate_prefix",
]

#: Values accepted by the write methods: anything exporting a buffer.
BytesLike = bytes | bytearray | memoryview

#: A byte range of one stored object: ``(offset, length)``.
ByteRange = tuple[int, int]

# Characters no key may contain: a backslash would be a path separator on Windows
# (and so escape the key's directory), and NUL cannot appear in a file name.
_FORBIDDEN_CHARS = ("\\", "\x00")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid store key, else raise :class:`StoreError`.

    A valid key is a non-empty ``str`` of ``/``-separated segments with no empty
    segment (so no leading, trailing or doubled ``/``), no ``.`` or ``..`` segment
    and no backslash or NUL character.
    """
    if not isinstance(key, str):
        raise StoreError(f"store key must be a str, got {type(key).__name__}: {key!r}")
    if not key:
        raise StoreError("invalid store key '': keys must not be empty")
    for ch in _FORBIDDEN_CHARS:
        if ch in key:
            raise StoreError(f"invalid store key {key!r}: contains forbidden character {ch!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise StoreError(
                f"invalid store key {key!r}: empty, '.' or '..' path segments are not allowed"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """Normalise and validate a listing/deletion prefix.

    ``""`` (the root) is returned as is. One trailing ``/`` is accepted and removed
    (``"a/b/"`` means the same as ``"a/b"``); otherwise the prefix must be a valid
    key (see :func:`validate_key`).
    """
    if not isinstance(prefix, str):
        raise StoreError(f"store prefix must be a str, got {type(prefix).__name__}: {prefix!r}")
    if prefix == "":
        return prefix
    if prefix.endswith("/"):
        stripped = prefix[:-1]
        if not stripped:
            raise StoreError(f"invalid store prefix {prefix!r}: use '' for the root")
        prefix = stripped
    return validate_key(prefix)


def as_byte_view(key: str, value: object) -> memoryview:
    """Return a flat, C-contiguous unsigned-byte view of ``value``.

    Raises :class:`TypeError` naming ``key`` for values that do not export a buffer
    (``str``, ``int``, ...). An ``int`` is rejected on purpose: ``bytes(5)`` would
    silently store five zero bytes.
    """
    try:
        view = memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"value for store key {key!r} must be bytes-like, got {type(value).__name__}"
        ) from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


#: Alignment of arena memory to its source: see :meth:`ReadArena.take`.
ARENA_ALIGN = CACHE_LINE


class ReadArena:
    """Reusable memory that reads land in, instead of a fresh ``bytes`` object each.

    Reading many objects into fresh memory page-faults every page of it, read after
    read: 128 files of 310 KB measured 27 ms into new ``bytes`` against 6.6 ms into
    memory already touched. A reader that finishes with what it read before reading
    again (a worker fetching and then decoding its group) hands the same arena to each
    read and calls :meth:`reset` between groups.

    Views from :meth:`take` stay valid until :meth:`reset`; after it the memory is
    reused, so the owner must be done with them. Up to ``keep_bytes`` of memory is
    kept across resets; a larger group is served from memory that is then dropped.
    """

    __slots__ = ("_block", "_extra", "_used", "keep_bytes")

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = int(keep_bytes)
        # NumPy memory, not bytearray: it is not zero-filled first (a pass over fresh
        # pages that the read is about to overwrite anyway).
        self._block = aligned_empty(0, align=ARENA_ALIGN)
        self._used = 0
        self._extra: list[np.ndarray] = []  # blocks taken after the kept one filled up

    @property
    def nbytes(self) -> int:
        """Bytes of memory the arena holds now."""
        return len(self._block) + sum(len(b) for b in self._extra)

    def take(self, nbytes: int, source_offset: int = 0) -> memoryview:
        """A writable view of ``nbytes`` bytes, valid until :meth:`reset`.

        The view starts at an address congruent to ``source_offset`` (the file offset
        the bytes will be read from) modulo :data:`ARENA_ALIGN`. The kernel copies page
        cache bytes into user memory about 3.5x slower when the two are misaligned
        (measured on AMD EPYC: 62 MiB of shards read in 29 ms into memory 16 bytes off,
        8 ms aligned), and ``malloc``-ed buffers start 16 bytes off.
        """
        skew = source_offset % ARENA_ALIGN
        start = self._used + (skew - self._used) % ARENA_ALIGN
        if start + nbytes <= len(self._block):
            self._used = start + nbytes
            return memoryview(self._block)[start : start + nbytes]
        if not self._extra and self._used == 0 and nbytes + skew <= self.keep_bytes:
            # Nothing handed out yet: grow the kept block (with room for a few more).
            grown = min(max(nbytes + skew, 2 * len(self._block)), self.keep_bytes)
            self._block = aligned_empty(grown, align=ARENA_ALIGN)
            return self.take(nbytes, source_offset)
        extra = aligned_empty(nbytes + skew, align=ARENA_ALIGN)[skew:]
        self._extra.append(extra)
        return memoryview(extra)

    def reset(self) -> None:
        """Make all memory reusable (every view taken before must be dead by now).

        A group that overflowed the kept block grows it for next time, up to
        ``keep_bytes``.
        """
        needed = self._used + sum(len(b) + ARENA_ALIGN for b in self._extra)
        self._extra.clear()
        self._used = 0
        if len(self._block) < needed <= self.keep_bytes:
            self._block = aligned_empty(needed, align=ARENA_ALIGN)


def arena_keyword(arena: ReadArena | None) -> dict[str, ReadArena]:
    """``{"arena": arena}``, or nothing without one: Store subclasses written before
    arenas override ``get(key)`` / ``get_ranges(key, ranges)`` without the keyword."""
    return {} if arena is None else {"arena": arena}


class ObjectReader(AbstractContextManager["ObjectReader"]):
    """An open handle on one stored object, for several reads of it (from
    :meth:`Store.open_reader`; close it, or use it as a context manager).

    This default reads through the store, so each read sees the object as it is at
    that moment. The built-in stores pin one version instead: a local file stays open,
    a memory store's reader holds the bytes it found, a zip store's the member or
    unflushed write it found. Every read then sees the object as it was when opened,
    even if it is replaced in between, so a shard's index and its inner chunks always
    come from the same shard.
    """

    def __init__(self, store: Store, key: str, token: Hashable) -> None:
        self.store = store
        self.key = key
        #: The object's version token when opened (see :meth:`Store.object_token`).
        self.token = token

    def get_ranges(self, ranges: Sequence[ByteRange], *, arena: ReadArena | None = None) -> list[Any] | None:
        """As :meth:`Store.get_ranges` of this object (None if it vanished meanwhile)."""
        return self.store.get_ranges(self.key, ranges, **arena_keyword(arena))

    def get_suffix(self, length: int) -> Any:
        """As :meth:`Store.get_suffix` of this object (None if it vanished meanwhile)."""
        return self.store.get_suffix(self.key, length)

    def close(self) -> None:
        """Release the handle (nothing to release by default)."""

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ObjectWriter:
    """A new object for one key, written piece by piece (from :meth:`Store.open_writer`).

    :meth:`append` adds bytes at the end and :meth:`write_at` overwrites bytes already
    appended; nothing is visible under the key until :meth:`commit`, which replaces the
    old object atomically, as :meth:`Store.set` does. :meth:`abort` drops what was
    written and leaves the old object as it was. A writer is for one thread at a time.

    This default keeps the pieces (a copy of any that is not ``bytes``, for the caller
    may reuse their memory) and stores them with one :meth:`Store.set_parts` at commit.
    The local store writes each piece to a temp file as it comes instead, so a writer
    that finishes an object in several steps (a shard's inner chunks, encoded by
    several threads) never holds the whole object, and its bytes reach the file while
    the rest is still being made.
    """

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.key = key
        #: Bytes appended so far: where the next :meth:`append` starts.
        self.nbytes = 0
        self._parts: list[bytes] = []
        self._patches: list[tuple[int, bytes]] = []
        self._state = "open"

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(f"writer of key {self.key!r} in {self.store!r} is {self._state}")

    def _check_within(self, offset: int, nbytes: int) -> None:
        if offset < 0 or offset + nbytes > self.nbytes:
            raise StoreError(
                f"writer of key {self.key!r}: cannot write {nbytes} bytes at offset {offset}, "
                f"past the {self.nbytes} bytes appended"
            )

    def append(self, parts: Sequence[BytesLike]) -> int:
        """Add ``parts``, one after another, at the end; returns the offset where the
        first of them starts."""
        self._check_open()
        views = [as_byte_view(self.key, part) for part in parts]
        start = self.nbytes
        self._append(views, parts)
        self.nbytes += sum(view.nbytes for view in views)
        return start

    def write_at(self, offset: int, data: BytesLike) -> None:
        """Overwrite bytes already appended, from ``offset`` (an index reserved at the
        start of a shard, say); StoreError if they would reach past the end."""
        self._check_open()
        view = as_byte_view(self.key, data)
        self._check_within(offset, view.nbytes)
        self._write_at(offset, view)

    def commit(self) -> None:
        """Store what was written under the key, replacing its object atomically."""
        self._check_open()
        self._state = "committed"
        self._commit()

    def abort(self) -> None:
        """Drop what was written; the key keeps its old object. A no-op once committed
        or aborted."""
        if self._state == "open":
            self._state = "aborted"
            self._abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Aborts when leaving by an exception; commits otherwise unless already done."""
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.commit()

    # Hooks of this default, which keeps the pieces in memory.

    def _append(self, views: list[memoryview], parts: Sequence[BytesLike]) -> None:
        # (bytes are immutable: kept as they are; anything else is copied.)
        pairs = zip(views, parts, strict=True)
        self._parts += [part if type(part) is bytes else view.tobytes() for view, part in pairs]

    def _write_at(self, offset: int, view: memoryview) -> None:
        self._patches.append((offset, view.tobytes()))

    def _commit(self) -> None:
        parts: list[BytesLike] = list(self._parts)
        if self._patches:
            joined = bytearray(b"".join(self._parts))
            for offset, data in self._patches:
                joined[offset : offset + len(data)] = data
            parts = [joined]
        self._parts, self._patches = [], []
        self.store.set_parts(self.key, parts)

    def _abort(self) -> None:
        self._parts, self._patches = [], []


class SnapshotReader(ObjectReader):
    """An :class:`ObjectReader` over one version of an object's bytes, held for the
    reader's lifetime: for stores whose writes replace an object's bytes (a new
    immutable value) rather than edit them in place, so a replace between two reads
    (a shard's index, then its inner chunks) cannot mix two versions."""

    def __init__(self, store: Store, key: str, token: Hashable, data: bytes) -> None:
        super().__init__(store, key, token)
        self._data: memoryview | None = memoryview(data)

    def _live_data(self) -> memoryview:
        if self._data is None:
            raise StoreError(f"reader of key {self.key!r} in {self.store!r} is closed")
        return self._data

    def get_ranges(self, ranges: Sequence[ByteRange], *, arena: ReadArena | None = None) -> list[Any]:
        # Views, not copies: the bytes are immutable and the views keep them alive.
        view = self._live_data()
        return [view[offset : offset + length] for offset, length in _check_ranges(self.key, ranges)]

    def get_suffix(self, length: int) -> bytes:
        length = _check_suffix_length(self.key, length)
        view = self._live_data()
        return bytes(view[max(0, len(view) - length) :])

    def close(self) -> None:
        self._data = None


def _check_ranges(key: str, ranges: Iterable[ByteRange]) -> list[ByteRange]:
    """Validate ``(offset, length)`` pairs, returning them as a list of ``int`` tuples."""
    out: list[ByteRange] = []
    for rng in ranges:
        try:
            offset, length = rng
            offset = operator.index(offset)
            length = operator.index(length)
        except (TypeError, ValueError):
            raise StoreError(
                f"invalid byte range {rng!r} for key {key!r}: expected (offset, length) ints"
            ) from None
        if offset < 0 or length < 0:
            raise StoreError(
                f"invalid byte range {rng!r} for key {key!r}: offset and length must be >= 0"
            )
        out.append((offset, length))
    return out


def _check_suffix_length(key: str, length: int) -> int:
    try:
        length = operator.index(length)
    except TypeError:
        raise StoreError(f"invalid suffix length {length!r} for key {key!r}") from None
    if length < 0:
        raise StoreError(f"invalid suffix length {length!r} for key {key!r}: must be >= 0")
    return length


def child_names(prefix: str, keys: Iterable[str]) -> list[str]:
    """Immediate child names of ``prefix`` among ``keys`` (which all lie under it), sorted."""
    start = len(prefix) + 1 if prefix else 0
    return sorted({key[start:].split("/", 1)[0] for key in keys})


def under_prefix(prefix: str) -> str:
    """The string every key under ``prefix`` starts with (``""`` for the root)."""
    return prefix + "/" if prefix else ""


#: The token of stores that cannot tell object versions apart (see Store.object_token).
UNVERSIONED = ("unversioned",)

#: Called with the cache namespace of a store whose namespace is its own handle's
#: (``Store.caches_per_handle``) when it closes: process-wide caches of the layers above
#: (the shard index cache) register here to drop what no one can hit again.
_closed_namespace_hooks: list[Callable[[tuple[object, ...]], None]] = []


def on_closed_namespace(hook: Callable[[tuple[object, ...]], None]) -> None:
    """Call ``hook(namespace)`` whenever a store with a per-handle cache namespace closes."""
    _closed_namespace_hooks.append(hook)


class Store(ABC):
    """Abstract key/value store of bytes, the storage interface of gpuzarr.

    Reads of a missing key return ``None`` (never raise). Writes on a read-only
    store raise :class:`~gpuzarr.errors.ReadOnlyError`; any operation on a closed
    store, and any invalid key, raises :class:`~gpuzarr.errors.StoreError`.

    Listing and prefix deletion use *path* semantics: the keys "under" prefix
    ``"a"`` are those starting with ``"a/"`` (so ``"ab/c"`` is not under ``"a"``),
    and ``""`` means the whole store.

    Subclasses implement the protected hooks (``_get``, ``_get_ranges``, ``_size``,
    ``_set``, ``_delete``, ``_list_prefix``) and may override the batched ones
    (``_get_many``, ``_set_many``, ...) with faster versions. Hooks receive keys that
    are already validated and are only called on an open store.
    """

    #: Whether writes are refused.
    read_only: bool
    #: Whether :meth:`get_ranges` is cheaper than fetching the whole object.
    supports_partial_reads: bool = True
    #: Whether one small read is cheap (local disk, memory). Readers then fetch each
    #: object inside the worker that decodes it, while its bytes are hot in cache;
    #: stores with costly round trips leave this False and get batched requests.
    cheap_reads: bool = False
    #: Whether :attr:`cache_namespace` names this handle alone (nothing cached for it can
    #: be used once it is closed).
    caches_per_handle: bool = False
    #: Whether :meth:`get` and :meth:`get_ranges` read into a :class:`ReadArena` they are
    #: given (instead of returning fresh ``bytes``): readers pass one only then.
    fills_arenas: bool = False
    #: Whether writes are done with a value's memory once they return (written out or
    #: copied, no view of it kept): writers may then hand them views of memory they
    #: reuse for the next objects (:func:`~gpuzarr.pipeline.pool.encode_arena`).
    keeps_no_views: bool = False
    #: Whether :meth:`object_token` tells versions of an object apart. Without, what is
    #: cached of an object (a shard index) is trusted until gpuzarr itself rewrites or
    #: deletes it, and dropped whenever an array on the store is opened again.
    tells_versions: bool = False

    def __init__(self, *, read_only: bool = False) -> None:
        self.read_only = bool(read_only)
        self._closed = False

    @property
    def cache_namespace(self) -> tuple[object, ...]:
        """Identifies the underlying storage (not this handle) for process-wide caches.

        Two stores over the same storage (say a read-only and a writable handle on one
        directory) share a namespace, so a cache entry one of them invalidates is gone
        for the other too.
        """
        return (type(self).__name__, id(self))

    # ------------------------------------------------------------------ checks

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed")

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(f"cannot modify {what}: {self!r} is read-only")

    # ------------------------------------------------------------------- reads

    def get(self, key: str, *, arena: ReadArena | None = None) -> bytes | memoryview | None:
        """Return the whole object stored under ``key``, or ``None`` if there is none.

        With ``arena``, stores that can read into memory (local files) return a view of
        memory taken from it (see :class:`ReadArena`); others return ``bytes``.
        """
        self._check_open()
        key = validate_key(key)
        return self._get(key) if arena is None else self._get_into(key, arena)

    def get_each(self, keys: Sequence[str], *, arena: ReadArena | None = None) -> list[bytes | memoryview | None]:
        """``[get(k, arena=arena) for k in keys]``, read one after another on this thread.

        For a worker reading its own group of objects: local files are read in one
        tight loop, where a :meth:`get` per object would run about ten Python calls per
        file around its system calls (measured on 2048 files of ~32 KB, full read of
        64 KiB zstd chunks on 2 cores, A/B: CPU time 498 -> 470 ms).
        """
        self._check_open()
        if type(self).get is not Store.get:  # a subclass's own get() must see every read
            # (Without the arena where it gains nothing: a get() written before arenas
            # takes no such keyword.)
            keyword = arena_keyword(arena if self.fills_arenas else None)
            return [self.get(k, **keyword) for k in keys]
        return self._get_each([validate_key(k) for k in keys], arena)

    def get_into(self, key: str, buffer: memoryview, *, ranges: Sequence[ByteRange] | None = None) -> int | None:
        """Read ``key``'s whole object into ``buffer`` (writable bytes): its size, or
        ``None`` if there is none. Only ``min(size, len(buffer))`` bytes are written, so a
        size other than ``len(buffer)`` means the buffer does not hold the object.

        Local files are read straight into ``buffer``: for data stored as is, the read
        is the only copy.

        ``ranges``: ``(offset, length)`` ranges of the object that are all the caller
        needs, each read into the same range of ``buffer`` (stores that read ranges
        cheaply, local files, read only those; others may fill more of ``buffer``). The
        size returned is still the whole object's (less if a file shrank while read).
        """
        self._check_open()
        key = validate_key(key)
        if ranges is None:
            return self._get_into_buffer(key, buffer)
        return self._get_ranges_into_buffer(key, _check_ranges(key, ranges), buffer)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return ``[get(k) for k in keys]``, possibly reading in parallel."""
        self._check_open()
        keys = [validate_key(k) for k in keys]
        return self._get_many(keys)

    def get_ranges(
        self, key: str, ranges: Sequence[ByteRange], *, arena: ReadArena | None = None
    ) -> list[bytes] | list[memoryview] | None:
        """Return the bytes of each ``(offset, length)`` range of ``key``'s object.

        Returns ``None`` if ``key`` is missing. A range reaching past the end of the
        object yields only the bytes that exist (possibly ``b""``); callers that need
        exact lengths must check them. ``arena``: as for :meth:`get`.
        """
        self._check_open()
        key = validate_key(key)
        checked = _check_ranges(key, ranges)
        return self._get_ranges(key, checked) if arena is None else self._get_ranges_into(key, checked, arena)

    def get_suffix(self, key: str, length: int) -> bytes | None:
        """Return the last ``length`` bytes of ``key``'s object (all of it if shorter)."""
        self._check_open()
        key = validate_key(key)
        return self._get_suffix(key, _check_suffix_length(key, length))

    def get_many_suffixes(self, keys: Sequence[str], length: int) -> list[bytes | None]:
        """Batched :meth:`get_suffix`: the last ``length`` bytes of each key's object (the
        shard indexes at their ends), ``None`` for a missing one. Stores with costly round
        trips make them one batch of requests."""
        self._check_open()
        checked = [validate_key(key) for key in keys]
        length = _check_suffix_length(checked[0] if checked else "", length)
        return self._get_many_suffixes(checked, length)

    def get_many_ranges(
        self, requests: Sequence[tuple[str, Sequence[ByteRange]]]
    ) -> list[list[bytes] | None]:
        """Batched :meth:`get_ranges`: one result (or ``None``) per ``(key, ranges)``."""
        self._check_open()
        checked: list[tuple[str, list[ByteRange]]] = []
        for raw_key, ranges in requests:
            key = validate_key(raw_key)
            checked.append((key, _check_ranges(key, ranges)))
        return self._get_many_ranges(checked)

    def open_reader(self, key: str) -> ObjectReader | None:
        """An :class:`ObjectReader` for several reads of ``key``'s object, or ``None``
        if there is none. On the local, zip and memory stores all its reads see one version
        (an object store read through fsspec has none to pin)."""
        self._check_open()
        return self._open_reader(validate_key(key))

    def object_token(self, key: str) -> Hashable | None:
        """A cheap token that changes whenever ``key``'s object is replaced; None if missing.

        Caches of data derived from an object (shard indexes) compare tokens to notice
        that another writer, even another library or process, replaced the object. The
        default, for stores that cannot tell cheaply, is one constant: such caches then
        rely on gpuzarr's own writes invalidating them.
        """
        self._check_open()
        return self._object_token(validate_key(key))

    def size(self, key: str) -> int | None:
        """Return the size in bytes of ``key``'s object, or ``None`` if it is missing."""
        self._check_open()
        return self._size(validate_key(key))

    def exists(self, key: str) -> bool:
        """Return whether an object is stored under ``key``."""
        self._check_open()
        return self._size(validate_key(key)) is not None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.exists(key)

    # ------------------------------------------------------------------ writes

    def set(self, key: str, value: BytesLike) -> None:
        """Store ``value`` under ``key``, replacing any previous object atomically."""
        key = validate_key(key)
        self._check_writable(f"key {key!r}")
        self._set(key, as_byte_view(key, value))

    def set_parts(self, key: str, parts: Sequence[BytesLike]) -> None:
        """Store the concatenation of ``parts`` under ``key``, atomically like :meth:`set`.

        Stores that can write pieces one after another (local files: ``writev``) never
        join them into one buffer: a shard assembled from its inner chunks and index is
        written without a copy the size of the shard.
        """
        views = [as_byte_view(key, part) for part in parts]
        if type(self).set is not Store.set:
            # A subclass hooks the public write: hand it the joined object.
            self.set(key, b"".join(views))
            return
        key = validate_key(key)
        self._check_writable(f"key {key!r}")
        self._set_parts(key, views)

    def open_writer(self, key: str) -> ObjectWriter:
        """An :class:`ObjectWriter` that builds a new object for ``key`` piece by piece
        and stores it, atomically like :meth:`set`, when committed."""
        key = validate_key(key)
        self._check_writable(f"key {key!r}")
        return self._open_writer(key)

    def set_many(self, items: Sequence[tuple[str, BytesLike]]) -> None:
        """Store several ``(key, value)`` pairs, possibly in parallel.

        Each single write is atomic; the batch as a whole is not (on error some
        items may have been written).
        """
        self._set_many(self._checked_items(items))

    def set_each(self, items: Sequence[tuple[str, BytesLike]]) -> None:
        """Store several ``(key, value)`` pairs one after another on this thread.

        For a worker storing its own group of objects (the write counterpart of
        :meth:`get_each`): local files are written in one GIL-free native loop where a
        :meth:`set` per object would take the GIL back after each of its four system
        calls. Each write is atomic; the batch is not (on error some items may have been
        written).
        """
        if type(self).set is not Store.set:  # a subclass's own set() must see every write
            for key, value in items:
                self.set(key, value)
            return
        self._set_each(self._checked_items(items))

    def _checked_items(self, items: Sequence[tuple[str, BytesLike]]) -> list[tuple[str, memoryview]]:
        """``items`` with their keys validated and values as byte views, once the store
        is found open and writable."""
        checked = []
        for raw_key, value in items:
            key = validate_key(raw_key)
            checked.append((key, as_byte_view(key, value)))
        if checked:
            self._check_writable(f"key {checked[0][0]!r}")
        else:
            self._check_open()
        return checked

    def delete(self, key: str) -> None:
        """Remove ``key``'s object; a missing key is not an error."""
        key = validate_key(key)
        self._check_writable(f"key {key!r}")
        self._delete(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove several keys; missing keys are not an error."""
        keys = [validate_key(k) for k in keys]
        if keys:
            self._check_writable(f"key {keys[0]!r}")
        else:
            self._check_open()
        self._delete_many(keys)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every key under ``prefix + "/"`` (everything for ``""``)."""
        prefix = validate_prefix(prefix)
        self._check_writable(f"prefix {prefix!r}")
        self._delete_prefix(prefix)

    # ----------------------------------------------------------------- listing

    def list_prefix(self, prefix: str) -> Iterator[str]:
        """Yield every key under ``prefix`` (recursively) as a full key.

        The order is unspecified. ``""`` lists the whole store.
        """
        self._check_open()
        return self._list_prefix(validate_prefix(prefix))

    def list_dir(self, prefix: str) -> Iterator[str]:
        """Yield the sorted names of the immediate children of ``prefix``.

        Children are keys directly under ``prefix`` and implicit sub-"directories"
        (names that are the next segment of deeper keys). Names are single segments,
        not full keys.
        """
        self._check_open()
        return self._list_dir(validate_prefix(prefix))

    # --------------------------------------------------------------- lifecycle

    def flush(self) -> None:
        """Make buffered writes durable. A no-op for stores that write through."""
        self._check_open()

    def finish_writes(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Return once what this store's writes left to finish in the background is done
        (local files: releasing the files they replaced). A write through an array calls
        it before it returns. A no-op by default."""

    def close(self) -> None:
        """Release resources (flush pending writes where a store buffers them).

        Closing twice is harmless; any other use of a closed store raises
        :class:`~gpuzarr.errors.StoreError`.
        """
        if not self._closed:
            # Marked closed only once _close succeeded: a store whose final flush
            # failed stays usable, so its buffered writes are not silently lost.
            self._close()
            self._closed = True
            if self.caches_per_handle:
                for hook in _closed_namespace_hooks:
                    hook(self.cache_namespace)

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------- hooks to implement

    @abstractmethod
    def _get(self, key: str) -> bytes | None:
        """Whole-object read of a valid key."""

    @abstractmethod
    def _get_ranges(self, key: str, ranges: list[ByteRange]) -> list[bytes] | None:
        """Ranged read of a valid key with validated non-negative ranges."""

    @abstractmethod
    def _size(self, key: str) -> int | None:
        """Size of a valid key's object, ``None`` if missing."""

    @abstractmethod
    def _set(self, key: str, value: memoryview) -> None:
        """Write a flat byte view under a valid key (store is open and writable)."""

    def _set_parts(self, key: str, parts: list[memoryview]) -> None:
        """Write the concatenation of flat byte views under a valid key (store open and
        writable). Stores that can write pieces in turn override this."""
        self._set(key, memoryview(b"".join(parts)))

    @abstractmethod
    def _delete(self, key: str) -> None:
        """Delete a valid key; must ignore a missing key."""

    @abstractmethod
    def _list_prefix(self, prefix: str) -> Iterator[str]:
        """Yield every key under a validated prefix."""

    # ------------------------------------------- hooks with default behaviour

    def _object_token(self, key: str) -> Hashable | None:
        return UNVERSIONED

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self._get(k) for k in keys]

    def _get_each(self, keys: list[str], arena: ReadArena | None) -> list[bytes | memoryview | None]:
        if arena is None:
            return [self._get(k) for k in keys]
        return [self._get_into(k, arena) for k in keys]

    def _get_into_buffer(self, key: str, buffer: memoryview) -> int | None:
        data = self._get(key)
        if data is None:
            return None
        n = min(len(data), len(buffer))
        buffer[:n] = memoryview(data)[:n]
        return len(data)

    def _get_ranges_into_buffer(self, key: str, ranges: list[ByteRange], buffer: memoryview) -> int | None:
        # (The whole object holds every range: stores without cheap range reads read it.)
        return self._get_into_buffer(key, buffer)

    def _open_writer(self, key: str) -> ObjectWriter:
        """An :class:`ObjectWriter` for a valid key (store open and writable); stores
        that can write an object in pieces as they come override this."""
        return ObjectWriter(self, key)

    def _open_reader(self, key: str) -> ObjectReader | None:
        token = self._object_token(key)
        return None if token is None else ObjectReader(self, key, token)

    def _get_into(self, key: str, arena: ReadArena) -> bytes | memoryview | None:
        # Stores whose reads produce bytes anyway have nothing to gain from an arena.
        return self._get(key)

    def _get_ranges_into(
        self, key: str, ranges: list[ByteRange], arena: ReadArena
    ) -> list[bytes] | list[memoryview] | None:
        return self._get_ranges(key, ranges)

    def _get_suffix(self, key: str, length: int) -> bytes | None:
        # Two calls, so a concurrent replace may interleave; stores that can do
        # better (one open file, one snapshot) override this.
        size = self._size(key)
        if size is None:
            return None
        start = max(0, size - length)
        parts = self._get_ranges(key, [(start, size - start)])
        return None if parts is None else parts[0]

    def _get_many_ranges(
        self, requests: list[tuple[str, list[ByteRange]]]
    ) -> list[list[bytes] | None]:
        return [self._get_ranges(k, r) for k, r in requests]

    def _get_many_suffixes(self, keys: list[str], length: int) -> list[bytes | None]:
        return [self._get_suffix(k, length) for k in keys]

    def _set_many(self, items: list[tuple[str, memoryview]]) -> None:
        self._set_each(items)

    def _set_each(self, items: list[tuple[str, memoryview]]) -> None:
        for key, value in items:
            self._set(key, value)

    def _delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self._delete(key)

    def _delete_prefix(self, prefix: str) -> None:
        # Materialise the listing first: deleting while iterating a live listing
        # would skip or repeat keys in most backends.
        self._delete_many(list(self._list_prefix(prefix)))

    def _list_dir(self, prefix: str) -> Iterator[str]:
        return iter(child_names(prefix, self._list_prefix(prefix)))

    def _close(self) -> None:
        """Release resources; called once by :meth:`close`."""
        return  # nothing to release by default
