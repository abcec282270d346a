"""Zarr v2 chunk encoding expressed as codecs.

A v2 chunk is ``compressor(filters(array in 'order'))``. gpuzarr models it as one
array→bytes codec (:class:`V2ArrayBytesCodec`: the array's memory layout, byte order
and the numcodecs filters, which in v2 work on flat buffers) followed by the compressor
as an ordinary bytes→bytes codec. Compressors with a native spec (zstd, gzip, blosc,
crc32c) use it, so v2 data shares the v3 codec implementations, GPU ones included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numcodecs
import numpy as np

from gpuzarr.codecs.base import ArrayBytesCodec, Buffer, BytesBytesCodec, ChunkSpec, as_memoryview
from gpuzarr.codecs.blosc import SHUFFLE_IDS, BloscCodec
from gpuzarr.codecs.crc32c import Crc32cCodec
from gpuzarr.codecs.gzip import GzipCodec
from gpuzarr.codecs.numcodecs_codecs import NumcodecsBytesCodec
from gpuzarr.codecs.zstd import ZstdCodec
from gpuzarr.errors import CorruptChunkError, MetadataError, UnsupportedCodecError

__all__ = ["OBJECT_FILTER_IDS", "V2ArrayBytesCodec", "v2_compressor"]

OBJECT_FILTER_IDS = frozenset({"vlen-utf8", "vlen-bytes", "vlen-array", "json2", "msgpack2", "pickle"})


@dataclass(frozen=True)
class V2ArrayBytesCodec(ArrayBytesCodec):
    """Array layout + v2 filters: the part of a v2 chunk's encoding before compression."""

    stored_dtype: str
    order: str = "C"
    filters: tuple[tuple[str, Any], ...] = ()  # numcodecs configs, frozen as item tuples

    name: ClassVar[str] = "zarr-v2"

    def __post_init__(self) -> None:
        self._filters  # noqa: B018 - fail early on unknown filters

    @classmethod
    def create(cls, stored_dtype: str, order: str, filters: list[Mapping[str, Any]]) -> V2ArrayBytesCodec:
        """Build from ``.zarray`` fields."""
        frozen = tuple(tuple(sorted(f.items())) for f in filters)
        return cls(stored_dtype, order, frozen)  # type: ignore[arg-type]

    @cached_property
    def _filters(self) -> list[numcodecs.abc.Codec]:
        codecs = []
        for items in self.filters:
            config = dict(items)  # type: ignore[arg-type]
            try:
                codecs.append(numcodecs.get_codec(config))
            except KeyError:
                raise UnsupportedCodecError(f"filters: unknown v2 filter {config.get('id')!r}") from None
            except (TypeError, ValueError) as exc:
                raise MetadataError(f"filters: invalid v2 filter {config!r}: {exc}") from None
        return codecs

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "configuration": {"dtype": self.stored_dtype, "order": self.order, "filters": list(map(dict, self.filters))},  # type: ignore[arg-type]
        }

    @property
    def _dtype(self) -> np.dtype:
        return np.dtype(self.stored_dtype)

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> np.ndarray:
        chunk: Any = data
        try:
            for f in reversed(self._filters):
                chunk = f.decode(chunk)
        except (ValueError, RuntimeError, TypeError, UnicodeDecodeError) as exc:
            raise CorruptChunkError(f"v2 filters: cannot decode chunk: {exc}") from None
        stored = self._dtype
        if stored.kind == "O":
            arr = np.asarray(chunk, dtype=object)
            if arr.size != spec.size:
                raise CorruptChunkError(f"v2 chunk holds {arr.size} items, expected {spec.size}")
            return arr.reshape(spec.shape, order=self.order).astype(spec.dtype, copy=False)  # type: ignore[call-overload]
        if isinstance(chunk, np.ndarray):
            chunk = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8)
        view = as_memoryview(chunk)
        if len(view) != spec.size * stored.itemsize:
            raise CorruptChunkError(
                f"v2 chunk holds {len(view)} bytes, expected {spec.size * stored.itemsize} "
                f"for shape {spec.shape} of {self.stored_dtype}"
            )
        arr = np.frombuffer(view, dtype=stored).reshape(spec.shape, order=self.order)  # type: ignore[call-overload]
        if stored != spec.dtype:
            return arr.astype(spec.dtype)
        return arr

    def cpu_encode(self, data: np.ndarray, spec: ChunkSpec) -> Any:
        stored = self._dtype
        if stored.kind == "O":
            chunk: Any = np.asarray(data, dtype=object)
            chunk = chunk.reshape(-1, order=self.order)  # type: ignore[call-overload]
        else:
            chunk = np.asarray(data, dtype=stored)
            chunk = np.asfortranarray(chunk) if self.order == "F" else np.ascontiguousarray(chunk)
        for f in self._filters:
            chunk = f.encode(chunk)
        if isinstance(chunk, np.ndarray) and chunk.flags.f_contiguous and not chunk.flags.c_contiguous:
            chunk = chunk.reshape(-1, order="F")  # memory order, as zarr v2 writes it
        return chunk


def v2_compressor(config: Mapping[str, Any] | None) -> BytesBytesCodec | None:
    """The bytes→bytes codec for a v2 ``compressor`` entry."""
    if config is None:
        return None
    cfg = dict(config)
    codec_id = cfg.pop("id")
    if codec_id == "zstd" and set(cfg) <= {"level", "checksum"}:
        return ZstdCodec(cfg.get("level", 0), bool(cfg.get("checksum", False)))
    if codec_id == "gzip" and set(cfg) <= {"level"}:
        return GzipCodec(cfg.get("level", 1))
    if codec_id == "crc32c" and not cfg:
        return Crc32cCodec()
    if codec_id == "blosc" and cfg.get("shuffle", 1) in (0, 1, 2) and set(cfg) <= {
        "cname",
        "clevel",
        "shuffle",
        "blocksize",
        "typesize",
    }:
        shuffle = {v: k for k, v in SHUFFLE_IDS.items()}[cfg.get("shuffle", 1)]
        return BloscCodec(cfg.get("cname", "lz4"), cfg.get("clevel", 5), shuffle, None, cfg.get("blocksize", 0))  # type: ignore[arg-type]
    return NumcodecsBytesCodec(codec_id, cfg)
