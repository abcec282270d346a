"""gpuzarr's optional native helper (``call_each.c``), loaded with ctypes.

Built with the package where a C compiler is found (``hatch_build.py``); where it is
missing (no compiler, or a source checkout used without installing), :data:`call_each`
and :data:`call_shared` are None and callers loop in Python (threads sharing a batch
then take parts of it), as they do with ``GPUZARR_NO_NATIVE=1`` set. Nothing here
touches a GPU.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["LIBRARY_NAME", "call_each", "call_shared"]

#: File name of the built helper, next to this module.
LIBRARY_NAME = "_call_each" + (".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so")


def _load() -> ctypes.CDLL | None:
    """The helper with its functions' signatures set, or None (disabled, not built, or
    built from another version of ``call_each.c``: one build makes every function)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)
    if os.environ.get("GPUZARR_NO_NATIVE", "0") not in ("", "0") or not os.path.exists(path):
        return None
    try:
        library = ctypes.CDLL(path)  # (CDLL, not PyDLL: calls release the GIL)
        functions = (library.gpuzarr_call_each, library.gpuzarr_call_shared)
    except (OSError, AttributeError):  # built for another platform, damaged, or stale
        return None
    pointer = ctypes.c_void_p
    batch = (pointer, pointer, ctypes.c_size_t, pointer, pointer, pointer, pointer)
    for function, extra in zip(functions, ((pointer,), (pointer, pointer)), strict=True):
        function.argtypes = batch + extra
        function.restype = ctypes.c_size_t
    return library


_library = _load()

#: ``gpuzarr_call_each(fn, context, n, dst, dst_nbytes, src, src_nbytes, failed_result)``
#: (see ``call_each.c``), or None where the helper is not built.
call_each = _library.gpuzarr_call_each if _library is not None else None

#: ``gpuzarr_call_shared(fn, context, n, dst, dst_nbytes, src, src_nbytes, next,
#: failed_result)``: ``call_each`` over a batch several threads share (see
#: ``call_each.c``), or None where the helper is not built.
call_shared = _library.gpuzarr_call_shared if _library is not None else None
