"""Batched writes of a selection on the CPU.

Each touched unit's new contents are gathered from the value; units the selection
only partly covers are read, decoded and modified (read-modify-write); units equal
to the fill value are not stored (stale ones are deleted) unless
``config.write_empty_chunks``. Each wave is stored with one batched put; every put is
atomic per key, and a write holds the locks of every key it replaces from before the
first read of old contents to after the last put (:mod:`gpuzarr.pipeline.locks`), so
threads writing one array never lose each other's writes.

Sharded arrays are written shard by shard: a shard the selection covers completely is
encoded from the value alone; otherwise its old bytes are fetched, untouched inner
chunks keep their encoded bytes unchanged (no decode, no re-encode), touched ones are
re-encoded, and the new shard replaces the old in one put (or is deleted when no inner
chunk remains). The shard index cache is updated with the new index. On stores whose
reads are cheap (local files, memory) the touched inner chunks are encoded in runs any
thread may take, each run's chunks written into the shard's new object as it finishes
(:meth:`~gpuzarr.stores.base.Store.open_writer`: a local file's temp file), the shard
stored (renamed into place) once all its runs are written.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from gpuzarr.codecs.base import OutputArena
from gpuzarr.config import get_config
from gpuzarr.errors import ChecksumError, CorruptChunkError
from gpuzarr.indexing import ChunkProjection, Indexer, ortho_get, ortho_set
from gpuzarr.pipeline.layout import ChunkLayout, ShardedLayout, shard_index_cache, waves, whole_unit_view
from gpuzarr.pipeline.locks import write_locks
from gpuzarr.pipeline.pool import (
    compute_threads,
    encode_arena,
    parallel_map,
    tapering_cuts,
    tapering_parts,
    thread_arena,
)
from gpuzarr.stores.base import ObjectWriter, arena_keyword

__all__ = [
    "COMPUTE_BOUND_OBJECT_BYTES",
    "ShardProjections",
    "ValueSource",
    "encode_threads",
    "locked_write",
    "shard_needs_old",
    "stored_inner_ranges",
    "write_from",
]


class ValueSource:
    """Takes each projection's new values out of the prepared value buffer."""

    def __init__(self, indexer: Indexer, value: np.ndarray) -> None:
        self.vectorized = indexer.mode == "vectorized"
        self.value = value.reshape(-1) if self.vectorized else value

    def whole_unit(self, projection: ChunkProjection, unit_shape: tuple[int, ...]) -> np.ndarray | None:
        """The value's view holding a whole unit's new contents, when there is one.

        A unit the selection covers completely with plain slices can be encoded straight
        from the caller's array: no unit buffer, no fill, no copy.
        """
        return None if self.vectorized else whole_unit_view(self.value, projection, unit_shape)

    def apply(self, unit: np.ndarray, projection: ChunkProjection) -> None:
        """Write the projection's values into ``unit`` (a writable full unit array)."""
        if self.vectorized:
            unit[projection.chunk_selection] = self.value[projection.out_selection]
        else:
            ortho_set(unit, projection.chunk_selection, ortho_get(self.value, projection.out_selection))  # type: ignore[arg-type]


def _new_unit(layout: ChunkLayout, coords: tuple[int, ...], old: Any) -> np.ndarray:
    """A writable unit: the decoded old contents, or all fill value."""
    spec = layout.unit_spec
    if old is not None:
        if layout.chain.can_decode_into and not spec.data_type.is_variable_length:
            # Straight into the new unit: no decoded copy to allocate and copy again.
            return layout.decode(coords, old, out=np.empty(layout.unit_shape, dtype=spec.dtype))
        return np.array(layout.decode(coords, old), dtype=spec.dtype, copy=True)
    unit = np.empty(layout.unit_shape, dtype=spec.dtype)
    # fill() stores the scalar as is; np.full would route a bytes fill through NumPy's
    # fixed-width "S" type, which drops trailing NUL bytes.
    unit.fill(spec.fill_value)
    return unit


