"""Where an array's decode units live in the store, and how their bytes are fetched.

The pipeline decodes *units*: whole chunks for an ordinary array, inner chunks for a
sharded one. A layout maps unit grid coordinates to stored bytes:

* :class:`ChunkLayout`: one unit per stored object; a batch is one ``get_many``.
* :class:`ShardedLayout`: units are inner chunks of shards. A batch fetches the index
  of every touched shard (one ranged or suffix read each, then cached), then only the
  inner chunks needed, with neighbouring byte ranges coalesced into single reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from gpuzarr.codecs import CodecChain
from gpuzarr.codecs.base import ChunkSpec
from gpuzarr.codecs.sharding import EMPTY, ShardIndex, ShardingCodec
from gpuzarr.config import get_config
from gpuzarr.errors import ChecksumError, CorruptChunkError
from gpuzarr.indexing import ChunkProjection
from gpuzarr.metadata import ArrayMetadata
from gpuzarr.pipeline.pool import parallel_map
from gpuzarr.stores import Store

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

    Runs once per unit on the hot paths, so it tests types directly.
    """
    out_sel = projection.out_selection
    if type(out_sel) is not tuple:
        return None
    for s, n in zip(projection.chunk_selection, unit_shape, strict=True):
        if type(s) is not slice or s.start != 0 or s.stop != n or s.step != 1:
            return None
    for s in out_sel:
        if type(s) is not slice or s.step not in (None, 1):
            return None
    view = array[(*out_sel, Ellipsis)]  # the Ellipsis keeps a 0-d selection a view, not a scalar
    return view if view.shape == unit_shape else None


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

    def worker_groups(self, projections: list[ChunkProjection], threads: int) -> list[list[ChunkProjection]] | None:
        """Split a read into groups each worker fetches and decodes itself, or None.

        Only on stores where one read is cheap (``Store.cheap_reads``): a unit is then
        decoded while its bytes are still in cache. Groups of consecutive units (a few
        per thread, for balance) keep the per-task cost off small units. Other stores
        get batched fetches per wave instead.
        """
        if not self.store.cheap_reads:
            return None
        size = max(1, -(-len(projections) // (4 * threads)))
        return [projections[i : i + size] for i in range(0, len(projections), size)]

    def fetch_in_worker(self, group: Sequence[ChunkProjection]) -> list[Any]:
        """:meth:`fetch` for a worker's own group: plain reads, no further threads."""
        return [self.store.get(self.key(p.chunk_coords)) for p in group]

    def key(self, coords: Sequence[int]) -> str:
        """Store key of the object at storage-grid ``coords``."""
        return self.prefix + self.metadata.chunk_key(coords)

    def describe(self, coords: Sequence[int]) -> str:
        """How errors name the unit at ``coords``."""
        return f"chunk {self.key(coords)!r}"

    def fetch(self, projections: Sequence[ChunkProjection]) -> list[Any]:
        """The stored bytes of each projection's unit (None where not stored)."""
        return self.store.get_many([self.key(p.chunk_coords) for p in projections])

    def decode(self, coords: Sequence[int], raw: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Decode one unit, naming it in any decoding error."""
        try:
            return self.chain.decode(raw, out=out)
        except ChecksumError as exc:
            raise ChecksumError(f"{self.describe(coords)}: {exc}") from None
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

    def get(self, store: Store, key: str, token: Hashable) -> ShardIndex | None:
        """The cached index of ``key`` if it was read from the object ``token`` names."""
        with self._lock:
            entry = self._entries.get((store.cache_namespace, key))
            if entry is None or entry[0] != token:
                return None
            self._entries.move_to_end((store.cache_namespace, key))
            return entry[1]

    def put(self, store: Store, key: str, token: Hashable, index: ShardIndex) -> None:
        limit = get_config().shard_index_cache_entries
        with self._lock:
            self._entries[(store.cache_namespace, key)] = (token, index)
            self._entries.move_to_end((store.cache_namespace, key))
            while len(self._entries) > limit:
                self._entries.popitem(last=False)

    def discard(self, store: Store, key: str) -> None:
        with self._lock:
            self._entries.pop((store.cache_namespace, key), None)

    def clear(self) -> None:
        """Forget every cached index."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: The process-wide shard index cache.
shard_index_cache = _IndexCache()


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

    def worker_groups(self, projections: list[ChunkProjection], threads: int) -> list[list[ChunkProjection]] | None:
        """One group per touched shard: its worker reads the index (cached) and the
        coalesced ranges of that shard, then decodes them while they are hot."""
        if not self.store.cheap_reads:
            return None
        _, groups, _ = self.group_by_shard(projections)
        if len(groups) == 1:
            return [projections]
        return [[projections[i] for i in members.tolist()] for members in groups]

    def fetch_in_worker(self, group: Sequence[ChunkProjection]) -> list[Any]:
        # A group is one shard: one index (cached) and one batched range request, which
        # the stores serve inline for a single request.
        return self.fetch(group)

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

    def group_by_shard(
        self, projections: Sequence[ChunkProjection]
    ) -> tuple[list[tuple[int, ...]], list[np.ndarray], np.ndarray]:
        """Group projections by shard: (shard coords, member indices per shard, inner coords).

        Works on linear shard ids (a 1-d sort), because this runs on every read and
        ``np.unique(axis=0)`` costs a noticeable part of a small read.
        """
        n = len(projections)
        coords = np.array([p.chunk_coords for p in projections], dtype=np.int64).reshape(n, -1)
        grid = np.asarray(self.inner_grid, dtype=np.int64)
        shard_coords = coords // grid
        inner = coords - shard_coords * grid
        if n == 0:
            return [], [], inner
        if coords.shape[1]:
            linear = np.ravel_multi_index(tuple(shard_coords.T), self.metadata.chunk_grid_shape)
        else:  # 0-d array: a single shard
            linear = np.zeros(n, np.int64)
        if (linear == linear[0]).all():  # one shard: the common case for small reads
            return [tuple(shard_coords[0].tolist())], [np.arange(n)], inner
        order = np.argsort(linear, kind="stable")
        sorted_ids = linear[order]
        starts = np.flatnonzero(np.diff(sorted_ids)) + 1
        members = np.split(order, starts)
        shards = [tuple(shard_coords[m[0]].tolist()) for m in members]
        return shards, members, inner

    # -- indexes ------------------------------------------------------------------------

    def read_indexes(self, shard_keys: Sequence[str]) -> list[ShardIndex | None]:
        """The index of each shard (None for a missing shard), from the cache or the store.

        Each shard's version token is checked first (a ``stat`` on local files): a missing
        shard costs no read at all, and a cached index is used only for the very object
        it was read from.
        """
        tokens = [self.store.object_token(k) for k in shard_keys]
        found: list[ShardIndex | None] = [
            shard_index_cache.get(self.store, k, t) if t is not None else None
            for k, t in zip(shard_keys, tokens, strict=True)
        ]
        missing = [i for i, (f, t) in enumerate(zip(found, tokens, strict=True)) if f is None and t is not None]
        if not missing:
            return found
        n = self.index_nbytes
        keys = [shard_keys[i] for i in missing]
        if self.index_location == "end":
            raws = parallel_map(lambda k: self.store.get_suffix(k, n), keys)
        else:
            ranges = self.store.get_many_ranges([(k, [(0, n)]) for k in keys])
            raws = [r[0] if r is not None else None for r in ranges]
        for i, key, raw in zip(missing, keys, raws, strict=True):
            if raw is None:
                continue  # deleted since its token was read
            if len(raw) < n:
                raise CorruptChunkError(
                    f"shard {key!r}: truncated, {len(raw)} bytes is too short for its {n}-byte index"
                )
            index = self.codec.decode_index(raw, self.shard_spec, key)
            shard_index_cache.put(self.store, key, tokens[i], index)
            found[i] = index
        return found

    # -- fetching inner chunks -------------------------------------------------------

    def fetch(self, projections: Sequence[ChunkProjection]) -> list[Any]:
        """Inner chunks' bytes: indexes first (cached), then coalesced ranges per shard.

        The planning is vectorised with NumPy per shard, because a shard of small inner
        chunks (say 64 of 64 KiB) would otherwise cost a Python loop per chunk here too.
        """
        results: list[Any] = [None] * len(projections)
        if not projections:
            return results
        shards, groups, inner = self.group_by_shard(projections)
        keys = [self.key(s) for s in shards]
        indexes = self.read_indexes(keys)
        max_gap = get_config().coalesce_gap_bytes
        requests: list[tuple[str, list[tuple[int, int]]]] = []
        plans = []
        for key, index, members in zip(keys, indexes, groups, strict=True):
            if index is None:
                continue  # missing shard: every inner chunk reads as fill value
            entries = index.entries[tuple(inner[members].T)]
            stored = entries[:, 0] != EMPTY
            members, entries = members[stored], entries[stored].astype(np.int64)
            if not len(members):
                continue
            order = np.argsort(entries[:, 0], kind="stable")
            members, offsets, lengths = members[order], entries[order, 0], entries[order, 1]
            first, read_ends = _coalesce_sorted(offsets, offsets + lengths, max_gap)
            read_starts = offsets[first]
            requests.append((key, list(zip(read_starts.tolist(), (read_ends - read_starts).tolist(), strict=True))))
            plans.append((key, members.tolist(), offsets.tolist(), lengths.tolist(), [*first.tolist(), len(members)]))
        if not requests:
            return results
        fetched = self.store.get_many_ranges(requests)
        for (key, members, offsets, lengths, bounds), (_, reads), blobs in zip(plans, requests, fetched, strict=True):
            if blobs is None:  # the shard vanished after its index was read
                shard_index_cache.discard(self.store, key)
                raise CorruptChunkError(f"shard {key!r}: deleted while being read")
            for j, ((start, _), blob) in enumerate(zip(reads, blobs, strict=True)):
                view = memoryview(blob)
                for m in range(bounds[j], bounds[j + 1]):
                    lo, nbytes = offsets[m] - start, lengths[m]
                    if lo + nbytes > len(view):
                        inner_coords = tuple(inner[members[m]].tolist())
                        raise CorruptChunkError(
                            f"shard {key!r}: inner chunk {inner_coords} at bytes [{offsets[m]}, {offsets[m] + nbytes}) "
                            "lies past the end of the shard (truncated shard or corrupt index)"
                        )
                    results[members[m]] = view[lo : lo + nbytes]
        return results


def make_layout(store: Store, prefix: str, metadata: ArrayMetadata, chain: CodecChain) -> ChunkLayout:
    """The layout for an array: sharded when sharding is its only top-level codec.

    A sharding codec wrapped by other codecs (a transpose before it, a compressor
    after it) still works, but through whole-shard decodes.
    """
    if isinstance(chain.array_bytes, ShardingCodec) and not chain.array_array and not chain.bytes_bytes:
        return ShardedLayout(store, prefix, metadata, chain)
    return ChunkLayout(store, prefix, metadata, chain)
