"""Where an array's decode units live in the store, and how their bytes are fetched.

The pipeline decodes *units*: whole chunks for an ordinary array, inner chunks for a
sharded one. A layout maps unit grid coordinates to stored bytes:

* :class:`ChunkLayout`: one unit per stored object; a batch is one ``get_many``.
* :class:`ShardedLayout`: units are inner chunks of shards. A batch fetches the index
  of every touched shard (one ranged or suffix read each, then cached), then only the
  inner chunks needed, with neighbouring byte ranges coalesced into single reads.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple, NoReturn, TypeVar

import numpy as np

from gpuzarr import _native
from gpuzarr.codecs import CodecChain
from gpuzarr.codecs.base import ChunkSpec, Spread
from gpuzarr.codecs.sharding import (
    EMPTY,
    ShardIndex,
    ShardingCodec,
    check_index_checksums,
    half_empty_entry_error,
    huge_entry_error,
)
from gpuzarr.config import get_config
from gpuzarr.errors import ChecksumError, CorruptChunkError
from gpuzarr.indexing import ChunkProjection, whole_chunk_start
from gpuzarr.memory import aligned_empty
from gpuzarr.metadata import ArrayMetadata
from gpuzarr.pipeline.pool import parallel_map, tapering_cuts, tapering_parts
from gpuzarr.stores import Store
from gpuzarr.stores.base import ARENA_ALIGN, ObjectReader, ReadArena, on_closed_namespace
from gpuzarr.stores.local import LocalStore, open_files_budget

__all__ = [
    "ChunkLayout",
    "ShardedLayout",
    "coalesce_ranges",
    "make_layout",
    "shard_index_cache",
    "waves",
    "whole_unit_view",
]

T = TypeVar("T")

#: Where units' shards are (see :meth:`ShardedLayout.locate_shards`): the distinct shards'
#: coordinates, each unit's position among them, and each unit's inner coordinates.
_Located = tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]

# The native shard read's C structures as NumPy records (filled and read a column at a
# time, with no Python per shard or per unit).
_SHARD_UNIT = np.dtype(_native.ShardUnit)
_SHARD_RANGE = np.dtype(_native.ShardRange)
_UNIT_STORED = _native.UNIT_STATES.index("stored")
_UNIT_EMPTY = _native.UNIT_STATES.index("empty")  # (every later state is an error)
_UNIT_HALF_EMPTY = _native.UNIT_STATES.index("half_empty")
_UNIT_HUGE = _native.UNIT_STATES.index("huge")


def waves(items: list[T], unit_nbytes: int) -> Iterator[list[T]]:
    """Split work into waves of about ``wave_bytes`` decoded bytes.

    Small enough that the next wave's fetch overlaps this wave's decode and memory in
    flight stays bounded; at least two units per worker so no thread idles.
    """
    cfg = get_config()
    per_wave = max(2 * cfg.threads, cfg.wave_bytes // max(1, unit_nbytes))
    for start in range(0, len(items), per_wave):
        yield items[start : start + per_wave]


def whole_unit_view(array: np.ndarray, projection: ChunkProjection, unit_shape: tuple[int, ...]) -> np.ndarray | None:
    """The view of ``array`` (an output buffer or a write's value) that holds one whole
    unit, when the projection covers the unit with plain step-1 slices; else None.

    Runs once per unit on the hot paths; the test per dimension is the one
    :meth:`~gpuzarr.indexing.Indexer.whole_chunk_offsets` makes for a whole selection.
    """
    out_sel = projection.out_selection
    if type(out_sel) is not tuple or len(out_sel) != array.ndim:
        return None
    for csel, osel, n, length in zip(projection.chunk_selection, out_sel, unit_shape, array.shape, strict=True):
        if whole_chunk_start(csel, osel, n, length) is None:
            return None
    view = array[(*out_sel, Ellipsis)]  # the Ellipsis keeps a 0-d selection a view, not a scalar
    return view if view.shape == unit_shape else None


class UnitGroup:
    """Units one worker fetches and then decodes, while their bytes are hot in cache.

    ``fetch()`` returns the stored bytes of each of ``projections`` in order (None for
    a unit that is not stored); it runs on the worker's thread, reading one request
    after another (no further threads).
    """

    __slots__ = ("layout", "located", "projections")

    def __init__(
        self, layout: ChunkLayout, projections: Sequence[ChunkProjection], located: _Located | None = None
    ) -> None:
        self.layout = layout
        self.projections = projections
        # The projections' shards as ShardedLayout.locate_shards gives them, where the layout
        # worked them out when it made the group (the worker then need not again).
        self.located = located

    def fetch(self, arena: ReadArena | None = None) -> list[Any]:
        """The group's stored bytes, one entry per projection (in ``arena``'s memory
        where the store can read into it)."""
        return self.layout.fetch_group(self, arena)


#: Outcomes of :meth:`ChunkLayout.read_decode_natively`, per unit: decoded, not stored
#: (the fill value), or to redo through the general path.
NATIVE_DONE, NATIVE_MISSING, NATIVE_REDO = 0, 1, 2

#: A file :meth:`ChunkLayout.read_decode_natively` reads may hold up to this many times
#: a unit's decoded bytes, plus :data:`_NATIVE_READ_EXTRA` (zstd stores incompressible
#: data with a few bytes per 128 KiB block; a larger file is redone in Python).
_NATIVE_READ_SLACK = 2
_NATIVE_READ_EXTRA = 64 * 2**10

_native_read = threading.local()


def _native_read_buffer(nbytes: int) -> np.ndarray:
    """This thread's buffer for files read natively, reused read after read (fresh pages
    fault): at least ``nbytes`` long."""
    buffer: np.ndarray | None = getattr(_native_read, "buffer", None)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = _native_read.buffer = np.empty(nbytes, dtype=np.uint8)
    return buffer


class ChunkLayout:
    """An ordinary array: each chunk is one object in the store."""

    sharded = False

    def __init__(self, store: Store, prefix: str, metadata: ArrayMetadata, chain: CodecChain) -> None:
        self.store = store
        self.prefix = prefix  # "path/" of the array inside the store ("" at the root)
        self.metadata = metadata
        self.chain = chain  # decodes one unit

    @property
    def unit_shape(self) -> tuple[int, ...]:
        """Shape of a decode unit (edge units are stored full-size)."""
        return self.metadata.chunks

    @property
    def unit_spec(self) -> ChunkSpec:
        """Spec of a decode unit."""
        return self.chain.spec

    def worker_groups(
        self, projections: list[ChunkProjection], threads: int, min_group_bytes: int = 0
    ) -> list[UnitGroup] | None:
        """Split a read into groups each worker fetches and decodes itself, or None.

        Only on stores where one read is cheap (``Store.cheap_reads``): a unit is then
        decoded while its bytes are still in cache. Groups of consecutive units (a few
        per thread, shorter towards the end so that threads finish together, and of at
        least ``min_group_bytes`` of units) keep the per-task cost off small units.
        Other stores get batched fetches per wave instead.
        """
        if not self.store.cheap_reads:
            return None
        min_units = max(1, min_group_bytes // (self.unit_spec.nbytes or 1))
        return [UnitGroup(self, part) for part in tapering_parts(projections, 4 * threads, threads, min_units)]

    def locate(
        self, projections: Sequence[ChunkProjection], versions: dict[str, Hashable] | None = None
    ) -> list[tuple[str, int, int] | None]:
        """Where each projection's unit is stored, without reading it: ``(key, offset,
        nbytes)``, or None for a unit not stored (readers that fetch into device memory
        themselves use this). ``versions`` receives each object's version token
        (:meth:`Store.object_token`) as it was when located: a caller that reads the
        ranges some other way compares them afterwards, for an object replaced in between
        may not be where these ranges say."""
        keys = [self.key(p.chunk_coords) for p in projections]
        if versions is not None:  # (before the sizes: a replace in between changes the token)
            versions.update((k, t) for k in keys if (t := self.store.object_token(k)) is not None)
        sizes = [self.store.size(k) for k in keys]
        return [(k, 0, n) if n is not None else None for k, n in zip(keys, sizes, strict=True)]

    def key(self, coords: Sequence[int]) -> str:
        """Store key of the object at storage-grid ``coords``."""
        return self.prefix + self.metadata.chunk_key(coords)

    def describe(self, coords: Sequence[int]) -> str:
        """How errors name the unit at ``coords``."""
        return f"chunk {self.key(coords)!r}"

    def fetch(
        self, projections: Sequence[ChunkProjection], *, inline: bool = False, arena: ReadArena | None = None
    ) -> list[Any]:
        """The stored bytes of each projection's unit (None where not stored).

        ``inline``: read on this thread, one object after another, instead of through
        the store's batched (possibly parallel) call. ``arena``: memory to read into
        (inline reads only; see :class:`~gpuzarr.stores.base.ReadArena`), so the
        caller must be done with the bytes before the arena is reset.
        """
        keys = [self.key(p.chunk_coords) for p in projections]
        if inline:
            return self.store.get_each(keys, arena=arena)
        return self.store.get_many(keys)

    def fetch_group(self, group: UnitGroup, arena: ReadArena | None) -> list[Any]:
        """:meth:`fetch` of a worker's group, on this thread (see :class:`UnitGroup`)."""
        return self.fetch(group.projections, inline=True, arena=arena)

    @property
    def reads_and_decodes_natively(self) -> bool:
        """Whether :meth:`read_decode_natively` can run: each unit is a whole local file
        (an unsharded array in a plain :class:`LocalStore`, not a subclass that may hook
        its reads), its chain has a C decoder (:attr:`CodecChain.native_decoder`), and the
        helper is built with the loop."""
        return (
            _native.read_call_shared is not None
            and not self.sharded
            and type(self.store) is LocalStore
            and self.store.fills_arenas
            and self.chain.native_decoder is not None
        )

    def read_decode_natively(
        self, projections: Sequence[ChunkProjection], addresses: np.ndarray, spread: Spread | None = None
    ) -> np.ndarray:
        """Read each unit's file and decode it straight to its address in gpuzarr's native
        helper (requires :attr:`reads_and_decodes_natively`), on the threads ``spread``
        runs (this one alone without): a thread reads a file and decodes it at once, while
        its bytes are hot in cache, and takes the next, with no Python in between.

        ``addresses`` (``uintp``): where each unit decodes, ``unit_spec.nbytes`` writable,
        C-contiguous bytes that the caller keeps alive. Returns each unit's outcome:
        :data:`NATIVE_DONE`, :data:`NATIVE_MISSING` (no file: the fill value), or
        :data:`NATIVE_REDO`: anything else (a file that could not be read, one larger
        than the read buffer, or a chunk that does not decode to exactly its unit), for
        the caller to redo through :meth:`fetch` and :meth:`decode`, which raise the
        error that names what is wrong (or read what only they read).
        """
        decoder = self.chain.native_decoder
        read_call_shared = _native.read_call_shared
        assert decoder is not None and read_call_shared is not None and isinstance(self.store, LocalStore)
        n = len(projections)
        # (The keys are this layout's own, built from a node prefix checked when opened.)
        records, paths = self.store.native_file_records([self.key(p.chunk_coords) for p in projections], validated=True)
        nbytes = self.unit_spec.nbytes
        sizes = np.full(n, nbytes, dtype=np.uintp)
        results = np.zeros(n, dtype=np.uintp)
        next_file = ctypes.c_size_t(0)
        buffer_nbytes = _NATIVE_READ_SLACK * nbytes + _NATIVE_READ_EXTRA

        def work() -> None:
            buffer = _native_read_buffer(buffer_nbytes)
            read_call_shared(
                decoder.decode_address,
                decoder.thread_context_pointer(),
                n,
                records.ctypes.data,
                addresses.ctypes.data,
                sizes.ctypes.data,
                buffer.ctypes.data,
                buffer_nbytes,
                ctypes.addressof(next_file),
                results.ctypes.data,
            )

        if spread is None:
            work()
        else:
            spread(work)
        del paths  # (the helper held pointers into them until here)
        done = results == sizes
        outcome = np.where(done, NATIVE_DONE, NATIVE_REDO).astype(np.int8)
        if not done.all():  # (the common case, all done, skips the errno tests)
            outcome[self.store.native_files_missing(records)] = NATIVE_MISSING
        return outcome

    def decode_many(
        self,
        coords: Sequence[Sequence[int]],
        raws: Sequence[Any],
        outs: Sequence[np.ndarray],
        spread: Spread | None = None,
    ) -> None:
        """Decode several stored units (``chain.decodes_batches``), each into its ``out``
        (C-contiguous, of the unit shape), on the threads ``spread`` runs if the codec
        can share the batch between them."""
        try:
            self.chain.decode_many(raws, outs, spread)
        except (ChecksumError, CorruptChunkError):
            # The batch does not say which unit is bad: one by one names it (and decodes
            # any unit only the one-by-one path accepts).
            for c, raw, out in zip(coords, raws, outs, strict=True):
                self.decode(c, raw, out=out)

    def decode(self, coords: Sequence[int], raw: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Decode one unit, naming it in any decoding error."""
        try:
            return self.chain.decode(raw, out=out)
        except ChecksumError as exc:
            raise ChecksumError(f"{self.describe(coords)}: {exc}") from None
        except CorruptChunkError as exc:
            raise CorruptChunkError(f"{self.describe(coords)}: {exc}") from None

    def decode_prefix(self, coords: Sequence[int], raw: Any, out: np.ndarray, nbytes: int) -> bool:
        """:meth:`CodecChain.decode_prefix` of one unit, naming it in any decoding error."""
        try:
            return self.chain.decode_prefix(raw, out, nbytes)
        except CorruptChunkError as exc:
            raise CorruptChunkError(f"{self.describe(coords)}: {exc}") from None


# --------------------------------------------------------------------------------------
# shard index cache


class _IndexCache:
    """A bounded, thread-safe LRU of decoded shard indexes.

    Keyed by the storage (:attr:`Store.cache_namespace`) and shard key, so every handle
    on the same storage shares entries, and a shard rewritten through gpuzarr drops its
    entry for all of them. Each entry also keeps the shard's :meth:`Store.object_token`
    from when it was read, so a shard replaced by anyone else (another library, another
    process) is noticed on the next read instead of being read with a stale index.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, str], tuple[Hashable, ShardIndex]] = OrderedDict()
        # Per namespace, how many times entries were dropped: an index read while a drop
        # happened may be of the object the drop was for (on stores whose tokens cannot
        # tell), so it is not cached (see ``put``'s ``since``).
        self._drops: dict[Any, int] = {}

    def generation(self, store: Store) -> int:
        """The drop count of ``store``'s namespace now: take it before reading indexes."""
        with self._lock:
            return self._drops.get(store.cache_namespace, 0)

    def _dropped(self, namespace: Any) -> None:
        self._drops[namespace] = self._drops.get(namespace, 0) + 1

    def get(self, store: Store, key: str, token: Hashable) -> ShardIndex | None:
        """The cached index of ``key`` if it was read from the object ``token`` names."""
        with self._lock:
            entry = self._entries.get((store.cache_namespace, key))
            if entry is None or entry[0] != token:
                return None
            self._entries.move_to_end((store.cache_namespace, key))
            return entry[1]

    def put(self, store: Store, key: str, token: Hashable, index: ShardIndex, since: int | None = None) -> None:
        """Cache ``key``'s index, read from the object ``token`` names. ``since``: the
        :meth:`generation` taken before it was read; if entries of the namespace were
        dropped meanwhile (a write, a delete, an array opened again) it is not cached."""
        limit = get_config().shard_index_cache_entries
        with self._lock:
            if since is not None and self._drops.get(store.cache_namespace, 0) != since:
                return
            self._entries[(store.cache_namespace, key)] = (token, index)
            self._entries.move_to_end((store.cache_namespace, key))
            while len(self._entries) > limit:
                self._entries.popitem(last=False)

    def discard(self, store: Store, key: str) -> None:
        with self._lock:
            self._entries.pop((store.cache_namespace, key), None)
            self._dropped(store.cache_namespace)

    def discard_under(self, store: Store, prefix: str) -> None:
        """Forget the indexes cached for ``store``'s shards at or below ``prefix``
        (``""``: all of them)."""
        namespace = store.cache_namespace
        inside = prefix + "/" if prefix else ""
        with self._lock:
            for entry in [
                k for k in self._entries if k[0] == namespace and (k[1] == prefix or k[1].startswith(inside))
            ]:
                del self._entries[entry]
            self._dropped(namespace)

    def discard_namespace(self, namespace: tuple[object, ...]) -> None:
        """Forget every index cached for ``namespace`` (a closed per-handle store's)."""
        with self._lock:
            for entry in [k for k in self._entries if k[0] == namespace]:
                del self._entries[entry]
            self._drops.pop(namespace, None)  # (a closed handle's: nothing reads through it again)

    def clear(self) -> None:
        """Forget every cached index."""
        with self._lock:
            self._entries.clear()
            for namespace in self._drops:
                self._drops[namespace] += 1

    def __len__(self) -> int:
        return len(self._entries)