def _new_units(layout: ChunkLayout, coords: Sequence[tuple[int, ...]], olds: Sequence[Any]) -> list[np.ndarray]:
    """:func:`_new_unit` of several units (``olds[i]``: unit ``coords[i]``'s stored
    bytes, or None): the old contents decoded as one batch where the chain can (for
    zstd, one GIL-free native call, where a decode per unit took the GIL back after
    each while the other workers wanted it for theirs), else one by one. A corrupt unit
    in the batch is decoded again alone, so its error names it."""
    spec = layout.unit_spec
    stored = [i for i, old in enumerate(olds) if old is not None]
    chain = layout.chain
    if len(stored) > 1 and chain.decodes_batches and chain.can_decode_into and spec.dtype.isnative:
        units = [np.empty(layout.unit_shape, dtype=spec.dtype) for _ in olds]
        try:
            chain.decode_many([olds[i] for i in stored], [units[i] for i in stored])
        except (CorruptChunkError, ChecksumError):
            pass  # (one by one below: the error then names the unit)
        else:
            for i, old in enumerate(olds):
                if old is None:
                    units[i].fill(spec.fill_value)
            return units
    return [_new_unit(layout, unit_coords, old) for unit_coords, old in zip(coords, olds, strict=True)]


def _new_contents(
    layout: ChunkLayout,
    source: ValueSource,
    projections: Sequence[ChunkProjection],
    olds: Sequence[Any],
    *,
    contiguous: bool,
) -> list[np.ndarray]:
    """Each projection's unit's new contents: the value's own view where the selection
    covers the unit with plain slices (no unit buffer, no copy; with ``contiguous``, only
    where that view is C-contiguous), else the old contents (``olds[i]``, the unit's
    stored bytes or None; read only where the unit is partly covered), decoded with the
    others' (:func:`_new_units`), with the new values written in."""
    units: list[np.ndarray | None] = [
        source.whole_unit(p, layout.unit_shape) if p.covers_chunk else None for p in projections
    ]
    rest = [at for at, unit in enumerate(units) if unit is None or (contiguous and not unit.flags.c_contiguous)]
    made = _new_units(
        layout,
        [projections[at].chunk_coords for at in rest],
        [None if projections[at].covers_chunk else olds[at] for at in rest],
    )
    for at, unit in zip(rest, made, strict=True):
        source.apply(unit, projections[at])
        units[at] = unit
    return units  # type: ignore[return-value]


def write_from(layout: ChunkLayout, indexer: Indexer, value: np.ndarray) -> None:
    """Write ``value`` (``indexer.buffer_shape``) into the selected region."""
    projections = list(indexer.chunk_projections())
    if not projections:
        return
    source = ValueSource(indexer, value)
    with locked_write(layout, projections) as by_shard:
        if by_shard is None:
            _write_chunks(layout, projections, source)
        else:
            _write_sharded(layout, by_shard, source)


#: Objects (chunks, or shards) of at least this many decoded bytes take long enough to
#: compress that storing them is a small share of a write (opening, writing and renaming
#: one file took ~0.4 ms, compressing 1 MiB at zstd level 3 ~5 ms).
COMPUTE_BOUND_OBJECT_BYTES = 2**20


def encode_threads(layout: ChunkLayout) -> int:
    """The threads a write of ``layout``'s units keeps at work: ``config.threads``, but
    no more than the usable cores where the write is compute-bound (a compute-bound
    compressor, and objects of at least ``COMPUTE_BOUND_OBJECT_BYTES``). There a thread
    beyond the cores only takes turns with the others, each evicting the others'
    compressor tables from the core's caches (measured on 2 cores, zstd level 3: 128
    chunks of 1 MiB compressed on 3 threads took 1.03x, on 4 threads 1.14x the time of 2;
    whole 128 MiB writes capped took 0.93x the uncapped time in 1 MiB float32 chunks and
    0.90x in 1 MiB int16 chunks in 16 MiB shards, 1.00x in 4 MiB shards of 64 KiB chunks;
    a partial write of the int16 array 0.97x). Smaller objects keep the extra thread,
    which overlaps one thread's file work with the others' compression (2048 chunks of
    64 KiB: full writes 1.00x, partial writes 1.03x capped)."""
    object_nbytes = (layout.shard_spec if isinstance(layout, ShardedLayout) else layout.unit_spec).nbytes
    return compute_threads(layout.chain.compute_bound, object_nbytes, COMPUTE_BOUND_OBJECT_BYTES)


