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
    itemsize = chunk.dtype.itemsize
    if itemsize in (1, 2, 4, 8):
        word, fill_word = _fill_word(chunk.dtype, fill)
        # (A view of the same item size, strided as the chunk is: a chunk cut from a
        # larger array is compared where it lies, not copied first.)
        words = chunk.view(word)
        # Most chunks hold data: the first element usually settles it without a full pass.
        if words.size and words[(0,) * words.ndim] != fill_word:
            return False
        return bool((words == fill_word).all())
    fill_bits = np.asarray(fill, dtype=chunk.dtype).reshape(1)
    raw = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8).reshape(-1, itemsize)
    return bool(np.all(raw == fill_bits.view(np.uint8)))


def _fill_word(dtype: np.dtype, fill: Any) -> tuple[np.dtype, Any]:
    """The unsigned integer type of ``dtype``'s size and the fill value's bits in it.

    (Asked once per chunk on the write paths, with an array's one fill object: looked
    up by that object's identity, never by value, for equal fills such as ``0.0`` and
    ``-0.0`` differ in their bits.)
    """
    key = (dtype, id(fill))
    found = _fill_words.get(key)
    if found is not None and found[0] is fill:
        return found[1], found[2]
    word = np.dtype(f"u{dtype.itemsize}")
    fill_word = np.asarray(fill, dtype=dtype).reshape(1).view(word)[0]
    if len(_fill_words) >= 64:
        _fill_words.clear()
    _fill_words[key] = (fill, word, fill_word)  # (holding `fill` keeps its id unique)
    return word, fill_word


_fill_words: dict[tuple[np.dtype, int], tuple[Any, np.dtype, Any]] = {}
