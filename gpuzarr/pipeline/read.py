"""Batched reads of a selection on the CPU.

Projections (one per decode unit the selection touches) are processed in waves:
one batched fetch per wave through the layout (the next wave's fetch runs while the
current one decodes), then a worker per unit decodes it and scatters it into the
output. On the CPU a worker runs a unit's whole codec chain and its scatter in one
task: the codecs release the GIL, and fusing the stages keeps the unit hot in cache
without a barrier per stage. (The GPU executor batches per codec stage instead, where
one launch per stage is what matters.)

On stores where one read is cheap (local files, memory) each worker fetches its own
group of units right before decoding it, so the bytes are still in cache; other stores
get one batched fetch per wave. Fetched bytes land in a per-thread arena reused group
after group (:func:`~gpuzarr.pipeline.pool.thread_arena`). Whole units whose destination
is one C-contiguous block decode straight into the output; other units decode into a
reused per-thread scratch buffer, which avoids page-faulting fresh memory for every
unit. Small units whose codec decodes batches (zstd up to 256 KiB) decode a group per
call with one reused context, which keeps the Python per unit small; a fetched wave of
such units is one batch the threads share, where the codec can share one (zstd, with
gpuzarr's native helper). Where such units are whole local files, the helper reads and
decodes them together: each thread reads a file and decodes it at once, so decoding
starts with the first file instead of after the last fetch.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from gpuzarr.codecs.base import DecodeTargets, Spread
from gpuzarr.config import get_config, usable_cores
from gpuzarr.errors import CorruptChunkError
from gpuzarr.indexing import ChunkProjection, Indexer, fill_projection, place_projection, selection_byte_ranges
from gpuzarr.pipeline.layout import (
    NATIVE_DONE,
    NATIVE_MISSING,
    ChunkLayout,
    UnitGroup,
    waves,
    whole_unit_view,
)
from gpuzarr.pipeline.pool import (
    ARENA_KEEP_BYTES,
    compute_threads,
    parallel_map,
    run_together,
    tapering_cuts,
    thread_arena,
)
from gpuzarr.stores.base import ARENA_ALIGN

__all__ = ["read_many_into"]

_scratch = threading.local()


#: Below this many decoded bytes a wave decodes on the calling thread: a task handoff
#: costs tens of microseconds, about what decoding 64 KiB costs.
PARALLEL_MIN_BYTES = 128 * 2**10

#: Units up to this size decode in batches when their codec can (see
#: ``read_many_into``). Measured on 128 MiB of 64 KiB zstd units in 4 MiB shards, full
#: read: 0.95-1.00x zarrs-python's time in batches, 1.21-1.41x one by one.
BATCH_UNIT_MAX_BYTES = 256 * 2**10

#: Most decoded bytes in one batch a thread decodes alone, and most bytes of units
#: staged in scratch (units that cannot decode straight into the output) in a batch the
#: threads share: the bound on a thread's scratch.
DECODE_BATCH_MAX_BYTES = 4 * 2**20

#: Batches per thread a fetched wave's decoding is cut into (threads take them in turn).
_PARTS_PER_THREAD = 4

#: Byte ranges of a unit stored as is at most this far apart are read as one (a read
#: of its own costs about what copying this many more bytes does: measured 3-7 us a
#: read of 16 KiB from the page cache, in Python, against ~1.5 us copying 16 KiB).
RANGE_GAP_BYTES = 16 * 2**10

#: A unit stored as is whose selected ranges (each counted RANGE_GAP_BYTES longer)
#: hold more than this share of it is read whole (one read, where its parts would take
#: several for little less copying).
RANGES_MAX_SHARE = 0.5

#: Shards holding less of a read than this on average are merged into one group per
#: thread (a task per shard would cost more in handoffs than reading the shard).
GROUP_MIN_BYTES = 256 * 2**10


#: Units of at least this many decoded bytes whose codec is compute-bound (zstd, gzip,
#: blosc with zstd) decode on one thread per core, not ``config.threads``: see
#: :func:`decode_threads`.
COMPUTE_BOUND_UNIT_BYTES = 2**20


def decode_threads(layout: ChunkLayout) -> int:
    """The threads a read of ``layout``'s units keeps at work: ``config.threads``, but no
    more than the usable cores where decoding is compute-bound (a compressor that is
    not one of the memory-speed ones, and units of at least
    ``COMPUTE_BOUND_UNIT_BYTES``). There a thread beyond the cores only takes turns with
    the others (a zstd frame of 1 MiB or more is decoded against a window as large as
    itself, which the threads evict from each other's caches), and a batch of a few
    large units splits unevenly over more threads than cores. Measured on 2 cores,
    interleaved in one process, one thread per core against three: 8 random 8 MiB
    zstd chunks 0.88x the time (twice), whole reads of 8 MiB zstd chunks 0.97-1.04x;
    1 MiB units (zstd, gzip, blosc-zstd; plain chunks, and inner chunks of 16 MiB
    shards) 0.95-1.00x read whole, 0.93-0.99x as random windows. Smaller units keep
    the extra thread, which overlaps one thread's file reads with the others' decoding.
    """
    return compute_threads(layout.chain.compute_bound, layout.unit_spec.nbytes, COMPUTE_BOUND_UNIT_BYTES)


def _scratch_buffer(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A per-thread reusable unit buffer (fresh pages fault; reused ones don't). Up to
    ARENA_KEEP_BYTES it is kept for the thread's next read; a larger one is not (a
    64 MiB chunk read once would otherwise stay held by every thread that read one)."""
    buf = getattr(_scratch, "buf", None)
    nbytes = math.prod(shape) * dtype.itemsize
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 1), dtype=np.uint8)
        _scratch.buf = buf if nbytes <= ARENA_KEEP_BYTES else None
    return buf[:nbytes].view(dtype).reshape(shape)


