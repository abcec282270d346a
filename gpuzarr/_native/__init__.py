"""gpuzarr's optional native helper (``call_each.c`` and ``bitshuffle.c``), loaded with ctypes.

Built with the package where a C compiler is found (``hatch_build.py``); where it is
missing (no compiler, or a source checkout used without installing), :data:`call_shared`,
:data:`shard_reads`, :data:`file_reads`, :data:`read_call_shared`,
:data:`read_shards_call_shared`, :data:`file_writes` and :data:`blosc_decompress` are
None and callers loop in Python (threads sharing a batch then take parts of it; shards
and files are read and written through the store; c-blosc undoes bitshuffles alone), as
they do with ``GPUZARR_NO_NATIVE=1`` set. Nothing here touches a GPU.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from gpuzarr._native._name import LIBRARY_NAME

__all__ = [
    "LIBRARY_NAME",
    "PUT_STEPS",
    "STEPS",
    "UNIT_STATES",
    "PutRecord",
    "ShardFile",
    "ShardRange",
    "ShardUnit",
    "bitunshuffle",
    "blosc_decompress",
    "blosc_unshuffles_here",
    "call_shared",
    "file_reads",
    "file_writes",
    "read_call_shared",
    "read_shards_call_shared",
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

_pointer, _size, _u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_ulonglong


def _function(name: str, argtypes: tuple[Any, ...], restype: Any) -> Any:
    """The helper's function ``name`` with its signature set, or None (no helper, or one
    built without it: on Windows, or from an older ``call_each.c``)."""
    function = getattr(_library, name, None) if _library is not None else None
    if function is not None:
        function.argtypes = argtypes
        function.restype = restype
    return function


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


class _BatchedReads:
    """One of the helper's two-step batched reads: ``open`` (open the files, plan),
    ``read`` (read, close them all) and ``close`` (close any still open, after a
    failure between the two), with their signatures set."""

    def __init__(self, open_: Any, read: Any, close: Any) -> None:
        self.open, self.read, self.close = open_, read, close


def _batched_reads(prefix: str, open_args: tuple[Any, ...], open_result: Any, read_args: tuple[Any, ...]) -> Any:
    """``gpuzarr_open_{prefix}`` and ``gpuzarr_read_{prefix}`` (with the shared
    ``gpuzarr_close_shards``) as a :class:`_BatchedReads`, or None where the helper lacks
    them (Windows, or a build from an older ``call_each.c``)."""
    functions = (
        _function(f"gpuzarr_open_{prefix}", open_args, open_result),
        _function(f"gpuzarr_read_{prefix}", read_args, None),
        _function("gpuzarr_close_shards", (_pointer, _size), None),
    )
    return None if None in functions else _BatchedReads(*functions)


#: The batched reads of inner chunks of local shard files (``gpuzarr_open_shards``:
#: open, read each index, plan the ranges; ``gpuzarr_read_shards``: read, close), or None
#: where the helper lacks them.
shard_reads = _batched_reads(
    "shards",
    (_pointer, _size, _pointer, _pointer, _pointer, _size, ctypes.c_int, _u64, _u64, _pointer, _pointer),
    _size,
    (_pointer, _size, _pointer, _size, _pointer, _size, _pointer),
)

#: The batched reads of whole local files (``ShardFile`` records, one per file:
#: ``gpuzarr_open_files`` opens and sizes them, ``gpuzarr_read_files`` reads and closes
#: them), or None where the helper lacks them.
file_reads = _batched_reads("files", (_pointer, _size, _u64, _pointer), _u64, (_pointer, _size, _pointer, _pointer))

#: ``gpuzarr_read_call_shared(fn, context, n, files, dst, dst_nbytes, buffer,
#: buffer_nbytes, next, results)``: whole local files (``ShardFile`` records) each read
#: into this thread's ``buffer`` and decoded by ``fn`` straight into its target, threads
#: sharing the batch through ``next`` (see ``call_each.c``), or None where the helper
#: lacks it.
read_call_shared = _function(
    "gpuzarr_read_call_shared",
    (_pointer, _pointer, _size, _pointer, _pointer, _pointer, _pointer, _size, _pointer, _pointer),
    None,
)


#: ``gpuzarr_read_shards_call_shared(fn, context, shards, unit_shard, units, n, dst,
#: dst_nbytes, buffer, buffer_nbytes, next, results)``: inner chunks (``ShardUnit``
#: records) of shard files ``shard_reads.open`` opened, each read into this thread's
#: ``buffer`` and decoded by ``fn`` straight into its target, threads sharing the batch
#: through ``next`` (see ``call_each.c``), or None where the helper lacks it.
read_shards_call_shared = _function(
    "gpuzarr_read_shards_call_shared",
    (_pointer, _pointer, _pointer, _pointer, _pointer, _size, _pointer, _size, _pointer, _size, _pointer, _pointer),
    None,
)

class PutRecord(ctypes.Structure):
    """``gpuzarr_put``: one object of a batched write (see ``call_each.c``)."""

    _fields_ = (
        ("path", ctypes.c_size_t),  # (``const char *`` addresses, as in ``ShardFile``)
        ("temp", ctypes.c_size_t),
        ("first_part", ctypes.c_size_t),
        ("n_parts", ctypes.c_size_t),
        ("error", ctypes.c_int),
        ("failed_step", ctypes.c_int),
        ("hold", ctypes.c_int),
        ("held", ctypes.c_int),
    )


#: ``PutRecord.failed_step`` values: what failed with ``PutRecord.error``.
PUT_STEPS = (None, "create", "write", "fsync", "close", "rename")

#: ``gpuzarr_put_files(puts, n, parts, part_nbytes, sync, unnamed)``: objects
#: (``PutRecord`` records) each written to its temp file (fsynced if ``sync``) and
#: renamed over its path, one after another without the GIL (the file each replaces
#: handed back open where its record asks: ``hold``, ``held``); with ``unnamed``, new
#: objects written to an unnamed file (Linux's O_TMPFILE) linked at their path instead.
#: None where the helper lacks it.
file_writes = _function(
    "gpuzarr_put_files", (_pointer, _size, _pointer, _pointer, ctypes.c_int, ctypes.c_int), None
)


def _bitunshuffle_functions() -> tuple[Any, Any, Any]:
    """``gpuzarr_blosc_decompress``, ``gpuzarr_blosc_unshuffles_here`` and
    ``gpuzarr_bitunshuffle`` (``bitshuffle.c``), or Nones where the helper lacks them or
    this CPU cannot run them (no AVX2, or a build without the vector code)."""
    available = _function("gpuzarr_bitunshuffle_available", (), ctypes.c_int)
    if available is None or not available():
        return None, None, None
    return (
        _function("gpuzarr_blosc_decompress", (_pointer, _pointer, _size, _pointer, _size), ctypes.c_int),
        _function("gpuzarr_blosc_unshuffles_here", (_pointer, _size, _size), ctypes.c_int),
        _function("gpuzarr_bitunshuffle", (_pointer, _pointer, _size, _size, ctypes.c_int), ctypes.c_int),
    )


#: ``gpuzarr_blosc_decompress(blosc_decompress_ctx, src, srcsize, dest, destsize)``:
#: c-blosc 1's ``blosc_decompress_ctx(src, dest, destsize, 1)`` (passed by address), its
#: result too, with the bitshuffle of 2-, 4- and 8-byte elements undone by the helper's
#: AVX2 code instead of c-blosc's (see ``bitshuffle.c``);
#: ``gpuzarr_blosc_unshuffles_here(src, srcsize, destsize)``: whether it does so for a
#: buffer; ``gpuzarr_bitunshuffle(in, out, n_elements, elem_size, scalar)``: the
#: unshuffle alone (with ``scalar``, its bit-by-bit reference). None where the helper
#: lacks them or the CPU has no AVX2.
blosc_decompress, blosc_unshuffles_here, bitunshuffle = _bitunshuffle_functions()
