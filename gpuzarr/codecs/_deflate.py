"""DEFLATE streams (gzip and zlib containers) on the CPU: libdeflate when present, zlib always.

libdeflate (the ``deflate`` package) inflates about twice as fast as zlib and releases
the GIL, but it needs to know how big the output is and decodes only the first member
of a multi-member gzip stream. So it is used only when the caller knows the decoded size
and the result has exactly that size; anything else goes through zlib, which is the
authority on what the stream holds (and raises the precise error for corrupt data).
"""

from __future__ import annotations

import zlib
from typing import Any

from gpuzarr.codecs.base import Buffer, as_memoryview
from gpuzarr.errors import CorruptChunkError

try:  # optional accelerator; everything works without it
    import deflate as _libdeflate

    _LIBDEFLATE_ERRORS: tuple[type[Exception], ...] = (ValueError, _libdeflate.DeflateError)
except ImportError:  # pragma: no cover - exercised where the wheel is missing
    _libdeflate = None
    _LIBDEFLATE_ERRORS = (ValueError,)

__all__ = ["HAVE_LIBDEFLATE", "gzip_compress", "gzip_decompress", "zlib_compress", "zlib_decompress"]

HAVE_LIBDEFLATE = _libdeflate is not None
_GZIP_WBITS = 16 + zlib.MAX_WBITS
#: The smallest gzip member: a 10-byte header, an empty deflate block, the 8-byte trailer.
GZIP_MIN_MEMBER_NBYTES = 20
#: A gzip member's trailer: CRC-32 of the decoded bytes, then their size mod 2**32 (both little-endian).
GZIP_TRAILER_NBYTES = 8


def gzip_decompress(data: Buffer, expected: int | None = None) -> bytes:
    """Decompress every gzip member in ``data`` (concatenated members are legal)."""
    view = as_memoryview(data)
    if _libdeflate is not None and expected is not None and _ends_with_size(view, expected):
        # libdeflate decodes the first member only, into a buffer sized by the stream's
        # last 4 bytes. So it is asked only when those bytes give the expected size, and
        # its result kept only when the stream's last 8 bytes are that member's trailer
        # (CRC-32 and size): a single-member stream, as written. A truncated stream
        # (whose last bytes would ask for up to 4 GiB), one followed by junk, and a valid
        # stream of several members go to zlib, which decodes or names the problem.
        try:
            out = _libdeflate.gzip_decompress(view)
        except (*_LIBDEFLATE_ERRORS, MemoryError):
            out = None  # let zlib name the problem
        if out is not None and len(out) == expected and _libdeflate.crc32(out) == int.from_bytes(view[-8:-4], "little"):
            return out
    parts = []
    while True:
        d = zlib.decompressobj(_GZIP_WBITS)
        parts.append(d.decompress(view))
        if not d.eof:
            raise CorruptChunkError("codec 'gzip': truncated stream")
        rest = d.unused_data
        if not rest.strip(b"\0"):  # trailing zero padding is tolerated, as by gzip(1)
            break
        view = memoryview(rest)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _ends_with_size(view: memoryview, expected: int) -> bool:
    """Whether a gzip stream's last 4 bytes (a member's ISIZE: the decoded size modulo
    2**32) state ``expected`` bytes, after at least a minimal member's other bytes."""
    return view.nbytes >= GZIP_MIN_MEMBER_NBYTES and int.from_bytes(view[-4:], "little") == expected % 2**32


def gzip_compress(data: Buffer, level: int) -> bytes:
    """One gzip member at ``level`` (0-9)."""
    view = as_memoryview(data)
    if _libdeflate is not None:
        return bytes(_libdeflate.gzip_compress(view, level))
    c = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
    return c.compress(view) + c.flush()


def zlib_decompress(data: Buffer, expected: int | None = None) -> bytes:
    """Decompress a zlib stream (RFC 1950)."""
    view = as_memoryview(data)
    if _libdeflate is not None and expected is not None:
        try:
            out: Any = _libdeflate.zlib_decompress(view, expected)
        except _LIBDEFLATE_ERRORS:
            out = None
        if out is not None and len(out) == expected:
            return bytes(out)
    return zlib.decompress(view)


def zlib_compress(data: Buffer, level: int) -> bytes:
    """A zlib stream at ``level`` (-1 default, 0-9)."""
    view = as_memoryview(data)
    if _libdeflate is not None and level >= 0:
        return bytes(_libdeflate.zlib_compress(view, level))
    return zlib.compress(view, level)
