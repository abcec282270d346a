"""Host-side planning of the GPU write path's compression stage, in pure NumPy.

The GPU writer compresses a *wave* of chunks with one :meth:`Backend.compress
<gpuzarr.gpu.backend.Backend.compress>` call per codec: nvCOMP's batched compressors
produce bare bitstreams (zstd frames, raw deflate, raw LZ4 blocks), so the containers
the stored formats need are added afterwards, on the device, by a few copy launches.
This module plans that work; nothing here imports CuPy.

* :func:`plan_frames`: single-stream containers around whole chunks: gzip members,
  zlib streams, numcodecs' size-prefixed LZ4, zstd frames as they are.
* :func:`plan_blosc_encode` then :func:`layout_blosc_encode`: c-blosc 1.x chunks. The
  first cuts the chunks into blocks, plans the (bit)shuffle launch and the one
  compression call over all blocks; the second, given the compressed sizes, lays the
  chunks out (header, block offsets, per-block size + stream, with c-blosc's fallbacks
  to raw blocks and memcpy-ed chunks).

Both end in an :class:`Assembly`: the packed output buffer (chunk i at ``offsets[i]``,
``sizes[i]`` bytes) is built from four sources with one ``copy_ranges`` launch each:
host-made bytes uploaded once (``meta``: headers, size fields), the compressed streams
(``payload``), the uncompressed side (``raw``: stored blocks and chunks), and the
trailer checksums computed on the device (``trailers``: gzip's CRC-32, zlib's
Adler-32 over the uncompressed bytes). :func:`assemble_on_host`,
:func:`frame_batch_on_host` and :func:`encode_blosc_batch_on_host` run plans with the
CPU libraries and the NumPy kernel references; they are the executable specification
of the writer's stages, and the tests check their output with numcodecs and with
gpuzarr's own decoders (the blosc ones also with the read side's
:func:`~gpuzarr.gpu.plan.plan_blosc_batch`).

Blosc chunks are written as c-blosc does with its "never split" mode: flag 0x10 set,
every block one stream (``blosc_d`` honours the flag, so numcodecs and every c-blosc
1.x decode them); the block size is c-blosc's ``compute_blocksize`` for that mode. The
chunk format is described in :mod:`gpuzarr.gpu.plan`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from gpuzarr.codecs.base import Buffer, as_memoryview
from gpuzarr.codecs.zstd import ZSTD_CHECKSUM_FLAG, ZSTD_DESCRIPTOR_OFFSET
from gpuzarr.gpu import reference
from gpuzarr.gpu.plan import (
    BLOSC_CODECS,
    BLOSC_DOBITSHUFFLE,
    BLOSC_DOSHUFFLE,
    BLOSC_HEADER_NBYTES,
    BLOSC_MEMCPYED,
    BLOSC_NOSPLIT,
    NVCOMP_CODECS,
    CompressBatch,
    CopyBatch,
    ShuffleBatch,
    _bitshuffled,
    align,
    aligned_slots,
    host_compress,
)

__all__ = [
    "BLOSC_ENCODE_CNAMES",
    "FRAME_CHECKSUMS",
    "FRAME_COMPRESSORS",
    "GZIP_HEADER",
    "Assembly",
    "BloscEncodeLayout",
    "BloscEncodePlan",
    "FramePlan",
    "assemble",
    "assemble_on_host",
    "blosc_blocksize",
    "checksum_bytes",
    "compress_batch_on_host",
    "encode_blosc_batch_on_host",
    "encode_frames_on_host",
    "frame_batch_on_host",
    "host_checksums",
    "layout_blosc_encode",
    "pack_encode_input",
    "plan_blosc_encode",
    "plan_frames",
    "zlib_header",
]

#: The 10-byte gzip member header: ID1 ID2, CM 8 (deflate), no flags, MTIME 0 (so the
#: output is reproducible), XFL 0 (nvCOMP's levels do not map onto zlib's), OS 255
#: (unknown). Decoders ignore MTIME, XFL and OS; numcodecs writes the time and OS 255.
GZIP_HEADER = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF])
#: The Backend.compress codec whose bitstream each container wraps.
FRAME_COMPRESSORS = {"gzip": "deflate", "zlib": "deflate", "lz4": "lz4", "zstd": "zstd"}
#: The trailer checksum of each container (over the uncompressed bytes) and its byte order
#: (zstd's only when the codec asks for it: the low 32 bits of XXH64).
FRAME_CHECKSUMS: dict[str, tuple[str, Literal["little", "big"]]] = {
    "gzip": ("crc32", "little"),
    "zlib": ("adler32", "big"),
    "zstd": ("xxh64", "little"),
}

#: Blosc compressors the GPU writer can produce (nvCOMP has no blosclz or snappy encoder).
BLOSC_ENCODE_CNAMES = ("lz4", "lz4hc", "zstd", "zlib")
BLOSC_VERSION_FORMAT = 2
#: c-blosc's format version of the lz4, zlib and zstd streams (header byte 1).
BLOSC_CODEC_VERSION_FORMAT = 1
#: c-blosc stores buffers below this size memcpy-ed, without trying to compress.
BLOSC_MIN_BUFFERSIZE = 128
BLOSC_MAX_TYPESIZE = 255
BLOSC_MAX_BUFFERSIZE = 2**31 - 1 - BLOSC_HEADER_NBYTES
BLOSC_MAX_BLOCKSIZE = (2**31 - 1 - BLOSC_MAX_TYPESIZE * 4) // 3
_L1 = 32 * 1024
_BLOSC_FORMAT_CODE = {name: code for code, name in BLOSC_CODECS.items()}


def _i64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _copies(*rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> CopyBatch:
    """A CopyBatch from groups of (src offsets, dst offsets, sizes) columns."""
    cols = [np.concatenate([_i64(r[k]) for r in rows]) if rows else np.zeros(0, np.int64) for k in range(3)]
    return CopyBatch(*cols)


def _le32(values: np.ndarray) -> np.ndarray:
    """Each value as 4 little-endian bytes: shape ``(n, 4)``."""
    return _i64(values).astype("<u4").view(np.uint8).reshape(-1, 4)


def checksum_bytes(values: Any, byteorder: Literal["little", "big"], xp: Any = np) -> Any:
    """The bytes of 32-bit checksums as a trailer holds them, 4 per value, concatenated.

    Written with shifts and masks only, so it runs on CuPy arrays (``xp=cupy``) too:
    CuPy has no non-native byte orders.
    """
    shifts = [0, 8, 16, 24] if byteorder == "little" else [24, 16, 8, 0]
    v = xp.asarray(values).astype(xp.uint32).reshape(-1, 1)
    return ((v >> xp.asarray(shifts, dtype=xp.uint32)) & xp.uint32(0xFF)).astype(xp.uint8).reshape(-1)


def host_checksums(kind: str, data: np.ndarray, offsets: Any, sizes: Any, kernels: Any = None) -> np.ndarray:
    """``kind`` (``"crc32"``, ``"adler32"`` or ``"xxh64"``, its low 32 bits) of each range
    of ``data``, as ``uint32``.

    What the device checksum kernels compute: ``kernels.<kind>(data, offsets, sizes)``
    when ``kernels`` has it, else zlib's functions (the authority they are tested
    against) or the XXH64 reference.
    """
    run = getattr(kernels, kind, None) or (reference.xxh64 if kind == "xxh64" else None)
    if run is not None:
        return (np.asarray(run(data, offsets, sizes)) & 0xFFFFFFFF).astype(np.uint32)
    fn = {"crc32": zlib.crc32, "adler32": zlib.adler32}[kind]
    view = memoryview(data)
    return np.array([fn(view[o : o + n]) for o, n in zip(_i64(offsets).tolist(), _i64(sizes).tolist(), strict=True)],
                    dtype=np.uint32)


# --------------------------------------------------------------------------------------
# assembling the output


@dataclass(frozen=True)
class Assembly:
    """How to build the packed output buffer of a batch of encoded chunks.

    Chunk i is ``out[offsets[i] : + sizes[i]]`` of an ``nbytes`` buffer (starts aligned;
    the padding between chunks is never read). Four copy launches fill it, in any order
    (their ranges do not overlap):

    * ``meta_copies``: from ``meta`` (host bytes, uploaded once) to the output;
    * ``payload``: from the compressed buffer :meth:`Backend.compress
      <gpuzarr.gpu.backend.Backend.compress>` returned;
    * ``raw``: from the *source*, the buffer the compression batch read (stored blocks
      and chunks);
    * ``trailers``: from the trailer checksums as bytes (:func:`checksum_bytes` of
      ``checksum`` over ``checksum_offsets`` / ``checksum_sizes`` of the source, in
      ``checksum_byteorder``; checksum j is at bytes ``4*j``). Empty when ``checksum``
      is None.
    """

    offsets: np.ndarray  # int64, per chunk
    sizes: np.ndarray  # int64, per chunk
    nbytes: int
    meta: np.ndarray  # uint8
    meta_copies: CopyBatch
    payload: CopyBatch
    raw: CopyBatch
    checksum: str | None  # "crc32", "adler32" or None
    checksum_byteorder: Literal["little", "big"]
    checksum_offsets: np.ndarray  # int64, into the source
    checksum_sizes: np.ndarray  # int64
    trailers: CopyBatch
    #: Single bytes written over the others last: ``out[patch_positions[k]] = patch_values[k]``
    #: (zstd frame descriptors given the content checksum flag).
    patch_positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), kw_only=True)
    patch_values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8), kw_only=True)

    def split(self, out: np.ndarray | bytes) -> list[bytes]:
        """The encoded chunks, from the output buffer on the host."""
        view = memoryview(out)
        return [bytes(view[o : o + n]) for o, n in zip(self.offsets.tolist(), self.sizes.tolist(), strict=True)]


def assemble_on_host(
    assembly: Assembly,
    compressed: np.ndarray,
    source: np.ndarray | None = None,
    checksums: np.ndarray | None = None,
    kernels: Any = reference,
) -> np.ndarray:
    """Build an assembly's output buffer on the host, launch by launch as the GPU does.

    ``checksums`` (``uint32``, one per trailer) are computed from ``source`` with
    :func:`host_checksums` when not given. ``kernels`` provides ``copy_ranges`` (and,
    where it has them, the checksum functions).
    """
    if len(assembly.trailers) and assembly.checksum is not None and checksums is None:
        if source is None:
            raise ValueError("pass the trailer checksums or the source buffer to compute them from")
        checksums = host_checksums(
            assembly.checksum, source, assembly.checksum_offsets, assembly.checksum_sizes, kernels
        )
    return assemble(assembly, compressed, source, checksums, kernels)


def assemble(
    assembly: Assembly,
    compressed: Any,
    source: Any,
    checksums: Any,
    kernels: Any,
    *,
    empty: Callable[[int], Any] | None = None,
    upload: Callable[[np.ndarray], Any] | None = None,
    xp: Any = np,
) -> Any:
    """Build an assembly's output buffer with ``kernels.copy_ranges`` launches.

    On a device, ``empty`` allocates the output, ``upload`` copies the host-made bytes
    (``meta``) over and ``xp`` is the device's array module; ``checksums`` are then the
    device's checksum values (``uint32``). Defaults: host NumPy buffers.
    """
    out = empty(assembly.nbytes) if empty is not None else np.zeros(assembly.nbytes, dtype=np.uint8)

    def copy(src: Any, batch: CopyBatch) -> None:
        if len(batch):
            if src is None:
                raise ValueError("this assembly copies from the source buffer: pass source")
            kernels.copy_ranges(src, out, batch.src_offsets, batch.dst_offsets, batch.sizes)

    copy(assembly.meta if upload is None or not len(assembly.meta_copies) else upload(assembly.meta),
         assembly.meta_copies)
    copy(compressed, assembly.payload)
    copy(source, assembly.raw)
    if len(assembly.trailers) and assembly.checksum is not None:
        copy(checksum_bytes(checksums, assembly.checksum_byteorder, xp), assembly.trailers)
    if len(assembly.patch_positions):  # last: they overwrite bytes of the payload
        n = len(assembly.patch_positions)
        rows, ones = np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64)
        values = assembly.patch_values if upload is None else upload(assembly.patch_values)
        kernels.copy_ranges(values, out, rows, assembly.patch_positions, ones)
    return out


def compress_batch_on_host(
    batch: CompressBatch,
    src: np.ndarray,
    compress: Callable[[str, memoryview, int | None], bytes] = host_compress,
    alignment: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :meth:`Backend.compress <gpuzarr.gpu.backend.Backend.compress>` returns, on the
    host: ``(dst, offsets, sizes)`` with stream i at ``dst[offsets[i]:][:sizes[i]]``,
    starts aligned, ``compress`` standing in for nvCOMP."""
    view = memoryview(src)
    streams = [compress(batch.codec, view[o : o + n], batch.level)
               for o, n in zip(batch.offsets.tolist(), batch.sizes.tolist(), strict=True)]
    sizes = np.array([len(s) for s in streams], dtype=np.int64)
    offsets = aligned_slots(0, sizes, alignment)
    dst = np.zeros(int(offsets[-1] + sizes[-1]) if len(sizes) else 0, dtype=np.uint8)
    for s, off in zip(streams, offsets.tolist(), strict=True):
        dst[off : off + len(s)] = np.frombuffer(s, dtype=np.uint8)
    return dst, offsets, sizes


