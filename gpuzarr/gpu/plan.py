"""Host-side planning of GPU batches, in pure NumPy (no CuPy, testable on any machine).

The GPU executor decodes a *wave* of chunks with one call per stage: one nvCOMP batched
decompression per codec, one launch per kernel. Its host side turns the chunks' headers
and the selection's projections into the flat arrays those calls take. This module holds
that planning:

* :func:`plan_blosc_batch`: blosc chunks -> the streams one nvCOMP call per codec
  decompresses, the raw byte ranges to copy, and the per-block (bit)unshuffles.
  :func:`decode_blosc_batch_on_host` executes such a plan with the CPU libraries and the
  NumPy kernel references; it is the executable specification of the GPU executor's
  blosc stage and what the tests check against ``numcodecs.Blosc``.
* :func:`plan_scatter`: basic-selection chunk projections -> the boxes of the scatter
  and fill kernels (``kernels/scatter.cu``).

Blosc (c-blosc 1.x, what numcodecs writes) chunk format, little-endian throughout::

    byte 0     format version (2)         byte 1  codec format version
    byte 2     flags: 0x01 byte shuffle, 0x02 memcpy-ed (stored raw), 0x04 bitshuffle,
               0x10 blocks not split, bits 5-7 codec (0 blosclz, 1 lz4/lz4hc, 2 snappy,
               3 zlib, 4 zstd)
    byte 3     typesize                   bytes 4-7   nbytes (decoded size)
    bytes 8-11 blocksize                  bytes 12-15 cbytes (size of this chunk)
    then, unless memcpy-ed, nblocks int32 "bstarts" (offset of each block's data), and
    per block, per split stream: int32 csize + csize bytes.

A chunk is cut into blocks of ``blocksize`` bytes (the last one, the *leftover* block,
may be shorter). Unless the 0x10 flag is set, every block but the leftover one is stored
as ``typesize`` split streams of ``blocksize / typesize`` bytes when the typesize is at
most 16 and the block holds at least 128 elements (c-blosc's rule): stream j holds byte
plane j of the shuffled block. A stream whose csize equals its decoded size is stored
raw (blosc falls back to that when compression does not pay). Shuffling is applied per
block after the streams are decompressed: byte shuffle when typesize > 1, bitshuffle
when the block holds at least one element (c-blosc leaves blocks whose element count is
not a multiple of 8 unshuffled; see :func:`_bitshuffled`).

On the GPU: lz4 and lz4hc streams are raw LZ4 blocks (nvCOMP LZ4), zstd streams are
zstd frames (nvCOMP zstd), zlib streams are zlib-wrapped deflate, planned as the raw
deflate inside (nvCOMP deflate), their Adler-32 trailers kept in the plan for the
executor to check against the decoded bytes. blosclz and snappy chunks are left to the CPU
(``BloscPlan.cpu_chunks``). A header c-blosc 1.x would refuse (format version other
than 2, codec format version other than 1, the reserved flag 0x08, a block larger than
the chunk) raises CorruptChunkError, as does any stream table that does not add up; the
executor then lets c-blosc decide (it raises, or decodes a layout the plan does not
take).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numcodecs
import numcodecs.lz4
import numcodecs.zstd
import numpy as np

from gpuzarr.codecs.base import Buffer, as_memoryview
from gpuzarr.errors import CorruptChunkError
from gpuzarr.gpu import reference
from gpuzarr.indexing import ChunkProjection

__all__ = [
    "BLOSC_CODECS",
    "BloscHeader",
    "BloscPlan",
    "CompressBatch",
    "CopyBatch",
    "NVCOMP_CODECS",
    "ScatterPlan",
    "ShuffleBatch",
    "StreamBatch",
    "align",
    "aligned_slots",
    "decode_blosc_batch_on_host",
    "host_compress",
    "host_decompress",
    "pack_input",
    "parse_blosc_header",
    "plan_blosc_batch",
    "plan_scatter",
    "valid_zlib_header",
]

BLOSC_HEADER_NBYTES = 16
BLOSC_DOSHUFFLE = 0x01
BLOSC_MEMCPYED = 0x02
BLOSC_DOBITSHUFFLE = 0x04
BLOSC_RESERVED_FLAG = 0x08
BLOSC_NOSPLIT = 0x10
#: The blosc format version c-blosc 1.x writes, and the only one it reads.
BLOSC_FORMAT_VERSION = 2
#: The codec format version c-blosc 1.x writes for every codec.
BLOSC_CODEC_FORMAT_VERSION = 1
#: c-blosc 1.x splits a block into typesize streams only for typesizes up to this...
BLOSC_MAX_SPLITS = 16
#: ...and blocks of at least this many elements (its MIN_BUFFERSIZE).
BLOSC_MIN_SPLIT_ELEMENTS = 128
#: Codec of a blosc chunk by the format code in bits 5-7 of its flags.
BLOSC_CODECS = {0: "blosclz", 1: "lz4", 2: "snappy", 3: "zlib", 4: "zstd"}
#: The nvCOMP batched decompressor for the streams of each blosc codec the GPU decodes.
NVCOMP_CODECS = {"lz4": "lz4", "zstd": "zstd", "zlib": "deflate"}


def align(n: int, alignment: int) -> int:
    """``n`` rounded up to a multiple of ``alignment``."""
    return -(-n // alignment) * alignment


def aligned_slots(start: int, sizes: np.ndarray, alignment: int) -> np.ndarray:
    """Offsets of consecutive aligned slots of ``sizes`` bytes from ``start`` on."""
    padded = -(-sizes // alignment) * alignment
    return align(start, alignment) + (np.cumsum(padded) - padded).astype(np.int64)


# --------------------------------------------------------------------------------------
# blosc headers


@dataclass(frozen=True)
class BloscHeader:
    """The 16-byte header of a c-blosc 1.x chunk."""

    version: int
    versionlz: int
    flags: int
    typesize: int
    nbytes: int
    blocksize: int
    cbytes: int

    @property
    def codec(self) -> str:
        """The compressor's name (``"lz4"`` also for lz4hc, which shares its format)."""
        return BLOSC_CODECS.get(self.flags >> 5, f"unknown codec format {self.flags >> 5}")

    @property
    def memcpyed(self) -> bool:
        """Whether the data follows the header uncompressed (and unshuffled)."""
        return bool(self.flags & BLOSC_MEMCPYED)

    @property
    def shuffle(self) -> Literal["noshuffle", "shuffle", "bitshuffle"]:
        """The shuffle filter as written in the flags."""
        if self.flags & BLOSC_DOSHUFFLE:
            return "shuffle"
        if self.flags & BLOSC_DOBITSHUFFLE:
            return "bitshuffle"
        return "noshuffle"

    @property
    def split(self) -> bool:
        """Whether full blocks are stored as ``typesize`` streams: c-blosc 1.x splits
        them unless the flag 0x10 says not to, and only for typesizes up to 16 and
        blocks of at least 128 elements (chunks written before the flag existed follow
        the size rule alone)."""
        return (
            not self.flags & BLOSC_NOSPLIT
            and self.typesize <= BLOSC_MAX_SPLITS
            and self.blocksize // max(1, self.typesize) >= BLOSC_MIN_SPLIT_ELEMENTS
        )

    @property
    def nblocks(self) -> int:
        """Number of blocks, the leftover one included."""
        return -(-self.nbytes // self.blocksize) if self.blocksize else 0

    @property
    def leftover(self) -> int:
        """Size of the last, shorter block (0 when every block is full)."""
        return self.nbytes % self.blocksize if self.blocksize else 0


def parse_blosc_header(data: Buffer) -> BloscHeader:
    """Parse and check the header of one blosc chunk.

    Bytes after the header's compressed size are not part of the chunk (numcodecs
    ignores them, and so does the CPU path).

    Raises:
        CorruptChunkError: too short, or the buffer is shorter than the stored size.
    """
    view = as_memoryview(data)
    if len(view) < BLOSC_HEADER_NBYTES:
        raise CorruptChunkError(f"blosc chunk of {len(view)} bytes is shorter than its 16-byte header")
    head = bytes(view[:BLOSC_HEADER_NBYTES])
    nbytes, blocksize, cbytes = (int.from_bytes(head[i : i + 4], "little") for i in (4, 8, 12))
    header = BloscHeader(head[0], head[1], head[2], head[3], nbytes, blocksize, cbytes)
    if not BLOSC_HEADER_NBYTES <= cbytes <= len(view):
        raise CorruptChunkError(f"blosc header says the chunk holds {cbytes} bytes, it holds {len(view)}")
    # What c-blosc 1.x (numcodecs' blosc) refuses to decode, refused here too.
    if header.version != BLOSC_FORMAT_VERSION:
        raise CorruptChunkError(f"blosc format version {header.version} (c-blosc 1.x reads version 2)")
    if header.versionlz != BLOSC_CODEC_FORMAT_VERSION:
        raise CorruptChunkError(f"blosc codec format version {header.versionlz} (c-blosc 1.x reads version 1)")
    if header.flags & BLOSC_RESERVED_FLAG:
        raise CorruptChunkError("blosc header sets the reserved flag 0x08")
    if header.typesize == 0 or (nbytes and not 0 < blocksize <= nbytes):
        raise CorruptChunkError(
            f"blosc header is invalid (typesize {header.typesize}, blocksize {blocksize} for {nbytes} bytes)"
        )
    return header


def _gpu_unsupported(header: BloscHeader) -> str | None:
    """Why the GPU cannot decode this chunk (None when it can)."""
    if header.flags & BLOSC_DOSHUFFLE and header.flags & BLOSC_DOBITSHUFFLE:
        return "blosc 2 extended header"
    if not header.memcpyed and header.codec not in NVCOMP_CODECS:
        return f"codec {header.codec!r} (no nvCOMP decompressor)"
    return None


def _bitshuffled(block_nbytes: np.ndarray, typesize: int) -> np.ndarray:
    """Whether c-blosc bitshuffled blocks of these sizes (elementwise).

    c-blosc 1.x (as built into numcodecs) runs bitshuffle only when the block's element
    count is a multiple of 8 and otherwise stores the block as it is (checked against
    real blosc output by the tests). The kernels bitshuffle the first multiple of 8
    elements and copy the rest, which for the blocks planned here is the whole block.
    """
    return (block_nbytes >= typesize) & ((block_nbytes // typesize) % 8 == 0)


# --------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class CopyBatch:
    """Byte ranges for one ``copy_ranges`` launch: ``dst[d : d+n] = src[s : s+n]``."""

    src_offsets: np.ndarray  # int64
    dst_offsets: np.ndarray  # int64
    sizes: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.sizes)

    @classmethod
    def build(cls, parts: list[np.ndarray]) -> CopyBatch:
        """From blocks of ``(src, dst, size)`` rows."""
        arr = np.concatenate([np.zeros((0, 3), dtype=np.int64), *(np.asarray(p).reshape(-1, 3) for p in parts)])
        arr = arr.astype(np.int64, copy=False)
        return cls(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())


@dataclass(frozen=True)
class StreamBatch:
    """The arguments of one nvCOMP batched decompression (offsets, not pointers yet).

    Compressed stream i is ``input[comp_offsets[i] : + comp_sizes[i]]`` and decompresses
    to exactly ``decomp_sizes[i]`` bytes at ``workspace[decomp_offsets[i]]``; the
    executor must check nvCOMP's actual sizes and statuses against that.
    """

    codec: str  # nvCOMP decompressor: "lz4", "zstd" or "deflate"
    comp_offsets: np.ndarray  # int64
    comp_sizes: np.ndarray  # int64
    decomp_offsets: np.ndarray  # int64
    decomp_sizes: np.ndarray  # int64
    chunk: np.ndarray  # int64: the chunk each stream belongs to (for error messages)
    #: The Adler-32 each stream's decoded bytes must have (uint32): zlib streams planned
    #: as the raw deflate inside, whose trailer nvCOMP never sees. None: nothing to check.
    adler32: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.comp_sizes)


@dataclass(frozen=True)
class CompressBatch:
    """The arguments of one nvCOMP batched compression.

    Stream i is ``src[offsets[i] : + sizes[i]]``; :meth:`gpuzarr.gpu.backend.Backend.compress`
    returns where each compressed stream landed. ``codec`` is ``"zstd"`` (one zstd frame
    per stream), ``"deflate"`` (raw deflate, no container) or ``"lz4"`` (a raw LZ4 block,
    no size prefix). ``level`` is the codec's compression level as the Zarr metadata
    declares it; a device compressor may not honour it exactly (see the README's support
    matrix), the output is valid for the codec either way.
    """

    codec: str
    offsets: np.ndarray  # int64
    sizes: np.ndarray  # int64
    level: int | None = None

    def __len__(self) -> int:
        return len(self.sizes)


@dataclass(frozen=True)
class ShuffleBatch:
    """One (bit)unshuffle launch: blocks of one typesize, scratch -> decoded region."""

    kind: Literal["shuffle", "bitshuffle"]
    typesize: int
    src_offsets: np.ndarray  # int64, into the workspace's scratch region
    dst_offsets: np.ndarray  # int64, into the workspace's decoded region
    sizes: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.sizes)


