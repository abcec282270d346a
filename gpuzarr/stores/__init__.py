"""Byte stores: where Zarr keys (``zarr.json``, ``a/c/0/1``, ...) live.

This package imports nothing from gpuzarr above it: only the modules that themselves
import nothing of gpuzarr (:mod:`gpuzarr.errors`, :mod:`gpuzarr.memory`,
:mod:`gpuzarr._checks`, :mod:`gpuzarr._cpu_hold`, :mod:`gpuzarr._native`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .base import Store
from .fsspec_store import FsspecStore
from .local import LocalStore
from .memory import MemoryStore
from .zip import ZipStore

__all__ = ["FsspecStore", "LocalStore", "MemoryStore", "Store", "ZipStore", "make_store"]

_MODES = ("r", "r+", "a", "w", "w-")
#: fsspec's names of local files, which go to LocalStore: its writes are atomic (a
#: temporary file renamed), where fsspec's local filesystem writes files in place.
_LOCAL_PROTOCOLS = ("file", "local")


def make_store(obj: object, mode: str = "r", storage_options: Mapping[str, Any] | None = None) -> Store:
    """Turn ``obj`` into a :class:`Store` for access ``mode``.

    * a :class:`Store` is returned as is (its own ``read_only`` stands);
    * a URL (``"s3://bucket/data.zarr"``, ``"gs://..."``, ``"https://..."``,
      ``"memory://..."``: anything fsspec knows, its protocol's package installed) gives
      an :class:`FsspecStore`; ``"file://..."`` and ``"local://..."`` are local paths;
    * an fsspec mapper (``fsspec.get_mapper(url)``, as zarr-python 2 took) gives an
      :class:`FsspecStore` over its filesystem and root (a :class:`LocalStore` for a
      mapper of local files);
    * a ``str`` or :class:`os.PathLike` path ending in ``.zip`` (and not an existing
      directory) gives a :class:`ZipStore` opened ``"r"`` for mode ``"r"``, ``"w"``
      for ``"w"`` and ``"a"`` otherwise; any other path gives a :class:`LocalStore`;
    * a ``dict`` gives a :class:`MemoryStore` over that very dict;
    * ``None`` gives a new, empty :class:`MemoryStore`.

    Modes follow zarr-python: ``"r"`` read-only, ``"r+"`` read/write existing,
    ``"a"`` read/write (create if needed), ``"w"`` create (the caller clears what
    exists), ``"w-"`` create, failing if something exists (checked by the caller).
    Stores made here are read-only exactly when ``mode == "r"``.

    ``storage_options`` (credentials, endpoints...) go to fsspec's filesystem for a URL,
    as zarr-python takes them; they apply to nothing else.

    Raises :class:`ValueError` for an unknown mode and :class:`TypeError` naming
    the type for anything that is not one of the above.
    """
    if mode not in _MODES:
        raise ValueError(f"invalid mode {mode!r}: expected one of {', '.join(_MODES)}")
    remote_url = isinstance(obj, str) and "://" in obj and obj.partition("://")[0] not in _LOCAL_PROTOCOLS
    if storage_options and not remote_url:
        raise ValueError(f"storage_options apply to URLs of fsspec filesystems only, not to {obj!r}")
    if isinstance(obj, Store):
        return obj
    read_only = mode == "r"
    if obj is None:
        return MemoryStore(read_only=read_only)
    if isinstance(obj, dict):
        return MemoryStore(obj, read_only=read_only)
    if isinstance(obj, str) and "://" in obj:
        protocol, _, rest = obj.partition("://")
        if protocol not in _LOCAL_PROTOCOLS:
            return FsspecStore.from_url(obj, read_only=read_only, storage_options=storage_options)
        obj = rest
    if _is_fsspec_mapper(obj):
        protocols = (obj.fs.protocol,) if isinstance(obj.fs.protocol, str) else obj.fs.protocol  # type: ignore[attr-defined]
        if not set(protocols) & set(_LOCAL_PROTOCOLS):
            return FsspecStore(obj.fs, obj.root, read_only=read_only)  # type: ignore[attr-defined]
        obj = obj.root  # type: ignore[attr-defined]
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if isinstance(path, str):
            # ("data.zip/", as shells complete a directory, names the zip file if it is one.)
            stripped = path.rstrip("/" + os.sep)
            if stripped != path and os.path.isfile(stripped):
                path = stripped
            if path.lower().endswith(".zip") and not os.path.isdir(path):
                zip_mode = "r" if mode == "r" else "w" if mode == "w" else "a"
                return ZipStore(path, zip_mode)
            return LocalStore(path, read_only=read_only)
    raise TypeError(
        f"cannot make a store from {type(obj).__name__}: expected a Store, a str or "
        "os.PathLike path, a URL, an fsspec mapper, a dict or None"
    )


def _is_fsspec_mapper(obj: object) -> bool:
    """Whether ``obj`` is an fsspec ``FSMap`` (without importing fsspec for the test)."""
    return any(c.__name__ == "FSMap" and c.__module__.startswith("fsspec") for c in type(obj).__mro__)