# --------------------------------------------------------------------------------------
# single-stream containers: gzip, zlib, numcodecs LZ4, zstd


def zlib_header(level: int | None) -> bytes:
    """The 2-byte zlib header (RFC 1950) zlib writes at ``level``: CMF 0x78 (deflate, 32 KiB
    window), FLEVEL from the level, FCHECK making the pair a multiple of 31."""
    return zlib.compress(b"", -1 if level is None else level)[:2]


@dataclass(frozen=True)
class FramePlan(Assembly):
    """The framing of one compression batch's streams into ``codec`` containers.

    Framed chunk i is ``prefix + stream i + suffix``:

    * ``"gzip"``: :data:`GZIP_HEADER`, raw deflate, CRC-32 (LE, trailer) and the
      uncompressed size mod 2**32 (LE, host-made);
    * ``"zlib"``: :func:`zlib_header`, raw deflate, Adler-32 (big-endian, trailer);
    * ``"lz4"``: the uncompressed size (LE int32, numcodecs' LZ4 format), raw LZ4 block;
    * ``"zstd"``: the frame as nvCOMP wrote it.

    Checksums are over the uncompressed chunks: the compression batch's ranges of the
    source. ``raw`` is always empty.
    """

    codec: str

    @property
    def passthrough(self) -> bool:
        """Whether the compressed buffer already is the output (zstd streams packed at
        the output's offsets): the writer may skip the copies."""
        return (
            not len(self.meta_copies)
            and not len(self.trailers)
            and np.array_equal(self.payload.src_offsets, self.payload.dst_offsets)
        )


