"""The ``gzip`` codec (RFC 1952 members around DEFLATE), via zlib which releases the GIL."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from gpuzarr.codecs._compressor import decode_with
from gpuzarr.codecs.base import Buffer, BytesBytesCodec, ChunkSpec, as_memoryview
from gpuzarr.errors import CorruptChunkError, MetadataError

__all__ = ["GzipCodec"]

_GZIP_WBITS = 16 + zlib.MAX_WBITS


def _gunzip(data: Buffer, out: np.ndarray | None = None) -> bytes:
    """Decompress every gzip member in ``data`` (concatenated members are legal)."""
    view = as_memoryview(data)
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


@dataclass(frozen=True)
class GzipCodec(BytesBytesCodec):
    """gzip compression at ``level`` 0-9."""

    level: int = 5

    name: ClassVar[str] = "gzip"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GzipCodec:
        level = config.get("level", 5)
        if set(config) - {"level"} or not isinstance(level, int) or not 0 <= level <= 9:
            raise MetadataError(f"codec 'gzip': level must be an integer 0-9, got {dict(config)!r}")
        return cls(level)

    def to_json(self) -> dict[str, Any]:
        return {"name": "gzip", "configuration": {"level": self.level}}

    def to_v2_json(self) -> dict[str, Any]:
        return {"id": "gzip", "level": self.level}

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> bytes:
        return decode_with("gzip", _gunzip, data, None)

    def cpu_encode(self, data: Buffer, spec: ChunkSpec) -> bytes:
        c = zlib.compressobj(self.level, zlib.DEFLATED, _GZIP_WBITS)
        return c.compress(as_memoryview(data)) + c.flush()
