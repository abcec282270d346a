"""Fill-value tests shared by the pipeline and the sharding codec."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_fill_chunk"]


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
        fill_word = fill_bits.view(word)[0]
        # Most chunks hold data: the first element usually settles it without a full pass.
        if chunk.size and np.asarray(chunk[(0,) * chunk.ndim], dtype=chunk.dtype).reshape(1).view(word)[0] != fill_word:
            return False
        return bool(np.all(np.ascontiguousarray(chunk).view(word) == fill_word))
    raw = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8).reshape(-1, itemsize)
    return bool(np.all(raw == fill_bits.view(np.uint8)))
