"""The GPU write path: a selection's units gathered, encoded and framed on a device.

For each wave of units (chunks, or the inner chunks of a wave of shards; about
``wave_bytes`` decoded bytes):

1. *base*: units the selection covers only partly start from their old contents,
   decoded on the device (:func:`gpuzarr.gpu.executor.decode_units`), or from the fill
   value where nothing is stored or the unit hangs over the array's edge;
2. *gather*: one kernel launch copies the value's box of every unit into its slot
   (orthogonal and vectorized selections, which are not boxes, are placed unit by unit
   with array indexing);
3. *empty units*: one launch flags units that are bit for bit the fill value; they are
   not stored (and stale ones are deleted) unless ``config.write_empty_chunks``;
4. *encode*: the stored axis order (v3 ``transpose``, v2 order F) as one array
   operation, one byteswap launch for big-endian data, one batched nvCOMP compression
   per wave (zstd frames; raw deflate framed as gzip or zlib with CRC-32 / Adler-32
   computed by kernels; raw LZ4 blocks behind numcodecs' size prefix; blosc: shuffle
   kernels, LZ4 / zstd / zlib streams and c-blosc headers), and a crc32c kernel for the
   ``crc32c`` codec's trailer;
5. *store*: sharded arrays assemble each shard (inner chunks in C order, untouched
   inner chunks copied unchanged from the old shard, the index encoded with its index
   codecs) in one device buffer; the wave comes back in one device-to-host copy and
   each chunk or shard is stored with one atomic put.

Chains the device cannot encode (numcodecs filters, variable-length types, blosclz,
nested sharding, ...) are encoded by the CPU pipeline after one download of the value,
with a :class:`~gpuzarr.gpu.executor.GpuFallbackWarning` naming the codec (an error
under ``config.gpu_fallback = "error"``). Storage writes go through pinned host staging
(the atomic replace of every store needs the bytes on the host anyway).

The code is written against :class:`gpuzarr.gpu.backend.Backend`; CI runs it on the
host backend, which emulates the device with NumPy and the CPU libraries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpuzarr.codecs import BloscCodec, GzipCodec, ZlibCodec, ZstdCodec
from gpuzarr.codecs.chain import CodecChain
from gpuzarr.codecs.zstd import ZSTD_DESCRIPTOR_OFFSET
from gpuzarr.config import get_config
from gpuzarr.gpu.backend import Backend
from gpuzarr.gpu.encode_plan import (
    BLOSC_ENCODE_CNAMES,
    FRAME_COMPRESSORS,
    Assembly,
    assemble,
    checksum_bytes,
    layout_blosc_encode,
    plan_blosc_encode,
    plan_frames,
)
from gpuzarr.gpu.executor import SLOT_ALIGNMENT, DeviceChain, decode_units, device_chain, gpu_fallback, stream_ends
from gpuzarr.gpu.plan import CompressBatch, align, aligned_slots, plan_scatter
from gpuzarr.indexing import ChunkProjection, Indexer, is_basic
from gpuzarr.pipeline.layout import ChunkLayout, ShardedLayout, shard_index_cache
from gpuzarr.pipeline.write import (
    ShardProjections,
    ValueSource,
    locked_write,
    shard_needs_old,
    stored_inner_ranges,
    write_from,
)

__all__ = ["EncodedBatch", "encode_units", "write_from_device"]


@dataclass(frozen=True)
class EncodedBatch:
    """Encoded units on the device: unit i is ``data[offsets[i] :][: sizes[i]]``
    (``offsets`` and ``sizes`` are host ``int64`` arrays)."""

    data: Any
    offsets: np.ndarray
    sizes: np.ndarray


def _compression_level(chain: CodecChain) -> int | None:
    """The declared level of the chain's compressor (passed on to the device codec)."""
    for codec in chain.bytes_bytes:
        if isinstance(codec, ZstdCodec | GzipCodec | ZlibCodec):
            return int(codec.level)
        if isinstance(codec, BloscCodec):
            return int(codec.clevel)
    return None  # LZ4 (numcodecs' acceleration has no nvCOMP counterpart) or no compressor


