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

from gpuzarr.codecs._compressor import encode_with
from gpuzarr.codecs.base import ArrayBytesCodec, Buffer, BytesBytesCodec, ChunkSpec, as_memoryview
from gpuzarr.codecs.blosc import SHUFFLE_IDS, BloscCodec
from gpuzarr.codecs.crc32c import Crc32cCodec
from gpuzarr.codecs.gzip import GzipCodec
from gpuzarr.codecs.numcodecs_codecs import (
    ARRAY_FILTER_IDS,
    NumcodecsBytesCodec,
    check_filter_for,
    make_numcodecs,
)
from gpuzarr.codecs.vlen import VLEN_IDS, check_vlen_header
from gpuzarr.codecs.zlib import ZlibCodec
from gpuzarr.codecs.zstd import ZstdCodec
from gpuzarr.errors import CorruptChunkError, MetadataError
from gpuzarr.metadata.dtypes import data_type_from_user, v2_stored_dtype

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
        objects = [dict(f).get("id") for f in self.filters if dict(f).get("id") in OBJECT_FILTER_IDS]
        if objects and self._dtype.kind != "O":
            raise MetadataError(
                f"filters: {objects[0]!r} encodes Python objects, but dtype {self.stored_dtype!r} "
                "is not the object dtype '|O'"
            )

    def resolve(self, spec: ChunkSpec) -> ChunkSpec:
        # Each filter sees the type the ones before it encode to (numcodecs' own
        # settings: ``astype``'s ``encode_dtype``, the others' ``astype``).
        current = spec.dtype
        for items in self.filters:
            config = dict(items)  # type: ignore[arg-type]
            codec_id = config.get("id")
            if codec_id in ARRAY_FILTER_IDS:
                check_filter_for(codec_id, current, f"filters: {codec_id!r}")
                encoded = config.get("encode_dtype" if codec_id == "astype" else "astype")
                if codec_id == "packbits":
                    current = np.dtype(np.uint8)
                elif isinstance(encoded, str):
                    current = data_type_from_user(encoded).dtype
        return spec

    @classmethod
    def create(cls, stored_dtype: str, order: str, filters: list[Mapping[str, Any]]) -> V2ArrayBytesCodec:
        """Build from ``.zarray`` fields."""
        frozen = tuple(tuple(sorted(f.items())) for f in filters)
        return cls(stored_dtype, order, frozen)  # type: ignore[arg-type]

    @cached_property
    def _filters(self) -> list[numcodecs.abc.Codec]:
        return [make_numcodecs(dict(items), "filters") for items in self.filters]  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "configuration": {
                "dtype": self.stored_dtype,
                "order": self.order,
                "filters": [dict(f) for f in self.filters],  # type: ignore[arg-type]
            },
        }

    @property
    def _dtype(self) -> np.dtype:
        return v2_stored_dtype(self.stored_dtype)

    def plain_stored_dtype(self, spec: ChunkSpec) -> np.dtype | None:
        # Without filters, a C-order chunk (or any chunk of one dimension) is stored as
        # its elements, like the v3 ``bytes`` codec stores them.
        stored = self._dtype
        if self.filters or stored.kind == "O" or spec.data_type.is_variable_length:
            return None
        if self.order != "C" and sum(n > 1 for n in spec.shape) > 1:
            return None
        return stored if stored.itemsize == spec.dtype.itemsize else None

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> np.ndarray:
        chunk: Any = data
        try:
            for f in reversed(self._filters):
                if f.codec_id in VLEN_IDS:
                    check_vlen_header(chunk, spec.size, f.codec_id)
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
            if not chunk.flags.writeable:  # (a view of the value: numcodecs' VLenBytes refuses those)
                chunk = chunk.copy()
        else:
            chunk = np.asarray(data, dtype=stored)
            chunk = np.asfortranarray(chunk) if self.order == "F" else np.ascontiguousarray(chunk)
        for f, config in zip(self._filters, self.filters, strict=True):
            if f.codec_id in OBJECT_FILTER_IDS:
                # (What these reject is the data, not their settings: its error stands.)
                chunk = f.encode(chunk)
            else:
                chunk = encode_with(f.codec_id, dict(config), lambda f=f, c=chunk: f.encode(c))
        if isinstance(chunk, np.ndarray) and chunk.flags.f_contiguous and not chunk.flags.c_contiguous:
            chunk = chunk.reshape(-1, order="F")  # memory order, as zarr v2 writes it
        return chunk


def v2_compressor(config: Mapping[str, Any] | None) -> BytesBytesCodec | None:
    """The bytes→bytes codec for a v2 ``compressor`` entry."""
    if config is None:
        return None
    cfg = dict(config)
    codec_id = cfg.pop("id")
    where = f"compressor {codec_id!r}"
    # Compressors with a native spec go through its validation (as v3 configs do), so a
    # bad setting fails at open, naming the field, not at the first chunk.
    if codec_id == "zstd" and set(cfg) <= {"level", "checksum"}:
        return _validated(ZstdCodec, {"level": cfg.get("level", 0), "checksum": cfg.get("checksum", False)}, where)
    if codec_id == "gzip" and set(cfg) <= {"level"}:
        return _validated(GzipCodec, {"level": cfg.get("level", 1)}, where)
    if codec_id == "zlib" and set(cfg) <= {"level"}:
        return _validated(ZlibCodec, {"level": cfg.get("level", 1)}, where)
    if codec_id == "crc32c" and not cfg:
        return Crc32cCodec()
    shuffle_names = {v: k for k, v in SHUFFLE_IDS.items()}
    shuffle = cfg.get("shuffle", 1)
    if codec_id == "blosc" and not isinstance(shuffle, int):  # (numcodecs would take it, and fail per chunk)
        raise MetadataError(f"{where}: shuffle must be an integer (-1 auto, 0 none, 1 byte, 2 bit), got {shuffle!r}")
    if codec_id == "blosc" and shuffle in shuffle_names and set(cfg) <= {
        "cname",
        "clevel",
        "shuffle",
        "blocksize",
        "typesize",
    }:
        blosc_cfg = {
            "cname": cfg.get("cname", "lz4"),
            "clevel": cfg.get("clevel", 5),
            "shuffle": shuffle_names[cfg.get("shuffle", 1)],
            "blocksize": cfg.get("blocksize", 0),
        }
        return _validated(BloscCodec, blosc_cfg, where)
    return NumcodecsBytesCodec(codec_id, cfg)


def _validated(cls: type[BytesBytesCodec], config: dict[str, Any], where: str) -> BytesBytesCodec:
    try:
        return cls.from_config(config)  # type: ignore[return-value]
    except MetadataError as exc:
        raise MetadataError(f"{where}: {exc}") from None