#: Most bytes of units (chunks, or inner chunks) a write encodes as one batch.
ENCODE_BATCH_MAX_BYTES = 4 * 2**20


#: Fewest bytes of inner chunks in a run a sharded write encodes as one task (where
#: the shard has that many).
ENCODE_RUN_MIN_BYTES = 2**20


class _NewShard:
    """One shard's new object as its runs finish: the store's writer (opened by the
    first run with anything to store), where each inner chunk went in it, the old inner
    chunks the write keeps (sorted), and the runs done but not yet written (a run that
    finished before the one it follows)."""

    __slots__ = ("kept", "lock", "next_start", "pending", "ranges", "writer")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Where the next run to write starts (in the touched inner chunks).
        self.next_start = 0
        self.pending: dict[int, tuple[int, dict[tuple[int, ...], Any]]] = {}
        self.writer: ObjectWriter | None = None
        self.ranges: dict[tuple[int, ...], tuple[int, int]] = {}
        self.kept: list[tuple[tuple[int, ...], Any]] = []


class _ShardRuns:
    """A write's shards encoded in runs of their inner chunks, by any threads: the runs,
    each shard's old inner chunks (read once, by the first of its runs to need them),
    and each shard's new object, written piece by piece as its runs finish
    (:meth:`finish`) and stored once all have.

    Each run's inner chunks go to the store as soon as they are encoded (a local file:
    into the shard's temp file), not gathered until the shard's last run: the thread
    that finishes a shard then writes one run's chunks and the index, not the whole
    shard while the other threads, out of work at the end of a write, wait (measured on
    8 shards of 16 MiB in 1 MiB inner chunks, 2 cores: the last shard's store took 3-35
    ms of a 600 ms write). A run's chunks can be encoded into the thread's arena, and no
    shard is held whole in memory. The shard's bytes are still those
    :meth:`~gpuzarr.codecs.sharding.ShardingCodec.assemble_parts` lays out (inner chunks
    in C order): a run that finishes before the run it follows leaves a copy of its
    chunks for that run to write after its own.
    """

    def __init__(
        self,
        layout: ShardedLayout,
        touched: Mapping[tuple[int, ...], Sequence[tuple[tuple[int, ...], Any]]],
        cuts: Sequence[int],
        read_old: Callable[[tuple[int, ...]], tuple[dict[tuple[int, ...], Any], dict[tuple[int, ...], Any]]],
    ) -> None:
        """``touched``: each shard's touched inner chunks (inner coords first, in C
        order), the shards in the write's order; ``cuts``: where the runs start and
        stop in all of them end to end, every shard's end among them; ``read_old``: a
        shard's stored inner chunks by inner coords (their encoded bytes), and of those
        the ones the write keeps as they are (it touches none of them), for the shards
        whose runs ask (:meth:`old`)."""
        #: ``(shard, first, stop)``: a run of the shard's touched inner chunks.
        self.runs: list[tuple[tuple[int, ...], int, int]] = []
        self._layout = layout
        self._read_old = read_old
        shards = list(touched)
        self._new = {shard: _NewShard() for shard in shards}
        self._old: dict[tuple[int, ...], dict[tuple[int, ...], Any]] = {}
        self._old_locks = {shard: threading.Lock() for shard in shards}
        ends = list(itertools.accumulate(len(touched[shard]) for shard in shards))
        at = 0
        for start, stop in itertools.pairwise(cuts):
            while start >= ends[at]:
                at += 1
            base = ends[at - 1] if at else 0
            self.runs.append((shards[at], start - base, stop - base))
        self._touched = touched
        self._counts = Counter(shard for shard, _, _ in self.runs)

    def count(self, shard: tuple[int, ...]) -> int:
        """How many runs ``shard`` is cut into."""
        return self._counts[shard]

    def old(self, shard: tuple[int, ...]) -> dict[tuple[int, ...], Any]:
        """The shard's old inner chunks, read by the first run to ask (the others wait
        for it); those the write keeps go into the new shard as they are."""
        with self._old_locks[shard]:
            found = self._old.get(shard)
            if found is None:
                found, kept = self._read_old(shard)
                self._old[shard] = found
                new = self._new[shard]
                with new.lock:
                    new.kept = sorted(kept.items())
            return found

    def finish(self, run: tuple[tuple[int, ...], int, int], encoded: Mapping[tuple[int, ...], Any]) -> None:
        """Write one run's encoded inner chunks (None: left out, all fill value) into
        its shard's new object, after the runs before it (a copy is kept for later where
        one of them is not done); once every run of the shard is written, also the rest
        of the old inner chunks the write keeps and the index, and store the shard
        (delete it, if nothing in it is stored). A run that failed never finishes: its
        shard is not stored."""
        shard, start, stop = run
        new = self._new[shard]
        with new.lock:
            if start != new.next_start:
                # (Copies: the run's chunks may live in its thread's arena.)
                new.pending[start] = (stop, {inner: _owned(data) for inner, data in encoded.items()})
                return
            self._append(shard, new, encoded, self._touched[shard][stop - 1][0])
            new.next_start = stop
            while new.next_start in new.pending:
                stop, later = new.pending.pop(new.next_start)
                self._append(shard, new, later, self._touched[shard][stop - 1][0])
                new.next_start = stop
            if new.next_start < len(self._touched[shard]):
                return
            self._append(shard, new, {}, None)  # (the kept inner chunks after the last touched)
            self._old.pop(shard, None)
            self._store(shard, new)

    def abort(self) -> None:
        """Drop the new objects of the shards whose runs did not all finish (once every
        run has returned: a run failed), leaving their old objects as they were."""
        for new in self._new.values():
            if new.writer is not None:
                new.writer.abort()
                new.writer = None

    def _append(
        self,
        shard: tuple[int, ...],
        new: _NewShard,
        encoded: Mapping[tuple[int, ...], Any],
        last: tuple[int, ...] | None,
    ) -> None:
        """Write a run's ``encoded`` inner chunks, in C order with the kept ones that
        come before ``last`` (the run's last touched inner chunk; None: all kept ones)."""
        take = len(new.kept) if last is None else bisect.bisect_left(new.kept, last, key=lambda item: item[0])
        chunks = sorted([*new.kept[:take], *((inner, data) for inner, data in encoded.items() if data is not None)])
        del new.kept[:take]
        if not chunks:
            return
        layout = self._layout
        if new.writer is None:
            new.writer = layout.store.open_writer(layout.key(shard))
            if layout.codec.index_location == "start":  # (room for the index, written last)
                new.writer.append([bytes(layout.codec.index_nbytes(layout.shard_spec))])
        offset = new.writer.append([data for _, data in chunks])
        for inner, data in chunks:
            nbytes = memoryview(data).nbytes
            new.ranges[inner] = (offset, nbytes)
            offset += nbytes

    def _store(self, shard: tuple[int, ...], new: _NewShard) -> None:
        layout = self._layout
        key = layout.key(shard)
        # Drop the cached index first: a reader must never pair the new shard with it.
        shard_index_cache.discard(layout.store, key)
        writer, new.writer = new.writer, None
        if writer is None:  # (nothing in the shard is stored)
            layout.store.delete(key)
            return
        index = layout.codec.index_of(new.ranges, layout.shard_spec)
        if layout.codec.index_location == "start":
            writer.write_at(0, index)
        else:
            writer.append([index])
        writer.commit()


