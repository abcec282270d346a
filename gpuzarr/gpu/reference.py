"""NumPy references of the CUDA kernels in ``kernels/``.

Each function computes exactly what the kernel of the same name computes, with the same
batch layout (one flat byte buffer plus per-item offsets and sizes), so tests can compare
the two byte for byte: through the g++ host build of the kernels on any machine, and
through CuPy on a GPU. They are also the CPU fallback of the GPU executor's stages.

Batches are described as in the kernels:

* ``offsets`` / ``sizes``: int arrays (any integer dtype), one entry per item, in bytes
  into the flat ``uint8`` buffer(s);
* ``boxes``: the scatter geometry, ``int64`` of shape ``(n, ndim, 5)`` with per dimension
  ``(chunk_start, chunk_step, out_start, out_step, count)`` (see ``kernels/scatter.cu``).

Loops here run per item (a blosc block, a chunk), never per element; the per-element
work is NumPy's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ADLER_BASE",
    "CRC32C_POLY",
    "CRC32_POLY",
    "SHARD_STATUS_CRC",
    "SHARD_STATUS_HALF_EMPTY",
    "SHARD_STATUS_OUT_OF_BOUNDS",
    "ParsedShardIndexes",
    "adler32",
    "bitshuffle",
    "bitunshuffle",
    "byteswap",
    "copy_ranges",
    "crc32",
    "xxh64",
    "crc32c",
    "equals_fill",
    "fill",
    "gather",
    "parse_shard_indexes",
    "scatter",
    "shuffle",
    "unshuffle",
]

#: Reflected CRC-32C (Castagnoli) polynomial.
CRC32C_POLY = 0x82F63B78
#: Reflected CRC-32 polynomial (IEEE 802.3: zlib, gzip).
CRC32_POLY = 0xEDB88320
#: Bits of ``ParsedShardIndexes.status`` (the same values as ``kernels/shard_index.cu``).
SHARD_STATUS_CRC = 1
SHARD_STATUS_HALF_EMPTY = 2
SHARD_STATUS_OUT_OF_BOUNDS = 4

_EMPTY = np.uint64(2**64 - 1)


def _u8(buf: np.ndarray, name: str) -> np.ndarray:
    if buf.dtype != np.uint8 or buf.ndim != 1:
        raise TypeError(f"{name} must be a 1-d uint8 array, got {buf.dtype} with shape {buf.shape}")
    return buf


def _items(*arrays: Sequence[int] | np.ndarray) -> list[tuple[int, ...]]:
    """Zip per-item integer arrays into Python tuples (checked to have equal lengths)."""
    cols = [np.asarray(a, dtype=np.int64).reshape(-1).tolist() for a in arrays]
    return list(zip(*cols, strict=True))


# --------------------------------------------------------------------------------------
# byteswap.cu


def byteswap(data: np.ndarray, offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray,
             itemsize: int) -> None:
    """Reverse the bytes of every ``itemsize``-byte element of each buffer, in place.

    ``itemsize`` 1 (or any size other than 2, 4, 8) leaves the data unchanged, like the
    kernel. Bytes after the last whole element are left alone.
    """
    _u8(data, "data")
    if itemsize not in (2, 4, 8):
        return
    for off, size in _items(offsets, sizes):
        n = size // itemsize
        elems = data[off : off + n * itemsize].reshape(n, itemsize)
        elems[...] = elems[:, ::-1]


# --------------------------------------------------------------------------------------
# shuffle.cu: blosc byte shuffle, per block


def _shuffle_one(block: np.ndarray, typesize: int, inverse: bool) -> np.ndarray:
    n = block.size // typesize
    out = block.copy()
    body = block[: n * typesize]
    if inverse:  # planes (typesize, n) -> elements (n, typesize)
        out[: n * typesize] = body.reshape(typesize, n).T.reshape(-1)
    else:
        out[: n * typesize] = body.reshape(n, typesize).T.reshape(-1)
    return out


def _per_block(src: np.ndarray, dst: np.ndarray, src_offsets: Sequence[int] | np.ndarray,
               dst_offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray, typesize: int,
               transform: object) -> None:
    _u8(src, "src")
    _u8(dst, "dst")
    if typesize < 1:
        raise ValueError(f"typesize must be positive, got {typesize}")
    for s, d, size in _items(src_offsets, dst_offsets, sizes):
        dst[d : d + size] = transform(src[s : s + size], typesize)  # type: ignore[operator]


def unshuffle(src: np.ndarray, dst: np.ndarray, src_offsets: Sequence[int] | np.ndarray,
              dst_offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray, typesize: int) -> None:
    """Undo blosc's byte shuffle block by block: byte ``j*n + i`` -> byte j of element i.

    A block of ``size`` bytes holds ``n = size // typesize`` elements; its
    ``size % typesize`` trailing bytes are copied unchanged.
    """
    _per_block(src, dst, src_offsets, dst_offsets, sizes, typesize, lambda b, t: _shuffle_one(b, t, True))


def shuffle(src: np.ndarray, dst: np.ndarray, src_offsets: Sequence[int] | np.ndarray,
            dst_offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray, typesize: int) -> None:
    """Blosc's byte shuffle block by block: byte j of element i -> byte ``j*n + i``."""
    _per_block(src, dst, src_offsets, dst_offsets, sizes, typesize, lambda b, t: _shuffle_one(b, t, False))


