"""Shared plumbing of the compressor (bytes→bytes) codecs on the CPU."""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable

import numpy as np

from gpuzarr.codecs.base import Buffer, ChunkSpec
from gpuzarr.errors import ChecksumError, CorruptChunkError

__all__ = ["decode_with", "decoded_size_hint"]


def decoded_size_hint(spec: ChunkSpec) -> int | None:
    """Bytes the decoder must produce, when the chunk has a fixed size."""
    return None if spec.data_type.is_variable_length else spec.nbytes


def decode_with(
    name: str, decode: Callable[[Buffer, np.ndarray | None], Buffer], data: Buffer, out: np.ndarray | None
) -> Buffer:
    """Run a library decoder, turning its assorted exceptions into typed errors.

    Library messages mentioning a checksum become ChecksumError; anything else the
    decoder rejects is a CorruptChunkError. Both name the codec.
    """
    try:
        return decode(data, out)
    except (ValueError, RuntimeError, OSError, TypeError, EOFError, zlib.error, lzma.LZMAError) as exc:
        message = str(exc)
        if "checksum" in message.lower() or "crc" in message.lower():
            raise ChecksumError(f"codec {name!r}: {message}") from None
        raise CorruptChunkError(f"codec {name!r}: cannot decode chunk: {message}") from None