def plan_frames(
    codec: str,
    batch: CompressBatch,
    compressed_offsets: Any,
    compressed_sizes: Any,
    *,
    output_alignment: int = 8,
    zstd_descriptors: np.ndarray | None = None,
) -> FramePlan:
    """Plan the containers around the streams of ``batch`` once compressed.

    Args:
        codec: ``"gzip"``, ``"zlib"``, ``"lz4"`` (numcodecs' format) or ``"zstd"``.
        batch: The compression batch (its codec must be ``FRAME_COMPRESSORS[codec]``):
            its ranges are the uncompressed chunks, its level picks the zlib header.
        compressed_offsets, compressed_sizes: Where Backend.compress put each stream.
        output_alignment: Alignment of each framed chunk's start in the output.
        zstd_descriptors: To give zstd frames a content checksum, each compressed
            frame's header descriptor byte (``uint8``, read from the compressed
            stream): a frame without the checksum flag gets the low 32 bits of XXH64
            of its chunk appended and the flag set (a patch); one with it is kept.

    Raises:
        ValueError: Unknown codec, a batch of another codec, lengths that disagree, or
            an LZ4 chunk over numcodecs' 2 GiB limit.
    """
    if codec not in FRAME_COMPRESSORS:
        raise ValueError(f"no framing for codec {codec!r} (expected one of {tuple(FRAME_COMPRESSORS)})")
    if batch.codec != FRAME_COMPRESSORS[codec]:
        raise ValueError(f"{codec} frames wrap {FRAME_COMPRESSORS[codec]} streams, the batch holds {batch.codec}")
    coff, csize, nbytes = _i64(compressed_offsets), _i64(compressed_sizes), _i64(batch.sizes)
    if not len(coff) == len(csize) == len(nbytes):
        raise ValueError(f"{len(nbytes)} chunks, {len(coff)} compressed offsets, {len(csize)} compressed sizes")
    n = len(nbytes)
    idx = np.arange(n, dtype=np.int64)
    checksum, byteorder = FRAME_CHECKSUMS.get(codec, (None, "little"))
    # Which chunks get a trailer checksum: every one of a container that has it; zstd
    # frames only when asked, and only those the compressor wrote without one.
    trailed = np.full(len(nbytes), checksum is not None)
    if codec == "zstd":
        if zstd_descriptors is None:
            checksum, trailed = None, np.zeros(len(nbytes), dtype=bool)
        else:
            descriptors = np.asarray(zstd_descriptors, dtype=np.uint8).reshape(-1)
            if len(descriptors) != len(nbytes):
                raise ValueError(f"{len(nbytes)} chunks, {len(descriptors)} zstd frame descriptors")
            trailed = (descriptors & ZSTD_CHECKSUM_FLAG) == 0
    if codec == "gzip":
        prefix, suffix = len(GZIP_HEADER), 8
        meta = np.concatenate([np.frombuffer(GZIP_HEADER, np.uint8), _le32(nbytes % 2**32).reshape(-1)])
    elif codec == "zlib":
        prefix, suffix = 2, 4
        meta = np.frombuffer(zlib_header(batch.level), np.uint8).copy()
    elif codec == "lz4":
        if np.any(nbytes > 2**31 - 1):
            raise ValueError("numcodecs' LZ4 format holds chunks up to 2 GiB - 1")
        prefix, suffix = 4, 0
        meta = _le32(nbytes).reshape(-1)
    else:
        prefix, suffix, meta = 0, np.where(trailed, 4, 0), np.zeros(0, np.uint8)
    sizes = prefix + csize + suffix
    offsets = aligned_slots(0, sizes, output_alignment)
    total = int(offsets[-1] + sizes[-1]) if n else 0
    payload_at = offsets + prefix
    trailer_at = payload_at + csize
    zeros, fours = np.zeros(n, np.int64), np.full(n, 4, np.int64)
    if codec == "gzip":
        meta_copies = _copies((zeros, offsets, np.full(n, prefix)), (prefix + 4 * idx, trailer_at + 4, fours))
    elif codec == "zlib":
        meta_copies = _copies((zeros, offsets, np.full(n, prefix)))
    elif codec == "lz4":
        meta_copies = _copies((4 * idx, offsets, fours))
    else:
        meta_copies = _copies()
    with_trailer = checksum is not None and trailed.any()
    patched = np.flatnonzero(trailed) if codec == "zstd" else np.zeros(0, np.int64)
    ranks = np.cumsum(trailed) - 1  # trailer j belongs to the j-th trailed chunk
    return FramePlan(
        offsets=offsets,
        sizes=sizes,
        nbytes=total,
        meta=meta,
        meta_copies=meta_copies,
        payload=_copies((coff, payload_at, csize)),
        raw=_copies(),
        checksum=checksum,
        checksum_byteorder=byteorder,
        checksum_offsets=_i64(batch.offsets)[trailed] if with_trailer else np.zeros(0, np.int64),
        checksum_sizes=nbytes[trailed] if with_trailer else np.zeros(0, np.int64),
        trailers=_copies((4 * ranks[trailed], trailer_at[trailed], fours[trailed])) if with_trailer else _copies(),
        patch_positions=offsets[patched] + ZSTD_DESCRIPTOR_OFFSET,
        patch_values=np.asarray(zstd_descriptors, dtype=np.uint8).reshape(-1)[patched] | ZSTD_CHECKSUM_FLAG
        if len(patched) else np.zeros(0, np.uint8),
        codec=codec,
    )


