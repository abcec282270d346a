"""gpuzarr's optional native helper (``call_each.c``), loaded with ctypes.

Built with the package where a C compiler is found (``hatch_build.py``); where it is
missing (no compiler, or a source checkout used without installing), :data:`call_shared`
is None and callers loop in Python (threads sharing a batch then take parts of it), as
they do with ``GPUZARR_NO_NATIVE=1`` set. Nothing here touches a GPU.
"""

from __future__ import annotations

import ctypes
import os

from gpuzarr._native._name import LIBRARY_NAME

__all__ = ["LIBRARY_NAME", "call_shared"]


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