@dataclass(frozen=True)
class BloscPlan:
    """How to decode a wave of blosc chunks on the GPU with one call per stage.

    Two device buffers:

    * ``input`` (``input_nbytes``): chunk i's bytes at ``input_offsets[i]``, then a
      staging tail where :attr:`gather` moves compressed streams that nvCOMP needs
      aligned;
    * ``workspace`` (``workspace_nbytes``): the decoded region ``[0, decoded_nbytes)``
      (chunk i decodes to ``decoded_offsets[i] : + decoded_sizes[i]``), then a scratch
      region mirroring it for shuffled blocks, then bounce slots for streams whose
      destination nvCOMP would find misaligned.

    Stages, in order: ``gather`` (input -> input), ``copies`` (input -> workspace: raw
    streams and memcpy-ed chunks), ``streams`` (one nvCOMP call per codec, input ->
    workspace), ``bounces`` (workspace -> workspace), ``shuffles`` (one launch each,
    scratch -> decoded). Chunks in ``cpu_chunks`` are decoded on the host instead and
    copied to their decoded range.
    """

    headers: list[BloscHeader]
    input_offsets: np.ndarray  # int64, per chunk
    input_nbytes: int
    decoded_offsets: np.ndarray  # int64, per chunk
    decoded_sizes: np.ndarray  # int64, per chunk
    decoded_nbytes: int
    workspace_nbytes: int
    gather: CopyBatch
    copies: CopyBatch
    streams: dict[str, StreamBatch]
    bounces: CopyBatch
    shuffles: list[ShuffleBatch]
    cpu_chunks: np.ndarray  # int64 chunk indices
    cpu_reasons: dict[int, str] = field(default_factory=dict)


