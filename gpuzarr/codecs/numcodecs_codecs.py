"""The ``numcodecs.*`` codecs of v3 metadata, and v2 compressors without a native spec.

Each wraps the numcodecs implementation of the same id, so what numcodecs (and thus
zarr-python) writes, these read, and vice versa. The codec kind follows zarr-python:
array filters (delta, fixedscaleoffset, quantize, bitround, astype, packbits) are
array→array, everything else is bytes→bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numcodecs
import numpy as np

from gpuzarr.codecs._compressor import decode_with, encode_with
from gpuzarr.codecs.base import (
    ArrayArrayCodec,
    Buffer,
    BytesBytesCodec,
    ChunkSpec,
    as_memoryview,
)
from gpuzarr.errors import CorruptChunkError, MetadataError, UnsupportedCodecError
from gpuzarr.metadata.dtypes import data_type_from_numpy, data_type_from_user, is_ml_dtype, load_ml_dtypes_named

__all__ = [
    "ARITHMETIC_FILTER_IDS",
    "ARRAY_FILTER_IDS",
    "BYTES_CODEC_IDS",
    "NumcodecsArrayCodec",
    "NumcodecsBytesCodec",
    "check_filter_for",
    "make_numcodecs",
    "numcodecs_codec_from_v3",
]

#: numcodecs ids that transform arrays (their encoded dtype/shape may change).
ARRAY_FILTER_IDS = frozenset({"delta", "fixedscaleoffset", "quantize", "bitround", "astype", "packbits"})
#: Filters that compute in the element type (differences, scaling, rounding of bits):
#: wrong in an ml_dtypes type (float8 differences of zero are NaN where the type has no
#: zero, scaled values saturate) and unknown to bitround.
ARITHMETIC_FILTER_IDS = frozenset({"delta", "fixedscaleoffset", "quantize", "bitround"})

#: numcodecs ids that transform bytes.
BYTES_CODEC_IDS = frozenset(
    {
        "blosc",
        "bz2",
        "crc32",
        "crc32c",
        "adler32",
        "fletcher32",
        "gzip",
        "jenkins_lookup3",
        "lz4",
        "lzma",
        "shuffle",
        "zlib",
        "zstd",
    }
)


def check_filter_for(codec_id: str, dtype: np.dtype, where: str) -> None:
    """Refuse a numcodecs array filter that cannot encode elements of ``dtype``:
    ``packbits`` takes bools only (it would pack other types' bytes as bools), and the
    arithmetic filters take no ml_dtypes type."""
    if codec_id == "packbits" and dtype != np.bool_:
        raise MetadataError(f"{where}: codec 'packbits' needs a bool array, not {dtype}")
    if codec_id in ARITHMETIC_FILTER_IDS and is_ml_dtype(dtype):
        raise UnsupportedCodecError(
            f"{where}: codec {codec_id!r} computes in the element type, which {dtype} cannot do exactly; "
            "convert with an 'astype' filter first, or store another type"
        )


def make_numcodecs(config: Mapping[str, Any], where: str) -> numcodecs.abc.Codec:
    """Instantiate a numcodecs codec from its ``{"id": ...}`` config, with typed errors.

    An id numcodecs does not know is an UnsupportedCodecError; a bad setting for a
    known one is a MetadataError. (numcodecs itself raises ValueError for both.)
    """
    codec_id = config.get("id")
    if codec_id not in numcodecs.registry.codec_registry:
        raise UnsupportedCodecError(f"{where}: unknown numcodecs codec {codec_id!r}")
    load_ml_dtypes_named(config.values(), where)  # (astype to "bfloat16" and the like)
    try:
        return numcodecs.get_codec(dict(config))
    except (TypeError, ValueError, KeyError) as exc:
        raise MetadataError(f"{where}: invalid configuration for codec {codec_id!r}: {exc}") from None


def _make_impl(codec_id: str, config: Mapping[str, Any], where: str) -> numcodecs.abc.Codec:
    return make_numcodecs({"id": codec_id, **config}, where)


#: numcodecs bytes codecs whose encoding is not compute-bound: checksums, and lz4.
_LIGHT_CODEC_IDS = frozenset({"adler32", "crc32", "crc32c", "fletcher32", "jenkins_lookup3", "lz4"})


@dataclass(frozen=True)
class _NumcodecsWrapper:
    """What the ``numcodecs.*`` wrappers share: the numcodecs id and config, checked early.

    The id lives in the v3 *name* (``numcodecs.<id>``), which ``from_config`` never sees.
    """

    codec_id: str
    configuration: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "numcodecs.*"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        raise TypeError(
            f"{cls.__name__} wraps any numcodecs codec, so its configuration alone does not say "
            "which; use codec_from_json({'name': 'numcodecs.<id>', 'configuration': ...})"
        )

    def __post_init__(self) -> None:
        self._impl  # validate the configuration eagerly  # noqa: B018

    @cached_property
    def _impl(self) -> numcodecs.abc.Codec:
        return _make_impl(self.codec_id, self.configuration, f"codec 'numcodecs.{self.codec_id}'")

    def to_json(self) -> dict[str, Any]:
        return {"name": f"numcodecs.{self.codec_id}", "configuration": dict(self.configuration)}

    def to_v2_json(self) -> dict[str, Any]:
        return {"id": self.codec_id, **self.configuration}


@dataclass(frozen=True)
class NumcodecsBytesCodec(_NumcodecsWrapper, BytesBytesCodec):
    """A numcodecs bytes→bytes codec (compressor or checksum) under ``numcodecs.<id>``."""

    @property
    def compute_bound(self) -> bool:  # type: ignore[override]
        """Whether the codec is a compressor slower than lz4 (checksums and lz4 are not)."""
        return self.codec_id not in _LIGHT_CODEC_IDS

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> Buffer:
        def run(buf: Buffer, dest: np.ndarray | None) -> Buffer:
            return self._impl.decode(buf)

        return decode_with(f"numcodecs.{self.codec_id}", run, data, None)

    def cpu_encode(self, data: Buffer, spec: ChunkSpec) -> Buffer:
        # (An ndarray keeps its item size: blosc and shuffle use it.)
        source = np.ascontiguousarray(data) if isinstance(data, np.ndarray) else as_memoryview(data)
        return encode_with(f"numcodecs.{self.codec_id}", self.configuration, lambda: self._impl.encode(source))


@dataclass(frozen=True)
class NumcodecsArrayCodec(_NumcodecsWrapper, ArrayArrayCodec):
    """A numcodecs array filter under ``numcodecs.<id>`` (delta, fixedscaleoffset, ...)."""

    def resolve(self, spec: ChunkSpec) -> ChunkSpec:
        cfg = self.configuration
        check_filter_for(self.codec_id, spec.dtype, f"codec 'numcodecs.{self.codec_id}'")
        if self.codec_id == "packbits":
            n = spec.size
            return ChunkSpec((1 + -(-n // 8),), data_type_from_numpy(np.dtype(np.uint8)), 0)
        encoded = {
            "delta": cfg.get("astype") or cfg.get("dtype"),
            "fixedscaleoffset": cfg.get("astype") or cfg.get("dtype"),
            "quantize": cfg.get("astype") or cfg.get("dtype"),
            "astype": cfg.get("encode_dtype"),
        }.get(self.codec_id)
        if encoded is None:
            return spec
        data_type = data_type_from_user(encoded)
        fill = np.asarray(spec.fill_value).astype(data_type.dtype)[()] if spec.fill_value is not None else None
        return ChunkSpec(spec.shape, data_type, fill)

    def cpu_decode(self, data: np.ndarray, spec: ChunkSpec, out: np.ndarray | None = None) -> np.ndarray:
        try:
            decoded = np.asarray(self._impl.decode(np.ascontiguousarray(data)))
        except (ValueError, RuntimeError, TypeError) as exc:
            raise CorruptChunkError(f"codec 'numcodecs.{self.codec_id}': {exc}") from None
        if decoded.size != spec.size:
            raise CorruptChunkError(
                f"codec 'numcodecs.{self.codec_id}': decoded {decoded.size} items, expected {spec.size}"
            )
        decoded = decoded.reshape(spec.shape)
        return decoded if decoded.dtype == spec.dtype else decoded.astype(spec.dtype)

    def cpu_encode(self, data: np.ndarray, spec: ChunkSpec) -> np.ndarray:
        encoded_spec = self.resolve(spec)
        source = np.ascontiguousarray(data)
        encoded = np.asarray(
            encode_with(f"numcodecs.{self.codec_id}", self.configuration, lambda: self._impl.encode(source))
        )
        if self.codec_id == "bitround" and encoded.dtype != encoded_spec.dtype:
            # bitround hands back the rounded floats' bit patterns as same-width integers:
            # reinterpret them, a value cast would store the integers as floats.
            encoded = encoded.view(encoded_spec.dtype)
        return encoded.reshape(encoded_spec.shape).astype(encoded_spec.dtype, copy=False)


def numcodecs_codec_from_v3(name: str, config: Mapping[str, Any]) -> NumcodecsArrayCodec | NumcodecsBytesCodec:
    """Build the wrapper for a v3 ``numcodecs.<id>`` codec entry."""
    codec_id = name.removeprefix("numcodecs.")
    if codec_id in ARRAY_FILTER_IDS:
        return NumcodecsArrayCodec(codec_id, dict(config))
    if codec_id in BYTES_CODEC_IDS:
        return NumcodecsBytesCodec(codec_id, dict(config))
    raise UnsupportedCodecError(f"unsupported codec {name!r}")
