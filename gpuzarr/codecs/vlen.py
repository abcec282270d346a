"""Variable-length codecs: ``vlen-utf8`` (strings) and ``vlen-bytes`` (byte strings).

The encoding (shared with numcodecs and zarr-python): a little-endian uint32 item
count, then per item a little-endian uint32 byte length and the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numcodecs
import numpy as np

from gpuzarr.codecs.base import ArrayBytesCodec, Buffer, ChunkSpec, as_memoryview
from gpuzarr.errors import CorruptChunkError, MetadataError

__all__ = ["VLEN_IDS", "VLenBytesCodec", "VLenUTF8Codec", "check_vlen_header"]

#: numcodecs ids of the codecs that write this encoding (vlen-array too: a count, then
#: per item a length and the item's bytes).
VLEN_IDS = frozenset({"vlen-utf8", "vlen-bytes", "vlen-array"})

#: The item count, then at least one length per item: 4 bytes each.
_COUNT_NBYTES = 4


def check_vlen_header(data: Buffer, items: int, codec: str) -> None:
    """Raise :class:`CorruptChunkError` unless ``data`` starts with the count of
    ``items`` and is long enough for their lengths: numcodecs trusts the count and
    allocates for it (a flipped bit asks for gigabytes) before it finds out."""
    view = as_memoryview(data)
    if view.nbytes < _COUNT_NBYTES:
        raise CorruptChunkError(f"codec {codec!r}: chunk of {view.nbytes} bytes has no item count")
    count = int.from_bytes(view[:_COUNT_NBYTES], "little")
    if count != items:
        raise CorruptChunkError(f"codec {codec!r}: chunk holds {count} items, expected {items}")
    if view.nbytes < _COUNT_NBYTES * (1 + count):
        raise CorruptChunkError(
            f"codec {codec!r}: chunk of {view.nbytes} bytes is too short for the lengths of {count} items"
        )


@dataclass(frozen=True)
class _VLenCodec(ArrayBytesCodec):
    _kind: ClassVar[str]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> _VLenCodec:
        if config:
            raise MetadataError(f"codec {cls.name!r}: takes no configuration, got {dict(config)!r}")
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "configuration": {}}

    def to_v2_json(self) -> dict[str, Any]:
        return {"id": self.name}

    def resolve(self, spec: ChunkSpec) -> ChunkSpec:
        if spec.data_type.kind != self._kind:
            raise MetadataError(
                f"codec {self.name!r} cannot serialise data type {spec.data_type.name!r}"
            )
        return spec

    def _impl(self) -> numcodecs.abc.Codec:
        return numcodecs.VLenUTF8() if self._kind == "string" else numcodecs.VLenBytes()

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> np.ndarray:
        check_vlen_header(data, spec.size, self.name)
        try:
            items = self._impl().decode(data)
        except (ValueError, RuntimeError, UnicodeDecodeError) as exc:
            raise CorruptChunkError(f"codec {self.name!r}: cannot decode chunk: {exc}") from None
        if items.size != spec.size:
            raise CorruptChunkError(
                f"codec {self.name!r}: chunk holds {items.size} items, expected {spec.size}"
            )
        return items.reshape(spec.shape).astype(spec.dtype, copy=False)

    def cpu_encode(self, data: np.ndarray, spec: ChunkSpec) -> bytes:
        flat = np.ascontiguousarray(data).reshape(-1).astype(object)
        return self._impl().encode(flat)


@dataclass(frozen=True)
class VLenUTF8Codec(_VLenCodec):
    """Variable-length UTF-8 strings (data type ``string``)."""

    name: ClassVar[str] = "vlen-utf8"
    _kind: ClassVar[str] = "string"


@dataclass(frozen=True)
class VLenBytesCodec(_VLenCodec):
    """Variable-length byte strings (data type ``bytes``)."""

    name: ClassVar[str] = "vlen-bytes"
    _kind: ClassVar[str] = "bytes"