class _Builder:
    """Accumulates the rows of a plan chunk by chunk."""

    def __init__(self) -> None:
        self.copies: list[np.ndarray] = []  # rows of (src, dst, size)
        # codec -> rows of (comp offset, comp size, decomp offset, decomp size, chunk,
        # expected Adler-32 or -1)
        self.streams: dict[str, list[np.ndarray]] = {}
        # (kind, typesize) -> rows of (src, dst, size)
        self.shuffles: dict[tuple[str, int], list[np.ndarray]] = {}

    def add_streams(self, codec: str, rows: np.ndarray) -> None:
        self.streams.setdefault(codec, []).append(rows)

    def add_shuffles(self, kind: str, typesize: int, rows: np.ndarray) -> None:
        self.shuffles.setdefault((kind, typesize), []).append(rows)


def _read_i32(buf: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Little-endian int32 at each position of ``buf`` (uint8), as int64."""
    b = buf[positions[:, None] + np.arange(4)].astype(np.int64)
    value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)
    return np.where(value >= 2**31, value - 2**32, value)


def _plan_chunk(
    i: int, header: BloscHeader, raw: np.ndarray, in_off: int, out_off: int, scratch_off: int, builder: _Builder
) -> None:
    """Add chunk i's streams, copies and shuffles to the plan (vectorised over blocks)."""
    where = f"chunk {i}: blosc"
    if header.nbytes == 0:
        return
    if header.memcpyed:
        if header.cbytes != BLOSC_HEADER_NBYTES + header.nbytes:
            raise CorruptChunkError(f"{where} memcpy-ed chunk of {header.cbytes} bytes should hold {header.nbytes}")
        builder.copies.append(np.array([[in_off + BLOSC_HEADER_NBYTES, out_off, header.nbytes]], dtype=np.int64))
        return
    nblocks, blocksize, ts = header.nblocks, header.blocksize, header.typesize
    header_end = BLOSC_HEADER_NBYTES + 4 * nblocks
    if header_end > header.cbytes:
        raise CorruptChunkError(f"{where} chunk is too short for its {nblocks} block offsets")
    bstarts = _read_i32(raw, BLOSC_HEADER_NBYTES + 4 * np.arange(nblocks, dtype=np.int64))
    sizes = np.full(nblocks, blocksize, dtype=np.int64)
    if header.leftover:
        sizes[-1] = header.leftover
    leftover = np.zeros(nblocks, dtype=bool)
    leftover[-1] = bool(header.leftover)

    # Per block: is it shuffled after decompression, and by what.
    if header.shuffle == "shuffle" and ts > 1:
        kind: str | None = "shuffle"
        shuffled = np.ones(nblocks, dtype=bool)
    elif header.shuffle == "bitshuffle":
        kind = "bitshuffle"
        shuffled = _bitshuffled(sizes, ts)
    else:
        kind, shuffled = None, np.zeros(nblocks, dtype=bool)
    block_dst = np.where(shuffled, scratch_off, out_off) + np.arange(nblocks, dtype=np.int64) * blocksize

    # Streams: full blocks have `ts` splits when split, the leftover block one.
    nsplits = np.where(header.split & ~leftover, ts, 1)
    if np.any(sizes % nsplits):
        raise CorruptChunkError(f"{where} block size {blocksize} does not split into {ts} streams")
    neblock = sizes // nsplits
    pos = bstarts.copy()
    if np.any((pos < header_end) | (pos > header.cbytes - 4)):
        raise CorruptChunkError(f"{where} block offsets point outside the chunk")
    rows = []
    for j in range(int(nsplits.max())):
        live = nsplits > j
        at = pos[live]
        if np.any(at > header.cbytes - 4):
            raise CorruptChunkError(f"{where} stream header past the end of the chunk")
        csize = _read_i32(raw, at)
        if np.any((csize < 0) | (at + 4 + csize > header.cbytes)):
            raise CorruptChunkError(f"{where} stream reaches past the end of the chunk")
        dst = block_dst[live] + j * neblock[live]
        rows.append(np.stack([at + 4, csize, dst, neblock[live]], axis=1))
        pos[live] = at + 4 + csize
    table = np.concatenate(rows)
    comp_off, comp_size, dst, dsize = table.T
    raw_stored = comp_size == dsize  # blosc's "incompressible: stored as is"
    builder.copies.append(np.stack([comp_off[raw_stored] + in_off, dst[raw_stored], dsize[raw_stored]], axis=1))
    packed = ~raw_stored
    if packed.any():
        offsets, lengths = comp_off[packed] + in_off, comp_size[packed]
        adler = np.full(len(lengths), -1, dtype=np.int64)
        if header.codec == "zlib":
            offsets, lengths, adler = _strip_zlib(raw, comp_off[packed], lengths, where)
            offsets = offsets + in_off
        builder.add_streams(
            NVCOMP_CODECS[header.codec],
            np.stack([offsets, lengths, dst[packed], dsize[packed], np.full(len(lengths), i), adler], axis=1),
        )
    if kind is not None and shuffled.any():
        starts = np.arange(nblocks, dtype=np.int64)[shuffled] * blocksize
        builder.add_shuffles(
            kind, ts, np.stack([scratch_off + starts, out_off + starts, sizes[shuffled]], axis=1)
        )


def valid_zlib_header(cmf: Any, flg: Any) -> Any:
    """Whether the two bytes ``cmf``, ``flg`` open a stream zlib itself inflates:
    deflate (CM 8), a window of at most 32 KiB (CINFO <= 7), a valid check (FCHECK), no
    preset dictionary. Elementwise on integer arrays, a ``bool`` on integers."""
    return ((cmf & 0x0F) == 8) & ((cmf >> 4) <= 7) & ((cmf * 256 + flg) % 31 == 0) & ((flg & 0x20) == 0)


def _strip_zlib(
    raw: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw deflate inside zlib streams (skipping the 2-byte header and the 4-byte
    Adler-32 trailer): ``(offsets, lengths, trailers)``, the trailers big-endian as stored."""
    if np.any(lengths < 6):
        raise CorruptChunkError(f"{where} zlib stream too short")
    if not np.all(valid_zlib_header(raw[offsets].astype(np.int64), raw[offsets + 1].astype(np.int64))):
        raise CorruptChunkError(f"{where} zlib stream has an invalid or preset-dictionary header")
    tail = raw[(offsets + lengths - 4)[:, None] + np.arange(4)].astype(np.int64)
    trailers = (tail[:, 0] << 24) | (tail[:, 1] << 16) | (tail[:, 2] << 8) | tail[:, 3]
    return offsets + 2, lengths - 6, trailers


def plan_blosc_batch(
    chunks: Sequence[Buffer],
    *,
    expected_nbytes: int | None = None,
    chunk_alignment: int = 256,
    input_alignment: int = 1,
    output_alignment: int = 1,
) -> BloscPlan:
    """Plan the GPU decode of a batch of blosc chunks.

    Args:
        chunks: The stored chunks (host bytes: the headers and the stream sizes inside
            the chunks are read here).
        expected_nbytes: When given, every chunk must decode to exactly this many bytes.
        chunk_alignment: Alignment of each chunk's start in the input buffer and in the
            decoded region (256 keeps every later kernel on whole-word loads).
        input_alignment: Alignment nvCOMP needs for compressed streams (its
            ``...DecompressRequiredAlignments``); misaligned streams are gathered into
            the staging tail of the input buffer.
        output_alignment: Alignment nvCOMP needs for decompressed streams; streams with
            a misaligned destination decompress into a bounce slot and are copied back.

    Raises:
        CorruptChunkError: A header or stream table is inconsistent (the message names
            the chunk by its position in ``chunks``).
    """
    n = len(chunks)
    views = [as_memoryview(c) for c in chunks]
    headers: list[BloscHeader] = []
    for i, view in enumerate(views):
        try:
            header = parse_blosc_header(view)
        except CorruptChunkError as exc:
            raise CorruptChunkError(f"chunk {i}: {exc}") from None
        if expected_nbytes is not None and header.nbytes != expected_nbytes:
            raise CorruptChunkError(
                f"chunk {i}: blosc header promises {header.nbytes} bytes, expected {expected_nbytes}"
            )
        headers.append(header)
        views[i] = view[: header.cbytes]
    input_offsets = np.zeros(n, dtype=np.int64)
    decoded_offsets = np.zeros(n, dtype=np.int64)
    in_pos = out_pos = 0
    for i, (view, header) in enumerate(zip(views, headers, strict=True)):
        input_offsets[i], decoded_offsets[i] = in_pos, out_pos
        in_pos = align(in_pos + len(view), chunk_alignment)
        out_pos = align(out_pos + header.nbytes, chunk_alignment)
    input_nbytes, decoded_nbytes = in_pos, out_pos

    builder = _Builder()
    cpu_reasons: dict[int, str] = {}
    for i, (view, header) in enumerate(zip(views, headers, strict=True)):
        reason = _gpu_unsupported(header)
        if reason is not None:
            cpu_reasons[i] = reason
            continue
        raw = np.frombuffer(view, dtype=np.uint8)
        _plan_chunk(i, header, raw, int(input_offsets[i]), int(decoded_offsets[i]),
                    decoded_nbytes + int(decoded_offsets[i]), builder)

    scratch_used = bool(builder.shuffles)
    workspace_nbytes = decoded_nbytes * (2 if scratch_used else 1)
    streams: dict[str, StreamBatch] = {}
    gather: list[np.ndarray] = []
    bounces: list[np.ndarray] = []
    for codec, parts in builder.streams.items():
        rows = np.concatenate(parts)
        comp_off, comp_size, dst, dsize, chunk, adler = (rows[:, k].copy() for k in range(6))
        if input_alignment > 1:
            moved = np.flatnonzero(comp_off % input_alignment)
            slots = aligned_slots(input_nbytes, comp_size[moved], input_alignment)
            gather.append(np.stack([comp_off[moved], slots, comp_size[moved]], axis=1))
            comp_off[moved] = slots
            input_nbytes = int(slots[-1] + comp_size[moved][-1]) if moved.size else input_nbytes
        if output_alignment > 1:
            moved = np.flatnonzero(dst % output_alignment)
            slots = aligned_slots(workspace_nbytes, dsize[moved], output_alignment)
            bounces.append(np.stack([slots, dst[moved], dsize[moved]], axis=1))
            dst[moved] = slots
            workspace_nbytes = int(slots[-1] + dsize[moved][-1]) if moved.size else workspace_nbytes
        checked = adler.astype(np.uint32) if codec == "deflate" else None  # (only zlib streams are deflate)
        streams[codec] = StreamBatch(codec, comp_off, comp_size, dst, dsize, chunk, checked)
    shuffles = []
    for (kind, ts), parts in sorted(builder.shuffles.items()):
        rows = np.concatenate(parts)
        shuffles.append(ShuffleBatch(kind, ts, rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy()))  # type: ignore[arg-type]
    return BloscPlan(
        headers=headers,
        input_offsets=input_offsets,
        input_nbytes=align(input_nbytes, chunk_alignment),
        decoded_offsets=decoded_offsets,
        decoded_sizes=np.array([h.nbytes for h in headers], dtype=np.int64),
        decoded_nbytes=decoded_nbytes,
        workspace_nbytes=workspace_nbytes,
        gather=CopyBatch.build(gather),
        copies=CopyBatch.build(builder.copies),
        streams=streams,
        bounces=CopyBatch.build(bounces),
        shuffles=shuffles,
        cpu_chunks=np.array(sorted(cpu_reasons), dtype=np.int64),
        cpu_reasons=cpu_reasons,
    )


def pack_input(chunks: Sequence[Buffer], plan: BloscPlan) -> np.ndarray:
    """The input buffer of a plan on the host: each chunk at its ``input_offsets`` entry."""
    buf = np.zeros(plan.input_nbytes, dtype=np.uint8)
    for chunk, header, off in zip(chunks, plan.headers, plan.input_offsets.tolist(), strict=True):
        data = np.frombuffer(as_memoryview(chunk), dtype=np.uint8, count=header.cbytes)  # (not what follows)
        buf[off : off + data.size] = data
    return buf


def host_decompress(codec: str, stream: memoryview, nbytes: int) -> bytes:
    """Decompress one stream with the CPU library for its nvCOMP decompressor (``"lz4"``,
    ``"zstd"``, ``"deflate"``, ``"gzip"``): what the host backend runs in nvCOMP's place."""
    if codec == "gzip":
        return zlib.decompress(bytes(stream), wbits=31)
    if codec == "lz4":
        # numcodecs' LZ4 format is a raw LZ4 block behind a 4-byte little-endian size.
        return numcodecs.lz4.decompress(nbytes.to_bytes(4, "little") + bytes(stream))
    if codec == "zstd":
        return numcodecs.zstd.decompress(bytes(stream))
    if codec == "deflate":
        return zlib.decompress(bytes(stream), wbits=-15)
    raise ValueError(f"no host decompressor for {codec!r}")


def host_compress(codec: str, stream: memoryview, level: int | None) -> bytes:
    """Compress one stream with the CPU library standing in for the nvCOMP compressor of
    ``codec`` (``"zstd"``, ``"deflate"``, ``"lz4"``; see :class:`CompressBatch`): what
    the host backend runs in nvCOMP's place."""
    if codec == "zstd":
        return numcodecs.zstd.Zstd(level=1 if level is None else level).encode(bytes(stream))
    if codec == "deflate":
        c = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, -15)
        return c.compress(bytes(stream)) + c.flush()
    if codec == "lz4":
        # numcodecs' LZ4 output is the raw block behind a 4-byte size: strip the size.
        return numcodecs.lz4.compress(bytes(stream))[4:]
    raise ValueError(f"no host compressor for {codec!r}")


def decode_blosc_batch_on_host(plan: BloscPlan, chunks: Sequence[Buffer], kernels: Any = reference) -> np.ndarray:
    """Run a plan stage by stage on the CPU; returns the workspace.

    Chunk i's decoded bytes are ``workspace[plan.decoded_offsets[i] :][: decoded_sizes[i]]``.
    Each stage does what the corresponding GPU call does: the CPU compression libraries
    stand in for nvCOMP, and ``kernels`` (anything with the :mod:`~gpuzarr.gpu.reference`
    functions ``copy_ranges``, ``unshuffle``, ``bitunshuffle``; the references by
    default, the host build of the CUDA kernels in the tests) for the kernels. So a plan
    is checked end to end without a GPU.
    """
    source = pack_input(chunks, plan)
    kernels.copy_ranges(source, source, plan.gather.src_offsets, plan.gather.dst_offsets, plan.gather.sizes)
    work = np.zeros(plan.workspace_nbytes, dtype=np.uint8)
    kernels.copy_ranges(source, work, plan.copies.src_offsets, plan.copies.dst_offsets, plan.copies.sizes)
    for batch in plan.streams.values():
        for k in range(len(batch)):
            off, size = int(batch.comp_offsets[k]), int(batch.comp_sizes[k])
            dst, dsize = int(batch.decomp_offsets[k]), int(batch.decomp_sizes[k])
            out = host_decompress(batch.codec, memoryview(source)[off : off + size], dsize)
            if len(out) != dsize:
                raise CorruptChunkError(
                    f"chunk {int(batch.chunk[k])}: blosc stream decompressed to {len(out)} bytes, expected {dsize}"
                )
            if batch.adler32 is not None and zlib.adler32(out) != int(batch.adler32[k]):
                raise CorruptChunkError(f"chunk {int(batch.chunk[k])}: blosc zlib stream fails its Adler-32")
            work[dst : dst + dsize] = np.frombuffer(out, dtype=np.uint8)
    kernels.copy_ranges(work, work, plan.bounces.src_offsets, plan.bounces.dst_offsets, plan.bounces.sizes)
    for sb in plan.shuffles:
        run = kernels.unshuffle if sb.kind == "shuffle" else kernels.bitunshuffle
        run(work, work, sb.src_offsets, sb.dst_offsets, sb.sizes, sb.typesize)
    for i in plan.cpu_chunks.tolist():
        off, size = int(plan.decoded_offsets[i]), int(plan.decoded_sizes[i])
        work[off : off + size] = np.frombuffer(numcodecs.Blosc().decode(chunks[i]), dtype=np.uint8)
    return work


# --------------------------------------------------------------------------------------
# scatter


@dataclass(frozen=True)
class ScatterPlan:
    """The arguments of ``scatter_chunks`` / ``fill_regions`` for a wave of projections.

    ``boxes[p]`` (``(ndim, 5)``: chunk_start, chunk_step, out_start, out_step, count per
    dimension) belongs to projection p; scatter the decoded ones and fill the missing
    ones. 0-d arrays are planned as shape ``(1,)``.
    """

    chunk_shape: np.ndarray  # int64 (ndim,)
    dst_shape: np.ndarray  # int64 (ndim,)
    boxes: np.ndarray  # int64 (n, ndim, 5)


def plan_scatter(
    projections: Sequence[ChunkProjection], chunk_shape: Sequence[int], buffer_shape: Sequence[int]
) -> ScatterPlan:
    """Boxes of basic-selection projections into the indexer's buffer (``buffer_shape``).

    Raises:
        ValueError: A projection selects with integer arrays (orthogonal or vectorized
            selections are not boxes; the GPU executor gathers those differently).
    """
    ndim = len(chunk_shape)
    if ndim == 0:
        boxes = np.tile(np.array([[0, 1, 0, 1, 1]], dtype=np.int64), (len(projections), 1, 1))
        return ScatterPlan(np.ones(1, np.int64), np.ones(1, np.int64), boxes)
    boxes = np.empty((len(projections), ndim, 5), dtype=np.int64)
    for p, proj in enumerate(projections):
        out_sel: Any = proj.out_selection
        if not isinstance(out_sel, tuple):
            raise ValueError("vectorized projections have no box form")
        for d, (cs, os_) in enumerate(zip(proj.chunk_selection, out_sel, strict=True)):
            if not isinstance(cs, slice) or not isinstance(os_, slice):
                raise ValueError("only basic selections (slices and integers) have a box form")
            c0, c1, cstep = cs.indices(int(chunk_shape[d]))
            o0, o1, ostep = os_.indices(int(buffer_shape[d]))
            count = len(range(c0, c1, cstep))
            if count != len(range(o0, o1, ostep)):
                raise ValueError(f"projection {p}: chunk and output selections differ in length along dim {d}")
            boxes[p, d] = (c0, cstep, o0, ostep, count)
    return ScatterPlan(
        np.asarray(chunk_shape, dtype=np.int64), np.asarray(buffer_shape, dtype=np.int64), boxes
    )