# --------------------------------------------------------------------------------------
# bitshuffle.cu: bshuf_trans_bit_elem over the first multiple of 8 elements, per block


def _bitshuffle_one(block: np.ndarray, typesize: int, inverse: bool) -> np.ndarray:
    n8 = (block.size // typesize) & ~7
    out = block.copy()
    body = block[: n8 * typesize]
    if n8 == 0:
        return out
    if inverse:
        # rows (typesize, 8 bits, n8 bits) -> bits[i, j, k] -> elements (n8, typesize)
        rows = np.unpackbits(body.reshape(typesize, 8, n8 // 8), axis=2, bitorder="little")
        out[: n8 * typesize] = np.packbits(rows.transpose(2, 0, 1), axis=2, bitorder="little").reshape(-1)
    else:
        # bits[i, j, k] = bit k of byte j of element i, laid out as rows (j, k) of n8 bits
        bits = np.unpackbits(body.reshape(n8, typesize, 1), axis=2, bitorder="little")
        out[: n8 * typesize] = np.packbits(bits.transpose(1, 2, 0), axis=2, bitorder="little").reshape(-1)
    return out


def bitunshuffle(src: np.ndarray, dst: np.ndarray, src_offsets: Sequence[int] | np.ndarray,
                 dst_offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray, typesize: int) -> None:
    """Undo the bitshuffle of each block (``bshuf_untrans_bit_elem``).

    The first ``n8 = (size // typesize) // 8 * 8`` elements are unshuffled: bit
    ``(j*8 + k) * n8 + i`` of the block (bits least significant first) becomes bit k of
    byte j of element i. The remaining bytes are copied unchanged.
    """
    _per_block(src, dst, src_offsets, dst_offsets, sizes, typesize, lambda b, t: _bitshuffle_one(b, t, True))


def bitshuffle(src: np.ndarray, dst: np.ndarray, src_offsets: Sequence[int] | np.ndarray,
               dst_offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray, typesize: int) -> None:
    """Bitshuffle each block (``bshuf_trans_bit_elem``); the inverse of :func:`bitunshuffle`."""
    _per_block(src, dst, src_offsets, dst_offsets, sizes, typesize, lambda b, t: _bitshuffle_one(b, t, False))


# --------------------------------------------------------------------------------------
# crc32c.cu: CRC-32C and CRC-32, segment-parallel like the kernels


def _crc_table(poly: int) -> np.ndarray:
    """The byte table of a reflected CRC: table[v] = register after byte v."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(poly), table >> 1).astype(np.uint32)
    return table


_TABLES = {poly: _crc_table(poly) for poly in (CRC32C_POLY, CRC32_POLY)}


def _mulmod(a: np.ndarray, b: np.ndarray, poly: int) -> np.ndarray:
    """a * b mod the polynomial (reflected representation), elementwise."""
    a = a.astype(np.uint32)
    b = b.astype(np.uint32).copy()
    product = np.zeros(np.broadcast(a, b).shape, dtype=np.uint32)
    for bit in range(31, -1, -1):
        product ^= np.where((a >> np.uint32(bit)) & 1, b, np.uint32(0))
        b = np.where(b & 1, (b >> 1) ^ np.uint32(poly), b >> 1).astype(np.uint32)
    return product


def _shift(crc: np.ndarray, nbytes: np.ndarray, poly: int) -> np.ndarray:
    """crc * x^(8 * nbytes) mod the polynomial, elementwise (square and multiply)."""
    crc = crc.astype(np.uint32).copy()
    n = nbytes.astype(np.uint64).copy()
    power = np.full(crc.shape, 0x00800000, dtype=np.uint32)  # x^8
    while np.any(n):
        odd = (n & np.uint64(1)).astype(bool)
        if odd.any():
            crc[odd] = _mulmod(power[odd], crc[odd], poly)
        n >>= np.uint64(1)
        live = n != 0
        if live.any():
            power[live] = _mulmod(power[live], power[live], poly)
    return crc


def _crc_segment_bytes(n: np.ndarray, threads: int) -> np.ndarray:
    """Bytes per thread segment (the kernel's gz_crc_segment_bytes)."""
    per_thread = (n + threads - 1) // threads
    return (per_thread + 7) & ~np.int64(7)


def _crc(data: np.ndarray, offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray, threads: int,
         poly: int) -> np.ndarray:
    """The kernels' gz_crc_batch: each buffer is cut into ``threads`` segments (multiples
    of 8 bytes); every segment's CRC is computed (vectorised over all segments of the
    batch), shifted past the bytes after it and xor-ed in."""
    _u8(data, "data")
    table = _TABLES[poly]
    offs = np.asarray(offsets, dtype=np.int64).reshape(-1)
    lens = np.asarray(sizes, dtype=np.int64).reshape(-1)
    if offs.shape != lens.shape:
        raise ValueError("offsets and sizes differ in length")
    seg = _crc_segment_bytes(lens, threads)
    t = np.arange(threads, dtype=np.int64)
    starts = t[None, :] * seg[:, None]  # (nbuf, threads)
    ends = np.minimum(starts + seg[:, None], lens[:, None])
    live = starts < lens[:, None]
    owner = np.broadcast_to(np.arange(len(lens))[:, None], starts.shape)[live]
    seg_start = (offs[:, None] + starts)[live]
    seg_len = (ends - starts)[live]
    after = (lens[:, None] - ends)[live]
    crc = np.full(seg_start.shape, 0xFFFFFFFF, dtype=np.uint32)
    for i in range(int(seg_len.max(initial=0))):
        active = seg_len > i
        byte = data[seg_start[active] + i].astype(np.uint32)
        reg = crc[active]
        crc[active] = table[(reg ^ byte) & 0xFF] ^ (reg >> np.uint32(8))
    crc = ~crc
    parts = _shift(crc, after, poly)
    out = np.zeros(len(lens), dtype=np.uint32)
    np.bitwise_xor.at(out, owner, parts)
    return out


def crc32c(data: np.ndarray, offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray,
           threads: int = 256) -> np.ndarray:
    """CRC-32C of each buffer (``uint32`` per buffer), computed as the kernel does.

    Each buffer is cut into ``threads`` segments whose CRCs are combined (see
    :func:`_crc`). The result does not depend on ``threads``; the tests use that to check
    the combination step against the ``crc32c`` package.
    """
    return _crc(data, offsets, sizes, threads, CRC32C_POLY)


def crc32(data: np.ndarray, offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray,
          threads: int = 256) -> np.ndarray:
    """CRC-32 of each buffer as ``zlib.crc32`` computes it (``uint32`` per buffer),
    segmented like :func:`crc32c` (the kernels share their code)."""
    return _crc(data, offsets, sizes, threads, CRC32_POLY)


# --------------------------------------------------------------------------------------
# adler32.cu

ADLER_BASE = 65521
#: Bytes per vectorised piece of a buffer: bounds the temporaries of large buffers.
_ADLER_PIECE = 1 << 20


def adler32(data: np.ndarray, offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray) -> np.ndarray:
    """Adler-32 of each buffer as ``zlib.adler32`` computes it (initial value 1), ``uint32``
    per buffer.

    ``s1 = 1 + sum(d_i)`` and ``s2 = n + sum((n - i) * d_i)`` (mod 65521). The weights are
    reduced mod 65521 first, so a term is below 2**24 and a piece's int64 sum cannot
    overflow; the kernel splits the same sums across threads instead (exact mod 65521, so
    no segmentation needs mirroring here).
    """
    _u8(data, "data")
    out = []
    for off, n in _items(offsets, sizes):
        s1, s2 = 1, n
        for start in range(0, n, _ADLER_PIECE):
            piece = data[off + start : off + min(n, start + _ADLER_PIECE)].astype(np.int64)
            weights = (n - start - np.arange(piece.size, dtype=np.int64)) % ADLER_BASE
            s1 += int(piece.sum())
            s2 += int(np.dot(weights, piece))
        out.append((s2 % ADLER_BASE) << 16 | s1 % ADLER_BASE)
    return np.array(out, dtype=np.uint32)


# --------------------------------------------------------------------------------------
# xxh64.cu

_XXH_P1, _XXH_P2, _XXH_P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_XXH_P4, _XXH_P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5
_MASK64 = (1 << 64) - 1


def _rotl64(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK64


def _xxh_round(acc: int, word: int) -> int:
    return _rotl64((acc + word * _XXH_P2) & _MASK64, 31) * _XXH_P1 & _MASK64


def _xxh64_one(buf: np.ndarray) -> int:
    """XXH64 with seed 0 of one buffer, as the specification writes it."""
    n = buf.size
    stripes = n // 32
    if stripes:
        words = buf[: 32 * stripes].view("<u8").reshape(stripes, 4).tolist()
        lanes = [(_XXH_P1 + _XXH_P2) & _MASK64, _XXH_P2, 0, (-_XXH_P1) & _MASK64]
        for row in words:
            lanes = [_xxh_round(acc, word) for acc, word in zip(lanes, row, strict=True)]
        h = sum(_rotl64(v, r) for v, r in zip(lanes, (1, 7, 12, 18), strict=True)) & _MASK64
        for v in lanes:
            h = ((h ^ _xxh_round(0, v)) * _XXH_P1 + _XXH_P4) & _MASK64
    else:
        h = _XXH_P5
    h = (h + n) & _MASK64
    tail = buf[32 * stripes :].tobytes()
    at = 0
    while len(tail) - at >= 8:
        h ^= _xxh_round(0, int.from_bytes(tail[at : at + 8], "little"))
        h = (_rotl64(h, 27) * _XXH_P1 + _XXH_P4) & _MASK64
        at += 8
    if len(tail) - at >= 4:
        h ^= int.from_bytes(tail[at : at + 4], "little") * _XXH_P1 & _MASK64
        h = (_rotl64(h, 23) * _XXH_P2 + _XXH_P3) & _MASK64
        at += 4
    for byte in tail[at:]:
        h ^= byte * _XXH_P5 & _MASK64
        h = _rotl64(h, 11) * _XXH_P1 & _MASK64
    h ^= h >> 33
    h = h * _XXH_P2 & _MASK64
    h ^= h >> 29
    h = h * _XXH_P3 & _MASK64
    return h ^ (h >> 32)


def xxh64(data: np.ndarray, offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray) -> np.ndarray:
    """XXH64 (seed 0) of each buffer, ``uint64`` per buffer: the hash whose low 32 bits
    a checksummed zstd frame stores. Python integers, one round per 8 bytes: slow on
    large buffers, and meant for the tests and the host backend."""
    _u8(data, "data")
    return np.array(
        [_xxh64_one(np.ascontiguousarray(data[off : off + n])) for off, n in _items(offsets, sizes)], dtype=np.uint64
    )


# --------------------------------------------------------------------------------------
# fill_check.cu


def equals_fill(data: np.ndarray, offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray,
                itemsize: int, fill_value: bytes) -> np.ndarray:
    """Per item, whether every byte k equals ``fill_value[k % itemsize]`` (``bool`` array).

    A bitwise comparison, like zarr's check on a chunk's bytes before storing it: NaN fill
    values match equal NaN bits, ``-0.0`` does not match ``0.0``. Empty items match.
    """
    _u8(data, "data")
    pattern = np.frombuffer(bytes(fill_value), dtype=np.uint8)
    if itemsize < 1 or pattern.size != itemsize:
        raise ValueError(f"fill value has {pattern.size} bytes, itemsize is {itemsize}")
    out = []
    for off, size in _items(offsets, sizes):
        whole = size - size % itemsize
        item = data[off : off + size]
        same = bool((item[:whole].reshape(-1, itemsize) == pattern).all())
        out.append(same and bool((item[whole:] == pattern[: size - whole]).all()))
    return np.array(out, dtype=bool)


# --------------------------------------------------------------------------------------
# shard_index.cu


@dataclass(frozen=True)
class ParsedShardIndexes:
    """Decoded indexes of a batch of shards, entries flat in (shard, C-order entry) order."""

    offsets: np.ndarray  # uint64, (nshards * nentries,): raw values, 2**64-1 when empty
    lengths: np.ndarray  # uint64, same shape
    stored: np.ndarray  # uint8, 1 where the inner chunk is stored
    status: np.ndarray  # uint32, (nshards,): SHARD_STATUS_* bits, 0 when fine


def parse_shard_indexes(data: np.ndarray, offsets: Sequence[int] | np.ndarray, nentries: int, has_crc: bool,
                        shard_nbytes: Sequence[int] | np.ndarray | None = None) -> ParsedShardIndexes:
    """Parse shard indexes (little-endian uint64 pairs, optional CRC-32C trailer).

    ``shard_nbytes`` (per shard) enables the check that stored entries lie inside their
    shard; without it no bounds are checked.
    """
    _u8(data, "data")
    offs = np.asarray(offsets, dtype=np.int64).reshape(-1)
    payload = 16 * nentries
    rows = offs[:, None] + np.arange(payload, dtype=np.int64)[None, :]
    raw = data[rows].reshape(len(offs), -1)  # (nshards, payload)
    entries = raw.view("<u8").reshape(len(offs), nentries, 2).astype(np.uint64)
    ent_off, ent_len = entries[..., 0], entries[..., 1]
    off_empty, len_empty = ent_off == _EMPTY, ent_len == _EMPTY
    stored = ~off_empty & ~len_empty
    status = np.zeros(len(offs), dtype=np.uint32)
    if has_crc and len(offs):
        crcs = crc32c(data, offs, np.full(len(offs), payload))
        trailer_rows = offs[:, None] + payload + np.arange(4)[None, :]
        trailers = data[trailer_rows].reshape(len(offs), 4).copy().view("<u4").reshape(-1)
        status |= np.where(trailers != crcs, SHARD_STATUS_CRC, 0).astype(np.uint32)
    status |= np.where((off_empty != len_empty).any(axis=1), SHARD_STATUS_HALF_EMPTY, 0).astype(np.uint32)
    if shard_nbytes is not None:
        limit = np.asarray(shard_nbytes, dtype=np.uint64).reshape(-1, 1)
        # Overflow-safe form of offset + nbytes > limit (as in the kernel).
        with np.errstate(over="ignore"):
            past = stored & ((ent_off > limit) | (ent_len > limit - ent_off))
        status |= np.where(past.any(axis=1), SHARD_STATUS_OUT_OF_BOUNDS, 0).astype(np.uint32)
    return ParsedShardIndexes(
        ent_off.reshape(-1).copy(), ent_len.reshape(-1).copy(), stored.reshape(-1).astype(np.uint8), status
    )


# --------------------------------------------------------------------------------------
# scatter.cu


def _box_slices(box: np.ndarray) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Chunk-side and output-side slices of one box (``(ndim, 5)``)."""
    chunk_sel, out_sel = [], []
    for c0, cs, o0, os_, count in box.tolist():
        chunk_sel.append(slice(c0, c0 + cs * count, cs))
        stop = o0 + os_ * count  # one step past the last element; below 0 means "to the start"
        out_sel.append(slice(o0, stop if stop >= 0 else None, os_) if count else slice(0, 0))
    return tuple(chunk_sel), tuple(out_sel)


def _box_view(dst: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``dst`` with as many dimensions as the boxes (a 0-d array is planned as (1,))."""
    return dst if dst.ndim == boxes.shape[1] else dst.reshape(-1)


def _chunk_boxes(
    chunks: np.ndarray, name: str, offsets: Sequence[int] | np.ndarray, array: np.ndarray,
    chunk_shape: Sequence[int], boxes: np.ndarray,
) -> Iterator[tuple[np.ndarray, np.ndarray, tuple[slice, ...], tuple[slice, ...]]]:
    """For scatter and gather: per chunk, ``(array view, chunk view, chunk selection,
    array selection)``; chunk c lives at ``chunks[offsets[c]:]`` with ``array.dtype``."""
    _u8(chunks, name)
    view = _box_view(array, boxes)
    shape = tuple(chunk_shape) if len(chunk_shape) == boxes.shape[1] else (-1,)  # 0-d: (1,)
    nbytes = int(np.prod(chunk_shape)) * view.itemsize
    for c, (off,) in enumerate(_items(offsets)):
        chunk = chunks[off : off + nbytes].view(view.dtype).reshape(shape)
        yield (view, chunk, *_box_slices(boxes[c]))


def scatter(src: np.ndarray, src_offsets: Sequence[int] | np.ndarray, dst: np.ndarray,
            chunk_shape: Sequence[int], boxes: np.ndarray) -> None:
    """Copy the box of each decoded chunk into ``dst`` (C-contiguous, any dtype).

    Chunk c is C-contiguous of ``chunk_shape`` and ``dst.dtype`` at
    ``src[src_offsets[c]:]``; ``boxes[c]`` says which part goes where.
    """
    for out, chunk, chunk_sel, out_sel in _chunk_boxes(src, "src", src_offsets, dst, chunk_shape, boxes):
        out[out_sel] = chunk[chunk_sel]


def gather(src: np.ndarray, dst: np.ndarray, dst_offsets: Sequence[int] | np.ndarray,
           chunk_shape: Sequence[int], boxes: np.ndarray) -> None:
    """Copy the box of each chunk from ``src`` (C-contiguous, any dtype): the inverse of
    :func:`scatter`.

    Chunk c is C-contiguous of ``chunk_shape`` and ``src.dtype`` at
    ``dst[dst_offsets[c]:]``; ``boxes[c]`` says which part of ``src`` goes where in it.
    Chunk elements outside the box are left as they are.
    """
    for array, chunk, chunk_sel, array_sel in _chunk_boxes(dst, "dst", dst_offsets, src, chunk_shape, boxes):
        chunk[chunk_sel] = array[array_sel]


def fill(dst: np.ndarray, boxes: np.ndarray, fill_value: bytes | np.ndarray) -> None:
    """Set the output side of every box to the fill value given as its raw bytes."""
    dst = _box_view(dst, boxes)
    value = np.frombuffer(bytes(fill_value), dtype=np.uint8).view(dst.dtype)[0]
    for box in boxes:
        _, out_sel = _box_slices(box)
        dst[out_sel] = value


def copy_ranges(src: np.ndarray, dst: np.ndarray, src_offsets: Sequence[int] | np.ndarray,
                dst_offsets: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray) -> None:
    """``dst[d : d + n] = src[s : s + n]`` for every (s, d, n)."""
    _u8(src, "src")
    _u8(dst, "dst")
    for s, d, n in _items(src_offsets, dst_offsets, sizes):
        dst[d : d + n] = src[s : s + n]
