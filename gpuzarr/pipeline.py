"""Batched read and write of chunk selections on the CPU.

A read turns the selection into chunk projections (:mod:`gpuzarr.indexing`), then works
in *waves* of bounded decoded size: one batched store call fetches a wave's chunks
(the next wave's fetch runs while the current one decodes), a thread pool decodes each
chunk and scatters it into the output, and missing chunks become the fill value.

On the CPU each worker runs a chunk's whole codec chain and its scatter in one task:
the codecs release the GIL, and fusing the stages keeps a chunk hot in cache and avoids
a barrier per stage. (The GPU executor batches per codec stage instead, where one
launch per stage is what matters.)

Interior chunks whose destination is one C-contiguous block are decoded straight into
the output (no intermediate buffer); other chunks decode into a per-thread scratch
buffer that is reused, which avoids page-faulting fresh memory for every chunk.

Writes gather each chunk's new contents from the value, read-modify-write chunks the
selection only partly covers, skip chunks equal to the fill value (deleting stale ones
unless ``write_empty_chunks``), and store each wave with one batched, atomic-per-key put.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from gpuzarr.codecs import CodecChain
from gpuzarr.config import get_config
from gpuzarr.errors import ChecksumError, CorruptChunkError
from gpuzarr.indexing import ChunkProjection, Indexer, is_basic, ortho_get, ortho_set
from gpuzarr.metadata import ArrayMetadata
from gpuzarr.stores import Store

__all__ = ["ChunkLayout", "is_fill_chunk", "read_into", "write_from"]

T = TypeVar("T")
R = TypeVar("R")

# --------------------------------------------------------------------------------------
# the worker pool

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _reset_pool_after_fork() -> None:
    # Threads do not survive fork: the child must build its own pool on first use.
    global _pool, _pool_size
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_reset_pool_after_fork)


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_size
    threads = get_config().threads
    with _pool_lock:
        if _pool is None or _pool_size != threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="gpuzarr")
            _pool_size = threads
        return _pool


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` on the worker pool (inline for one item or one thread)."""
    if len(items) <= 1 or get_config().threads == 1:
        return [fn(x) for x in items]
    return list(_executor().map(fn, items))


# --------------------------------------------------------------------------------------
# layout of one array's chunks


@dataclass(frozen=True)
class ChunkLayout:
    """Everything the pipeline needs to locate, decode and encode an array's chunks."""

    store: Store
    prefix: str  # "path/" of the array inside the store ("" at the root)
    metadata: ArrayMetadata
    chain: CodecChain

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """Shape of every stored chunk (edge chunks are stored full-size)."""
        return self.metadata.chunks

    def key(self, coords: Sequence[int]) -> str:
        """Store key of the chunk at ``coords``."""
        return self.prefix + self.metadata.chunk_key(coords)

    def chunk_extent(self, coords: Sequence[int]) -> tuple[int, ...]:
        """Shape of the in-bounds part of the chunk at ``coords``."""
        return tuple(
            min(c, s - i * c) for i, c, s in zip(coords, self.chunk_shape, self.metadata.shape, strict=True)
        )

    def decode(self, key: str, raw: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Decode one chunk, adding the key to any decoding error."""
        try:
            return self.chain.decode(raw, out=out)
        except ChecksumError as exc:
            raise ChecksumError(f"chunk {key!r}: {exc}") from None
        except CorruptChunkError as exc:
            raise CorruptChunkError(f"chunk {key!r}: {exc}") from None


def _waves(projections: list[ChunkProjection], chunk_nbytes: int) -> Iterator[list[ChunkProjection]]:
    per_wave = max(1, get_config().wave_bytes // max(1, chunk_nbytes))
    for start in range(0, len(projections), per_wave):
        yield projections[start : start + per_wave]


def _fetch_waves(
    layout: ChunkLayout, waves: Iterable[list[ChunkProjection]]
) -> Iterator[tuple[list[ChunkProjection], list[bytes | None]]]:
    """Yield each wave with its fetched bytes, fetching the next wave in the background."""
    pending: tuple[list[ChunkProjection], Future[list[bytes | None]]] | None = None
    fetcher = ThreadPoolExecutor(1, thread_name_prefix="gpuzarr-fetch")
    try:
        for wave in waves:
            future = fetcher.submit(layout.store.get_many, [layout.key(p.chunk_coords) for p in wave])
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (wave, future)
        if pending is not None:
            yield pending[0], pending[1].result()
    finally:
        fetcher.shutdown(wait=True)


# --------------------------------------------------------------------------------------
# reads

_scratch = threading.local()


def _scratch_buffer(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A per-thread reusable chunk buffer (fresh pages fault; reused ones don't)."""
    buf = getattr(_scratch, "buf", None)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 1), dtype=np.uint8)
        _scratch.buf = buf
    return buf[:nbytes].view(dtype).reshape(shape)


def _direct_target(
    buffer: np.ndarray, projection: ChunkProjection, chunk_shape: tuple[int, ...]
) -> np.ndarray | None:
    """The view of ``buffer`` a whole chunk can be decoded into, if it is contiguous."""
    sel = projection.out_selection
    if not isinstance(sel, tuple) or not is_basic(sel) or not is_basic(projection.chunk_selection):
        return None
    for s, c, n in zip(projection.chunk_selection, chunk_shape, chunk_shape, strict=True):
        if s.start != 0 or s.stop != n or s.step != 1 or c != n:  # type: ignore[union-attr]
            return None
    if any(s.step not in (None, 1) for s in sel):  # type: ignore[union-attr]
        return None
    view = buffer[sel]
    if view.shape != chunk_shape or not view.flags.c_contiguous:
        return None
    return view


