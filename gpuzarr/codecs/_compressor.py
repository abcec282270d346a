"""Shared plumbing of the compressor (bytes→bytes) codecs on the CPU."""

from __future__ import annotations

import ctypes
import lzma
import zlib
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from gpuzarr.codecs.base import Buffer, ChunkSpec
from gpuzarr.errors import ChecksumError, CorruptChunkError, MetadataError

_T = TypeVar("_T")

__all__ = ["buffer_address", "decode_with", "decoded_size_hint", "encode_with", "typed_decode_error"]


def buffer_address(data: Buffer, *, writable: bool = False) -> tuple[int, int, object]:
    """``(address, nbytes, holder)`` of ``data``'s bytes, for a C function called
    through ctypes: keep ``holder`` until the call returns (it holds the buffer exported,
    so a ``bytearray`` cannot be resized or freed under the call). ``writable``: the
    function will write there, so a read-only buffer is refused (ValueError), as is a
    strided one.

    Writable contiguous buffers (arena views, output arrays) take ctypes' direct route,
    about 0.4 us; NumPy's ``.ctypes.data`` costs 1.5-2.5 us, which is a noticeable
    part of decoding a 64 KiB chunk. Read-only buffers (``bytes``) go through NumPy.
    """
    try:
        holder: object = ctypes.c_char.from_buffer(data)  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):  # read-only, empty, not contiguous, or no buffer
        pass
    else:
        kind = type(data)
        nbytes = data.nbytes if kind is memoryview or kind is np.ndarray else memoryview(data).nbytes  # type: ignore[union-attr]
        return ctypes.addressof(holder), nbytes, holder  # type: ignore[arg-type]
    # (Never a contiguous copy: its address would dangle once this returns.)
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous:
            raise ValueError("the buffer is not C-contiguous")
        if writable and not data.flags.writeable:
            raise ValueError("the buffer is read-only")
        return data.ctypes.data, data.nbytes, data
    view = memoryview(data)
    if not view.c_contiguous:
        raise ValueError("the buffer is not C-contiguous")
    if writable and view.readonly:
        raise ValueError("the buffer is read-only")
    array = np.frombuffer(view, dtype=np.uint8)
    return array.ctypes.data, view.nbytes, array


def decoded_size_hint(spec: ChunkSpec) -> int | None:
    """Bytes the decoder must produce, when the chunk has a fixed size."""
    return None if spec.data_type.is_variable_length else spec.nbytes


#: What library decoders raise for input they reject.
_DECODER_ERRORS = (ValueError, RuntimeError, OSError, TypeError, EOFError, zlib.error, lzma.LZMAError)


def typed_decode_error(name: str, exc: BaseException) -> ChecksumError | CorruptChunkError:
    """The typed error for a library decoder's rejection ``exc`` of a chunk of codec
    ``name``: ChecksumError if its message mentions a checksum, else CorruptChunkError."""
    message = str(exc)
    if "checksum" in message.lower() or "crc" in message.lower():
        return ChecksumError(f"codec {name!r}: {message}")
    return CorruptChunkError(f"codec {name!r}: cannot decode chunk: {message}")


def decode_with(
    name: str, decode: Callable[[Buffer, np.ndarray | None], Buffer], data: Buffer, out: np.ndarray | None
) -> Buffer:
    """Run a library decoder, turning its assorted exceptions into typed errors
    (:func:`typed_decode_error`; both name the codec)."""
    try:
        return decode(data, out)
    except _DECODER_ERRORS as exc:
        raise typed_decode_error(name, exc) from None


def encode_with(name: str, configuration: object, encode: Callable[[], _T]) -> _T:
    """Run a library encoder; what it raises becomes a MetadataError naming the codec and
    its configuration. (numcodecs takes most settings unchecked, ``level="x"`` say, and
    fails only when it encodes, with an error that names neither.)"""
    try:
        return encode()
    except (TypeError, ValueError, OverflowError, RuntimeError, KeyError) as exc:
        # (KeyError: numcodecs' BitRound looks the dtype up in a table, '>f4' missing)
        raise MetadataError(
            f"codec {name!r} with configuration {configuration!r} cannot encode a chunk: {type(exc).__name__}: {exc}"
        ) from exc
