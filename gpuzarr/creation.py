"""Building the metadata of a new array from create_array's arguments (v2 and v3)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from gpuzarr._checks import is_integer
from gpuzarr.codecs import (
    ArrayArrayCodec,
    ArrayBytesCodec,
    BytesBytesCodec,
    BytesCodec,
    ChunkSpec,
    Codec,
    CodecChain,
    ShardingCodec,
    V2ArrayBytesCodec,
    VLenBytesCodec,
    VLenUTF8Codec,
    ZstdCodec,
    codec_from_user,
    v2_compressor,
)
from gpuzarr.errors import UnsupportedCodecError, UnsupportedDataTypeError
from gpuzarr.metadata import (
    ML_DATA_TYPES,
    ML_V2_DATA_TYPES,
    ArrayMetadata,
    ArrayMetadataV2,
    ArrayMetadataV3,
    ChunkKeyEncoding,
    DataType,
    data_type_from_user,
)

__all__ = ["build_array_metadata", "guess_chunks"]

#: Chunks gpuzarr picks when asked for "auto": about 1 MiB, large enough to amortise
#: per-chunk overhead and small enough for partial reads and parallel decode.
AUTO_CHUNK_BYTES = 2**20


def guess_chunks(shape: Sequence[int], itemsize: int, target: int = AUTO_CHUNK_BYTES) -> tuple[int, ...]:
    """A chunk shape of about ``target`` bytes, halving the largest dimension until it fits."""
    chunks = [max(1, s) for s in shape]
    itemsize = max(1, itemsize)
    while chunks and math.prod(chunks) * itemsize > target and max(chunks) > 1:
        i = int(np.argmax(chunks))
        chunks[i] = -(-chunks[i] // 2)
    return tuple(chunks)


def _codec_list(value: Any, where: str) -> list[Codec]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [codec_from_user(v, where) for v in value]
    return [codec_from_user(value, where)]


def _expect_kind(codecs: list[Codec], kind: type[Codec], where: str, what: str) -> None:
    for codec in codecs:
        if not isinstance(codec, kind):
            # (The JSON name: the `name` of every numcodecs wrapper is "numcodecs.*".)
            raise ValueError(f"{where}: codec {codec.to_json()['name']!r} is not {what}")


def _default_serializer(data_type: DataType) -> ArrayBytesCodec:
    if data_type.kind == "string":
        return VLenUTF8Codec()
    if data_type.kind == "bytes":
        return VLenBytesCodec()
    return BytesCodec("little")


def _shape_tuple(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        value = (value,)
    try:
        result = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"{name} must be an integer or a sequence of integers, got {value!r}") from None
    return result


def _chunk_tuple(chunks: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A user's chunk shape, normalised as zarr-python does.

    One integer applies to every dimension; ``None`` or ``-1`` for a dimension means
    "the whole dimension" (at least 1, so an empty dimension still has a chunk size).
    """
    if is_integer(chunks):
        return (int(chunks),) * len(shape)
    if isinstance(chunks, (list, tuple)) and len(chunks) == len(shape):
        chunks = [max(1, s) if c is None or (isinstance(c, (int, np.integer)) and c == -1) else c
                  for c, s in zip(chunks, shape, strict=True)]
    return _shape_tuple(chunks, "chunks")


def _requested_byte_order(dtype: Any) -> str:
    """``">"`` when the user asked for a big-endian NumPy dtype (``">i4"``), else ``"<"``.

    In memory gpuzarr always uses the native order; for v2 the stored order is part of
    the dtype string, and zarr-python keeps the one asked for, so gpuzarr does too.
    """
    if isinstance(dtype, (str, np.dtype, type)):
        try:
            return ">" if np.dtype(dtype).byteorder == ">" else "<"
        except (TypeError, ValueError):
            pass  # "string", "bytes" and other gpuzarr-only spellings
    return "<"


def _parse_shards(
    shards: Any, shape: tuple[int, ...]
) -> tuple[tuple[int, ...], Literal["start", "end"]] | None:
    """``shards`` as zarr-python takes it: a shape, or ``{"shape": ..., "index_location": ...}``."""
    if shards is None:
        return None
    location: Any = "end"
    if isinstance(shards, Mapping):
        unknown = set(shards) - {"shape", "index_location"}
        if unknown or "shape" not in shards:
            raise ValueError(f"shards must be a shape or {{'shape': ..., 'index_location': ...}}, got {shards!r}")
        location = shards.get("index_location", "end")
        shards = shards["shape"]
    if location not in ("start", "end"):
        raise ValueError(f"shards index_location must be 'start' or 'end', got {location!r}")
    shard_t = _shape_tuple(shards, "shards")
    _check_grid_shape(shard_t, shape, "shards")
    return shard_t, location


