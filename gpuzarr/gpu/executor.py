"""The GPU read path: a selection's units decoded on a device, one call per stage.

For each wave of units (about ``wave_bytes`` decoded bytes):

1. *fetch*: the units' stored bytes through the layout (shard indexes, coalesced byte
   ranges) into host memory, packed at aligned offsets into one staging buffer, then one
   host-to-device copy;
2. *crc32c* (when the chain ends with it): one kernel launch checksums every unit;
3. *decompress*: one batched nvCOMP call for the wave (zstd frames, gzip members, raw
   deflate inside zlib, raw LZ4 blocks after numcodecs' size prefix), or the blosc
   plan's stages (:func:`gpuzarr.gpu.plan.plan_blosc_batch`);
4. *bytes*: one byteswap launch for big-endian data; a transpose (v3 ``transpose`` or
   v2 order F) as one array operation over the wave;
5. *scatter*: one launch copies every decoded unit's box into the output, one more fills
   the boxes of units not stored. (Orthogonal and vectorized selections, which are not
   boxes, are placed unit by unit with array indexing.)

Chains the device cannot decode (numcodecs filters, variable-length types, bz2, ...)
are decoded on the host and uploaded, with one warning naming the codec, or an error
under ``config.gpu_fallback = "error"``. A device out-of-memory error halves the wave
and retries it.

Step 3 does not take nvCOMP's word for a stream's validity: the checksums a stream
carries and nvCOMP never sees, or may not check, are checked against the decoded bytes
(gzip's CRC-32 and size, zlib's Adler-32, inside blosc chunks too, and the content
checksum of zstd frames written with one). A stream nvCOMP
fails, or whose check disagrees, is decompressed again by the CPU codec, the authority
on what is valid: a corrupt one raises the CPU path's typed error naming its chunk, and
a valid one the device cannot take (a gzip chunk of several members) is used after the
fallback warning.

The code is written against :class:`gpuzarr.gpu.backend.Backend`; CI runs it on the
host backend, which emulates the device with NumPy and the CPU libraries.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpuzarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, TransposeCodec, ZlibCodec, ZstdCodec
from gpuzarr.codecs.base import Buffer, as_memoryview, check_decoded_size
from gpuzarr.codecs.chain import CodecChain
from gpuzarr.codecs.gzip import GZIP_MIN_MEMBER_NBYTES, GZIP_TRAILER_NBYTES
from gpuzarr.codecs.numcodecs_codecs import NumcodecsBytesCodec
from gpuzarr.codecs.v2 import V2ArrayBytesCodec
from gpuzarr.codecs.zstd import ZSTD_CHECKSUM_FLAG, ZSTD_DESCRIPTOR_OFFSET, ZSTD_MAGIC
from gpuzarr.config import get_config
from gpuzarr.errors import ChecksumError, CorruptChunkError, UnsupportedCodecError, UnsupportedDataTypeError
from gpuzarr.gpu.backend import Backend
from gpuzarr.gpu.plan import (
    BLOSC_CODEC_FORMAT_VERSION,
    BLOSC_FORMAT_VERSION,
    BLOSC_HEADER_NBYTES,
    BLOSC_MEMCPYED,
    StreamBatch,
    align,
    aligned_slots,
    pack_input,
    plan_blosc_batch,
    plan_scatter,
    valid_zlib_header,
)
from gpuzarr.indexing import ChunkProjection, Indexer, fill_projection, is_basic, place_projection
from gpuzarr.pipeline.layout import ChunkLayout

__all__ = [
    "DeviceChain",
    "GpuFallbackWarning",
    "decode_units",
    "device_chain",
    "gpu_fallback",
    "read_into_device",
    "stream_ends",
]

#: Start of every unit in the staging and decoded buffers: keeps nvCOMP's alignment
#: needs (8 bytes) and whole-word loads in the kernels, for any item size.
SLOT_ALIGNMENT = 256


class GpuFallbackWarning(UserWarning):
    """A codec without a GPU implementation was decoded on the CPU and uploaded."""


def _align(n: int) -> int:
    return align(n, SLOT_ALIGNMENT)


def _slot_offsets(sizes: np.ndarray) -> np.ndarray:
    """Offsets of consecutive slots of ``sizes`` bytes, each starting aligned."""
    return aligned_slots(0, sizes, SLOT_ALIGNMENT)


@dataclass(frozen=True)
class DeviceChain:
    """How one unit's codec chain decodes on the device, or why it cannot.

    ``compressor`` is ``"zstd"``, ``"gzip"``, ``"zlib"``, ``"lz4"``, ``"blosc"`` or None
    (stored raw); ``crc32c`` says a crc32c trailer wraps the compressed bytes;
    ``swap_itemsize`` is the item size to byte-swap (0: native order); ``stored_shape``
    and ``axes`` describe a transpose (``decoded = stored.transpose(axes)``).
    """

    compressor: str | None = None
    crc32c: bool = False
    swap_itemsize: int = 0
    stored_shape: tuple[int, ...] | None = None
    axes: tuple[int, ...] | None = None
    unsupported: str | None = None  # the codec that forces a CPU decode


def _swap_unit(dtype: np.dtype) -> int:
    """The size of the words a byte-order change reverses in ``dtype``'s elements."""
    if dtype.kind == "c":
        return dtype.itemsize // 2
    if dtype.kind == "U":
        return 4
    return dtype.itemsize


