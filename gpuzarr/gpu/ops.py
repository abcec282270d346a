"""Launchers of the CUDA kernels on CuPy arrays, with the signatures of the references.

``ops.unshuffle(src, dst, src_offsets, dst_offsets, sizes, typesize)`` does on the GPU
what ``reference.unshuffle`` does with the same arguments on the host, so the GPU
executor and the tests can swap one for the other. Buffers are 1-d ``uint8`` CuPy
arrays; offsets, sizes and boxes may be NumPy or CuPy arrays (host arrays are copied to
the device). Every call is one kernel launch on the current stream, asynchronous like
any CuPy operation.

CuPy is imported inside the functions, never at module import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpuzarr.gpu import reference
from gpuzarr.gpu.kernels import KERNELS, get_kernel

__all__ = [
    "adler32",
    "bitshuffle",
    "bitunshuffle",
    "byteswap",
    "copy_ranges",
    "crc32",
    "crc32c",
    "equals_fill",
    "fill",
    "gather",
    "launch",
    "parse_shard_indexes",
    "scatter",
    "shuffle",
    "unshuffle",
    "xxh64",
]

#: Threads per block: a multiple of the warp size that keeps enough blocks per SM.
BLOCK = 256
#: gridDim.y limit (items spread over blockIdx.y grid-stride beyond it).
MAX_GRID_Y = 65535
#: Cap on blocks along x per item: grid-stride loops cover the rest.
MAX_GRID_X = 4096


def _grid_2d(nitems: int, max_work: int, block: int = BLOCK) -> tuple[int, int]:
    """(gx, gy) for a batch kernel: items on y, the largest item's work on x."""
    gy = max(1, min(nitems, MAX_GRID_Y))
    gx = max(1, min(-(-max_work // block), MAX_GRID_X))
    return gx, gy


def _device_array(values: Any, dtype: Any) -> Any:
    import cupy

    return cupy.ascontiguousarray(cupy.asarray(values, dtype=dtype))


def _max(values: Any) -> int:
    arr = values.get() if hasattr(values, "get") else np.asarray(values)
    return int(arr.max()) if arr.size else 0


def launch(name: str, grid: tuple[int, ...], block: int, args: Sequence[Any]) -> None:
    """Launch a kernel, converting ``args`` to the types :data:`KERNELS` declares.

    Pointers must be CuPy arrays (or None for a null pointer); integers become NumPy
    scalars of the declared width, which is how CuPy learns a scalar's C type.
    """
    spec = KERNELS[name]
    if len(args) != len(spec.params):
        raise TypeError(f"{name} takes {len(spec.params)} arguments, got {len(args)}")
    packed: list[Any] = []
    for ctype, value in zip(spec.params, args, strict=True):
        if ctype.endswith("*"):
            packed.append(np.uint64(0) if value is None else value)
        elif ctype == "u32":
            packed.append(np.uint32(value))
        elif ctype == "u64":
            packed.append(np.uint64(value))
        elif ctype == "i64":
            packed.append(np.int64(value))
        else:  # pragma: no cover - KERNELS only uses the types above
            raise TypeError(f"{name}: unsupported parameter type {ctype!r}")
    grid3 = (*grid, 1, 1)[:3]
    get_kernel(name)(grid3, (block, 1, 1), tuple(packed))


def byteswap(data: Any, offsets: Any, sizes: Any, itemsize: int) -> None:
    """In-place byte swap of every element of each buffer (see ``reference.byteswap``)."""
    sizes_d = _device_array(sizes, np.uint64)
    n = int(sizes_d.size)
    if n == 0:
        return
    grid = _grid_2d(n, _max(sizes_d) // max(itemsize, 1))
    launch("byteswap_batch", grid, BLOCK, (data, _device_array(offsets, np.uint64), sizes_d, n, itemsize))


def _block_batch(name: str, src: Any, dst: Any, src_offsets: Any, dst_offsets: Any, sizes: Any, typesize: int) -> None:
    sizes_d = _device_array(sizes, np.uint64)
    n = int(sizes_d.size)
    if n == 0:
        return
    grid = _grid_2d(n, _max(sizes_d) // max(typesize, 1))
    launch(name, grid, BLOCK, (src, dst, _device_array(src_offsets, np.uint64),
                               _device_array(dst_offsets, np.uint64), sizes_d, n, typesize))


def unshuffle(src: Any, dst: Any, src_offsets: Any, dst_offsets: Any, sizes: Any, typesize: int) -> None:
    """Blosc byte unshuffle per block (see ``reference.unshuffle``)."""
    _block_batch("blosc_unshuffle_batch", src, dst, src_offsets, dst_offsets, sizes, typesize)


def shuffle(src: Any, dst: Any, src_offsets: Any, dst_offsets: Any, sizes: Any, typesize: int) -> None:
    """Blosc byte shuffle per block (see ``reference.shuffle``)."""
    _block_batch("blosc_shuffle_batch", src, dst, src_offsets, dst_offsets, sizes, typesize)


def bitunshuffle(src: Any, dst: Any, src_offsets: Any, dst_offsets: Any, sizes: Any, typesize: int) -> None:
    """Blosc bit-unshuffle per block (see ``reference.bitunshuffle``)."""
    _block_batch("bitunshuffle_batch", src, dst, src_offsets, dst_offsets, sizes, typesize)


def bitshuffle(src: Any, dst: Any, src_offsets: Any, dst_offsets: Any, sizes: Any, typesize: int) -> None:
    """Blosc bitshuffle per block (see ``reference.bitshuffle``)."""
    _block_batch("bitshuffle_batch", src, dst, src_offsets, dst_offsets, sizes, typesize)


def copy_ranges(src: Any, dst: Any, src_offsets: Any, dst_offsets: Any, sizes: Any) -> None:
    """Batched byte-range copies (see ``reference.copy_ranges``)."""
    sizes_d = _device_array(sizes, np.uint64)
    n = int(sizes_d.size)
    if n == 0:
        return
    grid = _grid_2d(n, _max(sizes_d) // 8)
    launch("copy_ranges", grid, BLOCK, (src, dst, _device_array(src_offsets, np.uint64),
                                         _device_array(dst_offsets, np.uint64), sizes_d, n))


def _checksums(name: str, data: Any, offsets: Any, sizes: Any) -> Any:
    """One block per buffer of a ``*_batch`` checksum kernel; a CuPy ``uint32`` array."""
    import cupy

    sizes_d = _device_array(sizes, np.uint64)
    n = int(sizes_d.size)
    out = cupy.zeros(n, dtype=cupy.uint32)
    if n:
        launch(name, (min(n, 2**31 - 1),), BLOCK, (data, _device_array(offsets, np.uint64), sizes_d, n, out))
    return out


def crc32c(data: Any, offsets: Any, sizes: Any) -> Any:
    """CRC-32C of each buffer, as a CuPy ``uint32`` array (see ``reference.crc32c``).

    One block per buffer: a batch of a few very large buffers uses few SMs (splitting
    them and combining the parts is a later optimisation).
    """
    return _checksums("crc32c_batch", data, offsets, sizes)


def crc32(data: Any, offsets: Any, sizes: Any) -> Any:
    """CRC-32 (``zlib.crc32``) of each buffer, as a CuPy ``uint32`` array (see
    ``reference.crc32``); one block per buffer, like :func:`crc32c`."""
    return _checksums("crc32_batch", data, offsets, sizes)


def adler32(data: Any, offsets: Any, sizes: Any) -> Any:
    """Adler-32 (``zlib.adler32``) of each buffer, as a CuPy ``uint32`` array (see
    ``reference.adler32``); one block per buffer, like :func:`crc32c`."""
    return _checksums("adler32_batch", data, offsets, sizes)


#: Threads per block of ``xxh64_batch``: four per buffer (one per XXH64 lane), so a
#: warp hashes eight buffers.
XXH64_BLOCK = 32


def xxh64(data: Any, offsets: Any, sizes: Any) -> Any:
    """XXH64 (seed 0) of each buffer, as a CuPy ``uint64`` array (see ``reference.xxh64``);
    four threads per buffer, so a few large buffers hash slowly (n / 32 dependent rounds each)."""
    import cupy

    sizes_d = _device_array(sizes, np.uint64)
    n = int(sizes_d.size)
    out = cupy.zeros(n, dtype=cupy.uint64)
    if n:
        per_block = XXH64_BLOCK // 4
        blocks = min(-(-n // per_block), 2**31 - 1)
        launch("xxh64_batch", (blocks,), XXH64_BLOCK, (data, _device_array(offsets, np.uint64), sizes_d, n, out))
    return out


def equals_fill(data: Any, offsets: Any, sizes: Any, itemsize: int, fill_value: bytes) -> Any:
    """Per item, whether all of it is the fill value's bytes, as a CuPy ``bool`` array
    (see ``reference.equals_fill``)."""
    import cupy

    if itemsize < 1 or len(fill_value) != itemsize:
        raise ValueError(f"fill value has {len(fill_value)} bytes, itemsize is {itemsize}")
    sizes_d = _device_array(sizes, np.uint64)
    n = int(sizes_d.size)
    # The kernel only clears flags (one atomic per block and mismatching item), so they
    # start at 1: "every byte seen so far matched".
    flags = cupy.ones(n, dtype=cupy.uint32)
    if n:
        pattern = _device_array(np.frombuffer(bytes(fill_value), dtype=np.uint8), np.uint8)
        launch("equals_fill_batch", _grid_2d(n, _max(sizes_d) // 8), BLOCK,
               (data, _device_array(offsets, np.uint64), sizes_d, n, itemsize, pattern, flags))
    return flags != 0


def parse_shard_indexes(data: Any, offsets: Any, nentries: int, has_crc: bool,
                        shard_nbytes: Any = None) -> reference.ParsedShardIndexes:
    """Parse a batch of shard indexes; the fields are CuPy arrays
    (see ``reference.parse_shard_indexes``)."""
    import cupy

    offsets_d = _device_array(offsets, np.uint64)
    n = int(offsets_d.size)
    total = n * nentries
    result = reference.ParsedShardIndexes(
        cupy.empty(total, dtype=cupy.uint64),
        cupy.empty(total, dtype=cupy.uint64),
        cupy.empty(total, dtype=cupy.uint8),
        cupy.zeros(n, dtype=cupy.uint32),
    )
    if n:
        limits = None if shard_nbytes is None else _device_array(shard_nbytes, np.uint64)
        launch("shard_index_parse", (min(n, 2**31 - 1),), BLOCK,
               (data, offsets_d, n, nentries, int(has_crc), limits,
                result.offsets, result.lengths, result.stored, result.status))
    return result


def _box_grid(boxes: np.ndarray) -> tuple[int, int]:
    """Grid for scatter/gather/fill: items on y, the most rows of any box (in row groups) on x."""
    if boxes.shape[0] == 0:
        return 1, 1
    counts = boxes[:, :, 4]
    rows = int(np.prod(counts[:, :-1], axis=1).max()) if counts.shape[1] > 1 else 1
    n_last = max(int(counts[:, -1].min()), 1)
    rows_at_once = max(1, BLOCK // n_last)
    return _grid_2d(boxes.shape[0], -(-rows // rows_at_once) * BLOCK)


def _shape(array: Any, ndim: int) -> tuple[int, ...]:
    """The array side's shape as the boxes see it (a 0-d array is planned as (1,))."""
    return tuple(array.shape) if array.ndim == ndim else (int(array.size),)


def _copy_boxes(kernel: str, chunks: Any, offsets: Any, array: Any, chunk_shape: Sequence[int],
                boxes: np.ndarray, role: str) -> None:
    """One launch of ``scatter_chunks`` or ``gather_chunks``: the box of every chunk (in
    ``chunks`` at ``offsets``) between it and ``array`` (C-contiguous, the ``role`` side)."""
    boxes = np.ascontiguousarray(boxes, dtype=np.int64)
    n, ndim = boxes.shape[0], boxes.shape[1]
    if n == 0:
        return
    if not array.flags.c_contiguous:
        raise ValueError(f"{kernel.split('_')[0]} needs a C-contiguous {role}")
    if len(chunk_shape) != ndim:  # a 0-d array's chunk, planned as shape (1,)
        chunk_shape = (int(np.prod(chunk_shape)),)
    array_bytes = array.reshape(-1).view(np.uint8)
    device_offsets = _device_array(offsets, np.uint64)
    # scatter_chunks takes (chunks, offsets, array), gather_chunks (array, chunks, offsets)
    pointers = (chunks, device_offsets, array_bytes) if kernel == "scatter_chunks" else (
        array_bytes, chunks, device_offsets)
    launch(kernel, _box_grid(boxes), BLOCK,
           (*pointers, n, ndim, array.itemsize, _device_array(chunk_shape, np.int64),
            _device_array(_shape(array, ndim), np.int64), _device_array(boxes, np.int64)))


def scatter(src: Any, src_offsets: Any, dst: Any, chunk_shape: Sequence[int], boxes: np.ndarray) -> None:
    """Copy the box of each decoded chunk into ``dst`` (a C-contiguous CuPy array of any
    dtype; see ``reference.scatter``). ``boxes`` is a host array (it sizes the grid)."""
    _copy_boxes("scatter_chunks", src, src_offsets, dst, chunk_shape, boxes, "destination")


def gather(src: Any, dst: Any, dst_offsets: Any, chunk_shape: Sequence[int], boxes: np.ndarray) -> None:
    """Copy the box of each chunk from ``src`` (a C-contiguous CuPy array of any dtype)
    into the chunk buffers in ``dst``, the inverse of :func:`scatter` (see
    ``reference.gather``). ``boxes`` is a host array (it sizes the grid)."""
    _copy_boxes("gather_chunks", dst, dst_offsets, src, chunk_shape, boxes, "source")


def fill(dst: Any, boxes: np.ndarray, fill_value: bytes) -> None:
    """Set the output side of every box to the fill value's bytes (see ``reference.fill``)."""
    boxes = np.ascontiguousarray(boxes, dtype=np.int64)
    n, ndim = boxes.shape[0], boxes.shape[1]
    if n == 0:
        return
    if len(fill_value) != dst.itemsize:
        raise ValueError(f"fill value has {len(fill_value)} bytes, elements have {dst.itemsize}")
    pattern = _device_array(np.frombuffer(bytes(fill_value), dtype=np.uint8), np.uint8)
    launch("fill_regions", _box_grid(boxes), BLOCK,
           (dst.reshape(-1).view(np.uint8), n, ndim, dst.itemsize, _device_array(_shape(dst, ndim), np.int64),
            _device_array(boxes, np.int64), pattern))
