"""Where samples live: the sample grid of aligned arrays and the storage blocks tiling it.

A *sample* is either one index along a sample axis (every other dimension whole) or one
grid-aligned patch. Samples form a *grid* (one grid dimension per tiled array
dimension); sample ids are C-order positions in that grid.

A *block* is a rectangle of the sample grid whose data is read with one
``array.read`` per array. Block extents are multiples of the storage unit (the shard,
or the chunk when the array is not sharded or has too few shards to make enough
blocks) so a block read decodes whole chunks and no chunk is shared by two blocks (with
several arrays: the unit of the array with the most bytes per sample, or a common
multiple of all units when that is at most 4 times larger); small units are grouped
into blocks of a few MiB so reads stay large.

Blocks are numbered in C order over the block grid; a sample's place in its block (its
*local* index) is the C-order position inside the block.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import numpy as np

from gpuzarr._checks import is_integer
from gpuzarr.array import Array

__all__ = ["MIN_BLOCKS", "MIN_BLOCK_BYTES", "ArrayReader", "SampleSpace"]

#: Automatic blocks grow to at least this many decoded bytes (all arrays together) ...
MIN_BLOCK_BYTES = 4 * 2**20
#: ... as long as the data still has at least this many blocks to shuffle (the loader
#: asks for more with many ranks).
MIN_BLOCKS = 64


def storage_unit(array: Any, *, inner: bool = False) -> tuple[int, ...]:
    """The extent of one stored object: the shard shape, else the chunk shape, else ones
    (``inner``: the chunk shape, an inner chunk of a shard being the smallest unit a
    read can decode alone).

    Objects without chunking (NumPy arrays) count as unit-chunked: any block is aligned.
    """
    ndim = len(array.shape)
    unit = None if inner else getattr(array, "shards", None)
    if unit is None:
        unit = getattr(array, "chunks", None)
    if unit is None or len(unit) != ndim:
        return (1,) * ndim
    return tuple(max(1, int(u)) for u in unit)


def _aligned_extent(patch: int, unit: int) -> int:
    """Block extent (elements) along a dimension: a multiple of the patch, aligned to storage.

    The least common multiple keeps both patches and stored objects whole. When it is
    much larger than either (a 200-element patch on 256-element chunks), the patches are
    grouped to about one unit instead: a few chunks are then read by two neighbouring
    blocks, which beats blocks dozens of chunks wide.
    """
    lcm = math.lcm(patch, unit)
    if lcm <= 4 * max(patch, unit):
        return lcm
    return patch * max(1, round(unit / patch))


def _is_positive_count(value: Any) -> bool:
    return is_integer(value) and value >= 1


class ArrayReader:
    """Reads blocks of one array into pool slots laid out as ``(samples, *sample_shape)``."""

    def __init__(self, name: str, array: Any, grid_dims: Sequence[int], patch: Sequence[int]) -> None:
        self.name = name
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.grid_dims = tuple(grid_dims)
        extents = list(self.shape)
        for d, p in zip(self.grid_dims, patch, strict=True):
            extents[d] = p
        #: Shape of one sample as stored in the pool (tiled dimensions at patch extent).
        self.pool_sample_shape = tuple(extents)
        self._scratch = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_scratch"]  # per-thread buffers do not travel
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._scratch = threading.local()

    @property
    def sample_nbytes(self) -> int:
        """Decoded bytes of one sample."""
        return math.prod(self.pool_sample_shape) * self.dtype.itemsize

    def _read(self, region: tuple[slice, ...], out: np.ndarray) -> None:
        if isinstance(self.array, Array):
            self.array.read(region, out=out)
        else:
            # zarr-python arrays, NumPy arrays, memmaps: anything sliceable.
            np.copyto(out, np.asarray(self.array[region]))

    def _scratch_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        # Per thread: block reads may run concurrently; reuse avoids page faults per block.
        nbytes = math.prod(shape) * self.dtype.itemsize
        buf = getattr(self._scratch, "buf", None)
        if buf is None or buf.nbytes < nbytes:
            buf = np.empty(max(nbytes, 1), dtype=np.uint8)
            self._scratch.buf = buf
        return buf[:nbytes].view(self.dtype).reshape(shape)

    def read_block(self, origin: Sequence[int], counts: Sequence[int], target: np.ndarray) -> None:
        """Read the block with patch-grid ``origin`` and ``counts`` into ``target``.

        ``target`` is ``(prod(counts), *pool_sample_shape)``, samples in block C order.
        """
        ndim = len(self.shape)
        n = [1] * ndim
        region = [slice(None)] * ndim
        for d, o, c, p in zip(self.grid_dims, origin, counts, (self.pool_sample_shape[d] for d in self.grid_dims),
                              strict=True):
            n[d] = c
            region[d] = slice(o * p, (o + c) * p)
        region_shape = tuple(n[d] * self.pool_sample_shape[d] for d in range(ndim))
        many = [d for d in range(ndim) if n[d] > 1]
        # The region's C-order layout already is (samples, *sample_shape) when at most one
        # dimension holds several samples and every dimension before it has extent 1
        # (the sample axis 0 case): read straight into the pool slot.
        if not many or (len(many) == 1 and all(region_shape[d] == 1 for d in range(many[0]))):
            self._read(tuple(region), target.reshape(region_shape))
            return
        scratch = self._scratch_buffer(region_shape)
        self._read(tuple(region), scratch)
        split: list[int] = []
        sample_axes: list[int] = []
        item_axes: list[int] = []
        for d in range(ndim):
            if d in self.grid_dims:
                sample_axes.append(len(split))
                split += [n[d], self.pool_sample_shape[d]]
                item_axes.append(len(split) - 1)
            else:
                item_axes.append(len(split))
                split.append(self.shape[d])
        blocked = scratch.reshape(split).transpose(sample_axes + item_axes)
        np.copyto(target.reshape(*(n[d] for d in self.grid_dims), *self.pool_sample_shape), blocked)


class SampleSpace:
    """The sample grid of one or more aligned arrays and its blocks.

    ``patch_shape`` None: samples are indices along ``axis`` (every array must have the
    same length there). Otherwise samples are grid-aligned patches: ``patch_shape``
    covers the trailing dimensions (an int tiles that dimension, None takes it whole),
    leading dimensions are tiled one by one; every array has the same number of
    dimensions and the same extent on every tiled dimension.
    ``block_shape`` overrides the automatic block extents (see :class:`gpuzarr.loader.Loader`);
    automatic blocks grow towards :data:`MIN_BLOCK_BYTES` only while at least
    ``min_blocks`` remain.
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        *,
        axis: int = 0,
        patch_shape: Sequence[int | None] | None = None,
        block_shape: int | Sequence[int | None] | None = None,
        min_blocks: int = MIN_BLOCKS,
    ) -> None:
        if not arrays:
            raise ValueError("loader: no arrays given")
        first = next(iter(arrays.values()))
        if patch_shape is None:
            grid_dims = {name: (self._sample_axis(name, a, axis),) for name, a in arrays.items()}
            lengths = {name: int(a.shape[grid_dims[name][0]]) for name, a in arrays.items()}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"loader: arrays differ in length along the sample axis: {lengths}")
            patch: tuple[int, ...] = (1,)
            grid: tuple[int, ...] = (next(iter(lengths.values())),)
            squeeze: tuple[bool, ...] = (True,)
            requested = self._requested_blocks_samples(block_shape)
        else:
            ndim = len(first.shape)
            patch_shape = tuple(patch_shape)
            if len(patch_shape) > ndim or not patch_shape:
                raise ValueError(f"loader: patch_shape {patch_shape} needs 1 to {ndim} entries (the array has {ndim})")
            for name, a in arrays.items():
                if len(a.shape) != ndim:
                    raise ValueError(f"loader: array {name!r} has {len(a.shape)} dimensions, expected {ndim}")
            full = (1,) * (ndim - len(patch_shape)) + patch_shape
            dims = [d for d in range(ndim) if full[d] is not None]
            if not dims:
                raise ValueError(
                    f"loader: patch_shape {patch_shape} tiles no dimension (every entry is None); give a patch "
                    "extent for at least one, or leave patch_shape out to sample along axis"
                )
            for d in dims:
                extents = {name: int(a.shape[d]) for name, a in arrays.items()}
                if len(set(extents.values())) != 1:
                    raise ValueError(f"loader: arrays differ in extent on tiled dimension {d}: {extents}")
                p = full[d]
                if not _is_positive_count(p):
                    raise ValueError(f"loader: patch_shape entries must be positive integers or None, got {p!r}")
            patch = tuple(int(full[d]) for d in dims)  # type: ignore[arg-type]
            grid = tuple(int(first.shape[d]) // p for d, p in zip(dims, patch, strict=True))
            if any(g == 0 for g in grid):
                raise ValueError(f"loader: patch_shape {patch_shape} is larger than the array shape {first.shape}")
            squeeze = tuple(d < ndim - len(patch_shape) for d in dims)
            grid_dims = {name: tuple(dims) for name in arrays}
            requested = self._requested_blocks_patches(block_shape, full, ndim, dims)
        self.grid_shape = grid
        self.patch = patch
        self.readers = {
            name: ArrayReader(name, a, grid_dims[name], patch) for name, a in arrays.items()
        }
        # Output sample shape: squeezed grid dimensions (the sample axis, leading patch
        # dimensions) are dropped.
        self.out_sample_shapes = {
            name: tuple(
                s for d, s in enumerate(r.pool_sample_shape)
                if not (d in r.grid_dims and squeeze[r.grid_dims.index(d)])
            )
            for name, r in self.readers.items()
        }
        self.block_patches = self._choose_blocks(arrays, grid_dims, requested, min_blocks)
        self.block_grid = tuple(-(-g // b) for g, b in zip(grid, self.block_patches, strict=True))
        self.num_blocks = math.prod(self.block_grid)
        self._counts = [
            np.minimum(b, g - np.arange(nb, dtype=np.int64) * b)
            for g, b, nb in zip(grid, self.block_patches, self.block_grid, strict=True)
        ]
        #: Samples in each block (C order over the block grid).
        self.block_sizes = reduce(np.multiply.outer, self._counts).reshape(-1).astype(np.int64)
        self.max_block_samples = math.prod(self.block_patches)

    # -- construction helpers -------------------------------------------------------

    @staticmethod
    def _sample_axis(name: str, array: Any, axis: int) -> int:
        ndim = len(array.shape)
        if not is_integer(axis):
            raise TypeError(f"loader: axis must be an integer, got {axis!r}")
        if not -ndim <= axis < ndim:
            raise ValueError(f"loader: axis {axis} is out of range for array {name!r} with {ndim} dimensions")
        return axis % ndim

    @staticmethod
    def _requested_blocks_samples(block_shape: int | Sequence[int | None] | None) -> list[int | None]:
        if block_shape is None:
            return [None]
        if not _is_positive_count(block_shape):
            raise ValueError(f"loader: block_shape must be a positive number of samples, got {block_shape!r}")
        return [int(block_shape)]

    @staticmethod
    def _requested_blocks_patches(
        block_shape: int | Sequence[int | None] | None, full: Sequence[int | None], ndim: int, dims: list[int]
    ) -> list[int | None]:
        if block_shape is None:
            return [None] * len(dims)
        if isinstance(block_shape, int | np.integer) or len(block_shape) != ndim:
            raise ValueError(f"loader: block_shape must have one entry per array dimension ({ndim}), "
                             f"got {block_shape!r}")
        out: list[int | None] = []
        for d in dims:
            e, p = block_shape[d], full[d]
            assert p is not None
            if e is not None and (not _is_positive_count(e) or e % p):
                raise ValueError(f"loader: block_shape[{d}] = {e} is not a positive multiple of the patch extent {p}")
            out.append(None if e is None else int(e) // p)
        return out

    def _choose_blocks(
        self,
        arrays: Mapping[str, Any],
        grid_dims: Mapping[str, tuple[int, ...]],
        requested: list[int | None],
        min_blocks: int,
    ) -> tuple[int, ...]:
        # Align blocks to the storage unit of the array with the most bytes per sample (it
        # dominates decoding); to every array's when their common multiple stays close to
        # it. Labels stored in one big chunk next to sharded images must not make blocks
        # thousands of samples long: re-reading a small chunk for several blocks is cheap.
        dominant = max(self.readers, key=lambda name: self.readers[name].sample_nbytes)

        def aligned_blocks(inner: bool) -> list[int]:
            units = []
            for k, p in enumerate(self.patch):
                unit = storage_unit(arrays[dominant], inner=inner)[grid_dims[dominant][k]]
                common = reduce(
                    math.lcm, (storage_unit(a, inner=inner)[grid_dims[name][k]] for name, a in arrays.items()), 1
                )
                if common <= 4 * unit:
                    unit = common
                units.append(min(unit, self.grid_shape[k] * p))
            bp = []
            for k, (p, unit, g) in enumerate(zip(self.patch, units, self.grid_shape, strict=True)):
                want = requested[k]
                bp.append(max(1, min(g, want if want is not None else _aligned_extent(p, unit) // p)))
            return bp

        bp = aligned_blocks(inner=False)
        if math.prod(-(-g // b) for g, b in zip(self.grid_shape, bp, strict=True)) < min_blocks:
            # Too few shards to shuffle well, or for every rank to read mostly its own
            # (ranks share the blocks at their runs' ends): blocks of inner chunks, which
            # a read decodes alone, grown below as far as min_blocks allows.
            bp = aligned_blocks(inner=True)
        # Grow small automatic blocks along the first dimension that has several, so one
        # block read decodes several chunks in parallel (a unit of one 256 KiB chunk would
        # otherwise decode on one thread while the others idle).
        grow = next((k for k, g in enumerate(self.grid_shape) if g > bp[k] and requested[k] is None), None)
        if grow is not None:
            block_bytes = math.prod(bp) * sum(r.sample_nbytes for r in self.readers.values())
            if 0 < block_bytes < MIN_BLOCK_BYTES:
                want_m = -(-MIN_BLOCK_BYTES // block_bytes)
                others = math.prod(-(-g // b) for k, (g, b) in enumerate(zip(self.grid_shape, bp, strict=True))
                                   if k != grow)
                max_m = self.grid_shape[grow] // (bp[grow] * -(-min_blocks // others))
                bp[grow] = min(self.grid_shape[grow], bp[grow] * max(1, min(want_m, max_m)))
        return tuple(bp)

    # -- queries ----------------------------------------------------------------------

    @property
    def num_samples(self) -> int:
        """Samples in the grid."""
        return math.prod(self.grid_shape)

    def block_extent(self, block: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Patch-grid origin and sample counts of ``block``."""
        coords = np.unravel_index(block, self.block_grid)
        origin = tuple(int(c) * b for c, b in zip(coords, self.block_patches, strict=True))
        counts = tuple(int(self._counts[k][int(c)]) for k, c in enumerate(coords))
        return origin, counts

    def read_block(self, block: int, slots: Mapping[str, np.ndarray]) -> None:
        """Read ``block`` of every array into ``slots[name]`` (``(max_block_samples, *sample)``)."""
        origin, counts = self.block_extent(block)
        size = math.prod(counts)
        for name, reader in self.readers.items():
            reader.read_block(origin, counts, slots[name][:size])

    def sample_ids(self, blocks: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Sample ids (C-order grid positions) of (block, local index) pairs."""
        blocks = np.asarray(blocks, dtype=np.int64)
        rem = np.asarray(local, dtype=np.int64).copy()
        coords = np.unravel_index(blocks, self.block_grid) if blocks.size else [blocks] * len(self.block_grid)
        counts = [self._counts[k][c] for k, c in enumerate(coords)]
        patch_coords: list[np.ndarray] = [np.empty(0)] * len(coords)
        for k in reversed(range(len(coords))):
            patch_coords[k] = coords[k] * self.block_patches[k] + rem % counts[k]
            rem //= counts[k]
        return np.ravel_multi_index(tuple(patch_coords), self.grid_shape).astype(np.int64)
