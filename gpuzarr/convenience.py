"""zarr-python's convenience functions: arrays of one value, arrays like another, an
array from existing data, and opening consolidated metadata.

Each is a thin layer over :func:`gpuzarr.create_array` and :func:`gpuzarr.open_group`
with zarr-python's names and defaults: ``store``, ``path`` and ``mode`` as zarr-python's
``create`` takes them, the rest as ``create_array`` takes them (zarr-python 2's
``compressor=`` and ``synchronizer=`` are not taken). Arrays of one value store nothing:
every chunk is the fill value until written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpuzarr.api import create_array, open_group
from gpuzarr.array import Array, like_arguments
from gpuzarr.group import ONE_VALUE_DTYPE, Group

__all__ = [
    "copy_into",
    "empty",
    "empty_like",
    "from_array",
    "full",
    "full_like",
    "ones",
    "ones_like",
    "open_consolidated",
    "zeros",
    "zeros_like",
]

#: Values one step of :func:`copy_into` reads and writes at most (one storage chunk row
#: of the target more where a row is larger).
_COPY_STEP_BYTES = 64 * 2**20
#: ``from_array``'s "copy this setting from the source" value, as zarr-python spells it.
_KEEP = "keep"


def _create(store: Any, kwargs: dict[str, Any]) -> Array:
    """:func:`gpuzarr.create_array` with zarr-python's ``create`` spellings: ``path``
    for ``name``, and ``mode`` (``"w"`` replaces what exists; ``"a"`` and ``"w-"``
    create where nothing is)."""
    if "path" in kwargs:
        if kwargs.get("name") is not None:
            raise TypeError("give the array's place as path= or name=, not both")
        kwargs["name"] = kwargs.pop("path")
    mode = kwargs.pop("mode", "a")
    if mode not in ("a", "w", "w-"):
        raise ValueError(f"mode {mode!r} cannot create an array; use 'a', 'w' or 'w-'")
    if mode == "w":
        kwargs["overwrite"] = True
    return create_array(store, **kwargs)


def full(shape: Any, fill_value: Any, *, store: Any = None, **kwargs: Any) -> Array:
    """An array of ``shape`` whose every element is ``fill_value`` (stored as the fill
    value: nothing is written). Other arguments are :func:`gpuzarr.create_array`'s (and
    ``path``, ``mode``); ``dtype`` defaults to float64 and ``store`` to a new memory
    store, as in zarr-python."""
    kwargs.setdefault("dtype", ONE_VALUE_DTYPE)
    return _create(store, {**kwargs, "shape": shape, "fill_value": fill_value})


def zeros(shape: Any, *, store: Any = None, **kwargs: Any) -> Array:
    """An array of zeros (see :func:`full`)."""
    return full(shape, 0, store=store, **kwargs)


def ones(shape: Any, *, store: Any = None, **kwargs: Any) -> Array:
    """An array of ones (see :func:`full`)."""
    return full(shape, 1, store=store, **kwargs)


def empty(shape: Any, *, store: Any = None, **kwargs: Any) -> Array:
    """An array whose elements are not set: they read as the data type's default fill
    value (zero, NaT for times, empty strings), as zarr-python's ``empty`` does."""
    return full(shape, kwargs.pop("fill_value", None), store=store, **kwargs)


def full_like(a: Any, *, store: Any = None, **kwargs: Any) -> Array:
    """An array shaped, typed, chunked and encoded like ``a`` (a gpuzarr array, or any
    array with ``shape`` and ``dtype``), every element ``fill_value`` (by default
    ``a``'s fill value). Other arguments override what is copied from ``a``."""
    return _create(store, {**like_arguments(a), **kwargs})


def zeros_like(a: Any, *, store: Any = None, **kwargs: Any) -> Array:
    """An array of zeros like ``a`` (see :func:`full_like`)."""
    return full_like(a, store=store, **{**kwargs, "fill_value": 0})


def ones_like(a: Any, *, store: Any = None, **kwargs: Any) -> Array:
    """An array of ones like ``a`` (see :func:`full_like`)."""
    return full_like(a, store=store, **{**kwargs, "fill_value": 1})


