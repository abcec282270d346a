"""Batched reads of a selection on the CPU.

Projections (one per decode unit the selection touches) are processed in waves:
one batched fetch per wave through the layout (the next wave's fetch runs while the
current one decodes), then a worker per unit decodes it and scatters it into the
output. On the CPU a worker runs a unit's whole codec chain and its scatter in one
task: the codecs release the GIL, and fusing the stages keeps the unit hot in cache
without a barrier per stage. (The GPU executor batches per codec stage instead, where
one launch per stage is what matters.)

Whole units whose destination is one C-contiguous block decode straight into the
output; uncompressed ones are read from the store straight into it. Other units decode
into a reused per-thread scratch buffer, which avoids page-faulting fresh memory for
every unit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from gpuzarr.errors import CorruptChunkError
from gpuzarr.indexing import ChunkProjection, Indexer, is_basic, ortho_get, ortho_set
from gpuzarr.pipeline.layout import ChunkLayout, waves
from gpuzarr.pipeline.pool import parallel_map

__all__ = ["read_into"]

_scratch = threading.local()

#: Below this many decoded bytes a wave decodes on the calling thread: a task handoff
#: costs tens of microseconds, about what decoding 64 KiB costs.
PARALLEL_MIN_BYTES = 128 * 2**10


def _scratch_buffer(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A per-thread reusable unit buffer (fresh pages fault; reused ones don't)."""
    buf = getattr(_scratch, "buf", None)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 1), dtype=np.uint8)
        _scratch.buf = buf
    return buf[:nbytes].view(dtype).reshape(shape)


def _direct_target(buffer: np.ndarray, projection: ChunkProjection, unit_shape: tuple[int, ...]) -> np.ndarray | None:
    """The view of ``buffer`` a whole unit can be decoded into, if it is contiguous.

    Runs once per unit, so it tests types directly rather than through helpers.
    """
    out_sel = projection.out_selection
    if type(out_sel) is not tuple:
        return None
    for s, n in zip(projection.chunk_selection, unit_shape, strict=True):
        if type(s) is not slice or s.start != 0 or s.stop != n or s.step != 1:
            return None
    for s in out_sel:
        if type(s) is not slice or s.step not in (None, 1):
            return None
    view = buffer[(*out_sel, Ellipsis)]  # the Ellipsis keeps a 0-d selection a view, not a scalar
    if view.shape != unit_shape or not view.flags.c_contiguous:
        return None
    return view


def _fill(buffer: np.ndarray, selection: Any, fill: Any, vectorized: bool) -> None:
    if vectorized:
        buffer.reshape(-1)[selection] = fill
    elif is_basic(selection):
        buffer[selection] = fill
    else:
        region = ortho_get(buffer, selection)
        region[...] = fill
        ortho_set(buffer, selection, region)


def _read_raw_direct(layout: ChunkLayout, targets: list[tuple[ChunkProjection, np.ndarray]]) -> None:
    """Read uncompressed units from the store straight into their destinations."""
    fill = layout.metadata.fill_value
    expected = layout.unit_spec.nbytes
    for wave in waves(targets, expected):
        requests = [(layout.key(p.chunk_coords), memoryview(t.reshape(-1).view(np.uint8))) for p, t in wave]
        sizes = layout.store.get_many_into(requests)
        for (p, target), size in zip(wave, sizes, strict=True):
            if size is None:
                target[...] = fill
            elif size != expected:
                raise CorruptChunkError(
                    f"{layout.describe(p.chunk_coords)}: holds {size} bytes, expected {expected}"
                )


def _fetch_waves(
    layout: ChunkLayout, projections: list[ChunkProjection]
) -> Iterator[tuple[list[ChunkProjection], list[Any]]]:
    """Yield each wave with its fetched bytes, fetching the next wave in the background.

    A read of one wave fetches inline: a background thread only pays off when there is
    a next wave to overlap with.
    """
    all_waves = list(waves(projections, layout.unit_spec.nbytes or 1024))
    if len(all_waves) == 1:
        yield all_waves[0], layout.fetch(all_waves[0])
        return
    pending: tuple[list[ChunkProjection], Future[list[Any]]] | None = None
    fetcher = ThreadPoolExecutor(1, thread_name_prefix="gpuzarr-fetch")
    try:
        for wave in all_waves:
            future = fetcher.submit(layout.fetch, wave)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (wave, future)
        if pending is not None:
            yield pending[0], pending[1].result()
    finally:
        fetcher.shutdown(wait=True, cancel_futures=True)


def read_into(layout: ChunkLayout, indexer: Indexer, buffer: np.ndarray) -> None:
    """Fill ``buffer`` (``indexer.buffer_shape``) with the selected data."""
    projections = list(indexer.chunk_projections())
    if not projections:
        return
    unit_shape = layout.unit_shape
    spec = layout.unit_spec
    dtype = spec.dtype
    fill = layout.metadata.fill_value
    vectorized = indexer.mode == "vectorized"
    flat = buffer.reshape(-1) if vectorized else buffer
    if layout.stores_raw and not vectorized and buffer.dtype == dtype:
        # Whole uncompressed units: the store read is the decode.
        direct, rest = [], []
        for p in projections:
            target = _direct_target(buffer, p, unit_shape)
            if target is not None:
                direct.append((p, target))
            else:
                rest.append(p)
        if direct:
            _read_raw_direct(layout, direct)
        projections = rest
        if not projections:
            return
    can_direct = layout.chain.can_decode_into and not vectorized and buffer.dtype == dtype
    use_scratch = layout.chain.can_decode_into and not spec.data_type.is_variable_length

    def read_one(item: tuple[ChunkProjection, Any]) -> None:
        projection, raw = item
        if raw is None:
            _fill(buffer, projection.out_selection, fill, vectorized)
            return
        coords = projection.chunk_coords
        if can_direct:
            target = _direct_target(buffer, projection, unit_shape)
            if target is not None:
                layout.decode(coords, raw, out=target)
                return
        unit = layout.decode(coords, raw, out=_scratch_buffer(unit_shape, dtype) if use_scratch else None)
        if vectorized:
            flat[projection.out_selection] = unit[projection.chunk_selection]
        else:
            ortho_set(buffer, projection.out_selection, ortho_get(unit, projection.chunk_selection))  # type: ignore[arg-type]

    unit_nbytes = spec.nbytes or 1024
    for wave, raws in _fetch_waves(layout, projections):
        items = list(zip(wave, raws, strict=True))
        if len(items) * unit_nbytes < PARALLEL_MIN_BYTES:
            for item in items:  # too little work to repay handing it to other threads
                read_one(item)
        else:
            parallel_map(read_one, items)