#: A unit whose selected elements all lie in the first this share of its C-order bytes
#: is decoded no further than them, where its codecs can stop early (a region at the
#: top of 1 MiB zstd chunks: 0.22 ms to decode the first tenth, 1.7 ms the whole).
PREFIX_MAX_SHARE = 0.75


def _prefix_nbytes(selection: tuple[slice | np.ndarray, ...], unit_shape: tuple[int, ...], itemsize: int) -> int:
    """Bytes of a unit's C-order elements up to the last one an orthogonal
    ``selection`` (chunk-local: slices with step >= 1, or index arrays) takes."""
    last = 0
    stride = 1
    for sel, n in zip(reversed(selection), reversed(unit_shape), strict=True):
        if isinstance(sel, slice):
            start, stop, step = sel.indices(n)
            top = start + (len(range(start, stop, step)) - 1) * step
        else:
            top = int(sel.max()) if len(sel) else -1
        if top < 0:
            return 0
        last += top * stride
        stride *= n
    return (last + 1) * itemsize


def _direct_target(buffer: np.ndarray, projection: ChunkProjection, unit_shape: tuple[int, ...]) -> np.ndarray | None:
    """The view of ``buffer`` a whole unit can be decoded into, if it is contiguous."""
    view = whole_unit_view(buffer, projection, unit_shape)
    return view if view is not None and view.flags.c_contiguous else None


def _fetch_waves(
    layout: ChunkLayout, projections: list[ChunkProjection]
) -> Iterator[tuple[list[ChunkProjection], list[Any]]]:
    """Yield each wave with its fetched bytes, fetching the next wave in the background.

    A read of one wave fetches inline: a background thread only pays off when there is
    a next wave to overlap with.
    """
    all_waves = list(waves(projections, layout.unit_spec.nbytes or 1024))
    # Where one read is cheap, a wave's reads run one after another on the fetching
    # thread: handing small reads to a pool costs more than the reads.
    inline = layout.store.cheap_reads
    if len(all_waves) == 1:
        yield all_waves[0], layout.fetch(all_waves[0], inline=inline)
        return
    pending: tuple[list[ChunkProjection], Future[list[Any]]] | None = None
    fetcher = ThreadPoolExecutor(1, thread_name_prefix="gpuzarr-fetch")
    try:
        for wave in all_waves:
            future = fetcher.submit(layout.fetch, wave, inline=inline)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (wave, future)
        if pending is not None:
            yield pending[0], pending[1].result()
    finally:
        fetcher.shutdown(wait=True, cancel_futures=True)


