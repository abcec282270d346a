"""The ``crc32c`` codec: appends a little-endian CRC-32C of the bytes, checks it on decode."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import crc32c as _crc32c
import numpy as np

from gpuzarr.codecs.base import Buffer, BytesBytesCodec, ChunkSpec, as_memoryview
from gpuzarr.errors import ChecksumError, CorruptChunkError, MetadataError

__all__ = ["Crc32cCodec", "crc32c_checksum"]


def crc32c_checksum(data: Buffer) -> int:
    """CRC-32C (Castagnoli) of ``data``; the crc32c package releases the GIL on large input."""
    return _crc32c.crc32c(as_memoryview(data))


@dataclass(frozen=True)
class Crc32cCodec(BytesBytesCodec):
    """Checksum codec: 4 trailing bytes hold the CRC-32C of everything before them."""

    name: ClassVar[str] = "crc32c"
    fixed_size: ClassVar[bool] = True
    compute_bound: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Crc32cCodec:
        if config:
            raise MetadataError(f"codec 'crc32c': takes no configuration, got {dict(config)!r}")
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"name": "crc32c"}

    def to_v2_json(self) -> dict[str, Any]:
        return {"id": "crc32c"}

    def encoded_size(self, decoded_size: int, spec: ChunkSpec) -> int:
        return decoded_size + 4

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> memoryview:
        view = as_memoryview(data)
        if len(view) < 4:
            raise CorruptChunkError(f"codec 'crc32c': chunk of {len(view)} bytes is too short for a checksum")
        payload = view[:-4]
        stored = int.from_bytes(view[-4:], "little")
        actual = crc32c_checksum(payload)
        if stored != actual:
            raise ChecksumError(
                f"codec 'crc32c': checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
            )
        return payload

    def cpu_encode(self, data: Buffer, spec: ChunkSpec) -> bytes:
        view = as_memoryview(data)
        return bytes(view) + crc32c_checksum(view).to_bytes(4, "little")