def frame_batch_on_host(
    plan: FramePlan,
    compressed: np.ndarray,
    checksums: np.ndarray | None = None,
    *,
    source: np.ndarray | None = None,
    kernels: Any = reference,
) -> np.ndarray:
    """Frame on the host: the output buffer of ``plan`` from the compressed buffer and
    the trailer checksums (one ``uint32`` per chunk; computed from ``source`` if None)."""
    return assemble_on_host(plan, compressed, source, checksums, kernels)


def encode_frames_on_host(
    codec: str,
    chunks: Sequence[Buffer],
    level: int | None = None,
    *,
    compress: Callable[[str, memoryview, int | None], bytes] = host_compress,
    kernels: Any = reference,
    alignment: int = 8,
    zstd_checksum: bool = False,
) -> list[bytes]:
    """The writer's whole single-stream path on the host: pack the chunks, one batched
    compression, frame. Returns the encoded chunks."""
    sizes = np.array([len(as_memoryview(c)) for c in chunks], dtype=np.int64)
    offsets = aligned_slots(0, sizes, alignment)
    source = np.zeros(int(offsets[-1] + sizes[-1]) if len(sizes) else 0, dtype=np.uint8)
    for chunk, off in zip(chunks, offsets.tolist(), strict=True):
        data = np.frombuffer(as_memoryview(chunk), dtype=np.uint8)
        source[off : off + data.size] = data
    batch = CompressBatch(FRAME_COMPRESSORS[codec], offsets, sizes, level)
    compressed, coff, csize = compress_batch_on_host(batch, source, compress, alignment)
    descriptors = compressed[coff + ZSTD_DESCRIPTOR_OFFSET] if codec == "zstd" and zstd_checksum else None
    plan = plan_frames(codec, batch, coff, csize, output_alignment=alignment, zstd_descriptors=descriptors)
    return plan.split(frame_batch_on_host(plan, compressed, source=source, kernels=kernels))