def empty_like(a: Any, *, store: Any = None, **kwargs: Any) -> Array:
    """An array like ``a`` whose elements are not set (see :func:`full_like`; they read
    as ``a``'s fill value)."""
    return full_like(a, store=store, **kwargs)


def copy_into(target: Array, source: Any) -> None:
    """Write ``source`` (a gpuzarr array or an array-like of ``target``'s shape) into
    ``target`` a slab at a time: whole rows of ``target``'s storage chunks (shards when
    sharded), about 64 MiB of values per step, so copying a large array never holds it
    all in memory and every storage object is written once, whole."""
    if tuple(source.shape) != target.shape:
        raise ValueError(f"data of shape {tuple(source.shape)} does not fit shape {target.shape}")
    if target.ndim == 0 or target.size == 0:
        target[...] = source[...]
        return
    grid_row = target.metadata.chunks[0]
    row_bytes = max(1, math.prod(target.shape[1:]) * max(1, target.dtype.itemsize) * grid_row)
    step = grid_row * max(1, _COPY_STEP_BYTES // row_bytes)
    for start in range(0, target.shape[0], step):
        window = slice(start, min(start + step, target.shape[0]))
        target[window] = source[window]


def _is_keep(value: Any) -> bool:
    return isinstance(value, str) and value == _KEEP


def from_array(
    store: Any,
    *,
    data: Any,
    write_data: bool = True,
    name: str | None = None,
    chunks: Any = _KEEP,
    shards: Any = _KEEP,
    filters: Any = _KEEP,
    compressors: Any = _KEEP,
    serializer: Any = _KEEP,
    fill_value: Any = _KEEP,
    zarr_format: int | None = None,
    **kwargs: Any,
) -> Array:
    """A new array in ``store`` holding ``data`` (a gpuzarr array, or any array-like), as
    zarr-python's ``from_array``.

    With ``"keep"`` (the default), chunks, shards, codecs and fill value are copied from
    a gpuzarr ``data`` of the same Zarr format (each may be given instead); for other
    data they take :func:`gpuzarr.create_array`'s defaults. The data is copied a slab
    at a time (see :func:`copy_into`) unless ``write_data=False``. Other keyword
    arguments (``attributes``, ``order``, ``overwrite``, ``device``...) are
    ``create_array``'s.

    The fill value (``None`` also keeps it) and the attributes of a gpuzarr ``data`` are
    copied unless given, as zarr-python's documentation says; zarr-python 3.1 itself
    copies neither.
    """
    if fill_value is None:
        fill_value = _KEEP
    if not isinstance(data, Array) and not (hasattr(data, "shape") and hasattr(data, "dtype")):
        data = np.asarray(data)
    source_format = data.metadata.zarr_format if isinstance(data, Array) else None
    fmt = zarr_format if zarr_format is not None else (source_format or 3)
    kept = like_arguments(data)
    if fmt != source_format:
        # Codecs, chunking and key encoding of another format (or of a NumPy array)
        # do not carry over: those settings take their defaults.
        kept = {key: kept[key] for key in ("shape", "dtype", "fill_value") if key in kept}
        if isinstance(data, Array):
            kept["chunks"] = data.chunks
    settings = {"chunks": chunks, "shards": shards, "filters": filters, "compressors": compressors,
                "serializer": serializer, "fill_value": fill_value}
    for key, value in settings.items():
        if not _is_keep(value):
            kwargs[key] = value
        elif key in kept:
            kwargs[key] = kept[key]
    for key in ("order", "chunk_key_encoding", "dimension_names"):
        if key in kept:
            kwargs.setdefault(key, kept[key])
    if isinstance(data, Array):
        kwargs.setdefault("attributes", dict(data.attrs))
    target = create_array(store, shape=kept["shape"], dtype=kept["dtype"], zarr_format=fmt, name=name, **kwargs)
    if write_data:
        copy_into(target, data)
    return target


def open_consolidated(store: Any = None, **kwargs: Any) -> Group:
    """Open a group through its consolidated metadata, which must exist (see
    :func:`gpuzarr.open_group`, whose arguments this takes)."""
    if kwargs.pop("use_consolidated", True) is not True:
        raise ValueError("open_consolidated opens groups with use_consolidated=True only")
    return open_group(store, use_consolidated=True, **kwargs)
