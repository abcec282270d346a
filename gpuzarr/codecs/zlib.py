"""The ``numcodecs.zlib`` codec (v3 name) and v2 ``zlib`` compressor: RFC 1950 streams."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from gpuzarr._checks import is_int
from gpuzarr.codecs._compressor import decode_with, decoded_size_hint
from gpuzarr.codecs._deflate import zlib_compress, zlib_decompress
from gpuzarr.codecs.base import Buffer, BytesBytesCodec, ChunkSpec
from gpuzarr.errors import MetadataError

__all__ = ["ZlibCodec"]


@dataclass(frozen=True)
class ZlibCodec(BytesBytesCodec):
    """zlib compression at ``level`` (-1 for zlib's default, 0-9), as numcodecs' Zlib.

    A native spec rather than the generic numcodecs wrapper so that it decodes with
    libdeflate where available (and, on the GPU, as raw DEFLATE inside the container).
    """

    level: int = 1

    name: ClassVar[str] = "numcodecs.zlib"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ZlibCodec:
        level = config.get("level", 1)
        if set(config) - {"level"} or not is_int(level) or not -1 <= level <= 9:
            raise MetadataError(f"codec 'numcodecs.zlib': level must be an integer -1..9, got {dict(config)!r}")
        return cls(level)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "configuration": {"level": self.level}}

    def to_v2_json(self) -> dict[str, Any]:
        return {"id": "zlib", "level": self.level}

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> bytes:
        expected = decoded_size_hint(spec)
        return decode_with("numcodecs.zlib", lambda buf, _: zlib_decompress(buf, expected), data, None)

    def cpu_encode(self, data: Buffer, spec: ChunkSpec) -> bytes:
        return zlib_compress(data, self.level)