#: The process-wide shard index cache.
shard_index_cache = _IndexCache()
on_closed_namespace(shard_index_cache.discard_namespace)  # (a closed zip handle's entries)


def delete_objects(store: Store, keys: Sequence[str]) -> None:
    """Delete stored objects (chunks, shards), forgetting their cached shard indexes
    first: on a store without version tokens (fsspec's) a shard written there later
    would otherwise be read through the deleted one's index."""
    for key in keys:
        shard_index_cache.discard(store, key)
    store.delete_many(keys)


def forget_shard_indexes(store: Store, prefix: str) -> None:
    """Drop the shard indexes cached for ``store`` at and below ``prefix`` (an array)."""
    shard_index_cache.discard_under(store, prefix)


def delete_node(store: Store, prefix: str) -> None:
    """Delete everything at and below ``prefix`` (a node), as :func:`delete_objects`."""
    forget_shard_indexes(store, prefix)
    store.delete_prefix(prefix)


def _coalesce_sorted(offsets: np.ndarray, ends: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Group ranges sorted by offset into reads: ``(first member, read end)`` per read.

    A range joins the current read when it starts at most ``max_gap`` bytes after the
    furthest end so far (overlapping ranges always join).
    """
    run_end = np.maximum.accumulate(ends)
    starts = np.flatnonzero(offsets[1:] - run_end[:-1] > max_gap) + 1
    first = np.concatenate(([0], starts))
    last = np.concatenate((starts, [len(offsets)])) - 1
    return first, run_end[last]


def coalesce_ranges(ranges: Sequence[tuple[int, int]], max_gap: int) -> list[tuple[int, int, list[int]]]:
    """Merge byte ranges whose gap is at most ``max_gap`` into single reads.

    Returns ``(offset, length, members)`` per read, ``members`` indexing ``ranges``.
    Reading a small gap costs less than another request (a syscall locally, a round
    trip remotely).
    """
    if not ranges:
        return []
    arr = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    order = np.argsort(arr[:, 0], kind="stable")
    offsets, ends = arr[order, 0], arr[order, 0] + arr[order, 1]
    first, read_ends = _coalesce_sorted(offsets, ends, max_gap)
    bounds = [*first.tolist(), len(order)]
    return [
        (int(offsets[bounds[j]]), int(read_ends[j] - offsets[bounds[j]]), order[bounds[j] : bounds[j + 1]].tolist())
        for j in range(len(first))
    ]


#: A worker's group of a sharded read takes whole shards, in storage order, until they
#: hold this many bytes of the read's units (decoded). Each group costs a fixed share of
#: Python and NumPy calls (planning its ranges, checking what was read, setting up its
#: decode batches), about 0.5 ms, and the decoding after it runs slower on the caches
#: that work evicted. Measured on 2 cores, 64 KiB zstd inner chunks in 4 MiB shards,
#: interleaved in one process against a group per shard: a [::7, ::3] selection (37
#: inner chunks of each shard) 0.97-0.98x the time and 0.97x the CPU time, a full read
#: 0.98x; on one thread the [::7, ::3] selection 0.875x. (Bounds of 16 and 64 MiB
#: measured no better than 8.) The bound keeps a worker's fetched bytes (its arena)
#: small.
SHARD_GROUP_SPAN_BYTES = 8 * 2**20

#: Shards one fetch holds open at once, at most (a batch touching more is fetched in
#: slices); fewer where the open-file limit shared by all threads is low.
MAX_OPEN_SHARDS = 32


class _NativeShards(NamedTuple):
    """Shard files open in gpuzarr's native helper (:meth:`ShardedLayout._opened_natively`):
    their records, the units' records in shard order (``order``: each one's projection),
    and the units' coalesced ranges (the first ``n_ranges``), ``arena_nbytes`` in all."""

    files: np.ndarray
    units: np.ndarray
    order: np.ndarray
    ranges: np.ndarray
    n_ranges: int
    arena_nbytes: int


