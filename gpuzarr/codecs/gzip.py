"""The ``gzip`` codec (RFC 1952 members around DEFLATE), via libdeflate or zlib (both release the GIL)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from gpuzarr.codecs._compressor import decode_with, decoded_size_hint
from gpuzarr.codecs._deflate import GZIP_MIN_MEMBER_NBYTES, GZIP_TRAILER_NBYTES, gzip_compress, gzip_decompress
from gpuzarr.codecs.base import Buffer, BytesBytesCodec, ChunkSpec
from gpuzarr.errors import MetadataError

__all__ = ["GZIP_MIN_MEMBER_NBYTES", "GZIP_TRAILER_NBYTES", "GzipCodec"]


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
        expected = decoded_size_hint(spec)
        return decode_with("gzip", lambda buf, _: gzip_decompress(buf, expected), data, None)

    def cpu_encode(self, data: Buffer, spec: ChunkSpec) -> bytes:
        return gzip_compress(data, self.level)