def _owned(data: Any) -> Any:
    """``data`` (encoded bytes, possibly a view of an arena) as memory of its own."""
    return data if data is None or type(data) is bytes else memoryview(data).tobytes()


#: A write's projections by shard coords, then by inner chunk coords within the shard.
ShardProjections = dict[tuple[int, ...], dict[tuple[int, ...], ChunkProjection]]


@contextmanager
def locked_write(layout: ChunkLayout, projections: list[ChunkProjection]) -> Iterator[ShardProjections | None]:
    """Hold the write locks (:mod:`gpuzarr.pipeline.locks`) of every object a write of
    ``projections`` replaces: its chunks, or its shards. Yields the projections by shard
    for a sharded layout (the grouping the shards' keys come from), else None."""
    if not isinstance(layout, ShardedLayout):
        with write_locks(layout.store, [layout.key(p.chunk_coords) for p in projections]):
            yield None
        return
    # (Grouped with NumPy: a full write groups every inner chunk before any is encoded.)
    shards, position, inner = layout.locate_shards(projections)
    by_shard: ShardProjections = {shard: {} for shard in shards}
    for at, coords, p in zip(position.tolist(), map(tuple, inner.tolist()), projections, strict=True):
        by_shard[shards[at]][coords] = p
    with write_locks(layout.store, [layout.key(shard) for shard in by_shard]):
        yield by_shard