def _max_open_shards() -> int:
    """Shards one fetch may hold open: every worker thread (and the caller) may be
    fetching at once, so they share a quarter of the process's open-file limit."""
    return open_files_budget(MAX_OPEN_SHARDS, 4 * (get_config().threads + 1))


class ShardedLayout(ChunkLayout):
    """A sharded array: decode units are inner chunks, stored objects are shards."""

    sharded = True

    def __init__(self, store: Store, prefix: str, metadata: ArrayMetadata, shard_chain: CodecChain) -> None:
        codec = shard_chain.array_bytes
        assert isinstance(codec, ShardingCodec)
        self.codec = codec
        self.shard_spec = shard_chain.spec
        self.shard_chain = shard_chain
        super().__init__(store, prefix, metadata, codec.inner_chain(shard_chain.spec))
        self.inner_grid = codec.inner_grid(metadata.chunks)
        self.index_location, self.index_nbytes = codec.index_range(shard_chain.spec)

    @property
    def unit_shape(self) -> tuple[int, ...]:
        return self.codec.chunk_shape

    def worker_groups(
        self, projections: list[ChunkProjection], threads: int, min_group_bytes: int = 0
    ) -> list[UnitGroup] | None:
        """Groups of shards' units: a worker reads each shard's index, plans and reads
        its coalesced ranges, then decodes them while they are hot.

        Groups of whole shards, in storage order, holding up to
        :data:`SHARD_GROUP_SPAN_BYTES` of units each (a larger shard alone), except
        that shards holding less than ``min_group_bytes`` of the read on average (a
        batch of one-inner-chunk windows, say) are merged into about ``threads`` groups
        of consecutive shards (a task per tiny shard would cost more in handoffs than
        the shard costs to read, and a group's planning is vectorised over all its
        shards), and that on several threads shards are cut into runs of inner chunks
        that shorten as the work runs out (as :func:`~gpuzarr.pipeline.pool.tapering_parts`
        cuts), so that no thread finishes a long run alone while the others idle.
        """
        if not self.store.cheap_reads:
            return None
        shards, position, inner = self.locate_shards(projections)
        if len(shards) <= 1:
            return [UnitGroup(self, projections, (shards, position, inner))]
        order = np.argsort(position, kind="stable")
        counts = np.bincount(position, minlength=len(shards))
        ends = np.cumsum(counts)
        unit_nbytes = self.unit_spec.nbytes or 1024
        span = max(1, SHARD_GROUP_SPAN_BYTES // unit_nbytes)  # (units of whole shards a group may take)
        if len(projections) * unit_nbytes < min_group_bytes * len(shards):
            # Cut the shard-ordered units into `threads` runs of whole shards, of about
            # equal unit counts.
            targets = np.arange(1, threads) * (len(projections) / threads)
            cuts = [0, *ends[np.unique(np.searchsorted(ends, targets))].tolist()]
            cuts = sorted(set(cuts) | {len(projections)})
        elif threads <= 1:  # (one thread: none idles at the end, so no shard is cut)
            # (min_length = all units: every group ends at a shard's end.)
            cuts = tapering_cuts(len(projections), 1, 1, len(projections), ends.tolist(), span=span)
        else:
            # Whole shards at first; but as the work runs out, whichever thread takes the
            # last shard finishes alone while the others idle. So runs shorten as the
            # work runs out, as tapering_parts cuts them (each at most a 2 * threads-th
            # of what is left, and of at least min_group_bytes of units, a shorter rest
            # of a shard taken along): whole shards at first (several to a run, up to
            # SHARD_GROUP_SPAN_BYTES), then shorter runs within shards, down to single
            # inner chunks where these are large. (Measured
            # against cutting only the last two shards per thread in halves, 2 cores:
            # 1 MiB inner chunks in 16 MiB shards, full read 215 against 224 ms, 32
            # windows 50 against 52 ms; 64 KiB inner chunks in 4 MiB shards, full read
            # 196 against 203 ms.) Cut shards' indexes are read here first, once each,
            # rather than once per run (except where shards are read natively, which
            # reads each run's index from the file it opens anyway).
            min_units = max(1, min_group_bytes // unit_nbytes)
            cuts = tapering_cuts(len(projections), 1, threads, min_units, ends.tolist(), span=span)
            cut_at = np.asarray(cuts)
            cuts_inside = np.searchsorted(cut_at, ends, "left") - np.searchsorted(cut_at, ends - counts, "right")
            cut_shards = [shards[i] for i in np.flatnonzero(cuts_inside).tolist()]
            if cut_shards and not self._reads_natively():  # (native reads use no cached index)
                self.read_indexes([self.key(s) for s in cut_shards], inline=True)
        groups = []
        for a, b in itertools.pairwise(cuts):
            if b > a:
                # A run holds units of consecutive shards (by position), each of them
                # with at least one unit: its own shard list is a slice of `shards`.
                run = order[a:b]
                run_position = position[run]
                first, last = int(run_position[0]), int(run_position[-1])
                located = (shards[first : last + 1], run_position - first, inner[run])
                groups.append(UnitGroup(self, [projections[i] for i in run.tolist()], located))
        return groups

    @property
    def shard_shape(self) -> tuple[int, ...]:
        """Shape of a shard (the array's storage grid)."""
        return self.metadata.chunks

    def split_coords(self, coords: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Inner-chunk grid coords → (shard coords, inner coords within the shard)."""
        shard = tuple(c // g for c, g in zip(coords, self.inner_grid, strict=True))
        inner = tuple(c % g for c, g in zip(coords, self.inner_grid, strict=True))
        return shard, inner

    def describe(self, coords: Sequence[int]) -> str:
        shard, inner = self.split_coords(coords)
        return f"shard {self.key(shard)!r} inner chunk {inner}"

    def locate_shards(self, projections: Sequence[ChunkProjection]) -> _Located:
        """Each projection's shard: (distinct shard coords, shard position per projection,
        inner coords per projection). Shards are listed in storage order.

        Works on linear shard ids (a 1-d unique), because this runs on every read and
        ``np.unique(axis=0)`` costs a noticeable part of a small read.
        """
        n = len(projections)
        coords = np.array([p.chunk_coords for p in projections], dtype=np.int64).reshape(n, -1)
        grid = np.asarray(self.inner_grid, dtype=np.int64)
        shard_coords = coords // grid
        inner = coords - shard_coords * grid
        if n == 0:
            return [], np.zeros(0, np.int64), inner
        if coords.shape[1]:
            linear = np.ravel_multi_index(tuple(shard_coords.T), self.metadata.chunk_grid_shape)
        else:  # 0-d array: a single shard
            linear = np.zeros(n, np.int64)
        if (linear == linear[0]).all():  # one shard: the common case for small reads
            return [tuple(shard_coords[0].tolist())], np.zeros(n, np.int64), inner
        _, first, position = np.unique(linear, return_index=True, return_inverse=True)
        shards = [tuple(c) for c in shard_coords[first].tolist()]
        return shards, position.reshape(-1), inner

    # -- indexes ------------------------------------------------------------------------

    def read_indexes(
        self, shard_keys: Sequence[str], *, inline: bool = False, versions: dict[str, Hashable] | None = None
    ) -> list[ShardIndex | None]:
        """The index of each shard (None for a missing shard), from the cache or the store.

        Each shard's version token is checked first (a ``stat`` on local files): a missing
        shard costs no read at all, and a cached index is used only for the very object
        it was read from. ``inline``: read on this thread (a worker's own group), each
        shard opened once for its token and its index (:meth:`Store.open_reader`).
        ``versions`` (inline only) receives the token of the version each index is of.
        """
        if inline:
            with self._open_readers(shard_keys) as readers:
                if versions is not None:
                    versions.update((k, r.token) for k, r in zip(shard_keys, readers, strict=True) if r is not None)
                return self._indexes_via(shard_keys, readers)
        store = self.store
        since = shard_index_cache.generation(store)
        tokens = [store.object_token(k) for k in shard_keys]
        found, missing = self._cached_indexes(shard_keys, tokens)
        if not missing:
            return found
        n = self.index_nbytes
        keys = [shard_keys[i] for i in missing]
        if self.index_location == "end" and type(store)._get_many_suffixes is not Store._get_many_suffixes:
            # (One batch, where the store batches them: one with round trips (object
            # stores) runs them at once, where the worker pool would run as many as it
            # has threads.)
            raws = store.get_many_suffixes(keys, n)
        elif self.index_location == "end":
            raws = parallel_map(lambda k: store.get_suffix(k, n), keys)
        else:
            ranges = store.get_many_ranges([(k, [(0, n)]) for k in keys])
            raws = [r[0] if r is not None else None for r in ranges]
        self._decode_indexes(found, missing, keys, tokens, raws, since)
        return found

    def _cached_indexes(
        self, keys: Sequence[str], tokens: Sequence[Hashable | None]
    ) -> tuple[list[ShardIndex | None], list[int]]:
        """The cached index of each shard (by its token), and the positions of the shards
        that exist but have none cached."""
        store = self.store
        found: list[ShardIndex | None] = [
            shard_index_cache.get(store, k, t) if t is not None else None for k, t in zip(keys, tokens, strict=True)
        ]
        missing = [i for i, (f, t) in enumerate(zip(found, tokens, strict=True)) if f is None and t is not None]
        return found, missing

    def _indexes_via(self, keys: Sequence[str], readers: Sequence[ObjectReader | None]) -> list[ShardIndex | None]:
        """The index of each shard, cached or read through its open reader (None: missing)."""
        since = shard_index_cache.generation(self.store)
        tokens = [r.token if r is not None else None for r in readers]
        found, missing = self._cached_indexes(keys, tokens)
        if not missing:
            return found
        n = self.index_nbytes
        raws: list[Any] = []
        for i in missing:
            reader = readers[i]
            assert reader is not None  # (a shard without a reader has no token)
            if self.index_location == "end":
                raws.append(reader.get_suffix(n))
            else:
                got = reader.get_ranges([(0, n)])
                raws.append(None if got is None else got[0])
        self._decode_indexes(found, missing, [keys[i] for i in missing], tokens, raws, since)
        return found

    @contextmanager
    def _open_readers(self, keys: Sequence[str]) -> Iterator[list[ObjectReader | None]]:
        """An open reader per shard (None for a missing one), all closed on exit, also
        when opening one of them fails."""
        with ExitStack() as stack:
            readers: list[ObjectReader | None] = []
            for key in keys:
                reader = self.store.open_reader(key)
                if reader is not None:
                    stack.enter_context(reader)
                readers.append(reader)
            yield readers

    def _decode_indexes(
        self,
        found: list[ShardIndex | None],
        missing: list[int],
        keys: list[str],
        tokens: Sequence[Hashable | None],
        raws: list[Any],
        since: int,
    ) -> None:
        """Decode the raw indexes read for the shards ``missing`` (positions in ``found``,
        keys ``keys``), cache them under their tokens and fill them into ``found``.

        A raw index of None is a shard deleted since its token was read: it stays missing.
        ``since``: the cache's generation before the raw indexes were read.
        """
        read = [(i, key, raw) for i, key, raw in zip(missing, keys, raws, strict=True) if raw is not None]
        decoded = self._decoded([key for _, key, _ in read], [raw for *_, raw in read])
        for (i, key, _), index in zip(read, decoded, strict=True):
            shard_index_cache.put(self.store, key, tokens[i], index, since)
            found[i] = index

    def _decoded(self, keys: list[str], raws: list[Any]) -> list[ShardIndex]:
        """The indexes of the shards ``keys`` from their raw bytes (a raw index shorter
        than an index is a truncated shard)."""
        for key, raw in zip(keys, raws, strict=True):
            if len(raw) < self.index_nbytes:
                raise self._truncated_error(key, len(raw))
        return self.codec.decode_indexes(raws, self.shard_spec, keys) if raws else []

    def _truncated_error(self, key: str, nbytes: int) -> CorruptChunkError:
        """The error for a shard of ``nbytes`` bytes, too short to hold its index."""
        return CorruptChunkError(
            f"shard {key!r}: truncated, {nbytes} bytes is too short for its {self.index_nbytes}-byte index"
        )

    def past_end_error(self, coords: tuple[int, ...], offset: int, nbytes: int) -> CorruptChunkError:
        """The error for an inner chunk whose index entry reaches past the shard's end."""
        return CorruptChunkError(
            f"{self.describe(coords)} at bytes [{offset}, {offset + nbytes}) "
            "lies past the end of the shard (truncated shard or corrupt index)"
        )

    # -- fetching inner chunks -------------------------------------------------------

    def _plan(
        self,
        projections: Sequence[ChunkProjection],
        *,
        inline: bool = False,
        versions: dict[str, Hashable] | None = None,
    ) -> list[_ShardRequest]:
        """The store requests for the stored units of ``projections`` (indexes read or
        cached); units not stored are in no request (they read as the fill value).

        Vectorised with NumPy over every shard of the batch at once, so neither a shard of
        many small inner chunks nor a batch touching many shards costs NumPy calls per
        chunk or per shard.
        """
        if not projections:
            return []
        shards, position, inner = self.locate_shards(projections)
        keys = [self.key(s) for s in shards]
        indexes = self.read_indexes(keys, inline=inline, versions=versions)
        return self._requests(projections, keys, indexes, position, inner)

    def _requests(
        self,
        projections: Sequence[ChunkProjection],
        keys: list[str],
        indexes: Sequence[ShardIndex | None],
        position: np.ndarray,
        inner: np.ndarray,
    ) -> list[_ShardRequest]:
        """The coalesced requests serving ``projections`` from their shards' indexes."""
        planned = _plan_reads(indexes, position, inner, get_config().coalesce_gap_bytes)
        if planned is None:
            return []
        stored, offsets, lengths, read_shard, read_start, read_end, bounds = planned
        requests: list[_ShardRequest] = []
        for j, (shard, start, end) in enumerate(zip(read_shard, read_start, read_end, strict=True)):
            if not requests or requests[-1].key != keys[shard]:
                requests.append(_ShardRequest(keys[shard], self))
            units = range(bounds[j], bounds[j + 1])
            requests[-1].add(
                start,
                end - start,
                [(stored[m], offsets[m], lengths[m], projections[stored[m]].chunk_coords) for m in units],
            )
        return requests

    def locate(
        self, projections: Sequence[ChunkProjection], versions: dict[str, Hashable] | None = None
    ) -> list[tuple[str, int, int] | None]:
        located: list[tuple[str, int, int] | None] = [None] * len(projections)
        for request in self._plan(projections, inline=True, versions=versions):
            # Nothing reads these ranges before the caller sizes its buffers from them:
            # a corrupt index must fail here, as the fetched ranges fail in ``cut``.
            shard_nbytes = self.store.size(request.key)
            if shard_nbytes is None:
                request.vanished()
            for unit, offset, nbytes, coords in request.pieces():
                if offset + nbytes > shard_nbytes:  # type: ignore[operator]
                    raise request.past_end(coords, offset, nbytes)
                located[unit] = (request.key, offset, nbytes)
        return located

    def fetch(
        self, projections: Sequence[ChunkProjection], *, inline: bool = False, arena: ReadArena | None = None
    ) -> list[Any]:
        """Inner chunks' bytes (None where not stored): indexes first (cached), then the
        coalesced ranges of every shard in one batched store call. ``inline``: do the
        I/O on this thread instead of through the store's batched calls; ``arena``: as
        for :meth:`ChunkLayout.fetch`."""
        results: list[Any] = [None] * len(projections)
        if inline:
            self._fetch_open(projections, results, arena, None)
            return results
        if not self.store.cheap_reads and projections:
            located = self.locate_shards(projections)
            if self._covers_whole_shards(projections, located):
                self._fetch_whole_shards(projections, located, results)
                return results
        requests = self._plan(projections)
        if not requests:
            return results
        fetched = self.store.get_many_ranges([(r.key, r.ranges) for r in requests])
        for request, blobs in zip(requests, fetched, strict=True):
            for unit, piece in request.cut(blobs):
                results[unit] = piece
        return results

    def _covers_whole_shards(self, projections: Sequence[ChunkProjection], located: _Located) -> bool:
        """Whether the projections read every inner chunk of every shard they touch."""
        shards, position, inner = located
        grid = np.asarray(self.inner_grid, dtype=np.int64)
        units = -(-np.asarray(self.metadata.shape, dtype=np.int64) // np.asarray(self.unit_shape, dtype=np.int64))
        inner_linear = np.ravel_multi_index(tuple(inner.T), tuple(self.inner_grid)) if inner.shape[1] else position * 0
        distinct = np.unique(position * int(np.prod(grid)) + inner_linear) // max(1, int(np.prod(grid)))
        read = np.bincount(distinct, minlength=len(shards))
        for j, shard in enumerate(shards):
            start = np.asarray(shard, dtype=np.int64) * grid
            if read[j] != int(np.prod(np.minimum(grid, units - start))):
                return False
        return True

    def _fetch_whole_shards(
        self, projections: Sequence[ChunkProjection], located: _Located, results: list[Any]
    ) -> None:
        """Fetch shards a read covers whole, one request each in one batch, on stores
        whose requests are round trips: the index and the inner chunks come from the
        same object, where reading the index first, then the ranges, costs two. (The
        indexes are not cached: nothing needs them again for these shards' reads.)"""
        shards, position, inner = located
        keys = [self.key(s) for s in shards]
        blobs = self.store.get_many(keys)
        n = self.index_nbytes
        indexes: list[ShardIndex | None] = [None] * len(keys)
        present = [j for j, blob in enumerate(blobs) if blob is not None]
        views = [memoryview(blobs[j]) for j in present]  # type: ignore[arg-type]
        # (A shard shorter than its index gives a short raw index: ``_decoded`` says so.)
        raws = [view[max(0, len(view) - n) :] if self.index_location == "end" else view[:n] for view in views]
        for j, index in zip(present, self._decoded([keys[j] for j in present], raws), strict=True):
            indexes[j] = index
        view_of = {keys[j]: view for j, view in zip(present, views, strict=True)}
        for request in self._requests(projections, keys, indexes, position, inner):
            view = view_of[request.key]
            for unit, piece in request.cut([view[start : start + length] for start, length in request.ranges]):
                results[unit] = piece

    def fetch_group(self, group: UnitGroup, arena: ReadArena | None) -> list[Any]:
        results: list[Any] = [None] * len(group.projections)
        self._fetch_open(group.projections, results, arena, group.located)
        return results

    def _fetch_open(
        self,
        projections: Sequence[ChunkProjection],
        results: list[Any],
        arena: ReadArena | None,
        located: _Located | None,
    ) -> None:
        """Fetch on this thread, each shard opened once for its index and its inner
        chunks (:meth:`Store.open_reader`): both come from the same version of the
        shard, and a local file costs one open instead of a stat and two opens.
        ``located``: the projections' :meth:`locate_shards`, if known."""
        if not projections:
            return
        shards, position, inner = located if located is not None else self.locate_shards(projections)
        if len(shards) > _max_open_shards():  # bound the files open at once
            for members in self._shard_slices(position, len(shards)):
                part: list[Any] = [None] * len(members)
                self._fetch_open([projections[i] for i in members], part, arena, None)
                for i, piece in zip(members, part, strict=True):
                    results[i] = piece
            return
        keys = [self.key(s) for s in shards]
        if self._reads_natively():
            self._fetch_native(projections, results, arena, keys, position, inner)
            return
        with self._open_readers(keys) as readers:
            found = self._indexes_via(keys, readers)
            reader_of = dict(zip(keys, readers, strict=True))
            for request in self._requests(projections, keys, found, position, inner):
                reader = reader_of[request.key]
                blobs = None if reader is None else reader.get_ranges(request.ranges, arena=arena)
                for unit, piece in request.cut(blobs):
                    results[unit] = piece

    def _reads_natively(self) -> bool:
        """Whether inline fetches go through gpuzarr's native shard reads: local files
        (a plain :class:`LocalStore`, not a subclass that may hook its reads), indexes of
        the common codecs, and the helper built with them."""
        return (
            _native.shard_reads is not None
            and type(self.store) is LocalStore
            and self.store.fills_arenas
            and self.codec.plain_index is not None
        )

    @property
    def reads_and_decodes_natively(self) -> bool:
        """Whether :meth:`read_decode_natively` can run: shards read natively (see
        :meth:`_reads_natively`), inner chunks with a C decoder, and the helper built
        with the loop."""
        return (
            _native.read_shards_call_shared is not None
            and self._reads_natively()
            and self.chain.native_decoder is not None
        )

    def read_decode_natively(
        self, projections: Sequence[ChunkProjection], addresses: np.ndarray, spread: Spread | None = None
    ) -> np.ndarray:
        """:meth:`ChunkLayout.read_decode_natively` for inner chunks: the shards are
        opened and their indexes read and checked as :meth:`fetch` does (raising as it
        does), then the threads ``spread`` runs share the inner chunks, each reading one
        from its shard and decoding it at once, while its bytes are hot in cache: no
        thread waits for a fetch of every range before decoding starts."""
        decoder = self.chain.native_decoder
        call = _native.read_shards_call_shared
        assert decoder is not None and call is not None
        n = len(projections)
        outcome = np.empty(n, dtype=np.int8)
        shards, position, inner = self.locate_shards(projections)
        if len(shards) > _max_open_shards():  # bound the files open at once
            for members in self._shard_slices(position, len(shards)):
                part = [projections[i] for i in members]
                outcome[members] = self.read_decode_natively(part, addresses[members], spread)
            return outcome
        nbytes = self.unit_spec.nbytes
        results = np.zeros(n, dtype=np.uintp)
        with self._opened_natively(projections, [self.key(s) for s in shards], position, inner) as opened:
            files, units, order = opened.files, opened.units, opened.order
            unit_shard = np.repeat(np.arange(len(files), dtype=np.uintp), files["n_units"].astype(np.intp))
            unit_addresses = np.ascontiguousarray(addresses[order], dtype=np.uintp)
            next_unit = ctypes.c_size_t(0)
            buffer_nbytes = _NATIVE_READ_SLACK * nbytes + _NATIVE_READ_EXTRA

            def work() -> None:
                buffer = _native_read_buffer(buffer_nbytes)
                call(
                    decoder.decode_address, decoder.thread_context_pointer(),
                    files.ctypes.data, unit_shard.ctypes.data, units.ctypes.data, n,
                    unit_addresses.ctypes.data, nbytes, buffer.ctypes.data, buffer_nbytes,
                    ctypes.addressof(next_unit), results.ctypes.data,
                )  # fmt: skip

            if spread is None:
                work()
            else:
                spread(work)
        # (Every unit is stored or empty here: _opened_natively raised for the others.)
        in_order = np.where(results == nbytes, NATIVE_DONE, NATIVE_REDO).astype(np.int8)
        in_order[units["state"] == _UNIT_EMPTY] = NATIVE_MISSING
        outcome[order] = in_order
        return outcome

    def _shard_slices(self, position: np.ndarray, n_shards: int) -> Iterator[list[int]]:
        """The units (by index) of each slice of at most :func:`_max_open_shards`
        consecutive shards, given each unit's shard ``position``."""
        limit = _max_open_shards()
        order = np.argsort(position, kind="stable")
        ends = np.cumsum(np.bincount(position, minlength=n_shards)).tolist()
        for lo in range(0, n_shards, limit):
            first = ends[lo - 1] if lo else 0
            yield order[first : ends[min(lo + limit, n_shards) - 1]].tolist()

    @contextmanager
    def _opened_natively(
        self, projections: Sequence[ChunkProjection], keys: list[str], position: np.ndarray, inner: np.ndarray
    ) -> Iterator[_NativeShards]:
        """Open the shards ``keys`` in gpuzarr's native helper, read their indexes, check
        them (raising as :meth:`fetch` does for a shard that cannot be read, a checksum
        mismatch, a truncated shard, a bad entry or a unit past the shard's end) and plan
        the units' coalesced ranges, in one GIL-free call with no Python per shard; the
        files are closed on leaving. ``position`` and ``inner``: each projection's shard
        and inner coordinates (:meth:`locate_shards`)."""
        reads = _native.shard_reads
        assert reads is not None and isinstance(self.store, LocalStore)
        n_shards, n_units, index_nbytes = len(keys), len(projections), self.index_nbytes
        order = np.argsort(position, kind="stable")
        counts = np.bincount(position, minlength=n_shards)
        files, paths = self.store.native_file_records(keys)
        files["first_unit"] = np.cumsum(counts) - counts
        files["n_units"] = counts
        units = np.zeros(n_units, dtype=_SHARD_UNIT)
        grid = tuple(self.inner_grid)
        units["inner"] = np.ravel_multi_index(tuple(inner[order].T), grid) if inner.shape[1] else 0
        indexes = np.empty((n_shards, index_nbytes), dtype=np.uint8)
        ranges = np.empty(n_units, dtype=_SHARD_RANGE)
        scratch = np.empty(n_units, dtype=np.uintp)  # (held here: the call writes into it)
        arena_nbytes = ctypes.c_ulonglong()
        max_gap = min(get_config().coalesce_gap_bytes, 2**62)  # (any larger gap joins every range anyway)
        try:
            n_ranges = reads.open(
                files.ctypes.data, n_shards, units.ctypes.data, scratch.ctypes.data,
                indexes.ctypes.data, index_nbytes, self.index_location == "end",
                max_gap, ARENA_ALIGN, ranges.ctypes.data, ctypes.byref(arena_nbytes),
            )  # fmt: skip
            self._check_native_shards(files, keys, indexes)
            self._check_native_units(units, order, projections, keys, (position, inner))
            yield _NativeShards(files, units, order, ranges, n_ranges, arena_nbytes.value)
        finally:
            reads.close(files.ctypes.data, n_shards)  # (a no-op once read closed them)
            del paths  # (the C side kept pointers into them until here)

    def _fetch_native(
        self,
        projections: Sequence[ChunkProjection],
        results: list[Any],
        arena: ReadArena | None,
        keys: list[str],
        position: np.ndarray,
        inner: np.ndarray,
    ) -> None:
        """:meth:`_fetch_open` in gpuzarr's native helper: every shard opened, its index
        read, its inner chunks' ranges planned, read and the file closed in two GIL-free
        calls, with no Python per shard or per range in between (on local files that
        Python, run on caches the decoding evicts, costs more than the reads).

        Indexes are not cached: reading one costs a read of a few KiB from the open file,
        about what looking it up costs, and each read sees the shard as it is. Errors are
        those of the Python path: a shard whose file cannot be opened because it is not
        there reads as the fill value; any other failure of its file is a StoreError; a
        checksum mismatch, a truncated shard, a bad index entry (of any unit) or a unit
        past the shard's end raises, naming it. (Where several shards are bad, the one
        named can differ: these are checked shard by shard, in storage order.)
        """
        reads = _native.shard_reads
        assert reads is not None
        with self._opened_natively(projections, keys, position, inner) as opened:
            files, units, order, ranges = opened.files, opened.units, opened.order, opened.ranges
            size = opened.arena_nbytes
            buffer = arena.take(size) if arena is not None else memoryview(aligned_empty(size, align=ARENA_ALIGN))
            address = ctypes.addressof(ctypes.c_char.from_buffer(buffer)) if size else 0
            reads.read(
                files.ctypes.data, len(keys), units.ctypes.data, len(units),
                ranges.ctypes.data, opened.n_ranges, address,
            )  # fmt: skip
        self._check_native_shards(files, keys, None)
        self._check_native_units(units, order, projections, keys, (position, inner))
        states, offsets, lengths = units["state"].tolist(), units["offset"].tolist(), units["nbytes"].tolist()
        for k, unit in enumerate(order.tolist()):
            if states[k] == _UNIT_STORED:
                results[unit] = buffer[offsets[k] : offsets[k] + lengths[k]]

    def _check_native_shards(self, files: np.ndarray, keys: list[str], indexes: np.ndarray | None) -> None:
        """Raise for a shard the native read could not read (a StoreError), that is too
        short for its index, or (given its ``indexes``) whose index fails its checksum or
        holds a bad entry."""
        assert isinstance(self.store, LocalStore)
        errors = files["error"]
        self.store.raise_for_native_failures(files, keys)  # (a missing shard's units read as fill)
        for s in np.flatnonzero(files["truncated"]).tolist():
            raise self._truncated_error(keys[s], int(files["size"][s]))
        if indexes is None:
            return
        read = np.flatnonzero(errors == 0)
        if self.codec.plain_index:
            # (Slices of one bytes object: far cheaper than a memoryview of each row.)
            joined, n = indexes.tobytes(), indexes.shape[1]
            rows = read.tolist()
            check_index_checksums([joined[s * n : (s + 1) * n] for s in rows], [keys[s] for s in rows])
        # A bad entry anywhere in an index, as decoding the whole index finds it: half
        # empty ones first, then those past 2**63.
        kinds = files["bad_entry_kind"][read]
        for kind in (_UNIT_HALF_EMPTY, _UNIT_HUGE):
            found = np.flatnonzero(kinds == kind)
            if len(found):
                s = int(read[found[0]])
                entry = int(files["bad_entry"][s])
                coords = tuple(int(c) for c in np.unravel_index(entry, tuple(self.inner_grid)))
                if kind == _UNIT_HALF_EMPTY:
                    raise half_empty_entry_error(keys[s], coords)
                offset, nbytes = (int(v) for v in np.frombuffer(indexes[s, 16 * entry : 16 * entry + 16], "<u8"))
                raise huge_entry_error(keys[s], coords, offset, nbytes)

    def _check_native_units(
        self,
        units: np.ndarray,
        order: np.ndarray,
        projections: Sequence[ChunkProjection],
        keys: list[str],
        located: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Raise for the first unit (in shard order) in a state other than stored or
        empty (past the end, a half empty entry, an entry past 2**63)."""
        flagged = np.flatnonzero(units["state"] > _UNIT_EMPTY)
        if not len(flagged):
            return
        k = int(flagged[0])
        unit = int(order[k])
        state = _native.UNIT_STATES[int(units["state"][k])]
        position, inner = located
        key, coords = keys[int(position[unit])], tuple(int(c) for c in inner[unit])
        offset, nbytes = int(units["offset"][k]), int(units["nbytes"][k])
        if state == "half_empty":
            raise half_empty_entry_error(key, coords)
        if state == "huge":
            raise huge_entry_error(key, coords, offset, nbytes)
        raise self.past_end_error(tuple(projections[unit].chunk_coords), offset, nbytes)


class _ShardRequest:
    """The coalesced byte ranges read from one shard, and the inner chunks in each."""

    __slots__ = ("_pieces", "key", "layout", "ranges")

    def __init__(self, key: str, layout: ShardedLayout) -> None:
        self.key = key
        self.layout = layout
        self.ranges: list[tuple[int, int]] = []
        self._pieces: list[list[tuple[int, int, int, tuple[int, ...]]]] = []

    def add(self, start: int, length: int, pieces: list[tuple[int, int, int, tuple[int, ...]]]) -> None:
        """One coalesced range and its ``(unit, offset in shard, nbytes, coords)`` pieces."""
        self.ranges.append((start, length))
        self._pieces.append(pieces)

    def pieces(self) -> Iterator[tuple[int, int, int, tuple[int, ...]]]:
        """``(unit, offset in the shard, nbytes, coords)`` of every inner chunk served."""
        for pieces in self._pieces:
            yield from pieces

    def vanished(self) -> NoReturn:
        """Raise for a shard deleted after its index was read (and forget the index)."""
        shard_index_cache.discard(self.layout.store, self.key)
        raise CorruptChunkError(f"shard {self.key!r}: deleted while being read")

    def past_end(self, coords: tuple[int, ...], offset: int, nbytes: int) -> CorruptChunkError:
        """The error for an inner chunk whose index entry reaches past the shard's end."""
        return self.layout.past_end_error(coords, offset, nbytes)

    def cut(self, blobs: list[bytes] | None) -> Iterator[tuple[int, memoryview]]:
        """``(unit, bytes)`` of every inner chunk served, as views of the fetched ranges."""
        if blobs is None:
            self.vanished()
        for (start, _), blob, pieces in zip(self.ranges, blobs, self._pieces, strict=True):
            view = memoryview(blob)
            for unit, offset, nbytes, coords in pieces:
                lo = offset - start
                if lo + nbytes > len(view):
                    raise self.past_end(coords, offset, nbytes)
                yield unit, view[lo : lo + nbytes]


def _plan_reads(
    indexes: Sequence[ShardIndex | None], position: np.ndarray, inner: np.ndarray, max_gap: int
) -> tuple[list[int], list[int], list[int], list[int], list[int], list[int], list[int]] | None:
    """Plan the coalesced reads of a batch of inner chunks spread over shards.

    ``position[i]`` is unit i's shard (into ``indexes``), ``inner[i]`` its coordinates
    in that shard. Returns, as lists: the stored units ordered by (shard, offset), their
    offsets and lengths, then per read its shard, start and end, and the bounds of each
    read's units in the unit lists; None when nothing is stored.
    """
    n = len(position)
    present = [(i, index) for i, index in enumerate(indexes) if index is not None]
    if not present:
        return None
    grid = present[0][1].grid
    flat_inner = np.ravel_multi_index(tuple(inner.T), grid) if inner.shape[1] else np.zeros(n, np.int64)
    if len(indexes) == 1:
        entries = present[0][1].entries.reshape(-1, 2)[flat_inner]
    else:
        # Every touched index side by side, so one gather serves all shards.
        stacked = np.stack([index.entries.reshape(-1, 2) for _, index in present])
        slot = np.full(len(indexes), -1, dtype=np.int64)
        slot[[i for i, _ in present]] = np.arange(len(present))
        unit_slot = slot[position]
        entries = np.full((n, 2), EMPTY, dtype=np.uint64)
        have = unit_slot >= 0
        entries[have] = stacked[unit_slot[have], flat_inner[have]]
    stored = np.flatnonzero(entries[:, 0] != EMPTY)
    if not len(stored):
        return None
    offsets = entries[stored, 0].astype(np.int64)
    lengths = entries[stored, 1].astype(np.int64)
    shard = position[stored]
    order = np.lexsort((offsets, shard))
    members, offsets, lengths, shard = stored[order], offsets[order], lengths[order], shard[order]
    ends = offsets + lengths
    # Coalesce within each shard, never across shards: shifting every shard into a band
    # of its own (wider than any end plus the gap) lets one running maximum serve all.
    band = int(ends.max()) + max_gap + 1
    if band * (int(shard[-1]) + 1) < 2**62:
        shift = shard * band
        first, read_ends = _coalesce_sorted(offsets + shift, ends + shift, max_gap)
        read_ends = read_ends - shift[first]
    else:  # offsets too large to band (a corrupt index, or exabyte shards): shard by shard
        firsts, read_end_parts = [], []
        for s in np.unique(shard).tolist():
            rows = np.flatnonzero(shard == s)
            f, e = _coalesce_sorted(offsets[rows], ends[rows], max_gap)
            firsts.append(rows[f])
            read_end_parts.append(e)
        first, read_ends = np.concatenate(firsts), np.concatenate(read_end_parts)
    return (
        members.tolist(),
        offsets.tolist(),
        lengths.tolist(),
        shard[first].tolist(),
        offsets[first].tolist(),
        read_ends.tolist(),
        [*first.tolist(), len(members)],
    )


def make_layout(store: Store, prefix: str, metadata: ArrayMetadata, chain: CodecChain) -> ChunkLayout:
    """The layout for an array: sharded when sharding is its only top-level codec.

    A sharding codec wrapped by other codecs (a transpose before it, a compressor
    after it) still works, but through whole-shard decodes.
    """
    if isinstance(chain.array_bytes, ShardingCodec) and not chain.array_array and not chain.bytes_bytes:
        return ShardedLayout(store, prefix, metadata, chain)
    return ChunkLayout(store, prefix, metadata, chain)