# --------------------------------------------------------------------------------------
# blosc


def blosc_blocksize(nbytes: Any, typesize: int, cname: str, clevel: int, blocksize: int = 0) -> np.ndarray:
    """c-blosc 1.x's block size for buffers of ``nbytes`` (elementwise), in never-split mode.

    Automatic (``blocksize`` 0): 32 KiB (64 KiB for the high-ratio codecs lz4hc, zlib
    and zstd) scaled by the level (/4, /2, 1, 2, 4, 4, 8, 8, 8, 8 for levels 0-9, and
    x2 more at 9 for the high-ratio codecs), for buffers of at least 32 KiB; else the
    whole buffer. An explicit block size is clamped to [128, BLOSC_MAX_BLOCKSIZE]. Then
    at most the buffer, rounded down to a multiple of the typesize, and 1 for buffers
    smaller than one element. c-blosc's split mode would enlarge automatic block sizes
    further; blocks here are one stream each, so its never-split sizes apply (checked
    against c-blosc run with ``BLOSC_SPLITMODE=NEVER`` by the tests).
    """
    n = _i64(nbytes)
    if blocksize:
        bs = np.full(n.shape, min(max(blocksize, BLOSC_MIN_BUFFERSIZE), BLOSC_MAX_BLOCKSIZE), dtype=np.int64)
    else:
        hcr = cname in ("lz4hc", "zlib", "zstd")
        base = _L1 * (2 if hcr else 1)
        scaled = {0: base // 4, 1: base // 2, 2: base, 3: base * 2, 4: base * 4, 5: base * 4}.get(clevel, base * 8)
        if clevel == 9 and hcr:
            scaled *= 2
        bs = np.where(n >= _L1, scaled, n)
    bs = np.minimum(bs, n)
    bs = np.where(bs > typesize, bs // typesize * typesize, bs)
    return np.where(n < typesize, 1, bs)


@dataclass(frozen=True)
class BloscEncodePlan:
    """How to compress a wave of chunks into c-blosc 1.x chunks with one call per stage.

    One device buffer, the *workspace* (``workspace_nbytes``): the writer places chunk i's
    bytes at ``input_offsets[i]`` (chunks in ``[0, input_nbytes)``); behind them is the
    scratch region for shuffled blocks and for blocks gathered to aligned starts. Stages:

    1. ``shuffles`` (0 or 1 launch): ``reference.shuffle`` / ``bitshuffle`` (the forward
       kernels) of blocks, input -> scratch;
    2. ``gather`` (``copy_ranges``, workspace -> workspace): unshuffled blocks whose
       start is misaligned for nvCOMP;
    3. ``compress``: one :meth:`Backend.compress <gpuzarr.gpu.backend.Backend.compress>`
       over the workspace; stream k is block k, ``compress.offsets`` say where its bytes
       to compress lie (and what a raw-stored block copies);
    4. :func:`layout_blosc_encode` with the compressed sizes, and its :class:`Assembly`.

    Blocks are listed chunk by chunk: chunk i's are ``chunk_blocks[i] : chunk_blocks[i+1]``
    (none for the chunks ``memcpyed`` up front: smaller than 128 bytes, or level 0, as
    c-blosc stores them).
    """

    cname: str
    clevel: int
    shuffle: Literal["noshuffle", "shuffle", "bitshuffle"]
    typesize: int  # as written in the headers (c-blosc writes 1 for typesizes over 255)
    flags: int  # header flags of compressed chunks; memcpy-ed ones add BLOSC_MEMCPYED
    nbytes: np.ndarray  # int64, per chunk: uncompressed size
    blocksizes: np.ndarray  # int64, per chunk: the header's blocksize
    memcpyed: np.ndarray  # bool, per chunk: stored memcpy-ed without compressing
    input_offsets: np.ndarray  # int64, per chunk
    input_nbytes: int
    workspace_nbytes: int
    chunk_blocks: np.ndarray  # int64, nchunks + 1
    block_chunk: np.ndarray  # int64, per block
    block_offsets: np.ndarray  # int64, per block: its unshuffled bytes in the workspace
    block_sizes: np.ndarray  # int64, per block
    shuffles: list[ShuffleBatch]
    gather: CopyBatch
    compress: CompressBatch

    def __len__(self) -> int:
        return len(self.nbytes)


def plan_blosc_encode(
    sizes: Any,
    typesize: int,
    shuffle: Literal["noshuffle", "shuffle", "bitshuffle"],
    cname: str,
    clevel: int,
    blocksize: int = 0,
    *,
    chunk_alignment: int = 256,
    input_alignment: int = 8,
    max_blocksize: int | None = None,
) -> BloscEncodePlan:
    """Plan the blosc compression of chunks of ``sizes`` bytes (vectorised over blocks).

    Args:
        sizes: Uncompressed size of each chunk.
        typesize: Element size the shuffle works on (over 255: 1, as c-blosc).
        shuffle: ``"noshuffle"``, ``"shuffle"`` or ``"bitshuffle"``.
        cname: ``"lz4"``, ``"lz4hc"``, ``"zstd"`` or ``"zlib"``.
        clevel: 0-9; 0 stores every chunk memcpy-ed.
        blocksize: 0 for c-blosc's automatic choice, else the block size to use
            (clamped and rounded as c-blosc does, see :func:`blosc_blocksize`).
        chunk_alignment: Alignment of each chunk's start in the workspace.
        input_alignment: Alignment nvCOMP's compressors need for their inputs; scratch
            slots are aligned to it and misaligned unshuffled blocks gathered.
        max_blocksize: Cap on the block size (rounded down to the typesize), for a
            compressor with a stream size limit (older nvCOMP deflate: 64 KiB). The
            header records the block size used, so the chunks stay valid for every
            decoder; they only differ from c-blosc's choice.

    Raises:
        ValueError: An unsupported cname, shuffle, level, typesize or size.
    """
    if cname not in BLOSC_ENCODE_CNAMES:
        raise ValueError(f"blosc cname {cname!r} has no GPU encoder (expected one of {BLOSC_ENCODE_CNAMES})")
    if shuffle not in ("noshuffle", "shuffle", "bitshuffle"):
        raise ValueError(f"blosc shuffle must be noshuffle, shuffle or bitshuffle, got {shuffle!r}")
    if not 0 <= clevel <= 9:
        raise ValueError(f"blosc clevel must be 0-9, got {clevel}")
    if typesize < 1 or blocksize < 0 or (max_blocksize is not None and max_blocksize < 1):
        raise ValueError(f"blosc typesize and max_blocksize must be positive, blocksize non-negative "
                         f"({typesize}, {max_blocksize}, {blocksize})")
    nbytes = _i64(sizes)
    if np.any((nbytes < 0) | (nbytes > BLOSC_MAX_BUFFERSIZE)):
        raise ValueError(f"blosc chunks hold 0 to {BLOSC_MAX_BUFFERSIZE} bytes")
    ts = typesize if typesize <= BLOSC_MAX_TYPESIZE else 1
    fmt = "lz4" if cname == "lz4hc" else cname
    flags = (_BLOSC_FORMAT_CODE[fmt] << 5) | BLOSC_NOSPLIT
    flags |= {"noshuffle": 0, "shuffle": BLOSC_DOSHUFFLE, "bitshuffle": BLOSC_DOBITSHUFFLE}[shuffle]
    blocksizes = blosc_blocksize(nbytes, ts, cname, clevel, blocksize)
    if max_blocksize is not None:
        blocksizes = np.minimum(blocksizes, max_blocksize // ts * ts or max_blocksize)
    memcpyed = (nbytes < BLOSC_MIN_BUFFERSIZE) | (clevel == 0)

    n = len(nbytes)
    input_offsets = aligned_slots(0, nbytes, chunk_alignment)
    input_nbytes = align(int(input_offsets[-1] + nbytes[-1]), chunk_alignment) if n else 0
    nblocks = np.where(memcpyed, 0, -(-nbytes // blocksizes))
    chunk_blocks = np.concatenate([[0], np.cumsum(nblocks)]).astype(np.int64)
    block_chunk = np.repeat(np.arange(n, dtype=np.int64), nblocks)
    within = np.arange(int(chunk_blocks[-1]), dtype=np.int64) - chunk_blocks[block_chunk]
    start = within * blocksizes[block_chunk]
    block_offsets = input_offsets[block_chunk] + start
    block_sizes = np.minimum(blocksizes[block_chunk], nbytes[block_chunk] - start)

    # Per block, as c-blosc's blosc_c (and the read side's plan_blosc_batch) does it.
    if shuffle == "shuffle" and ts > 1:
        kind: str | None = "shuffle"
        shuffled = np.ones(len(block_sizes), dtype=bool)
    elif shuffle == "bitshuffle":
        kind, shuffled = "bitshuffle", _bitshuffled(block_sizes, ts)
    else:
        kind, shuffled = None, np.zeros(len(block_sizes), dtype=bool)
    misaligned = ~shuffled & (block_offsets % input_alignment != 0)
    in_scratch = shuffled | misaligned
    slots = aligned_slots(input_nbytes, block_sizes[in_scratch], input_alignment)
    stream_offsets = block_offsets.copy()
    stream_offsets[in_scratch] = slots
    workspace_nbytes = int(slots[-1] + block_sizes[in_scratch][-1]) if len(slots) else input_nbytes
    shuffles = []
    if kind is not None and shuffled.any():
        shuffles.append(ShuffleBatch(kind, ts, block_offsets[shuffled], stream_offsets[shuffled],  # type: ignore[arg-type]
                                     block_sizes[shuffled]))
    return BloscEncodePlan(
        cname=cname,
        clevel=clevel,
        shuffle=shuffle,
        typesize=ts,
        flags=flags,
        nbytes=nbytes,
        blocksizes=blocksizes,
        memcpyed=memcpyed,
        input_offsets=input_offsets,
        input_nbytes=input_nbytes,
        workspace_nbytes=align(workspace_nbytes, chunk_alignment),
        chunk_blocks=chunk_blocks,
        block_chunk=block_chunk,
        block_offsets=block_offsets,
        block_sizes=block_sizes,
        shuffles=shuffles,
        gather=_copies((block_offsets[misaligned], stream_offsets[misaligned], block_sizes[misaligned])),
        compress=CompressBatch(NVCOMP_CODECS[fmt], stream_offsets, block_sizes.copy(), clevel),
    )


@dataclass(frozen=True)
class BloscEncodeLayout(Assembly):
    """The output of a :class:`BloscEncodePlan` once its streams are compressed.

    Chunk i (``sizes[i]`` = its cbytes) is its 16-byte header, then unless memcpy-ed the
    block offsets (int32 LE each, from the chunk start) and per block an int32 LE csize
    and the stream: compressed (``payload``; for zlib between the 2-byte zlib header in
    ``meta`` and the Adler-32 in ``trailers``), or the block's bytes as compressed,
    i.e. shuffled (``raw``, from the workspace) where compressing did not make it
    smaller. A memcpy-ed chunk is its header and its unshuffled bytes (``raw``).
    """

    memcpyed: np.ndarray  # bool, per chunk: stored memcpy-ed (up front, or as nothing smaller came out)
    block_raw: np.ndarray  # bool, per block: stored as is (meaningless for blocks of memcpy-ed chunks)


def layout_blosc_encode(
    plan: BloscEncodePlan, compressed_sizes: Any, compressed_offsets: Any, *, output_alignment: int = 8
) -> BloscEncodeLayout:
    """Lay out the blosc chunks of ``plan`` given where Backend.compress put each stream.

    c-blosc's fallbacks: a stream is stored compressed only when smaller than its block
    (a csize equal to the block size means "stored raw" to the decoder); a chunk whose
    total would exceed ``nbytes + 16`` is stored memcpy-ed (header with flag 0x02, then
    the unshuffled bytes; cbytes = nbytes + 16, what c-blosc's decoder checks).

    Raises:
        ValueError: The compressed sizes or offsets do not match the plan's streams.
    """
    csize, coff = _i64(compressed_sizes), _i64(compressed_offsets)
    nstreams = len(plan.compress)
    if len(csize) != nstreams or len(coff) != nstreams:
        raise ValueError(f"the plan has {nstreams} streams, got {len(csize)} sizes and {len(coff)} offsets")
    n = len(plan)
    zlib_wrapped = plan.cname == "zlib"
    head = 2 if zlib_wrapped else 0  # a zlib stream: 2-byte header, deflate, 4-byte Adler-32
    bchunk, bsize = plan.block_chunk, plan.block_sizes
    stream_size = csize + (6 if zlib_wrapped else 0)
    block_raw = stream_size >= bsize
    stored = np.where(block_raw, bsize, stream_size)
    cum = np.concatenate([[0], np.cumsum(4 + stored)]).astype(np.int64)
    nblocks = np.diff(plan.chunk_blocks)
    header_end = BLOSC_HEADER_NBYTES + 4 * nblocks
    cbytes = header_end + cum[plan.chunk_blocks[1:]] - cum[plan.chunk_blocks[:-1]]
    memcpyed = plan.memcpyed | (cbytes > plan.nbytes + BLOSC_HEADER_NBYTES)
    cbytes = np.where(memcpyed, plan.nbytes + BLOSC_HEADER_NBYTES, cbytes)
    offsets = aligned_slots(0, cbytes, output_alignment)
    total = int(offsets[-1] + cbytes[-1]) if n else 0

    # Blocks of the chunks stored compressed: where their csize and stream go.
    kept = ~memcpyed[bchunk]
    bstart = header_end[bchunk] + cum[:-1] - cum[plan.chunk_blocks[bchunk]]  # from the chunk start
    at = offsets[bchunk] + bstart  # the block's csize in the output
    packed = kept & ~block_raw
    raw = kept & block_raw

    # meta: per chunk header + bstarts, then per kept block its csize (+ zlib header).
    chunk_meta = BLOSC_HEADER_NBYTES + 4 * np.where(memcpyed, 0, nblocks)
    chunk_meta_at = np.cumsum(chunk_meta) - chunk_meta
    block_meta = np.where(packed, 4 + head, 4)[kept]
    block_meta_at = int(chunk_meta.sum()) + np.cumsum(block_meta) - block_meta
    meta = np.zeros(int(chunk_meta.sum() + block_meta.sum()), dtype=np.uint8)
    header = np.zeros((n, BLOSC_HEADER_NBYTES), dtype=np.uint8)
    header[:, 0] = BLOSC_VERSION_FORMAT
    header[:, 1] = BLOSC_CODEC_VERSION_FORMAT
    header[:, 2] = plan.flags | np.where(memcpyed, BLOSC_MEMCPYED, 0)
    header[:, 3] = plan.typesize
    header[:, 4:8], header[:, 8:12], header[:, 12:16] = _le32(plan.nbytes), _le32(plan.blocksizes), _le32(cbytes)
    four = np.arange(4, dtype=np.int64)
    meta[chunk_meta_at[:, None] + np.arange(BLOSC_HEADER_NBYTES)] = header
    within = (np.arange(len(bchunk), dtype=np.int64) - plan.chunk_blocks[bchunk])[kept]
    meta[(chunk_meta_at[bchunk[kept]] + BLOSC_HEADER_NBYTES + 4 * within)[:, None] + four] = _le32(bstart[kept])
    meta[block_meta_at[:, None] + four] = _le32(stored[kept])
    if zlib_wrapped:
        zhead = block_meta_at[packed[kept]] + 4
        header_bytes = np.frombuffer(zlib_header(plan.clevel), np.uint8)
        meta[zhead], meta[zhead + 1] = header_bytes[0], header_bytes[1]

    payload_at = at[packed] + 4 + head
    stored_chunks = memcpyed & (plan.nbytes > 0)
    return BloscEncodeLayout(
        offsets=offsets,
        sizes=cbytes,
        nbytes=total,
        meta=meta,
        meta_copies=_copies((chunk_meta_at, offsets, chunk_meta), (block_meta_at, at[kept], block_meta)),
        payload=_copies((coff[packed], payload_at, csize[packed])),
        raw=_copies(
            (plan.compress.offsets[raw], at[raw] + 4, bsize[raw]),
            (plan.input_offsets[stored_chunks], offsets[stored_chunks] + BLOSC_HEADER_NBYTES,
             plan.nbytes[stored_chunks]),
        ),
        checksum="adler32" if zlib_wrapped else None,
        checksum_byteorder="big",
        checksum_offsets=plan.compress.offsets[packed] if zlib_wrapped else np.zeros(0, np.int64),
        checksum_sizes=bsize[packed] if zlib_wrapped else np.zeros(0, np.int64),
        trailers=(
            _copies((4 * np.arange(int(packed.sum()), dtype=np.int64), payload_at + csize[packed],
                     np.full(int(packed.sum()), 4)))
            if zlib_wrapped
            else _copies()
        ),
        memcpyed=memcpyed,
        block_raw=block_raw,
    )


def pack_encode_input(chunks: Sequence[Buffer], plan: BloscEncodePlan) -> np.ndarray:
    """The workspace of a plan on the host: chunk i at ``input_offsets[i]``, scratch zeroed."""
    if len(chunks) != len(plan):
        raise ValueError(f"the plan is for {len(plan)} chunks, got {len(chunks)}")
    work = np.zeros(plan.workspace_nbytes, dtype=np.uint8)
    for i, (chunk, off) in enumerate(zip(chunks, plan.input_offsets.tolist(), strict=True)):
        data = np.frombuffer(as_memoryview(chunk), dtype=np.uint8)
        if data.size != plan.nbytes[i]:
            raise ValueError(f"chunk {i} holds {data.size} bytes, the plan says {int(plan.nbytes[i])}")
        work[off : off + data.size] = data
    return work


def encode_blosc_batch_on_host(
    plan: BloscEncodePlan,
    chunks: Sequence[Buffer] | np.ndarray,
    kernels: Any = reference,
    compress: Callable[[str, memoryview, int | None], bytes] = host_compress,
) -> list[bytes]:
    """Run a blosc encode plan stage by stage on the host; returns the blosc chunks.

    ``chunks`` are the uncompressed chunks, or the workspace already packed (a 1-d
    ``uint8`` array of at least ``input_nbytes`` bytes, chunks at ``input_offsets``).
    ``kernels`` (the NumPy references by default, the host build of the CUDA kernels in
    the tests) runs ``shuffle`` / ``bitshuffle`` / ``copy_ranges``, ``compress`` stands
    in for nvCOMP. This is the executable specification of the GPU writer's blosc stage.
    """
    if isinstance(chunks, np.ndarray):
        work = np.zeros(plan.workspace_nbytes, dtype=np.uint8)
        work[: plan.input_nbytes] = chunks.reshape(-1).view(np.uint8)[: plan.input_nbytes]
    else:
        work = pack_encode_input(chunks, plan)
    for sb in plan.shuffles:
        run = kernels.shuffle if sb.kind == "shuffle" else kernels.bitshuffle
        run(work, work, sb.src_offsets, sb.dst_offsets, sb.sizes, sb.typesize)
    kernels.copy_ranges(work, work, plan.gather.src_offsets, plan.gather.dst_offsets, plan.gather.sizes)
    compressed, coff, csize = compress_batch_on_host(plan.compress, work, compress)
    layout = layout_blosc_encode(plan, csize, coff)
    return layout.split(assemble_on_host(layout, compressed, work, kernels=kernels))
