"""Codec specs and their CPU implementations (GPU implementations load lazily).

Layout follows the v3 codec kinds: array→array (``transpose``, ``numcodecs`` filters),
array→bytes (``bytes``, ``vlen-utf8``, ``vlen-bytes``, the v2 layout codec) and
array→bytes also holds ``sharding_indexed``;
bytes→bytes (``gzip``, ``zstd``, ``blosc``, ``crc32c``, ``numcodecs`` compressors).
"""

from gpuzarr.codecs.base import (
    ArrayArrayCodec,
    ArrayBytesCodec,
    BytesBytesCodec,
    ChunkSpec,
    Codec,
)
from gpuzarr.codecs.blosc import BloscCodec
from gpuzarr.codecs.bytes import BytesCodec
from gpuzarr.codecs.chain import CodecChain
from gpuzarr.codecs.crc32c import Crc32cCodec
from gpuzarr.codecs.gzip import GzipCodec
from gpuzarr.codecs.numcodecs_codecs import NumcodecsArrayCodec, NumcodecsBytesCodec
from gpuzarr.codecs.registry import CODECS, codec_from_json, codec_from_user, register_codec
from gpuzarr.codecs.sharding import ShardIndex, ShardingCodec
from gpuzarr.codecs.transpose import TransposeCodec
from gpuzarr.codecs.v2 import V2ArrayBytesCodec, v2_compressor
from gpuzarr.codecs.vlen import VLenBytesCodec, VLenUTF8Codec
from gpuzarr.codecs.zlib import ZlibCodec
from gpuzarr.codecs.zstd import ZstdCodec

__all__ = [
    "CODECS",
    "ArrayArrayCodec",
    "ArrayBytesCodec",
    "BloscCodec",
    "BytesBytesCodec",
    "BytesCodec",
    "ChunkSpec",
    "Codec",
    "CodecChain",
    "Crc32cCodec",
    "GzipCodec",
    "NumcodecsArrayCodec",
    "NumcodecsBytesCodec",
    "ShardIndex",
    "ShardingCodec",
    "TransposeCodec",
    "V2ArrayBytesCodec",
    "VLenBytesCodec",
    "VLenUTF8Codec",
    "ZlibCodec",
    "ZstdCodec",
    "codec_from_json",
    "codec_from_user",
    "register_codec",
    "v2_compressor",
]