def device_chain(chain: CodecChain) -> DeviceChain:
    """Classify a unit chain for the device (see :class:`DeviceChain`)."""
    spec = chain.spec
    if spec.data_type.is_variable_length:
        return DeviceChain(unsupported=f"data type {spec.data_type.name!r} (variable length)")
    stored_shape: tuple[int, ...] | None = None
    axes: tuple[int, ...] | None = None
    if chain.array_array:
        if len(chain.array_array) > 1 or not isinstance(chain.array_array[0][0], TransposeCodec):
            return DeviceChain(unsupported=chain.array_array[0][0].name)
        codec, codec_spec = chain.array_array[0]
        order = tuple(codec.order)  # type: ignore[arg-type]
        stored_shape = tuple(codec_spec.shape[i] for i in order)
        axes = tuple(int(i) for i in np.argsort(order))
    array_bytes = chain.array_bytes
    # The byte-swapped word: complex numbers swap each of their two parts, fixed-width
    # unicode strings each UCS4 character; everything else the whole element.
    itemsize = _swap_unit(spec.dtype)
    if isinstance(array_bytes, BytesCodec):
        swap = itemsize if array_bytes.stored_dtype(chain.array_spec.dtype) != chain.array_spec.dtype else 0
    elif isinstance(array_bytes, V2ArrayBytesCodec):
        if array_bytes.filters:
            return DeviceChain(unsupported="v2 filters " + ", ".join(dict(f)["id"] for f in array_bytes.filters))
        stored = np.dtype(array_bytes.stored_dtype)
        if stored.kind == "O" or stored.newbyteorder("=") != spec.dtype.newbyteorder("="):
            return DeviceChain(unsupported=f"v2 stored dtype {array_bytes.stored_dtype!r}")
        swap = itemsize if not stored.isnative and itemsize > 1 else 0
        if array_bytes.order == "F" and len(spec.shape) > 1:
            stored_shape = tuple(reversed(spec.shape))
            axes = tuple(reversed(range(len(spec.shape))))
    else:
        return DeviceChain(unsupported=array_bytes.name)
    codecs = list(chain.bytes_bytes)
    crc = bool(codecs) and isinstance(codecs[-1], Crc32cCodec)
    if crc:
        codecs.pop()
    if len(codecs) > 1:
        return DeviceChain(unsupported="the chain of compressors " + ", ".join(repr(c.name) for c in codecs))
    compressor: str | None = None
    if codecs:
        codec = codecs[0]
        if isinstance(codec, ZstdCodec):
            compressor = "zstd"
        elif isinstance(codec, GzipCodec):
            compressor = "gzip"
        elif isinstance(codec, ZlibCodec):
            compressor = "zlib"
        elif isinstance(codec, BloscCodec):
            compressor = "blosc"
        elif isinstance(codec, NumcodecsBytesCodec) and codec.codec_id == "lz4":
            compressor = "lz4"
        else:
            name = f"numcodecs.{codec.codec_id}" if isinstance(codec, NumcodecsBytesCodec) else codec.name
            return DeviceChain(unsupported=name)
    return DeviceChain(compressor, crc, swap, stored_shape, axes)


class _Destination:
    """One request's output buffer, and whether its units are boxes (slices only)."""

    __slots__ = ("basic", "buffer", "vectorized")

    def __init__(self, indexer: Indexer, buffer: Any, projections: Sequence[ChunkProjection]) -> None:
        self.buffer = buffer
        self.vectorized = indexer.mode == "vectorized"
        self.basic = not self.vectorized and all(
            is_basic(p.out_selection) and is_basic(p.chunk_selection) for p in projections  # type: ignore[arg-type]
        )


