"""gpuzarr's optional native helper (``call_each.c``), loaded with ctypes.

Built with the package where a C compiler is found (``hatch_build.py``); where it is
missing (no compiler, or a source checkout used without installing), :data:`call_each`
is None and callers loop in Python, as they do with ``GPUZARR_NO_NATIVE=1`` set. Nothing
here touches a GPU.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["LIBRARY_NAME", "call_each"]

#: File name of the built helper, next to this module.
LIBRARY_NAME = "_call_each" + (".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so")


def _load() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)
    if os.environ.get("GPUZARR_NO_NATIVE", "0") not in ("", "0") or not os.path.exists(path):
        return None
    try:
        library = ctypes.CDLL(path)  # (CDLL, not PyDLL: calls release the GIL)
        function = library.gpuzarr_call_each
    except (OSError, AttributeError):  # built for another platform, or damaged
        return None
    pointer = ctypes.c_void_p
    function.argtypes = (pointer, pointer, ctypes.c_size_t, pointer, pointer, pointer, pointer, pointer)
    function.restype = ctypes.c_size_t
    return function


#: ``gpuzarr_call_each(fn, context, n, dst, dst_nbytes, src, src_nbytes, failed_result)``
#: (see ``call_each.c``), or None where the helper is not built.
call_each = _load()
