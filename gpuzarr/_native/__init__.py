"""gpuzarr's optional native helper (``call_each.c``), loaded with ctypes.

Built with the package where a C compiler is found (``hatch_build.py``); where it is
missing (no compiler, or a source checkout used without installing), :data:`call_shared`
and :data:`shard_reads` are None and callers loop in Python (threads sharing a batch
then take parts of it; shards are read through the store), as they do with
``GPUZARR_NO_NATIVE=1`` set. Nothing here touches a GPU.
"""

from __future__ import annotations

import ctypes
import os

from gpuzarr._native._name import LIBRARY_NAME

__all__ = [
    "LIBRARY_NAME",
    "STEPS",
    "UNIT_STATES",
    "ShardFile",
    "ShardRange",
    "ShardUnit",
    "call_shared",
    "file_reads",
    "shard_reads",
]


def _load() -> ctypes.CDLL | None:
    """The helper with its function's signature set, or None (disabled, not built, or
    built from a version of ``call_each.c`` without it)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)
    if os.environ.get("GPUZARR_NO_NATIVE", "0") not in ("", "0") or not os.path.exists(path):
        return None
    try:
        library = ctypes.CDLL(path)  # (CDLL, not PyDLL: calls release the GIL)
        function = library.gpuzarr_call_shared
    except (OSError, AttributeError):  # built for another platform, damaged, or stale
        return None
    pointer = ctypes.c_void_p
    function.argtypes = (pointer, pointer, ctypes.c_size_t, pointer, pointer, pointer, pointer, pointer, pointer)
    function.restype = ctypes.c_size_t
    return library


_library = _load()

#: ``gpuzarr_call_shared(fn, context, n, dst, dst_nbytes, src, src_nbytes, next,
#: failed_result)``: the calls of a batch, made by one thread or shared by several that
#: take them from one counter (see ``call_each.c``), or None where the helper is not
#: built.
call_shared = _library.gpuzarr_call_shared if _library is not None else None


class ShardFile(ctypes.Structure):
    """``gpuzarr_shard``: one shard file of a batched read (see ``call_each.c``)."""

    _fields_ = (
        ("path", ctypes.c_size_t),  # (a ``const char *``: its address, as NumPy records hold no pointers)
        ("first_unit", ctypes.c_size_t),
        ("n_units", ctypes.c_size_t),
        ("fd", ctypes.c_longlong),
        ("size", ctypes.c_ulonglong),
        ("error", ctypes.c_int),
        ("failed_step", ctypes.c_int),
        ("truncated", ctypes.c_int),
        ("bad_entry_kind", ctypes.c_int),
        ("bad_entry", ctypes.c_ulonglong),
    )


class ShardUnit(ctypes.Structure):
    """``gpuzarr_unit``: one inner chunk of a batched read."""

    _fields_ = (
        ("inner", ctypes.c_ulonglong),
        ("offset", ctypes.c_ulonglong),
        ("nbytes", ctypes.c_ulonglong),
        ("range", ctypes.c_ulonglong),
        ("state", ctypes.c_int),
    )


class ShardRange(ctypes.Structure):
    """``gpuzarr_range``: one coalesced read of a batched read."""

    _fields_ = (
        ("shard", ctypes.c_ulonglong),
        ("offset", ctypes.c_ulonglong),
        ("nbytes", ctypes.c_ulonglong),
        ("at", ctypes.c_ulonglong),
    )


#: ``ShardUnit.state`` values (and ``ShardFile.bad_entry_kind``'s): stored, not stored,
#: past the shard's end, half empty entry, entry past any possible end (2**63).
UNIT_STATES = ("stored", "empty", "past_end", "half_empty", "huge")

#: ``ShardFile.failed_step`` values: what failed with ``ShardFile.error``.
STEPS = (None, "open", "stat", "read")


class _ShardReads:
    """The helper's batched read of inner chunks from local shard files: open, plan
    (``gpuzarr_open_shards``), read and close (``gpuzarr_read_shards``), or close
    (``gpuzarr_close_shards``)."""

    def __init__(self, library: ctypes.CDLL) -> None:
        pointer, size, u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_ulonglong
        self.open = library.gpuzarr_open_shards
        self.open.argtypes = (pointer, size, pointer, pointer, pointer, size, ctypes.c_int, u64, u64, pointer, pointer)
        self.open.restype = size
        self.read = library.gpuzarr_read_shards
        self.read.argtypes = (pointer, size, pointer, size, pointer, size, pointer)
        self.read.restype = None
        self.close = library.gpuzarr_close_shards
        self.close.argtypes = (pointer, size)
        self.close.restype = None


class _FileReads:
    """The helper's batched read of whole local files into an arena: open and size
    (``gpuzarr_open_files``), read and close (``gpuzarr_read_files``), or close
    (``gpuzarr_close_shards``)."""

    def __init__(self, library: ctypes.CDLL) -> None:
        pointer, size, u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_ulonglong
        self.open = library.gpuzarr_open_files
        self.open.argtypes = (pointer, size, u64, pointer)
        self.open.restype = u64
        self.read = library.gpuzarr_read_files
        self.read.argtypes = (pointer, size, pointer, pointer)
        self.read.restype = None
        self.close = library.gpuzarr_close_shards
        self.close.argtypes = (pointer, size)
        self.close.restype = None


def _load_file_reads() -> _FileReads | None:
    try:
        return _FileReads(_library) if _library is not None else None
    except AttributeError:  # built without them (Windows), or from an older call_each.c
        return None


def _load_shard_reads() -> _ShardReads | None:
    try:
        return _ShardReads(_library) if _library is not None else None
    except AttributeError:  # built without them (Windows), or from an older call_each.c
        return None


#: The batched shard reads of local files, or None where the helper lacks them.
shard_reads = _load_shard_reads()

#: The batched reads of whole local files (``ShardFile`` records, one per file), or None
#: where the helper lacks them.
file_reads = _load_file_reads()