def _write_chunks(layout: ChunkLayout, projections: list[ChunkProjection], source: ValueSource) -> None:
    skip_fill = not get_config().write_empty_chunks

    def encode_one(item: tuple[ChunkProjection, Any]) -> tuple[str, Any]:
        projection, old = item
        units = _new_contents(layout, source, [projection], [old], contiguous=False)
        encoded = layout.chain.encode_many(units, skip_fill=skip_fill)[0]
        return layout.key(projection.chunk_coords), encoded

    store = layout.store
    if store.cheap_reads:
        # Each worker reads the old contents it needs, encodes and stores its own units:
        # no barrier per wave between encoding and storing, and no encoded wave held in
        # memory (each object is still written atomically). Units are encoded in
        # batches (bounded, for units that need a buffer of their own).
        batch_units = max(1, ENCODE_BATCH_MAX_BYTES // (layout.unit_spec.nbytes or 1))

        def write_group(group: Sequence[ChunkProjection]) -> None:
            for start in range(0, len(group), batch_units):
                batch = group[start : start + batch_units]
                keys = [layout.key(projection.chunk_coords) for projection in batch]
                # The batch's old objects are read, and the new ones stored, one batched
                # call each (local files: GIL-free native calls, where a call per file
                # took the GIL back after each system call; measured on 2 cores, 64 KiB
                # zstd chunks: 513 rewritten in 0.95x the time, 2048 new ones 0.92x).
                partial = [key for key, p in zip(keys, batch, strict=True) if not p.covers_chunk]
                with thread_arena(store) as arena:  # (the old bytes are decoded before it resets)
                    fetched = iter(store.get_each(partial, arena=arena))
                    olds = [None if p.covers_chunk else next(fetched) for p in batch]
                    units = _new_contents(layout, source, batch, olds, contiguous=False)
                with encode_arena(store) as out:  # (the batch is stored before it resets)
                    encoded = layout.chain.encode_many(units, skip_fill=skip_fill, arena=out)
                    store.set_each([(key, data) for key, data in zip(keys, encoded, strict=True) if data is not None])
                for key, data in zip(keys, encoded, strict=True):
                    if data is None:  # (nothing but the fill value: the stale object goes)
                        store.delete(key)

        threads = encode_threads(layout)
        parallel_map(write_group, tapering_parts(projections, 4 * threads, threads), max_threads=threads)
        return
    threads = encode_threads(layout)
    for wave in waves(projections, layout.unit_spec.nbytes or 1024):
        # Only units the selection covers partly need their old contents.
        partial = [p for p in wave if not p.covers_chunk]
        old_by_coords: dict[tuple[int, ...], Any] = {}
        if partial:
            olds = layout.fetch(partial)
            old_by_coords = {p.chunk_coords: b for p, b in zip(partial, olds, strict=True)}
        results = parallel_map(encode_one, [(p, old_by_coords.get(p.chunk_coords)) for p in wave], max_threads=threads)
        _store_results(layout, results)


def _store_results(layout: ChunkLayout, results: list[tuple[str, Any]]) -> None:
    puts = [(k, v) for k, v in results if v is not None]
    deletes = [k for k, v in results if v is None]
    if puts:
        layout.store.set_many(puts)
    if deletes:
        layout.store.delete_many(deletes)


def _inner_chunks_in_bounds(layout: ShardedLayout, shard: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Inner coords (within the shard) of the inner chunks that overlap the array."""
    ranges = []
    for s, g, c, n in zip(shard, layout.inner_grid, layout.unit_shape, layout.metadata.shape, strict=True):
        first = s * g
        ranges.append(range(0, max(0, min(g, -(-(n - first * c) // c)))))
    return list(itertools.product(*ranges))


def shard_needs_old(
    layout: ShardedLayout, shard: tuple[int, ...], touched: Mapping[tuple[int, ...], ChunkProjection]
) -> bool:
    """Whether writing the ``touched`` inner chunks (by inner coords) of ``shard`` needs
    its old bytes: some in-bounds inner chunk is untouched or only partly covered."""
    return not all(
        inner in touched and touched[inner].covers_chunk for inner in _inner_chunks_in_bounds(layout, shard)
    )


def stored_inner_ranges(
    layout: ShardedLayout, key: str, old: Any
) -> tuple[memoryview, dict[tuple[int, ...], tuple[int, int]]]:
    """An old shard's bytes and the ``(offset, size)`` in them of every inner chunk it
    stores (its index checked: corrupt entries raise, naming the shard and inner chunk)."""
    codec = layout.codec
    index, view = codec.split(old, layout.shard_spec, key)
    ranges: dict[tuple[int, ...], tuple[int, int]] = {}
    for inner in np.ndindex(*layout.inner_grid):
        found = codec.check_range(index, inner, len(view), key)
        if found is not None:
            ranges[inner] = found
    return view, ranges


def _write_sharded(layout: ShardedLayout, by_shard: ShardProjections, source: ValueSource) -> None:
    codec, shard_spec = layout.codec, layout.shard_spec
    batch_units = max(1, ENCODE_BATCH_MAX_BYTES // (layout.unit_spec.nbytes or 1))

    def stored_inner(shard: tuple[int, ...], old: Any) -> dict[tuple[int, ...], Any]:
        """The encoded bytes of every inner chunk stored in the old shard."""
        if old is None:
            return {}
        view, ranges = stored_inner_ranges(layout, layout.key(shard), old)
        return {inner: view[off : off + size] for inner, (off, size) in ranges.items()}

    def encode_touched(
        touched: Sequence[tuple[tuple[int, ...], ChunkProjection]],
        encoded: dict[Any, Any],
        arena: OutputArena | None = None,
    ) -> None:
        """Encode the ``touched`` inner chunks (inner coords, projection) into
        ``encoded``, replacing (and merging into) what it held for them; an inner chunk
        left all fill value is dropped from it. With ``arena``, compressors may encode
        into it (the caller stores the chunks before it resets)."""
        # (In batches: the inner chunks' Python is a share of their encoding. Bounded,
        # for units that need a buffer of their own.)
        for start in range(0, len(touched), batch_units):
            batch = touched[start : start + batch_units]
            previous = [encoded.pop(inner, None) for inner, _ in batch]
            # (Inner chunks are encoded from the value's views only where contiguous.)
            units = _new_contents(layout, source, [p for _, p in batch], previous, contiguous=True)
            for (inner, _), new in zip(batch, codec.encode_inners(units, shard_spec, arena), strict=True):
                if new is not None:
                    encoded[inner] = new

    def encode_shard(item: tuple[tuple[int, ...], Any], assemble: Any = codec.assemble_parts) -> tuple[str, Any]:
        """The shard's key and the new shard from ``assemble`` (its parts in storage
        order by default, or ``codec.assemble``'s one object; None: nothing stored)."""
        shard, old = item
        encoded = stored_inner(shard, old)
        encode_touched(list(by_shard[shard].items()), encoded)
        return layout.key(shard), assemble(encoded, shard_spec)

    def store_shard(key: str, parts: list[Any] | None) -> None:
        # Drop the cached index first: a reader must never pair the new shard with it.
        shard_index_cache.discard(store, key)
        if parts is None:
            store.delete(key)
        else:
            store.set_parts(key, parts)  # (a local file is written with writev, never joined)

    store = layout.store
    shards = list(by_shard)
    if store.cheap_reads:
        # Workers encode and store shards with no barrier per wave between encoding and
        # storing (measured on 32 shards of 64 zstd inner chunks: the last shards of each
        # wave left threads idle). write_shard: a shard that needs its old bytes as one
        # task, the worker reading, merging, encoding and storing it.
        def write_shard(shard: tuple[int, ...]) -> None:
            with thread_arena(store) as arena:  # (the new shard, with the kept inner chunks, is stored first)
                old = store.get(layout.key(shard), **arena_keyword(arena))
                store_shard(*encode_shard((shard, old)))

        # The touched inner chunks are cut into runs that shorten towards the end of the
        # write, whichever thread is free encoding the next, and the thread that finishes
        # a shard's last run stores the shard: a task per shard left one thread encoding
        # the last shard alone while the others idled (measured on 8 shards of 16 zstd
        # inner chunks of 1 MiB, 2 cores: 50-90 ms of a 550 ms write), and a partial
        # write of a few shards as slow as its largest.
        needs_old = {shard: shard_needs_old(layout, shard, by_shard[shard]) for shard in shards}
        # (In C order within each shard: the order its inner chunks are stored in.)
        touched = {shard: sorted(by_shard[shard].items(), key=lambda item: item[0]) for shard in shards}
        ends = list(itertools.accumulate(len(touched[shard]) for shard in shards))
        threads = encode_threads(layout)
        min_run = max(1, ENCODE_RUN_MIN_BYTES // (layout.unit_spec.nbytes or 1))
        cuts = tapering_cuts(ends[-1] if ends else 0, 4 * threads, threads, min_run, ends)

        def read_old(shard: tuple[int, ...]) -> tuple[dict[tuple[int, ...], Any], dict[tuple[int, ...], Any]]:
            if not needs_old[shard]:
                return {}, {}
            # (Fresh bytes, not the arena: the shard's runs on other threads use them.)
            old = stored_inner(shard, store.get(layout.key(shard)))
            rewritten = by_shard[shard]
            return old, {inner: data for inner, data in old.items() if inner not in rewritten}

        runs = _ShardRuns(layout, touched, cuts, read_old)

        def write_run(run: tuple[tuple[int, ...], int, int]) -> None:
            shard, start, stop = run
            mine = touched[shard][start:stop]
            old = runs.old(shard)
            with encode_arena(store) as out:  # (the run's chunks are written before it resets)
                encoded = {inner: old[inner] for inner, _ in mine if inner in old}
                encode_touched(mine, encoded, out)
                runs.finish(run, encoded)

        # Shards that need their old bytes are read into a thread's arena and written
        # by one task each, unless there are too few shards to keep the threads busy:
        # their runs then share fresh memory (page-faulted in every time: measured on 9
        # such shards of 2 MiB, runs took 1.07x the CPU time of a task per shard). Two
        # shards a thread are still too few: 4 shards of 16 MiB, with 8, 4, 2 and 1
        # inner chunks rewritten, took 0.95x the time in runs (2 threads).
        few = len(shards) <= 2 * threads
        whole = {shard for shard in shards if needs_old[shard] and (runs.count(shard) == 1 or not few)}
        tasks: list[tuple[Callable[[Any], None], Any]] = [(write_shard, shard) for shard in shards if shard in whole]
        tasks += [(write_run, run) for run in runs.runs if run[0] not in whole]
        try:
            parallel_map(lambda task: task[0](task[1]), tasks, max_threads=threads)
        except BaseException:
            runs.abort()  # (every task has returned: parallel_map waits for them all)
            raise
        return
    shard_nbytes = shard_spec.nbytes or 1024
    threads = encode_threads(layout)
    for wave in waves(shards, shard_nbytes):
        needing = [s for s in wave if shard_needs_old(layout, s, by_shard[s])]
        old_by_shard: dict[tuple[int, ...], Any] = {}
        if needing:
            olds = store.get_many([layout.key(s) for s in needing])
            old_by_shard = dict(zip(needing, olds, strict=True))
        items = [(s, old_by_shard.get(s)) for s in wave]
        # (Whole objects: a wave is stored with one batched put.)
        results = parallel_map(lambda item: encode_shard(item, codec.assemble), items, max_threads=threads)
        # Drop cached indexes first: a reader must never pair a new shard with an old index.
        for key, _ in results:
            shard_index_cache.discard(store, key)
        _store_results(layout, results)
