"""Codec lookup: Zarr JSON (v3 and v2), codec objects and numcodecs objects → codec specs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numcodecs.abc
import numpy as np

from gpuzarr.codecs.base import Codec
from gpuzarr.codecs.blosc import BloscCodec
from gpuzarr.codecs.bytes import BytesCodec
from gpuzarr.codecs.crc32c import Crc32cCodec
from gpuzarr.codecs.gzip import GzipCodec
from gpuzarr.codecs.numcodecs_codecs import (
    ARRAY_FILTER_IDS,
    BYTES_CODEC_IDS,
    NumcodecsArrayCodec,
    NumcodecsBytesCodec,
    numcodecs_codec_from_v3,
)
from gpuzarr.codecs.transpose import TransposeCodec
from gpuzarr.codecs.v2 import v2_compressor
from gpuzarr.codecs.vlen import VLenBytesCodec, VLenUTF8Codec
from gpuzarr.codecs.zlib import ZlibCodec
from gpuzarr.codecs.zstd import ZstdCodec
from gpuzarr.errors import MetadataError, UnsupportedCodecError
from gpuzarr.metadata.dtypes import is_ml_dtype

__all__ = ["CODECS", "codec_from_json", "codec_from_user", "register_codec"]

#: v3 codec name → spec class. Extended by :func:`register_codec` (sharding registers here).
CODECS: dict[str, type[Codec]] = {
    cls.name: cls
    for cls in (
        BytesCodec,
        TransposeCodec,
        GzipCodec,
        ZstdCodec,
        BloscCodec,
        Crc32cCodec,
        VLenUTF8Codec,
        VLenBytesCodec,
        ZlibCodec,
    )
}
# Aliases some writers use.
CODECS["endian"] = BytesCodec


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Register a codec spec class under its v3 name (usable as a class decorator)."""
    CODECS[cls.name] = cls
    return cls


def codec_from_json(value: Mapping[str, Any] | str, where: str = "codecs") -> Codec:
    """Build a codec from a v3 entry ``{"name", "configuration"}`` or a v2 ``{"id", ...}``."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise MetadataError(f"{where}: invalid codec entry {value!r}")
    if "id" in value and "name" not in value:  # v2 numcodecs form
        codec_id = value["id"]
        if codec_id in ARRAY_FILTER_IDS:
            cfg = {k: v for k, v in value.items() if k != "id"}
            return NumcodecsArrayCodec(codec_id, cfg)
        if codec_id in ("vlen-utf8", "vlen-bytes"):
            return VLenUTF8Codec() if codec_id == "vlen-utf8" else VLenBytesCodec()
        codec = v2_compressor(value)
        assert codec is not None
        return codec
    name = value.get("name")
    config = value.get("configuration") or {}
    if not isinstance(name, str) or not isinstance(config, Mapping):
        raise MetadataError(f"{where}: invalid codec entry {value!r}")
    cls = CODECS.get(name)
    if cls is not None:
        return cls.from_config(config)
    if name.startswith("numcodecs."):
        return numcodecs_codec_from_v3(name, config)
    raise UnsupportedCodecError(f"{where}: unsupported codec {name!r}")


def codec_from_user(value: Any, where: str) -> Codec:
    """Accept a codec spec, its JSON (v3 or v2 form) or a numcodecs codec object."""
    if isinstance(value, Codec):
        return value
    if isinstance(value, numcodecs.abc.Codec):
        # numcodecs writes a dtype setting as ``dtype.str``, which is "<V2" for ml_dtypes'
        # types (bfloat16...): a type no reader can recover. Their names are kept instead.
        config = {
            k: attribute.name if isinstance(attribute := getattr(value, k, None), np.dtype) and is_ml_dtype(attribute)
            else v
            for k, v in value.get_config().items()
        }
        return codec_from_json(config, where)  # (v2 blosc shuffle ids map to names there)
    if isinstance(value, (Mapping, str)):
        return codec_from_json(value, where)
    raise UnsupportedCodecError(f"{where}: not a codec: {value!r}")


def is_known_numcodecs_id(codec_id: str) -> bool:
    """Whether ``codec_id`` is a numcodecs codec gpuzarr can use in metadata."""
    return codec_id in ARRAY_FILTER_IDS or codec_id in BYTES_CODEC_IDS


_ = NumcodecsBytesCodec  # re-exported for isinstance checks by callers