def _zstd_checksum(chain: CodecChain) -> bool:
    """Whether the chain's zstd codec asks for frames with a content checksum."""
    return any(isinstance(codec, ZstdCodec) and codec.checksum for codec in chain.bytes_bytes)


def _blosc_codec(chain: CodecChain) -> BloscCodec | None:
    return next((c for c in chain.bytes_bytes if isinstance(c, BloscCodec)), None)


def encode_plan_unsupported(chain: CodecChain, backend: Backend | None = None) -> str | None:
    """Why the device (``backend``'s, if given) cannot encode ``chain``; None when it can."""
    plan = device_chain(chain)
    if plan.unsupported is not None:
        return plan.unsupported
    blosc = _blosc_codec(chain)
    if blosc is not None and blosc.cname not in BLOSC_ENCODE_CNAMES:
        return f"codec 'blosc' with cname {blosc.cname!r}"
    if backend is not None and plan.compressor in FRAME_COMPRESSORS:
        limit = backend.max_stream_nbytes.get(FRAME_COMPRESSORS[plan.compressor])
        nbytes = chain.spec.nbytes
        if limit is not None and nbytes > limit:
            return f"codec {plan.compressor!r} on {nbytes}-byte chunks (the {backend.name} compressor takes {limit})"
    return None


def write_from_device(layout: ChunkLayout, indexer: Indexer, value: Any, backend: Backend) -> None:
    """Write ``value`` (an array of ``backend.xp`` with ``indexer.buffer_shape``) into
    the selected region, encoding on ``backend``'s device."""
    projections = list(indexer.chunk_projections())
    if not projections:
        return
    reason = encode_plan_unsupported(layout.chain, backend)
    if reason is not None:
        gpu_fallback(reason, writing=True)
        write_from(layout, indexer, backend.to_host(value))
        return
    plan = device_chain(layout.chain)
    if not value.flags.c_contiguous:  # the gather kernel reads one C-contiguous block (ops.gather)
        value = backend.xp.ascontiguousarray(value)
    source = ValueSource(indexer, value)
    basic = not source.vectorized and all(
        is_basic(p.out_selection) and is_basic(p.chunk_selection)  # type: ignore[arg-type]
        for p in projections
    )
    writer = _Writer(layout, plan, source, basic, backend)
    with locked_write(layout, projections) as by_shard:
        if by_shard is None:
            writer.write_chunks(projections)
        else:
            writer.write_shards(by_shard)