def _check_grid_shape(grid: tuple[int, ...], shape: tuple[int, ...], name: str) -> None:
    """Refuse ``chunks`` or ``shards`` of another rank than the array, or not positive."""
    if len(grid) != len(shape):
        raise ValueError(f"{name} {grid} has {len(grid)} dimensions, the array's shape {shape} has {len(shape)}")
    if any(c < 1 for c in grid):
        raise ValueError(f"{name} {grid} must be positive in every dimension")


def build_array_metadata(
    *,
    shape: Any,
    dtype: Any,
    chunks: Any = "auto",
    shards: Any = None,
    filters: Any = None,
    compressors: Any = "auto",
    serializer: Any = None,
    fill_value: Any = None,
    order: Literal["C", "F"] | None = None,
    zarr_format: Literal[2, 3] = 3,
    attributes: Mapping[str, Any] | None = None,
    dimension_names: Sequence[str | None] | None = None,
    chunk_key_encoding: Any = None,
) -> ArrayMetadata:
    """Validate create_array's arguments and build the array's metadata."""
    shape_t = _shape_tuple(shape, "shape")
    if any(s < 0 for s in shape_t):
        raise ValueError(f"shape {shape_t} has a negative dimension")
    data_type = data_type_from_user(dtype)
    sharding = _parse_shards(shards, shape_t)
    if chunks is None or (isinstance(chunks, str) and chunks == "auto"):
        # With shards, chunks are the compression unit inside a shard: guess within it.
        chunk_t = guess_chunks(sharding[0] if sharding else shape_t, data_type.item_size or 16)
    else:
        chunk_t = _chunk_tuple(chunks, shape_t)
    _check_grid_shape(chunk_t, shape_t, "chunks")
    if sharding is not None:
        if zarr_format != 3:
            raise ValueError("shards need Zarr format 3 (sharding_indexed is a v3 codec)")
        if any(s % c for s, c in zip(sharding[0], chunk_t, strict=True)):
            raise ValueError(f"shards {sharding[0]} must be a multiple of chunks {chunk_t} in every dimension")
    if order not in (None, "C", "F"):
        raise ValueError(f"order must be 'C' or 'F', got {order!r}")
    try:
        fill = data_type.cast_fill_value(fill_value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    attrs = dict(attributes or {})

    if zarr_format == 3:
        return _v3_metadata(
            shape_t, data_type, chunk_t, fill, filters, compressors, serializer, attrs, dimension_names,
            chunk_key_encoding, sharding,
        )
    if zarr_format == 2:
        if dimension_names is not None:
            raise ValueError("dimension_names are not supported by Zarr format 2")
        if serializer not in (None, "auto"):
            raise ValueError("serializer is not supported by Zarr format 2 (use filters and compressors)")
        return _v2_metadata(
            shape_t, data_type, chunk_t, fill, filters, compressors, order or "C", attrs, chunk_key_encoding,
            _requested_byte_order(dtype),
        )
    raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")


def _v3_metadata(
    shape: tuple[int, ...],
    data_type: DataType,
    chunks: tuple[int, ...],
    fill: Any,
    filters: Any,
    compressors: Any,
    serializer: Any,
    attrs: dict[str, Any],
    dimension_names: Sequence[str | None] | None,
    chunk_key_encoding: Any,
    sharding: tuple[tuple[int, ...], Literal["start", "end"]] | None = None,
) -> ArrayMetadataV3:
    array_array = _codec_list(filters, "filters")
    _expect_kind(array_array, ArrayArrayCodec, "filters", "an array→array codec")
    if serializer is None or serializer == "auto":
        array_bytes: Codec = _default_serializer(data_type)
    else:
        array_bytes = codec_from_user(serializer, "serializer")
        _expect_kind([array_bytes], ArrayBytesCodec, "serializer", "an array→bytes codec")
    if isinstance(compressors, str) and compressors == "auto":
        bytes_bytes: list[Codec] = [ZstdCodec(level=0, checksum=False)]
    else:
        bytes_bytes = _codec_list(compressors, "compressors")
    _expect_kind(bytes_bytes, BytesBytesCodec, "compressors", "a bytes→bytes codec")
    codecs: list[Codec] = [*array_array, array_bytes, *bytes_bytes]
    if sharding is not None:
        # As zarr-python does: every requested codec runs on the inner chunks, and the
        # array's only codec is the sharding codec; the storage grid becomes the shards.
        shard_shape, index_location = sharding
        codecs = [ShardingCodec(chunks, tuple(codecs), index_location=index_location)]
        chunks = shard_shape
    spec = ChunkSpec(chunks, data_type, fill)
    chain = CodecChain(codecs, spec)  # validates the chain
    if dimension_names is not None:
        dimension_names = tuple(dimension_names)
        if len(dimension_names) != len(shape) or not all(n is None or isinstance(n, str) for n in dimension_names):
            raise ValueError(f"dimension_names must give a string or None for each of the {len(shape)} dimensions")
    encoding = (
        ChunkKeyEncoding()
        if chunk_key_encoding is None
        else ChunkKeyEncoding.from_json(chunk_key_encoding, "chunk_key_encoding")
    )
    return ArrayMetadataV3(
        shape, data_type, chunks, fill, tuple(chain.to_json()), encoding, attrs, dimension_names
    )


def _v2_metadata(
    shape: tuple[int, ...],
    data_type: DataType,
    chunks: tuple[int, ...],
    fill: Any,
    filters: Any,
    compressors: Any,
    order: Literal["C", "F"],
    attrs: dict[str, Any],
    chunk_key_encoding: Any,
    byte_order: str = "<",
) -> ArrayMetadataV2:
    v2_filters: list[dict[str, Any]] = []
    if data_type.kind in ("string", "bytes"):
        stored_dtype = "|O"
        v2_filters.append({"id": "vlen-utf8" if data_type.kind == "string" else "vlen-bytes"})
    elif data_type.name in ML_DATA_TYPES:
        if data_type.name not in ML_V2_DATA_TYPES:
            raise UnsupportedDataTypeError(
                f"dtype: data type {data_type.name!r} has no Zarr v2 form; use zarr_format=3"
            )
        stored_dtype = data_type.name  # (tensorstore's v2 form: a bare name, little-endian)
    elif data_type.dtype.itemsize > 1:
        stored_dtype = data_type.dtype.newbyteorder(byte_order).str  # "|S5" etc. stay "|"
    else:
        stored_dtype = data_type.dtype.str
    for codec in _codec_list(filters, "filters"):
        as_v2 = codec.to_v2_json()
        if as_v2 is None:
            raise UnsupportedCodecError(f"filters: codec {codec.name!r} has no Zarr v2 (numcodecs) form")
        v2_filters.append(as_v2)
    if isinstance(compressors, str) and compressors == "auto":
        compressor: dict[str, Any] | None = {"id": "zstd", "level": 0}
    else:
        listed = _codec_list(compressors, "compressors")
        if len(listed) > 1:
            raise ValueError("Zarr format 2 arrays take at most one compressor")
        compressor = None
        if listed:
            compressor = listed[0].to_v2_json()
            if compressor is None:
                raise UnsupportedCodecError(f"compressors: codec {listed[0].name!r} has no Zarr v2 (numcodecs) form")
    separator = "."
    if chunk_key_encoding is not None:
        encoding = ChunkKeyEncoding.from_json(chunk_key_encoding, "chunk_key_encoding")
        separator = encoding.separator
    # The fill value as the document holds it: v2 has no bit patterns, so a NaN with a
    # payload is stored as "NaN". Using the stored one from the start keeps the chunks
    # skipped as fill (compared bit for bit) reading back as they were written.
    fill_v2 = fill if fill is None else data_type.parse_fill_value_v2(data_type.encode_fill_value_v2(fill))
    metadata = ArrayMetadataV2(
        shape, data_type, chunks, stored_dtype, fill_v2, order, tuple(v2_filters), compressor, separator, attrs  # type: ignore[arg-type]
    )
    # Validate the chunk encoding now rather than on the first write.
    spec = ChunkSpec(chunks, data_type, metadata.fill_value)
    compressor_codec = v2_compressor(compressor)
    CodecChain(
        [V2ArrayBytesCodec.create(stored_dtype, order, v2_filters), *([compressor_codec] if compressor_codec else [])],
        spec,
    )
    return metadata
