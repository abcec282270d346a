"""Host memory helpers shared by the layers above (no gpuzarr imports)."""

from __future__ import annotations

import math
import operator

import numpy as np

__all__ = ["CACHE_LINE", "aligned_empty"]

#: The alignment gpuzarr gives buffers that reads land in: a cache line. On the AMD
#: EPYC CI machine the kernel copies page-cache bytes into memory 16 bytes off a cache
#: line (where NumPy and ``malloc`` put large buffers) about 3.5x slower.
CACHE_LINE = 64


def aligned_empty(
    shape: int | tuple[int, ...], dtype: np.dtype | type = np.uint8, align: int = CACHE_LINE
) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte
    boundary (a view of a slightly larger buffer). Not for object dtypes."""
    try:
        shape = (operator.index(shape),)  # type: ignore[arg-type]
    except TypeError:
        shape = tuple(operator.index(n) for n in shape)  # type: ignore[union-attr]
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise TypeError(f"aligned_empty cannot hold object dtype {dtype}")
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    offset = -raw.ctypes.data % align
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)