def read_into_device(layout: ChunkLayout, requests: Sequence[tuple[Indexer, Any]], backend: Backend) -> None:
    """Fill each request's device buffer (C-contiguous, ``indexer.buffer_shape``) with its
    selection, decoding on ``backend``'s device."""
    spec = layout.unit_spec
    if spec.data_type.is_variable_length:
        raise UnsupportedDataTypeError(
            f"data type {spec.data_type.name!r}: variable-length values cannot be held in GPU memory; "
            "read this array with device='cpu'"
        )
    plan = device_chain(layout.chain)
    if plan.unsupported is not None:
        gpu_fallback(plan.unsupported)
    units: list[tuple[_Destination, ChunkProjection]] = []
    for indexer, buffer in requests:
        projections = list(indexer.chunk_projections())
        dest = _Destination(indexer, buffer, projections)
        units.extend((dest, p) for p in projections)
    if not units:
        return
    per_wave = max(1, get_config().wave_bytes // max(1, spec.nbytes))
    direct = _reads_files_directly(layout, plan)
    inline = layout.store.cheap_reads

    def fetch(wave: list[tuple[_Destination, ChunkProjection]]) -> list[Any]:
        return layout.fetch([p for _, p in wave], inline=inline)

    # Staged reads: the next wave's stored bytes are read on a helper thread while this
    # wave is on the device, so storage reads overlap the device's work (and the host's
    # kernel launches). Direct reads go from the files to the device in the wave itself.
    fetcher = ThreadPoolExecutor(1, thread_name_prefix="gpuzarr-gpu-fetch")
    try:
        start = 0
        pending: Future[list[Any]] | None = None
        while start < len(units):
            wave = units[start : start + per_wave]
            if not direct:
                raws = pending.result() if pending is not None else fetch(wave)
                following = units[start + len(wave) : start + len(wave) + per_wave]
                pending = fetcher.submit(fetch, following) if following else None
            try:
                if direct:
                    _read_wave_direct(layout, plan, wave, backend)
                else:
                    _read_wave(layout, plan, wave, raws, backend)
            except Exception as exc:
                if backend.out_of_memory(exc) and per_wave > 1:
                    backend.release_memory()
                    per_wave = max(1, per_wave // 2)  # smaller waves instead of a failed read
                    if pending is not None:
                        pending.cancel()  # planned for the old wave size
                        pending = None
                    continue
                raise
            start += len(wave)
    finally:
        fetcher.shutdown(wait=True, cancel_futures=True)


def gpu_fallback(reason: str, *, writing: bool = False, lacking: str = "has no GPU implementation") -> None:
    """Announce a CPU fallback for ``reason`` (a codec the device cannot decode, or
    encode when ``writing``; ``lacking`` says what the device lacks): one warning, or
    an error under ``gpu_fallback="error"``."""
    if get_config().gpu_fallback == "error":
        raise UnsupportedCodecError(
            f"{reason} {lacking} (config gpu_fallback='error'); "
            f"{'write' if writing else 'read'} with device='cpu' "
            "or allow the CPU fallback with gpuzarr.config.set(gpu_fallback='warn')"
        )
    done = "the value is downloaded and encoded on the CPU" if writing else "chunks are decoded on the CPU and uploaded"
    warnings.warn(f"gpuzarr: {reason} {lacking}; {done}", GpuFallbackWarning, stacklevel=4)


def _read_wave(
    layout: ChunkLayout,
    plan: DeviceChain,
    wave: list[tuple[_Destination, ChunkProjection]],
    raws: list[Any],
    backend: Backend,
) -> None:
    spec = layout.unit_spec
    stored = [i for i, raw in enumerate(raws) if raw is not None]
    missing = [i for i, raw in enumerate(raws) if raw is None]
    if missing:
        _fill(layout, [wave[i] for i in missing], backend)
    if not stored:
        return
    units = [wave[i] for i in stored]
    blobs = [as_memoryview(raws[i]) for i in stored]
    coords = [p.chunk_coords for _, p in units]
    slot = _align(spec.nbytes)
    if plan.unsupported is not None:
        _scatter(layout, units, _decode_on_host(layout, coords, blobs, slot, backend), slot, backend)
        return
    _finish(layout, plan, units, _decode_on_device(layout, plan, coords, blobs, slot, backend), slot, backend)


def _finish(
    layout: ChunkLayout,
    plan: DeviceChain,
    units: Sequence[tuple[_Destination, ChunkProjection]],
    decoded: Any,
    slot: int,
    backend: Backend,
) -> None:
    """Step 4 and 5: byte order, transpose, then the scatter into the outputs."""
    decoded, slot = _to_array_order(layout, plan, decoded, slot, len(units), backend)
    _scatter(layout, units, decoded, slot, backend)


def _to_array_order(
    layout: ChunkLayout, plan: DeviceChain, decoded: Any, slot: int, n: int, backend: Backend
) -> tuple[Any, int]:
    """Step 4: native byte order and the array's axis order; returns (units, slot)."""
    spec = layout.unit_spec
    if plan.swap_itemsize:
        offsets = np.arange(n, dtype=np.int64) * slot
        backend.kernels.byteswap(decoded, offsets, np.full(n, spec.nbytes, np.int64), plan.swap_itemsize)
    if plan.axes is not None:
        decoded, slot = _transpose(decoded, slot, n, plan, spec.dtype, backend), spec.nbytes
    return decoded, slot


def decode_units(
    layout: ChunkLayout, plan: DeviceChain, coords: Sequence[tuple[int, ...]], raws: Sequence[Any], backend: Backend
) -> tuple[Any, int]:
    """Whole units decoded on the device from their stored bytes (read-modify-write).

    Returns ``(units, slot)``: unit i, in array order and native byte order, is
    ``units[i * slot :][: unit nbytes]``. ``raws`` must all be stored (not None).
    """
    slot = _align(layout.unit_spec.nbytes)
    blobs = [as_memoryview(raw) for raw in raws]
    if plan.unsupported is not None:
        return _decode_on_host(layout, coords, blobs, slot, backend), slot
    decoded = _decode_on_device(layout, plan, coords, blobs, slot, backend)
    return _to_array_order(layout, plan, decoded, slot, len(blobs), backend)


def _reads_files_directly(layout: ChunkLayout, plan: DeviceChain) -> bool:
    """Whether this read fetches with ``Backend.read_files`` (``config.gpu_io="kvikio"``):
    local files, and chains whose device decode needs no look at the stored bytes on the
    host (no crc32c trailer, no zlib or LZ4 header, no blosc header)."""
    return (
        get_config().gpu_io == "kvikio"
        and hasattr(layout.store, "file_path")
        and plan.unsupported is None
        and not plan.crc32c
        and plan.compressor in (None, "zstd", "gzip")
    )


#: Tries of a direct read whose objects are replaced while it runs, before the wave is
#: read through the store instead (which pins one version of each object).
_DIRECT_READ_TRIES = 3


def _replaced(store: Any, versions: dict[str, Hashable]) -> bool:
    """Whether any object changed version since ``versions`` were taken."""
    return any(store.object_token(key) != token for key, token in versions.items())


def _read_wave_direct(
    layout: ChunkLayout, plan: DeviceChain, wave: list[tuple[_Destination, ChunkProjection]], backend: Backend
) -> None:
    """A wave read file range by file range straight into device memory, then decoded.

    The files are read by path, after their ranges were located (a shard's from its
    index): a shard replaced in between (a write renames a new file over it) would be
    read at its old ranges. So the objects' versions are compared after the read, and
    the wave is read again when one changed.
    """
    projections = [p for _, p in wave]
    file_path = layout.store.file_path  # type: ignore[attr-defined]
    for _ in range(_DIRECT_READ_TRIES):
        versions: dict[str, Hashable] = {}
        try:
            located = layout.locate(projections, versions)
        except CorruptChunkError:
            if _replaced(layout.store, versions):  # (an index applied to a newer shard)
                continue
            raise
        stored = [i for i, where in enumerate(located) if where is not None]
        reads = [located[i] for i in stored]
        if reads:
            sizes = np.array([n for _, _, n in reads], dtype=np.int64)  # type: ignore[misc]
            offsets = _slot_offsets(sizes)
            device_input = backend.empty(int(offsets[-1] + sizes[-1]))
            backend.read_files([(file_path(key), off, n) for key, off, n in reads], device_input, offsets)  # type: ignore[misc]
        if not _replaced(layout.store, versions):
            break
    else:
        _read_wave(layout, plan, wave, layout.fetch(projections, inline=layout.store.cheap_reads), backend)
        return
    missing = [wave[i] for i, where in enumerate(located) if where is None]
    if missing:
        _fill(layout, missing, backend)
    if not stored:
        return
    units = [wave[i] for i in stored]
    coords = [p.chunk_coords for _, p in units]
    slot = _align(layout.unit_spec.nbytes)

    def stream_of(i: int) -> np.ndarray:  # (no crc32c trailer or stream header here: see _reads_files_directly)
        return backend.to_host(device_input[int(offsets[i]) : int(offsets[i] + sizes[i])])

    decoded = _decompress_device_input(layout, plan, coords, device_input, offsets, sizes, slot, backend, stream_of)
    _finish(layout, plan, units, decoded, slot, backend)


def _pack(blobs: Sequence[memoryview], starts: Sequence[int], ends: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``[start:end]`` part of each blob packed at aligned offsets: (buffer, offsets)."""
    sizes = np.array([e - s for s, e in zip(starts, ends, strict=True)], dtype=np.int64)
    offsets = _slot_offsets(sizes)
    buffer = np.zeros(int(offsets[-1] + sizes[-1]) if len(blobs) else 0, dtype=np.uint8)
    for blob, s, e, off in zip(blobs, starts, ends, offsets.tolist(), strict=True):
        buffer[off : off + e - s] = np.frombuffer(blob, dtype=np.uint8, count=e - s, offset=s)
    return buffer, offsets


def _decode_on_device(
    layout: ChunkLayout,
    plan: DeviceChain,
    coords: Sequence[tuple[int, ...]],
    blobs: Sequence[memoryview],
    slot: int,
    backend: Backend,
) -> Any:
    """Steps 1-3 of the module docstring; the decoded units at multiples of ``slot``."""
    nbytes = layout.unit_spec.nbytes
    n = len(blobs)
    trailer = 4 if plan.crc32c else 0
    for c, blob in zip(coords, blobs, strict=True):
        if len(blob) < trailer:
            raise CorruptChunkError(f"{layout.describe(c)}: codec 'crc32c': {len(blob)} bytes is too short")
    starts = [0] * n
    ends = [len(b) - trailer for b in blobs]
    # A stream header that cannot be right is reported after the crc32c check: a chunk
    # that fails its checksum is reported as such, as the CPU path reports it.
    bad_header: tuple[int, str] | None = None
    if plan.compressor == "zlib":  # raw deflate between the 2-byte header and the Adler-32
        for i, blob in enumerate(blobs):
            if ends[i] < 6 or not valid_zlib_header(blob[0], blob[1]):
                bad_header = bad_header or (i, "codec 'zlib': invalid stream header")
                starts[i] = ends[i] = 0
            else:
                starts[i], ends[i] = 2, ends[i] - 4
    elif plan.compressor == "lz4":  # numcodecs' 4-byte size prefix, then a raw LZ4 block
        for i, blob in enumerate(blobs):
            if ends[i] < 4 or int.from_bytes(blob[:4], "little") != nbytes:
                bad_header = bad_header or (i, "codec 'lz4': size prefix does not match the chunk")
                starts[i] = ends[i] = 0
            else:
                starts[i] = 4
    # The streams to decompress, uploaded once. When they start at byte 0 (zstd, gzip,
    # raw) they are exactly the crc32c payloads too, so the checksum needs no upload of
    # its own; zlib and LZ4 streams start after a header nvCOMP must not see.
    streams: tuple[np.ndarray, Any] | None = None
    if plan.compressor != "blosc":
        host, offsets = _pack(blobs, starts, ends)
        streams = (offsets, backend.upload(host))
    if plan.crc32c:
        stored_crc = np.array([int.from_bytes(b[-4:], "little") for b in blobs], dtype=np.uint32)
        payload_sizes = np.array([len(b) - 4 for b in blobs], dtype=np.int64)
        if streams is not None and not any(starts) and ends == payload_sizes.tolist():
            payload_offsets, payload = streams
        else:
            full, payload_offsets = _pack(blobs, [0] * n, payload_sizes.tolist())
            payload = backend.upload(full)
        computed = backend.to_host(backend.kernels.crc32c(payload, payload_offsets, payload_sizes))
        bad = np.flatnonzero(computed.astype(np.uint32) != stored_crc)
        if bad.size:
            i = int(bad[0])
            raise ChecksumError(
                f"{layout.describe(coords[i])}: codec 'crc32c': checksum mismatch "
                f"(stored {int(stored_crc[i]):#010x}, computed {int(computed[i]):#010x})"
            )
    if bad_header is not None:
        raise CorruptChunkError(f"{layout.describe(coords[bad_header[0]])}: {bad_header[1]}")
    if streams is None:
        return _blosc(layout, coords, [b[: len(b) - trailer] for b in blobs], slot, backend)
    offsets, device_input = streams
    sizes = np.array([e - s for s, e in zip(starts, ends, strict=True)], dtype=np.int64)

    def stream_of(i: int) -> memoryview:  # the compressor's whole stream (headers included)
        return blobs[i][: len(blobs[i]) - trailer]

    decoded = _decompress_device_input(layout, plan, coords, device_input, offsets, sizes, slot, backend, stream_of)
    if plan.compressor == "zlib":
        # nvCOMP decoded the raw deflate between header and trailer: the trailer's
        # Adler-32 of the decoded bytes is checked here (zlib checks it on the CPU).
        stored = np.array([int.from_bytes(b[e : e + 4], "big") for b, e in zip(blobs, ends, strict=True)], np.uint32)
        computed = backend.to_host(
            backend.kernels.adler32(decoded, np.arange(n, dtype=np.int64) * slot, np.full(n, nbytes, np.int64))
        )
        mismatched = np.flatnonzero(np.asarray(computed).astype(np.uint32) != stored).tolist()
        _decode_on_host_into(layout, coords, mismatched, stream_of, decoded, slot, backend)
    return decoded


def _decompress_device_input(
    layout: ChunkLayout,
    plan: DeviceChain,
    coords: Sequence[tuple[int, ...]],
    device_input: Any,
    offsets: np.ndarray,
    sizes: np.ndarray,
    slot: int,
    backend: Backend,
    stream_of: Callable[[int], Buffer],
) -> Any:
    """Step 3 for streams already on the device (``offsets``/``sizes`` into
    ``device_input``): the decoded units at multiples of ``slot``. ``stream_of(i)`` is
    stream i on the host, whole, for the CPU codec to decode when the device's fails."""
    nbytes = layout.unit_spec.nbytes
    n = len(coords)
    decoded = backend.empty(slot * n)
    decoded_offsets = np.arange(n, dtype=np.int64) * slot
    if plan.compressor is None:
        for c, size in zip(coords, sizes.tolist(), strict=True):
            if size != nbytes:
                raise CorruptChunkError(f"{layout.describe(c)}: holds {size} bytes, expected {nbytes}")
        backend.kernels.copy_ranges(device_input, decoded, offsets, decoded_offsets, sizes)
        return decoded
    codec = {"zlib": "deflate"}.get(plan.compressor, plan.compressor)
    batch = StreamBatch(codec, offsets, sizes, decoded_offsets, np.full(n, nbytes, np.int64), np.arange(n))
    suspects = backend.decompress(batch, device_input, decoded) | _checksum_mismatches(
        plan.compressor, device_input, offsets, sizes, decoded, decoded_offsets, nbytes, backend
    )
    _decode_on_host_into(layout, coords, np.flatnonzero(suspects).tolist(), stream_of, decoded, slot, backend)
    return decoded


#: A gzip member header's ID bytes and compression method (deflate), RFC 1952 2.3.1.
_GZIP_MAGIC_AND_METHOD = (0x1F, 0x8B, 0x08)
#: The reserved bits of a gzip member's header flags: zlib and libdeflate refuse a
#: header that sets them.
_GZIP_RESERVED_FLAGS = 0xE0


def stream_ends(
    device_input: Any, offsets: np.ndarray, sizes: np.ndarray, head: int, tail: int, backend: Backend
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``head`` and last ``tail`` bytes of every stream on the device, fetched
    with one copy launch: host ``(n, head)`` and ``(n, tail)`` ``uint8`` arrays (zeros
    where a stream is shorter than ``head + tail``, which callers treat as invalid)."""
    n, row = len(sizes), head + tail
    whole = sizes >= row
    ends = backend.empty(n * row)
    rows = np.arange(n, dtype=np.int64) * row
    src = np.concatenate([offsets, offsets + sizes - tail]).astype(np.int64)
    dst = np.concatenate([rows, rows + head])
    widths = np.concatenate([np.where(whole, head, 0), np.where(whole, tail, 0)]).astype(np.int64)
    backend.kernels.copy_ranges(device_input, ends, np.where(widths > 0, src, 0), dst, widths)
    host = np.asarray(backend.to_host(ends)).reshape(n, row) * whole[:, None].astype(np.uint8)
    return host[:, :head], host[:, head:]


def _checksum_mismatches(
    compressor: str | None,
    device_input: Any,
    offsets: np.ndarray,
    sizes: np.ndarray,
    decoded: Any,
    decoded_offsets: np.ndarray,
    nbytes: int,
    backend: Backend,
) -> np.ndarray:
    """Where a stream's own checksum disagrees with its decoded bytes (host bool array).

    Checked here rather than trusted to nvCOMP, whose gzip and zstd decompressors are
    documented to operate on valid input only: a corrupt stream must not decode
    silently. gzip: every member's CRC-32 and size trailer. zstd: the content checksum
    of frames written with one (frames without one cannot be checked). A chunk of
    several members or frames fails too (the trailer read is the last one's), and is
    then decoded on the CPU, which takes them all. A gzip member whose header the CPU
    codec refuses (wrong ID bytes or method, reserved flags set) is reported too, so
    that it raises as on the CPU path.
    """
    n = len(sizes)
    counts = np.full(n, nbytes, np.int64)
    if compressor == "gzip":
        head = GZIP_MIN_MEMBER_NBYTES - GZIP_TRAILER_NBYTES
        heads, tails = stream_ends(device_input, offsets, sizes, head, GZIP_TRAILER_NBYTES, backend)
        trailers = np.ascontiguousarray(tails).view("<u4").reshape(n, 2)
        computed = np.asarray(backend.to_host(backend.kernels.crc32(decoded, decoded_offsets, counts)))
        short = sizes < GZIP_MIN_MEMBER_NBYTES
        odd_header = (heads[:, :3] != np.array(_GZIP_MAGIC_AND_METHOD, np.uint8)).any(axis=1) | (
            heads[:, 3] & _GZIP_RESERVED_FLAGS != 0
        )
        bad_trailer = (trailers[:, 0] != computed.astype(np.uint32)) | (trailers[:, 1] != nbytes % 2**32)
        return short | odd_header | bad_trailer
    mismatched = np.zeros(n, dtype=bool)
    if compressor == "zstd":
        heads, tails = stream_ends(device_input, offsets, sizes, ZSTD_DESCRIPTOR_OFFSET + 1, 4, backend)
        magic = np.ascontiguousarray(heads[:, :4]).view("<u4").reshape(n)
        descriptors = heads[:, ZSTD_DESCRIPTOR_OFFSET]
        checked = np.flatnonzero((magic == ZSTD_MAGIC) & (descriptors & ZSTD_CHECKSUM_FLAG != 0))
        if checked.size:
            hashes = backend.kernels.xxh64(decoded, decoded_offsets[checked], counts[checked])
            computed = np.asarray(backend.to_host(hashes)).astype(np.uint64) & np.uint64(0xFFFFFFFF)
            mismatched[checked] = computed != np.ascontiguousarray(tails[checked]).view("<u4").reshape(-1)
    return mismatched


def _host_decompress(layout: ChunkLayout, coords: Sequence[int], stream: Buffer) -> np.ndarray:
    """Step 3 for one unit on the CPU: ``stream`` (the stored bytes less any crc32c
    trailer) decompressed by the chain's compressor into the bytes the device stage
    leaves (stored byte order and layout; step 4 follows), as ``uint8``. A corrupt
    stream raises the CPU codec's typed error, naming the unit."""
    compressor = layout.chain.bytes_bytes[0]  # device chains: the compressor, then maybe crc32c
    try:
        data = compressor.cpu_decode(stream, layout.chain.array_spec)
        check_decoded_size(data, layout.unit_spec.nbytes, compressor.name)
    except (ChecksumError, CorruptChunkError) as exc:
        raise type(exc)(f"{layout.describe(coords)}: {exc}") from None
    return np.frombuffer(as_memoryview(data), dtype=np.uint8)


def _decode_on_host_into(
    layout: ChunkLayout,
    coords: Sequence[tuple[int, ...]],
    positions: Sequence[int],
    stream_of: Callable[[int], Buffer],
    decoded: Any,
    slot: int,
    backend: Backend,
    *,
    suspects: bool = True,
) -> None:
    """Units at ``positions`` decompressed by the CPU codec into their slots of
    ``decoded``. ``suspects``: units the device failed or could not verify; the CPU
    codec decides (a corrupt unit raises its typed error, also under
    ``gpu_fallback="error"``, for every unit is decoded before the warning), and valid
    ones (a form the device does not take) are used after :func:`gpu_fallback`'s
    warning (an error under ``gpu_fallback="error"``)."""
    if not positions:
        return
    units = [_host_decompress(layout, coords[i], stream_of(i)) for i in positions]
    if suspects:
        _announce_valid_on_cpu(layout, coords[positions[0]])
    nbytes = layout.unit_spec.nbytes
    for i, unit in zip(positions, units, strict=True):
        backend.kernels.copy_ranges(backend.upload(unit), decoded, [0], [i * slot], [nbytes])


def _announce_valid_on_cpu(layout: ChunkLayout, coords: Sequence[int]) -> None:
    """The fallback warning for a unit the device failed or could not verify, and the
    CPU codec decoded."""
    name = layout.chain.bytes_bytes[0].name
    gpu_fallback(f"{layout.describe(coords)} (codec {name!r})", lacking="did not decode on the GPU but is valid")


def _blosc(
    layout: ChunkLayout, coords: Sequence[tuple[int, ...]], blobs: Sequence[memoryview], slot: int, backend: Backend
) -> Any:
    """The stages of a blosc plan on the device; decoded units at multiples of ``slot``."""
    nbytes = layout.unit_spec.nbytes
    blobs = list(blobs)
    replaced: set[int] = set()
    while True:
        try:
            plan = plan_blosc_batch(
                blobs,
                expected_nbytes=nbytes,
                chunk_alignment=SLOT_ALIGNMENT,
                input_alignment=backend.input_alignment,
                output_alignment=backend.output_alignment,
            )
            break
        except CorruptChunkError as exc:
            # The plan names chunks by position ("chunk <i>: ..."). c-blosc decides: a
            # chunk it refuses raises its error; one it reads (a layout the plan does
            # not take) is decoded by it and planned as a plain copy of what it decoded.
            message = str(exc)
            position = int(message.split()[1].rstrip(":")) if message.startswith("chunk ") else -1
            if position < 0 or position in replaced:
                raise CorruptChunkError(f"codec 'blosc': {message}") from None
            unit = _host_decompress(layout, coords[position], blobs[position])
            _announce_valid_on_cpu(layout, coords[position])
            blobs[position] = _memcpyed_blosc_chunk(unit)
            replaced.add(position)
    kernels = backend.kernels
    source = backend.upload(pack_input(blobs, plan))
    kernels.copy_ranges(source, source, plan.gather.src_offsets, plan.gather.dst_offsets, plan.gather.sizes)
    work = backend.empty(plan.workspace_nbytes)
    kernels.copy_ranges(source, work, plan.copies.src_offsets, plan.copies.dst_offsets, plan.copies.sizes)
    suspects: set[int] = set()  # chunks with a stream nvCOMP failed or a zlib Adler-32 disagrees
    for batch in plan.streams.values():
        failed = backend.decompress(batch, source, work)
        if batch.adler32 is not None:
            computed = np.asarray(backend.to_host(kernels.adler32(work, batch.decomp_offsets, batch.decomp_sizes)))
            failed = failed | (computed.astype(np.uint32) != batch.adler32)
        suspects.update(batch.chunk[failed].tolist())
    kernels.copy_ranges(work, work, plan.bounces.src_offsets, plan.bounces.dst_offsets, plan.bounces.sizes)
    for sb in plan.shuffles:
        run = kernels.unshuffle if sb.kind == "shuffle" else kernels.bitunshuffle
        run(work, work, sb.src_offsets, sb.dst_offsets, sb.sizes, sb.typesize)
    # plan.decoded_offsets are multiples of SLOT_ALIGNMENT, nbytes apart rounded up: = slot
    assert np.array_equal(plan.decoded_offsets, np.arange(len(blobs), dtype=np.int64) * slot)
    if plan.cpu_chunks.size:
        reasons = ", ".join(sorted(set(plan.cpu_reasons.values())))
        gpu_fallback("blosc chunks with " + reasons, lacking="have no GPU implementation")
    # The blosc codec alone on the CPU (not the whole chain: byte order and transposes
    # are still to come for these units, as for the others).
    _decode_on_host_into(layout, coords, plan.cpu_chunks.tolist(), blobs.__getitem__, work, slot, backend,
                         suspects=False)
    _decode_on_host_into(layout, coords, sorted(suspects), blobs.__getitem__, work, slot, backend)
    return work


def _memcpyed_blosc_chunk(data: np.ndarray) -> memoryview:
    """``data`` (bytes as ``uint8``) as a blosc chunk that stores them as they are (the
    memcpy-ed form c-blosc writes for incompressible data)."""
    nbytes = data.size
    header = bytes([BLOSC_FORMAT_VERSION, BLOSC_CODEC_FORMAT_VERSION, BLOSC_MEMCPYED, 1])
    header += b"".join(n.to_bytes(4, "little") for n in (nbytes, max(1, nbytes), nbytes + BLOSC_HEADER_NBYTES))
    return memoryview(header + data.tobytes())


def _decode_on_host(
    layout: ChunkLayout, coords: Sequence[tuple[int, ...]], blobs: Sequence[memoryview], slot: int, backend: Backend
) -> Any:
    """The CPU fallback: decode each unit with its chain, upload them all at once."""
    host = np.zeros(slot * len(blobs), dtype=np.uint8)
    nbytes = layout.unit_spec.nbytes
    for i, (c, blob) in enumerate(zip(coords, blobs, strict=True)):
        unit = np.ascontiguousarray(layout.decode(c, blob))
        host[i * slot : i * slot + nbytes] = unit.reshape(-1).view(np.uint8)
    return backend.upload(host)


def _transpose(decoded: Any, slot: int, n: int, plan: DeviceChain, dtype: np.dtype, backend: Backend) -> Any:
    """Units stored transposed, turned around as one array operation over the wave."""
    xp = backend.xp
    assert plan.stored_shape is not None and plan.axes is not None
    count = int(np.prod(plan.stored_shape))
    items = decoded[: n * slot].view(dtype).reshape(n, slot // dtype.itemsize)[:, :count]
    stacked = items.reshape(n, *plan.stored_shape)
    turned = xp.ascontiguousarray(stacked.transpose(0, *(a + 1 for a in plan.axes)))
    return turned.reshape(-1).view(np.uint8)


def _by_destination(units: Sequence[tuple[_Destination, ChunkProjection]]) -> list[tuple[_Destination, list[int]]]:
    """The positions in ``units`` of each destination's units (one launch serves each)."""
    groups: dict[int, tuple[_Destination, list[int]]] = {}
    for i, (dest, _) in enumerate(units):
        groups.setdefault(id(dest), (dest, []))[1].append(i)
    return list(groups.values())


def _scatter(
    layout: ChunkLayout,
    units: Sequence[tuple[_Destination, ChunkProjection]],
    decoded: Any,
    slot: int,
    backend: Backend,
) -> None:
    """Place decoded units: one launch per destination for box selections."""
    unit_shape = layout.unit_shape
    spec = layout.unit_spec
    for dest, members in _by_destination(units):
        if dest.basic:
            boxes = plan_scatter([units[i][1] for i in members], unit_shape, dest.buffer.shape).boxes
            backend.kernels.scatter(decoded, np.array(members, dtype=np.int64) * slot, dest.buffer, unit_shape, boxes)
            continue
        for i in members:
            unit = decoded[i * slot : i * slot + spec.nbytes].view(spec.dtype).reshape(unit_shape)
            place_projection(dest.buffer, units[i][1], unit, dest.vectorized)


def _fill(layout: ChunkLayout, units: Sequence[tuple[_Destination, ChunkProjection]], backend: Backend) -> None:
    """Set the units that are not stored to the fill value: one launch per destination
    for box selections."""
    fill = np.asarray(layout.metadata.fill_value, dtype=layout.unit_spec.dtype)
    for dest, members in _by_destination(units):
        projections = [units[i][1] for i in members]
        if dest.basic:
            boxes = plan_scatter(projections, layout.unit_shape, dest.buffer.shape).boxes
            backend.kernels.fill(dest.buffer, boxes, fill.tobytes())
            continue
        for projection in projections:
            fill_projection(dest.buffer, projection, fill, dest.vectorized)
