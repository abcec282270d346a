"""The ``bytes`` codec: fixed-size elements to bytes in little or big endian order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from gpuzarr.codecs.base import ArrayBytesCodec, Buffer, ChunkSpec
from gpuzarr.errors import CorruptChunkError, MetadataError
from gpuzarr.metadata.dtypes import has_byte_order, with_byte_order

__all__ = ["BytesCodec"]


def _holds_bits(stored: np.dtype, dtype: np.dtype) -> bool:
    """Whether ``stored`` is the unsigned integer that holds the bits of an ml_dtypes
    element in the other byte order (see ``with_byte_order``), not the element type."""
    return stored.kind != dtype.kind


@dataclass(frozen=True)
class BytesCodec(ArrayBytesCodec):
    """Serialise fixed-size elements as raw bytes, in C order, with the given endianness.

    ``endian`` may be omitted only for types without a byte order (bool, int8, uint8,
    fixed-length bytes); ``None`` then means "not applicable".
    """

    endian: Literal["little", "big"] | None = "little"

    name: ClassVar[str] = "bytes"
    fixed_size: ClassVar[bool] = True
    decodes_into: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BytesCodec:
        extra = set(config) - {"endian"}
        if extra:
            raise MetadataError(f"codec 'bytes': unknown configuration fields {sorted(extra)}")
        endian = config.get("endian")
        if endian not in ("little", "big", None):
            raise MetadataError(f"codec 'bytes': endian must be 'little' or 'big', got {endian!r}")
        return cls(endian)

    def to_json(self) -> dict[str, Any]:
        if self.endian is None:
            return {"name": "bytes"}
        return {"name": "bytes", "configuration": {"endian": self.endian}}

    def evolve(self, spec: ChunkSpec) -> BytesCodec:
        # zarr-python drops endian for byte-order-free types; keep what the user said otherwise.
        if not spec.data_type.is_variable_length and not has_byte_order(spec.dtype):
            return BytesCodec(None)
        return self

    def resolve(self, spec: ChunkSpec) -> ChunkSpec:
        if spec.data_type.is_variable_length:
            raise MetadataError(
                f"codec 'bytes' cannot serialise variable-length data type "
                f"{spec.data_type.name!r}; use vlen-utf8 or vlen-bytes"
            )
        if self.endian is None and has_byte_order(spec.dtype):
            raise MetadataError(
                f"codec 'bytes': endian is required for data type {spec.data_type.name!r}"
            )
        return spec

    def stored_dtype(self, dtype: np.dtype) -> np.dtype:
        """The dtype of the stored elements (byte order made explicit): for an ml_dtypes
        type in the other byte order, the unsigned integer of its bits in that order
        (see :func:`~gpuzarr.metadata.dtypes.with_byte_order`)."""
        return with_byte_order(dtype, "<" if self.endian == "little" else ">")

    def plain_stored_dtype(self, spec: ChunkSpec) -> np.dtype | None:
        if spec.data_type.is_variable_length:
            return None
        stored = self.stored_dtype(spec.dtype)
        # (Bits held as an integer convert by view, not astype: not a plain element.)
        return None if _holds_bits(stored, spec.dtype) else stored

    def encoded_size(self, decoded_size: int, spec: ChunkSpec) -> int:
        return spec.nbytes

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> np.ndarray:
        stored = self.stored_dtype(spec.dtype)
        n = data.nbytes if isinstance(data, (np.ndarray, memoryview)) else len(data)
        if n != spec.nbytes:
            raise CorruptChunkError(
                f"codec 'bytes': chunk holds {n} bytes, expected {spec.nbytes} "
                f"for shape {spec.shape} of {spec.data_type.name}"
            )
        if isinstance(data, np.ndarray):
            arr = data.reshape(-1).view(np.uint8).view(stored).reshape(spec.shape)
        else:
            arr = np.frombuffer(data, dtype=stored).reshape(spec.shape)
        if stored.isnative and not _holds_bits(stored, spec.dtype):
            return arr
        # Swap into the element type, or into its bits (an ml_dtypes type in the other
        # byte order is stored as the bits of an unsigned integer).
        target = stored.newbyteorder("=") if _holds_bits(stored, spec.dtype) else spec.dtype
        if out is not None:  # swap straight into the destination, no temporary
            np.copyto(out.view(target), arr)
            return out
        return arr.astype(target).view(spec.dtype)

    def cpu_encode(self, data: np.ndarray, spec: ChunkSpec) -> np.ndarray:
        stored = self.stored_dtype(spec.dtype)
        if _holds_bits(stored, spec.dtype):
            return np.ascontiguousarray(data, dtype=spec.dtype).view(stored.newbyteorder("=")).astype(stored)
        if data.dtype != stored:
            return np.ascontiguousarray(data, dtype=stored)
        return np.ascontiguousarray(data)