def read_into(layout: ChunkLayout, indexer: Indexer, buffer: np.ndarray) -> None:
    """Fill ``buffer`` (``indexer.buffer_shape``) with the selected data."""
    projections = list(indexer.chunk_projections())
    if not projections:
        return
    chunk_shape = layout.chunk_shape
    dtype = layout.chain.spec.dtype
    fill = layout.metadata.fill_value
    vectorized = indexer.mode == "vectorized"
    flat = buffer.reshape(-1) if vectorized else buffer
    variable = layout.metadata.data_type.is_variable_length
    can_direct = layout.chain.can_decode_into and not vectorized and buffer.dtype == dtype

    def read_one(item: tuple[ChunkProjection, bytes | None]) -> None:
        projection, raw = item
        if raw is None:
            if vectorized:
                flat[projection.out_selection] = fill
            else:
                _fill(buffer, projection.out_selection, fill)  # type: ignore[arg-type]
            return
        key = layout.key(projection.chunk_coords)
        if can_direct:
            target = _direct_target(buffer, projection, chunk_shape)
            if target is not None:
                layout.decode(key, raw, out=target)
                return
        if variable or not layout.chain.can_decode_into:
            chunk = layout.decode(key, raw)
        else:
            chunk = layout.decode(key, raw, out=_scratch_buffer(chunk_shape, dtype))
        if vectorized:
            flat[projection.out_selection] = chunk[projection.chunk_selection]
        else:
            ortho_set(buffer, projection.out_selection, ortho_get(chunk, projection.chunk_selection))  # type: ignore[arg-type]

    chunk_nbytes = layout.chain.spec.nbytes or 1024
    for wave, raws in _fetch_waves(layout, _waves(projections, chunk_nbytes)):
        parallel_map(read_one, list(zip(wave, raws, strict=True)))


def _fill(buffer: np.ndarray, selection: tuple[Any, ...], fill: Any) -> None:
    if is_basic(selection):
        buffer[selection] = fill
    else:
        region = ortho_get(buffer, selection)
        region[...] = fill
        ortho_set(buffer, selection, region)


# --------------------------------------------------------------------------------------
# writes


def is_fill_chunk(chunk: np.ndarray, fill: Any) -> bool:
    """Whether every element is bit-for-bit the fill value.

    Comparing bits (not values) makes NaN fills work and never drops a chunk that
    differs from the fill value in any way (``-0.0`` vs ``0.0``, NaN payloads), so a
    skipped chunk always reads back exactly as written.
    """
    if chunk.dtype.kind in "OT":  # variable-length strings and bytes
        return bool(np.all(chunk == fill))
    fill_bits = np.asarray(fill, dtype=chunk.dtype).reshape(1)
    itemsize = chunk.dtype.itemsize
    if itemsize in (1, 2, 4, 8):
        word = np.dtype(f"u{itemsize}")
        return bool(np.all(np.ascontiguousarray(chunk).view(word) == fill_bits.view(word)[0]))
    raw = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8).reshape(-1, itemsize)
    return bool(np.all(raw == fill_bits.view(np.uint8)))


def write_from(layout: ChunkLayout, indexer: Indexer, value: np.ndarray) -> None:
    """Write ``value`` (``indexer.buffer_shape``) into the selected region."""
    projections = list(indexer.chunk_projections())
    if not projections:
        return
    meta = layout.metadata
    chunk_shape = layout.chunk_shape
    dtype = layout.chain.spec.dtype
    fill = meta.fill_value
    vectorized = indexer.mode == "vectorized"
    flat = value.reshape(-1) if vectorized else value
    write_empty = get_config().write_empty_chunks

    def encode_one(item: tuple[ChunkProjection, bytes | None]) -> tuple[str, bytes | None]:
        projection, old = item
        key = layout.key(projection.chunk_coords)
        if old is not None:
            chunk = np.array(layout.decode(key, old), dtype=dtype, copy=True)
        else:
            chunk = np.full(chunk_shape, fill, dtype=dtype)
        if vectorized:
            chunk[projection.chunk_selection] = flat[projection.out_selection]
        else:
            ortho_set(chunk, projection.chunk_selection, ortho_get(value, projection.out_selection))  # type: ignore[arg-type]
        if not write_empty and is_fill_chunk(chunk, fill):
            return key, None
        return key, layout.chain.encode(chunk)

    chunk_nbytes = layout.chain.spec.nbytes or 1024
    for wave in _waves(projections, chunk_nbytes):
        # Only chunks the selection covers partly need their old contents.
        partial = [p for p in wave if not p.covers_chunk]
        old_by_coords: dict[tuple[int, ...], bytes | None] = {}
        if partial:
            olds = layout.store.get_many([layout.key(p.chunk_coords) for p in partial])
            old_by_coords = {p.chunk_coords: b for p, b in zip(partial, olds, strict=True)}
        results = parallel_map(encode_one, [(p, old_by_coords.get(p.chunk_coords)) for p in wave])
        puts = [(k, v) for k, v in results if v is not None]
        deletes = [k for k, v in results if v is None]
        if puts:
            layout.store.set_many(puts)
        if deletes:
            layout.store.delete_many(deletes)