@functools.lru_cache(maxsize=256)
def _whole_units_contiguous(strides: tuple[int, ...], itemsize: int, unit_shape: tuple[int, ...]) -> bool:
    """Whether a whole unit placed anywhere in a buffer of ``strides`` is one
    C-contiguous block: its view has the buffer's strides, which must then be C strides
    over the unit's shape (those of dimensions of extent 1 aside, as NumPy's flags have
    it). (Cached: a batch of small reads asks once per read, of a few layouts.)"""
    if len(strides) != len(unit_shape):
        return False
    expected = itemsize
    for extent, stride in zip(reversed(unit_shape), reversed(strides), strict=True):
        if extent != 1 and stride != expected:
            return False
        expected *= extent
    return True


class _Destination:
    """Where one selection's units land: its buffer, and how to address it."""

    __slots__ = ("buffer", "can_direct", "vectorized")

    def __init__(self, indexer: Indexer, buffer: np.ndarray, can_decode_into: bool, dtype: np.dtype) -> None:
        self.buffer = buffer
        self.vectorized = indexer.mode == "vectorized"
        self.can_direct = (
            can_decode_into and not self.vectorized and buffer.dtype == dtype and buffer.flags.writeable
        )

    def unit_addresses(self, indexer: Indexer, unit_shape: tuple[int, ...]) -> list[int] | None:
        """For each unit of ``indexer.chunk_projections()`` (in order), the address of its
        place in the buffer where it lands there whole, as one C-contiguous block; else
        0 (the unit is decoded into scratch and placed from there). None where no unit
        can be decoded into the buffer (its dtype, writability or layout rule it out, or
        the indexer cannot tell where units land): every unit is then staged."""
        buffer = self.buffer
        if not self.can_direct or not _whole_units_contiguous(buffer.strides, buffer.itemsize, unit_shape):
            return None
        offsets = indexer.whole_chunk_offsets(buffer.strides)
        if offsets is None:
            return None
        try:  # (ctypes' route to the address is several times faster than NumPy's)
            base = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        except (TypeError, ValueError, BufferError):  # not contiguous, or empty
            base = buffer.ctypes.data
        return [0 if offset is None else base + offset for offset in offsets]