class _Writer:
    """One write's state: the layout, the device chain, the value, the backend."""

    def __init__(
        self, layout: ChunkLayout, plan: DeviceChain, source: ValueSource, basic: bool, backend: Backend
    ) -> None:
        self.layout = layout
        self.plan = plan
        self.source = source
        self.basic = basic
        self.backend = backend
        spec = layout.unit_spec
        self.nbytes = spec.nbytes
        self.slot = align(spec.nbytes, SLOT_ALIGNMENT)
        self.fill_bytes = np.asarray(layout.metadata.fill_value, dtype=spec.dtype).tobytes()
        self.write_empty = get_config().write_empty_chunks
        self.per_wave = max(1, get_config().wave_bytes // max(1, spec.nbytes))
        self._fill_unit: Any = None

    # -- units ---------------------------------------------------------------------------

    def _edge(self, coords: tuple[int, ...]) -> bool:
        shape = self.layout.metadata.shape
        return any((c + 1) * u > n for c, u, n in zip(coords, self.layout.unit_shape, shape, strict=True))

    def build_units(self, projections: Sequence[ChunkProjection], olds: Sequence[Any]) -> Any:
        """Steps 1 and 2: the new contents of every unit, unit i at ``i * slot``.

        ``olds[i]`` is unit i's stored bytes when the selection covers it only partly
        (None when nothing is stored or it is covered completely).
        """
        backend, kernels, slot = self.backend, self.backend.kernels, self.slot
        n = len(projections)
        units = backend.empty(n * slot)
        stored = [i for i, old in enumerate(olds) if old is not None]
        if stored:
            coords = [projections[i].chunk_coords for i in stored]
            decoded, decoded_slot = decode_units(self.layout, self.plan, coords, [olds[i] for i in stored], backend)
            kernels.copy_ranges(
                decoded,
                units,
                np.arange(len(stored), dtype=np.int64) * decoded_slot,
                np.array(stored, dtype=np.int64) * slot,
                np.full(len(stored), self.nbytes, np.int64),
            )
        # Units not covered completely, or hanging over the array's edge (whose part
        # beyond it the gather never writes), start as all fill value.
        filled = [
            i
            for i, (p, old) in enumerate(zip(projections, olds, strict=True))
            if old is None and (not p.covers_chunk or self._edge(p.chunk_coords))
        ]
        if filled:
            kernels.copy_ranges(
                self._fill_source(),
                units,
                np.zeros(len(filled), dtype=np.int64),
                np.array(filled, dtype=np.int64) * slot,
                np.full(len(filled), self.nbytes, np.int64),
            )
        self._gather(projections, units)
        return units

    def _fill_source(self) -> Any:
        """One unit of fill value on the device (uploaded once per write)."""
        if self._fill_unit is None:
            count = self.nbytes // max(1, len(self.fill_bytes))
            host = np.frombuffer(self.fill_bytes * count, dtype=np.uint8)
            self._fill_unit = self.backend.upload(host)
        return self._fill_unit

    def _gather(self, projections: Sequence[ChunkProjection], units: Any) -> None:
        layout, slot = self.layout, self.slot
        value = self.source.value
        offsets = np.arange(len(projections), dtype=np.int64) * slot
        if self.basic:
            boxes = plan_scatter(projections, layout.unit_shape, value.shape).boxes
            self.backend.kernels.gather(value, units, offsets, layout.unit_shape, boxes)
            return
        spec = layout.unit_spec
        for i, projection in enumerate(projections):
            unit = units[i * slot : i * slot + spec.nbytes].view(spec.dtype).reshape(layout.unit_shape)
            self.source.apply(unit, _last_wins(projection, layout.unit_shape, value.shape, self.source.vectorized))

    def empty_units(self, units: Any, n: int) -> np.ndarray:
        """Step 3: host bool array, True where unit i is all fill value (and is dropped)."""
        if self.write_empty:
            return np.zeros(n, dtype=bool)
        offsets = np.arange(n, dtype=np.int64) * self.slot
        flags = self.backend.kernels.equals_fill(
            units, offsets, np.full(n, self.nbytes, np.int64), len(self.fill_bytes), self.fill_bytes
        )
        return np.asarray(self.backend.to_host(flags), dtype=bool)

    # -- chunks --------------------------------------------------------------------------

    def in_waves(self, items: list[Any], per_wave: int, write_wave: Any) -> None:
        """Run ``write_wave`` over ``items`` in waves of ``per_wave``; a device
        out-of-memory error halves the wave and retries it (nothing of a wave is stored
        before its device work is done, so a retry never duplicates a put)."""
        start = 0
        while start < len(items):
            wave = items[start : start + per_wave]
            try:
                write_wave(wave)
            except Exception as exc:
                if self.backend.out_of_memory(exc) and per_wave > 1:
                    self.backend.release_memory()
                    per_wave = max(1, per_wave // 2)
                    continue
                raise
            start += len(wave)

    def write_chunks(self, projections: list[ChunkProjection]) -> None:
        self.in_waves(projections, self.per_wave, self._write_chunk_wave)

    def _write_chunk_wave(self, wave: list[ChunkProjection]) -> None:
        layout = self.layout
        store = layout.store
        partial = [p for p in wave if not p.covers_chunk]
        olds_by_coords: dict[tuple[int, ...], Any] = {}
        if partial:
            got = layout.fetch(partial)
            olds_by_coords = {p.chunk_coords: raw for p, raw in zip(partial, got, strict=True)}
        olds = [olds_by_coords.get(p.chunk_coords) for p in wave]
        units = self.build_units(wave, olds)
        empty = self.empty_units(units, len(wave))
        keep = np.flatnonzero(~empty)
        keys = [layout.key(p.chunk_coords) for p in wave]
        puts: list[tuple[str, memoryview]] = []
        if keep.size:
            encoded = encode_units(layout, self.plan, units, self.slot, keep, self.backend)
            view = memoryview(self.backend.to_host(encoded.data))
            rows = zip(keep.tolist(), encoded.offsets.tolist(), encoded.sizes.tolist(), strict=True)
            puts = [(keys[i], view[o : o + n]) for i, o, n in rows]
        if puts:
            store.set_many(puts)
        dropped = [keys[i] for i in np.flatnonzero(empty).tolist()]
        if dropped:
            store.delete_many(dropped)

    # -- shards --------------------------------------------------------------------------

    def write_shards(self, by_shard: ShardProjections) -> None:
        layout = self.layout
        assert isinstance(layout, ShardedLayout)
        inner_per_shard = int(np.prod(layout.inner_grid))
        shards_per_wave = max(1, self.per_wave // max(1, inner_per_shard))
        self.in_waves(list(by_shard), shards_per_wave, lambda wave: self._write_shard_wave(wave, by_shard))

    def _write_shard_wave(
        self,
        shards: list[tuple[int, ...]],
        by_shard: ShardProjections,
    ) -> None:
        layout = self.layout
        assert isinstance(layout, ShardedLayout)
        store = layout.store
        keys = [layout.key(s) for s in shards]
        needing = [i for i, s in enumerate(shards) if shard_needs_old(layout, s, by_shard[s])]
        old_shards: dict[int, Any] = {}
        if needing:
            got = store.get_many([keys[i] for i in needing])
            old_shards = {i: raw for i, raw in zip(needing, got, strict=True) if raw is not None}
        # Old inner chunks: (offset, size) in the old shard, by shard position and inner coords.
        old_ranges: dict[int, dict[tuple[int, ...], tuple[int, int]]] = {}
        old_views: dict[int, memoryview] = {}
        for i, raw in old_shards.items():
            old_views[i], old_ranges[i] = stored_inner_ranges(layout, keys[i], raw)
        # Every touched inner chunk of the wave, built and encoded as one batch.
        wave: list[ChunkProjection] = []
        owners: list[tuple[int, tuple[int, ...]]] = []
        olds: list[Any] = []
        for i, shard in enumerate(shards):
            for inner, projection in by_shard[shard].items():
                wave.append(projection)
                owners.append((i, inner))
                found = None if projection.covers_chunk else old_ranges.get(i, {}).get(inner)
                olds.append(None if found is None else old_views[i][found[0] : found[0] + found[1]])
        units = self.build_units(wave, olds)
        empty = self.empty_units(units, len(wave))
        keep = np.flatnonzero(~empty)
        encoded = encode_units(layout, self.plan, units, self.slot, keep, self.backend) if keep.size else None
        new_pieces: dict[int, dict[tuple[int, ...], int]] = {}  # position in ``keep``
        for k, w in enumerate(keep.tolist()):
            i, inner = owners[w]
            new_pieces.setdefault(i, {})[inner] = k
        touched = [set(by_shard[shard]) for shard in shards]
        self._assemble_and_store(shards, keys, old_views, old_ranges, new_pieces, touched, encoded)

    def _assemble_and_store(
        self,
        shards: list[tuple[int, ...]],
        keys: list[str],
        old_views: dict[int, memoryview],
        old_ranges: dict[int, dict[tuple[int, ...], tuple[int, int]]],
        new_pieces: dict[int, dict[tuple[int, ...], int]],
        touched: list[set[tuple[int, ...]]],
        encoded: EncodedBatch | None,
    ) -> None:
        """Step 5 for shards: lay out every shard of the wave in one device buffer
        (copies from the new encoded units and the old shards), then store them."""
        layout = self.layout
        assert isinstance(layout, ShardedLayout)
        codec, shard_spec, store, backend = layout.codec, layout.shard_spec, layout.store, self.backend
        from gpuzarr.codecs.sharding import ShardIndex

        index_nbytes = codec.index_nbytes(shard_spec)
        at_start = codec.index_location == "start"
        # Old shards the kept inner chunks come from, uploaded once as one buffer.
        kept_old = [i for i in old_views if old_ranges[i].keys() - touched[i]]
        old_offsets = aligned_slots(0, np.array([len(old_views[i]) for i in kept_old], dtype=np.int64), 8)
        old_start = dict(zip(kept_old, old_offsets.tolist(), strict=True))
        new_copies: list[tuple[int, int, int]] = []  # (src offset, dst offset, size)
        old_copies: list[tuple[int, int, int]] = []
        index_bytes: list[tuple[int, bytes]] = []  # (dst offset, encoded index)
        placed: list[tuple[int, int, int]] = []  # (shard position, dst offset, shard size)
        cursor = 0
        for i in range(len(shards)):
            pieces: list[tuple[tuple[int, ...], bool, int, int]] = []  # inner, is new, src offset, size
            for inner, (off, size) in old_ranges.get(i, {}).items():
                if inner not in touched[i]:
                    pieces.append((inner, False, old_start[i] + off, size))
            for inner, k in new_pieces.get(i, {}).items():
                assert encoded is not None
                pieces.append((inner, True, int(encoded.offsets[k]), int(encoded.sizes[k])))
            if not pieces:
                placed.append((i, -1, 0))  # nothing left: the shard is deleted
                continue
            pieces.sort()
            index = ShardIndex.empty(layout.inner_grid)
            start = cursor
            offset = index_nbytes if at_start else 0
            for inner, is_new, src, size in pieces:
                index.entries[inner] = (offset, size)
                (new_copies if is_new else old_copies).append((src, start + offset, size))
                offset += size
            index_at = start if at_start else start + offset
            index_bytes.append((index_at, codec.encode_index(index, shard_spec)))
            total = offset + (0 if at_start else index_nbytes)
            placed.append((i, start, total))
            cursor = align(start + total, 8)
        out = backend.empty(cursor)
        kernels = backend.kernels
        for copies, source in ((new_copies, encoded.data if encoded is not None else None), (old_copies, None)):
            if not copies:
                continue
            if source is None:
                host = np.zeros(int(old_offsets[-1]) + len(old_views[kept_old[-1]]), dtype=np.uint8)
                for i in kept_old:
                    view = old_views[i]
                    host[old_start[i] : old_start[i] + len(view)] = np.frombuffer(view, dtype=np.uint8)
                source = backend.upload(host)
            table = np.array(copies, dtype=np.int64)
            kernels.copy_ranges(source, out, table[:, 0], table[:, 1], table[:, 2])
        if index_bytes:
            packed = np.frombuffer(b"".join(b for _, b in index_bytes), dtype=np.uint8)
            sizes = np.array([len(b) for _, b in index_bytes], dtype=np.int64)
            kernels.copy_ranges(
                backend.upload(packed),
                out,
                np.cumsum(sizes) - sizes,
                np.array([at for at, _ in index_bytes], dtype=np.int64),
                sizes,
            )
        host_out = memoryview(backend.to_host(out)) if cursor else memoryview(b"")
        puts = [(keys[i], host_out[start : start + total]) for i, start, total in placed if start >= 0]
        deletes = [keys[i] for i, start, _ in placed if start < 0]
        # Drop cached indexes first: a reader must never pair a new shard with an old index.
        for key in keys:
            shard_index_cache.discard(store, key)
        if puts:
            store.set_many(puts)
        if deletes:
            store.delete_many(deletes)


def _last_occurrences(targets: np.ndarray) -> np.ndarray | None:
    """Positions of the last occurrence of each distinct value of ``targets`` (in order);
    None when no value repeats."""
    if targets.size < 2:
        return None
    _, first_from_end = np.unique(targets[::-1], return_index=True)
    if first_from_end.size == targets.size:
        return None
    return np.sort(targets.size - 1 - first_from_end)


def _last_wins(
    projection: ChunkProjection, unit_shape: tuple[int, ...], value_shape: tuple[int, ...], vectorized: bool
) -> ChunkProjection:
    """``projection`` without repeated target elements, keeping the last value written
    to each (NumPy's assignment order, which the CPU path follows). CuPy leaves which of
    the values an array-indexed assignment with repeated targets stores undefined."""
    csel = list(projection.chunk_selection)
    if vectorized:
        if not csel:
            return projection
        flat = np.ravel_multi_index(tuple(np.asarray(c, dtype=np.int64) for c in csel), unit_shape)
        keep = _last_occurrences(flat)
        if keep is None:
            return projection
        out = np.asarray(projection.out_selection)[keep]
        return projection._replace(chunk_selection=tuple(np.asarray(c)[keep] for c in csel), out_selection=out)
    osel = list(projection.out_selection)  # type: ignore[arg-type]
    changed = False
    for d, c in enumerate(csel):
        if isinstance(c, slice):
            continue
        keep = _last_occurrences(np.asarray(c))
        if keep is None:
            continue
        o = osel[d]
        positions = np.arange(value_shape[d], dtype=np.int64)[o] if isinstance(o, slice) else np.asarray(o)
        csel[d], osel[d] = np.asarray(c)[keep], positions[keep]
        changed = True
    if not changed:
        return projection
    return projection._replace(chunk_selection=tuple(csel), out_selection=tuple(osel))


def encode_units(
    layout: ChunkLayout, plan: DeviceChain, units: Any, slot: int, which: np.ndarray, backend: Backend
) -> EncodedBatch:
    """Step 4: encode units ``which`` of ``units`` (unit i at ``i * slot``, array order,
    native byte order) with the layout's unit chain on the device."""
    spec = layout.unit_spec
    nbytes = spec.nbytes
    n = len(which)
    kernels = backend.kernels
    # Work on a packed copy of the kept units: the byteswap and the transpose change
    # bytes in place, and the compressors want the batch's inputs densely addressed.
    work = backend.empty(n * slot)
    offsets = np.arange(n, dtype=np.int64) * slot
    sizes = np.full(n, nbytes, np.int64)
    kernels.copy_ranges(units, work, np.asarray(which, dtype=np.int64) * slot, offsets, sizes)
    if plan.axes is not None:
        _to_stored_order(work, slot, n, plan, spec.dtype, backend)
    if plan.swap_itemsize:
        kernels.byteswap(work, offsets, sizes, plan.swap_itemsize)
    if plan.compressor is None:
        batch = EncodedBatch(work, offsets, sizes)
    elif plan.compressor == "blosc":
        blosc = _blosc_codec(layout.chain)
        assert blosc is not None
        batch = _encode_blosc(blosc, work, offsets, sizes, backend)
    else:
        level = _compression_level(layout.chain)
        batch = _encode_framed(plan.compressor, work, offsets, sizes, level, backend, _zstd_checksum(layout.chain))
    if plan.crc32c:
        batch = _append_crc32c(batch, backend)
    return batch


def _to_stored_order(work: Any, slot: int, n: int, plan: DeviceChain, dtype: np.dtype, backend: Backend) -> None:
    """Units in array order -> the stored (transposed) order, in place, one operation."""
    xp = backend.xp
    assert plan.stored_shape is not None and plan.axes is not None
    count = int(np.prod(plan.stored_shape))
    itemsize = dtype.itemsize
    shape = tuple(plan.stored_shape[a] for a in plan.axes)  # the array-order unit shape
    items = work[: n * slot].reshape(n, slot)[:, : count * itemsize]
    arrays = xp.ascontiguousarray(items).view(dtype).reshape(n, *shape)
    order = tuple(int(a) + 1 for a in np.argsort(plan.axes))
    stored = xp.ascontiguousarray(arrays.transpose(0, *order)).reshape(n, count).view(np.uint8)
    items[...] = stored


def _append_crc32c(batch: EncodedBatch, backend: Backend) -> EncodedBatch:
    """Each encoded unit followed by the CRC-32C of its bytes (little-endian)."""
    n = len(batch.sizes)
    crc = backend.kernels.crc32c(batch.data, batch.offsets, batch.sizes)
    sizes = batch.sizes + 4
    offsets = aligned_slots(0, sizes, 8)
    out = backend.empty(int(offsets[-1] + sizes[-1]) if n else 0)
    backend.kernels.copy_ranges(batch.data, out, batch.offsets, offsets, batch.sizes)
    # Byte by byte with shifts (CuPy has no non-native byte orders), one copy launch.
    trailers = checksum_bytes(crc, "little", backend.xp)
    backend.kernels.copy_ranges(
        trailers, out, np.arange(n, dtype=np.int64) * 4, offsets + batch.sizes, np.full(n, 4, np.int64)
    )
    return EncodedBatch(out, offsets, sizes)


def _assemble(assembly: Assembly, compressed: Any, source: Any, backend: Backend) -> EncodedBatch:
    """An assembly's copy launches on the device, checksum trailers by kernels."""
    checksums = None
    if assembly.checksum is not None and len(assembly.trailers):
        run = getattr(backend.kernels, assembly.checksum)
        checksums = run(source, assembly.checksum_offsets, assembly.checksum_sizes)
    out = assemble(
        assembly,
        compressed,
        source,
        checksums,
        backend.kernels,
        empty=backend.empty,
        upload=backend.upload,
        xp=backend.xp,
    )
    return EncodedBatch(out, assembly.offsets, assembly.sizes)


def _encode_framed(
    compressor: str,
    work: Any,
    offsets: np.ndarray,
    sizes: np.ndarray,
    level: int | None,
    backend: Backend,
    zstd_checksum: bool = False,
) -> EncodedBatch:
    """zstd, gzip, zlib or LZ4 units: one batched compression, then the containers
    (gzip/zlib headers and CRC-32/Adler-32 trailers, LZ4's size prefix, and zstd's
    content checksum when the codec asks for one: the XXH64 kernel's, appended)."""
    batch = CompressBatch(FRAME_COMPRESSORS[compressor], offsets, sizes, level)
    compressed, comp_offsets, comp_sizes = backend.compress(batch, work)
    descriptors = None
    if compressor == "zstd" and zstd_checksum:
        # The frames' descriptor bytes (as nvCOMP wrote them) to the host: the plan sets
        # their checksum flag and appends the checksum where the compressor did not.
        heads, _ = stream_ends(compressed, comp_offsets, comp_sizes, ZSTD_DESCRIPTOR_OFFSET + 1, 0, backend)
        descriptors = heads[:, ZSTD_DESCRIPTOR_OFFSET]
    frames = plan_frames(compressor, batch, comp_offsets, comp_sizes, output_alignment=backend.output_alignment,
                         zstd_descriptors=descriptors)
    if frames.passthrough:  # zstd frames need no container
        return EncodedBatch(compressed, comp_offsets, comp_sizes)
    return _assemble(frames, compressed, work, backend)


def _encode_blosc(
    codec: BloscCodec, work: Any, offsets: np.ndarray, sizes: np.ndarray, backend: Backend
) -> EncodedBatch:
    """Blosc units: shuffle kernels over all blocks, one batched compression of every
    block's stream, then c-blosc headers, block starts and sizes around them."""
    kernels = backend.kernels
    stream_codec = {"zlib": "deflate", "lz4hc": "lz4"}.get(codec.cname, codec.cname)
    limit = backend.max_stream_nbytes.get(stream_codec)
    plan = plan_blosc_encode(
        sizes,
        codec.typesize or 1,
        codec.shuffle,
        codec.cname,
        codec.clevel,
        codec.blocksize,
        chunk_alignment=SLOT_ALIGNMENT,
        input_alignment=backend.input_alignment,
        max_blocksize=limit,
    )
    workspace = backend.empty(plan.workspace_nbytes)
    kernels.copy_ranges(work, workspace, offsets, plan.input_offsets, sizes)
    for sb in plan.shuffles:
        run = kernels.shuffle if sb.kind == "shuffle" else kernels.bitshuffle
        run(workspace, workspace, sb.src_offsets, sb.dst_offsets, sb.sizes, sb.typesize)
    gather = plan.gather
    if len(gather):
        kernels.copy_ranges(workspace, workspace, gather.src_offsets, gather.dst_offsets, gather.sizes)
    if len(plan.compress):
        compressed, comp_offsets, comp_sizes = backend.compress(plan.compress, workspace)
    else:  # every chunk stored memcpy-ed
        compressed, comp_offsets, comp_sizes = backend.empty(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    layout = layout_blosc_encode(plan, comp_sizes, comp_offsets, output_alignment=backend.output_alignment)
    return _assemble(layout, compressed, workspace, backend)