def read_many_into(layout: ChunkLayout, requests: list[tuple[Indexer, np.ndarray]]) -> None:
    """Fill each request's buffer with its selection, as one read.

    Every selection's units are planned, fetched and decoded together, so a batch of
    small reads (a data loader's random windows) runs in parallel like one large read.
    """
    unit_shape = layout.unit_shape
    spec = layout.unit_spec
    dtype = spec.dtype
    fill = layout.metadata.fill_value
    use_scratch = layout.chain.can_decode_into and not spec.data_type.is_variable_length
    projections: list[ChunkProjection] = []
    destination_of: dict[int, _Destination] = {}  # keyed by id(): equal projections of two selections differ
    address_of: dict[int, int] = {}  # of the units that land whole in their buffer (see _Destination)
    for indexer, buffer in requests:
        destination = _Destination(indexer, buffer, layout.chain.can_decode_into, dtype)
        own = list(indexer.chunk_projections())
        projections.extend(own)
        destination_of.update(dict.fromkeys(map(id, own), destination))
        addresses = destination.unit_addresses(indexer, unit_shape)
        if addresses is not None:
            address_of.update(zip(map(id, own), addresses, strict=True))
    if not projections:
        return
    destination_buffers = [buffer for _, buffer in requests]  # (held by every batch decoded into them)

    def place(projection: ChunkProjection, unit: np.ndarray) -> None:
        dest = destination_of[id(projection)]
        place_projection(dest.buffer, projection, unit, dest.vectorized)

    def read_one(projection: ChunkProjection, raw: Any) -> None:
        dest = destination_of[id(projection)]
        if raw is None:
            fill_projection(dest.buffer, projection, fill, dest.vectorized)
            return
        coords = projection.chunk_coords
        if dest.can_direct:
            target = _direct_target(dest.buffer, projection, unit_shape)
            if target is not None:
                layout.decode(coords, raw, out=target)
                return
        scratch = _scratch_buffer(unit_shape, dtype) if use_scratch else None
        if scratch is not None and not projection.covers_chunk and not dest.vectorized:
            needed = _prefix_nbytes(projection.chunk_selection, unit_shape, dtype.itemsize)
            if needed <= PREFIX_MAX_SHARE * scratch.nbytes and layout.decode_prefix(coords, raw, scratch, needed):
                place(projection, scratch)  # (it reads no element past the decoded ones)
                return
        place(projection, layout.decode(coords, raw, out=scratch))

    def unit_addresses(units: list[ChunkProjection]) -> np.ndarray:
        """Where each unit decodes: the address of its place in the output where it
        lands there whole and contiguous, else 0 (the unit is staged in scratch and
        then placed)."""
        return np.fromiter((address_of.get(id(projection), 0) for projection in units), np.uintp, len(units))

    def stage(addresses: np.ndarray) -> tuple[list[int], np.ndarray | None]:
        """Give each unit of a batch that does not land whole in the output (address 0)
        a slot in this thread's scratch, its address there written into ``addresses``:
        their positions in the batch, in slot order, and the scratch."""
        staged = np.flatnonzero(addresses == 0).tolist()
        scratch = _scratch_buffer((len(staged), *unit_shape), dtype) if staged else None
        if scratch is not None:
            addresses[staged] = scratch.ctypes.data + spec.nbytes * np.arange(len(staged), dtype=np.uintp)
        return staged, scratch

    def decode_batch(
        stored: list[tuple[ChunkProjection, Any]], spread: Spread | None = None, addresses: np.ndarray | None = None
    ) -> None:
        """Decode fetched units with one decoding context per thread (this one, or the
        threads ``spread`` runs): each straight into the output where it lands whole and
        contiguous, else into this thread's scratch and then placed. ``addresses``: the
        batch's :func:`unit_addresses`, if known (an array this call may write to)."""
        if addresses is None:
            addresses = unit_addresses([projection for projection, _ in stored])
        staged, scratch = stage(addresses)
        slot_of = dict(zip(staged, range(len(staged)), strict=True))

        def view_of(position: int) -> np.ndarray:
            slot = slot_of.get(position)
            if slot is not None:
                return scratch[slot, ...]  # type: ignore[index]  # (a view even of a 0-d unit)
            projection = stored[position][0]
            view = whole_unit_view(destination_of[id(projection)].buffer, projection, unit_shape)
            # (_Destination.unit_addresses gave this unit an address: it lands whole there.)
            assert view is not None and view.ctypes.data == addresses[position]
            return view

        targets = DecodeTargets(addresses, spec.nbytes, (destination_buffers, scratch), view_of)
        layout.decode_many([p.chunk_coords for p, _ in stored], [raw for _, raw in stored], targets, spread)
        for slot, position in enumerate(staged):
            place(stored[position][0], scratch[slot, ...])  # type: ignore[index]

    def staging_cuts(addresses: np.ndarray) -> Iterator[tuple[int, int]]:
        """A wave cut into batches of at most DECODE_BATCH_MAX_BYTES of units staged in
        scratch (the bound on a thread's scratch): (start, stop) of each."""
        per_batch = max(1, DECODE_BATCH_MAX_BYTES // (spec.nbytes or 1))
        return itertools.pairwise([0, *np.flatnonzero(addresses == 0)[per_batch::per_batch].tolist(), len(addresses)])

    def read_natively(units: list[ChunkProjection], threads: int) -> None:
        """Read and decode ``units`` in gpuzarr's native helper on ``threads`` threads
        (:meth:`ChunkLayout.read_decode_natively`: each thread reads a file and decodes it
        at once), then place those staged in scratch, fill those not stored, and redo any
        other through the general path, which names what is wrong."""
        spread = functools.partial(run_together, threads=threads) if threads > 1 else None
        addresses = unit_addresses(units)
        for start, stop in staging_cuts(addresses):
            batch, batch_addresses = units[start:stop], addresses[start:stop]
            staged, scratch = stage(batch_addresses)
            outcome = layout.read_decode_natively(batch, batch_addresses, spread)
            for slot, position in enumerate(staged):
                if outcome[position] == NATIVE_DONE:
                    place(batch[position], scratch[slot, ...])  # type: ignore[index]
            # (After the placing: read_one may stage in this thread's scratch too.)
            for position in np.flatnonzero(outcome != NATIVE_DONE).tolist():
                projection = batch[position]
                missing = outcome[position] == NATIVE_MISSING
                read_one(projection, None if missing else layout.fetch([projection], inline=True)[0])

    def read_wave(items: list[tuple[ChunkProjection, Any]], threads: int) -> None:
        """Fill the units not stored, then decode the others on ``threads`` threads (the
        caller and pool workers)."""
        stored = []
        for projection, raw in items:
            if raw is None:
                read_one(projection, None)  # the fill value
            else:
                stored.append((projection, raw))
        if threads <= 1:
            # Batches as large as the scratch bound allows: each has a fixed cost.
            step = max(1, DECODE_BATCH_MAX_BYTES // (spec.nbytes or 1))
            for start in range(0, len(stored), step):
                decode_batch(stored[start : start + step])
            return
        addresses = unit_addresses([projection for projection, _ in stored])  # (once, for the whole wave)
        if layout.chain.shares_batches:
            # One batch the threads share, each taking the next unit: units landing
            # whole in the output decode there, the others into this thread's scratch,
            # placed from there by this thread once the batch is done (a copy of what
            # the selection takes of them, far quicker than their decoding).
            spread = functools.partial(run_together, threads=threads)
            for start, stop in staging_cuts(addresses):
                decode_batch(stored[start:stop], spread, addresses[start:stop])
            return
        # A codec that shares no batch: a few batches per thread, whichever thread is
        # free taking the next, so that the placing runs in parallel too.
        def decode_part(part: tuple[int, int]) -> None:
            start, stop = part
            decode_batch(stored[start:stop], addresses=addresses[start:stop])

        cuts = tapering_cuts(len(stored), _PARTS_PER_THREAD * threads, threads)
        parallel_map(decode_part, list(itertools.pairwise(cuts)), use_caller=True, max_threads=threads)

    def read_stored_into(projection: ChunkProjection) -> bool:
        """Read a unit stored as is straight into its place in the output, if it lands
        there whole and contiguous: the file read is then the only copy."""
        dest = destination_of[id(projection)]
        target = _direct_target(dest.buffer, projection, unit_shape) if dest.can_direct else None
        if target is None or target.ctypes.data % ARENA_ALIGN:
            # (The kernel copies into memory not aligned like the file several times
            # slower than reading into the arena and copying: see ReadArena.take.)
            return False
        if not read_stored_bytes(projection, target):
            fill_projection(dest.buffer, projection, fill, dest.vectorized)
        return True

    def read_stored_ranges(projection: ChunkProjection) -> bool:
        """Read only the byte ranges of a unit stored as is that hold what the selection
        takes of it (rows of a strided or narrow selection) into this thread's scratch,
        and place it from there: False where reading it whole does as well."""
        dest = destination_of[id(projection)]
        if projection.covers_chunk or dest.vectorized:
            return False
        ranges = selection_byte_ranges(
            projection.chunk_selection,
            unit_shape,
            dtype.itemsize,
            max_gap=RANGE_GAP_BYTES,
            max_share=RANGES_MAX_SHARE,
        )
        if ranges is None:
            return False
        scratch = _scratch_buffer(unit_shape, dtype)
        if read_stored_bytes(projection, scratch, ranges):
            place(projection, scratch)  # (it takes no element outside the ranges)
        else:
            fill_projection(dest.buffer, projection, fill, dest.vectorized)
        return True

    def read_stored_bytes(
        projection: ChunkProjection, target: np.ndarray, ranges: list[tuple[int, int]] | None = None
    ) -> bool:
        """Read a unit stored as is into ``target`` (its shape; only ``ranges`` of it, if
        given): False if it is not stored; CorruptChunkError if its size is not the unit's."""
        coords = projection.chunk_coords
        # (A uint8 view first: NumPy exports no buffer of datetime or timedelta arrays.)
        size = layout.store.get_into(layout.key(coords), memoryview(target.reshape(-1).view(np.uint8)), ranges=ranges)
        if size is not None and size != target.nbytes:
            raise CorruptChunkError(
                f"{layout.describe(coords)}: codec 'bytes': chunk holds {size} bytes, expected {target.nbytes} "
                f"for shape {unit_shape} of {spec.data_type.name}"
            )
        return size is not None

    def read_group(group: UnitGroup) -> None:
        # The worker fetches its own group and decodes it at once, while the bytes are
        # hot in cache: on local storage this beats fetching a wave first (measured ~2x
        # for uncompressed chunks, where the copy is the whole cost).
        if as_is:
            group = UnitGroup(
                layout,
                [p for p in group.projections if not read_stored_into(p) and not (in_ranges and read_stored_ranges(p))],
            )
        if native:
            read_natively(group.projections, 1)
            return
        with thread_arena(layout.store) as arena:  # (every unit is placed before it resets)
            if batch_units:
                read_wave(list(zip(group.projections, group.fetch(arena), strict=True)), 1)
                return
            for projection, raw in zip(group.projections, group.fetch(arena), strict=True):
                read_one(projection, raw)

    # Units stored as is (no compressor, native byte order) are read by the worker
    # straight into the output where they land whole (measured on 128 MiB of 1 MiB
    # float32 chunks, full read: CPU time 0.055 s for zarrs, 0.093 s reading into
    # memory and copying). Sharded inner chunks are read by coalesced ranges instead.
    as_is = layout.chain.stores_as_is and not layout.sharded
    # Of those units, ones the selection takes little of (a strided or narrow selection)
    # are read in parts where the store reads ranges of files (measured, [::7, ::3] of
    # 128 MiB in 1 MiB float32 chunks on 2 cores: CPU time 45 -> 33 ms from the page
    # cache, in the suite 28.9 -> 20.4 ms; 141 -> 75 ms with the files evicted).
    in_ranges = as_is and layout.store.fills_arenas
    small = len(projections) * (spec.nbytes or 1024) < PARALLEL_MIN_BYTES
    threads = decode_threads(layout)
    # Small units whose codec decodes batches (zstd) decode a group per call: the Python
    # around each unit's one-by-one decode (and the GIL handoffs between workers) would
    # otherwise cost about as much as decoding a 64 KiB unit.
    batch_units = layout.chain.decodes_batches and spec.nbytes <= BATCH_UNIT_MAX_BYTES
    # Whole local files of such units are read and decoded in gpuzarr's native helper:
    # each thread reads a file and decodes it at once, with no fetch before decoding
    # starts and no Python per unit.
    native = batch_units and layout.reads_and_decodes_natively
    if not small and batch_units and len(projections) * spec.nbytes <= get_config().wave_bytes:
        if native:
            read_natively(projections, min(threads, usable_cores()))
            return
        # A read of at most one wave: fetched here, then decoded in batches by this
        # thread and the workers. Measured on 32 one-chunk windows of 64 KiB: 1.1-1.6x
        # tensorstore's time, against 1.8-2.1x decoding unit by unit on the workers.
        # (Handing each group to a worker as soon as it is fetched measured no better,
        # twice: the fetching thread's Python then contends with the workers for the
        # GIL.) Larger reads go to the workers, a batch per group.
        with thread_arena(layout.store) as arena:  # (used by inline fetches only)
            raws = layout.fetch(projections, inline=layout.store.cheap_reads, arena=arena)
            # Everything is fetched: decoding is pure CPU work, a thread per core (a
            # thread more than cores measured 1.15-1.20x tensorstore's time for 32
            # windows of 64 KiB on 2 cores, against 1.02-1.03x).
            read_wave(list(zip(projections, raws, strict=True)), min(threads, usable_cores()))
        return
    groups = layout.worker_groups(projections, threads, GROUP_MIN_BYTES)
    if groups is not None:
        if small:  # too little work to repay handing it to other threads
            for group in groups:
                read_group(group)
        elif len(groups) >= threads:
            parallel_map(read_group, groups, use_caller=True, max_threads=threads)
        else:
            # Fewer groups than threads (say a window inside one shard): fetch here and
            # spread the units' decoding over the workers instead.
            with thread_arena(layout.store) as arena:
                items = [item for group in groups for item in zip(group.projections, group.fetch(arena), strict=True)]
                parallel_map(lambda item: read_one(*item), items, use_caller=True, max_threads=threads)
        return
    for wave, raws in _fetch_waves(layout, projections):
        if batch_units and not small:
            read_wave(list(zip(wave, raws, strict=True)), threads)
        elif small:
            for projection, raw in zip(wave, raws, strict=True):
                read_one(projection, raw)
        else:
            parallel_map(lambda item: read_one(*item), list(zip(wave, raws, strict=True)), max_threads=threads)
