"""Unit tests of the codec specs and their CPU implementations.

Per codec: the JSON round trip, configuration validation, encode/decode through a
:class:`~gpuzarr.codecs.CodecChain` for several data types, decoding into a caller's
buffer, and header helpers (zstd frame content size, blosc decoded size). Golden
fixtures (bytes numcodecs wrote when these tests were made) must keep decoding.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zstandard

import gpuzarr
from gpuzarr.codecs import (
    CODECS,
    ArrayArrayCodec,
    ArrayBytesCodec,
    BloscCodec,
    BytesBytesCodec,
    BytesCodec,
    ChunkSpec,
    Codec,
    CodecChain,
    Crc32cCodec,
    GzipCodec,
    NumcodecsArrayCodec,
    NumcodecsBytesCodec,
    TransposeCodec,
    V2ArrayBytesCodec,
    VLenBytesCodec,
    VLenUTF8Codec,
    ZlibCodec,
    ZstdCodec,
    codec_from_json,
    codec_from_user,
    v2_compressor,
)
from gpuzarr.codecs import blosc as blosc_module
from gpuzarr.codecs import zstd as zstd_module
from gpuzarr.codecs._compressor import buffer_address
from gpuzarr.codecs.base import DecodeTargets
from gpuzarr.codecs.crc32c import crc32c_checksum
from gpuzarr.codecs.zstd import zstd_frame_content_size
from gpuzarr.errors import ChecksumError, CorruptChunkError, MetadataError, UnsupportedCodecError
from gpuzarr.metadata import data_type_from_user


def spec_for(shape: tuple[int, ...], dtype: Any, fill: Any = None) -> ChunkSpec:
    data_type = data_type_from_user(dtype)
    return ChunkSpec(shape, data_type, data_type.cast_fill_value(fill))


def sample(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> np.ndarray:
    """Random data of a dtype, compressible enough to exercise real compression."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if dtype is str:
        return np.array([f"s{v}" * (v % 4) for v in rng.integers(0, 50, n)], dtype=np.dtypes.StringDType()).reshape(
            shape
        )
    if dtype is bytes:
        return np.array([b"b%d" % v * (v % 3) for v in rng.integers(0, 50, n)], dtype=object).reshape(shape)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if dt.kind == "c":
        return (rng.integers(-50, 50, shape) + 1j * rng.integers(-50, 50, shape)).astype(dt)
    if dt.kind == "f":
        return (rng.integers(-100, 100, shape) / 4).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dt)


# --------------------------------------------------------------------------------------
# JSON round trip

NATIVE_CODECS: list[Codec] = [
    BytesCodec("little"),
    BytesCodec("big"),
    BytesCodec(None),
    TransposeCodec((1, 0)),
    TransposeCodec((2, 0, 1)),
    GzipCodec(0),
    GzipCodec(9),
    ZstdCodec(0, False),
    ZstdCodec(-5, True),
    ZstdCodec(22, False),
    BloscCodec("lz4", 5, "shuffle", 4, 0),
    BloscCodec("zstd", 9, "bitshuffle", None, 0),
    BloscCodec("blosclz", 0, "noshuffle", 1, 256),
    BloscCodec("lz4hc", 1, "shuffle", 8, 0),
    BloscCodec("zlib", 3, "shuffle", 2, 0),
    Crc32cCodec(),
    VLenUTF8Codec(),
    VLenBytesCodec(),
]


@pytest.mark.parametrize("codec", NATIVE_CODECS, ids=repr)
def test_json_round_trip(codec: Codec) -> None:
    doc = codec.to_json()
    assert doc["name"] == type(codec).name
    assert type(codec).from_config(doc.get("configuration", {})) == codec
    assert codec_from_json(doc) == codec
    assert CODECS[doc["name"]] is type(codec)


@pytest.mark.parametrize("codec", [c for c in NATIVE_CODECS if c.to_v2_json() is not None], ids=repr)
def test_v2_json_round_trip(codec: Codec) -> None:
    doc = codec.to_v2_json()
    assert doc is not None
    again = codec_from_json(doc)
    spec = spec_for((4, 4), "int32")
    if isinstance(codec, BloscCodec):
        # v2 (numcodecs) JSON has no typesize: blosc takes it from the array's item size
        # (and every blosc frame records its own, so decoding never depends on it)
        codec = dataclasses.replace(codec, typesize=None)
    assert again.evolve(spec) == codec.evolve(spec)
    assert numcodecs.get_codec(dict(doc)) is not None  # numcodecs understands it too


@pytest.mark.parametrize(
    "codec",
    [
        NumcodecsBytesCodec("lz4", {"acceleration": 1}),
        ZlibCodec(3),
        NumcodecsBytesCodec("bz2", {"level": 1}),
        NumcodecsBytesCodec("lzma", {}),
        NumcodecsBytesCodec("shuffle", {"elementsize": 4}),
        NumcodecsArrayCodec("delta", {"dtype": "<i4"}),
        NumcodecsArrayCodec("fixedscaleoffset", {"offset": 1.0, "scale": 10.0, "dtype": "<f8", "astype": "<i4"}),
        NumcodecsArrayCodec("quantize", {"digits": 2, "dtype": "<f8"}),
        NumcodecsArrayCodec("bitround", {"keepbits": 10}),
        NumcodecsArrayCodec("astype", {"encode_dtype": "<i2", "decode_dtype": "<i4"}),
        NumcodecsArrayCodec("packbits", {}),
    ],
    ids=repr,
)
def test_numcodecs_json_round_trip(codec: Codec) -> None:
    doc = codec.to_json()
    assert doc["name"].startswith("numcodecs.")
    assert codec_from_json(doc) == codec
    assert numcodecs.get_codec(codec.to_v2_json()) is not None  # numcodecs understands it too
    v2 = codec.to_v2_json()
    assert v2 is not None and v2["id"] == doc["name"].removeprefix("numcodecs.")
    assert codec_from_json(v2) == codec


# The numcodecs wrappers keep their codec id in the v3 *name*, which from_config never sees.
def test_numcodecs_wrappers_rebuild_through_codec_from_json() -> None:
    codec = NumcodecsBytesCodec("lz4", {"acceleration": 1})
    # The configuration alone does not name the numcodecs id: a clear error, not a guess.
    with pytest.raises(TypeError, match="codec_from_json"):
        NumcodecsBytesCodec.from_config(codec.to_json()["configuration"])
    assert codec_from_json(codec.to_json()) == codec


def test_codec_from_json_shorthands_and_defaults() -> None:
    assert codec_from_json("crc32c") == Crc32cCodec()
    assert codec_from_json({"name": "zstd"}) == ZstdCodec(0, False)
    assert codec_from_json({"name": "gzip", "configuration": {}}) == GzipCodec(5)
    assert codec_from_json({"name": "endian", "configuration": {"endian": "big"}}) == BytesCodec("big")
    assert codec_from_json({"name": "transpose", "configuration": {"order": "F"}}).evolve(
        spec_for((2, 3, 4), "i1")
    ) == TransposeCodec((2, 1, 0))
    assert codec_from_json({"id": "vlen-utf8"}) == VLenUTF8Codec()
    assert codec_from_json({"id": "zstd", "level": 3}) == ZstdCodec(3, False)
    assert codec_from_json({"id": "crc32c"}) == Crc32cCodec()
    assert v2_compressor(None) is None
    assert isinstance(v2_compressor({"id": "bz2", "level": 2}), NumcodecsBytesCodec)


def test_codec_from_user() -> None:
    assert codec_from_user(numcodecs.Zstd(level=4), "compressors") == ZstdCodec(4, False)
    assert codec_from_user(numcodecs.GZip(level=2), "compressors") == GzipCodec(2)
    assert codec_from_user(numcodecs.Blosc(cname="zstd", clevel=3, shuffle=2), "compressors") == BloscCodec(
        "zstd", 3, "bitshuffle", None, 0
    )
    assert codec_from_user(numcodecs.LZ4(), "compressors") == NumcodecsBytesCodec("lz4", {"acceleration": 1})
    assert isinstance(codec_from_user(numcodecs.Delta("<i4"), "filters"), NumcodecsArrayCodec)
    codec = GzipCodec(1)
    assert codec_from_user(codec, "compressors") is codec
    with pytest.raises(UnsupportedCodecError, match="compressors"):
        codec_from_user(42, "compressors")
    with pytest.raises(UnsupportedCodecError, match="nope"):
        codec_from_user({"name": "nope"}, "compressors")
    with pytest.raises(UnsupportedCodecError, match=r"numcodecs\.nope"):
        codec_from_json({"name": "numcodecs.nope"})


def test_codec_kinds() -> None:
    assert isinstance(TransposeCodec((0,)), ArrayArrayCodec)
    assert isinstance(NumcodecsArrayCodec("delta", {"dtype": "<i4"}), ArrayArrayCodec)
    for codec in (BytesCodec(), VLenUTF8Codec(), VLenBytesCodec(), V2ArrayBytesCodec("<i4")):
        assert isinstance(codec, ArrayBytesCodec)
    for codec in (GzipCodec(), ZstdCodec(), BloscCodec(), Crc32cCodec(), ZlibCodec()):
        assert isinstance(codec, BytesBytesCodec)


# --------------------------------------------------------------------------------------
# configuration validation

BAD_CONFIGS = [
    ("bytes", {"endian": "middle"}),
    ("bytes", {"endian": "little", "extra": 1}),
    ("transpose", {}),
    ("transpose", {"order": [0, 0]}),
    ("transpose", {"order": [1, 2]}),
    ("transpose", {"order": "K"}),
    ("transpose", {"order": [0.0, 1.0]}),
    ("transpose", {"order": [0, 1], "x": 1}),
    ("gzip", {"level": 10}),
    ("gzip", {"level": -1}),
    ("gzip", {"level": "5"}),
    ("gzip", {"level": 5, "extra": True}),
    ("zstd", {"level": "3"}),
    ("zstd", {"level": 23}),
    ("zstd", {"level": True}),
    ("zstd", {"checksum": "yes"}),
    ("zstd", {"level": 1, "dict": "x"}),
    ("blosc", {"cname": "brotli"}),
    ("blosc", {"clevel": 10}),
    ("blosc", {"clevel": -1}),
    ("blosc", {"shuffle": 1}),
    ("blosc", {"shuffle": "sideways"}),
    ("blosc", {"typesize": 0}),
    ("blosc", {"blocksize": -1}),
    ("blosc", {"unknown": 1}),
    ("crc32c", {"seed": 1}),
    ("vlen-utf8", {"x": 1}),
    ("vlen-bytes", {"x": 1}),
]


@pytest.mark.parametrize(("name", "config"), BAD_CONFIGS, ids=[f"{n}-{c}" for n, c in BAD_CONFIGS])
def test_bad_configuration(name: str, config: dict[str, Any]) -> None:
    with pytest.raises(MetadataError, match=name):
        CODECS[name].from_config(config)
    with pytest.raises(MetadataError):
        codec_from_json({"name": name, "configuration": config})


def test_bad_numcodecs_configuration() -> None:
    with pytest.raises(MetadataError, match="zlib"):
        codec_from_json({"name": "numcodecs.zlib", "configuration": {"level": "high", "x": 1}})
    with pytest.raises(MetadataError):
        codec_from_json({"name": "zstd", "configuration": "not an object"})
    with pytest.raises(MetadataError):
        codec_from_json(["zstd"])  # type: ignore[arg-type]


def test_chain_structure_errors() -> None:
    spec = spec_for((4,), "i4")
    with pytest.raises(MetadataError, match="array→bytes"):
        CodecChain([ZstdCodec()], spec)
    with pytest.raises(MetadataError, match="array→bytes"):
        CodecChain([TransposeCodec((0,))], spec)
    with pytest.raises(MetadataError, match="more than one"):
        CodecChain([BytesCodec(), BytesCodec()], spec)
    with pytest.raises(MetadataError, match="transpose"):
        CodecChain([BytesCodec(), TransposeCodec((0,))], spec)
    with pytest.raises(MetadataError, match="transpose"):
        CodecChain([TransposeCodec((1, 0)), BytesCodec()], spec)  # wrong number of dimensions
    with pytest.raises(MetadataError, match="endian"):
        CodecChain([BytesCodec(None)], spec)  # int32 has a byte order: endian is required
    with pytest.raises(MetadataError, match="vlen"):
        CodecChain([BytesCodec()], spec_for((4,), str))
    with pytest.raises(MetadataError, match="vlen-utf8"):
        CodecChain([VLenUTF8Codec()], spec)
    with pytest.raises(MetadataError, match="vlen-bytes"):
        CodecChain([VLenBytesCodec()], spec_for((4,), str))
    with pytest.raises(MetadataError, match="packbits"):
        CodecChain([NumcodecsArrayCodec("packbits", {}), BytesCodec()], spec)


# --------------------------------------------------------------------------------------
# encode/decode round trips

FIXED_DTYPES = ["int16", "uint8", "int64", "float32", "float64", "complex64", "bool", "float16"]

BYTES_BYTES: list[tuple[str, list[Codec]]] = [
    ("none", []),
    ("gzip", [GzipCodec(1)]),
    ("zstd", [ZstdCodec(1, False)]),
    ("zstd-checksum", [ZstdCodec(3, True)]),
    ("blosc-lz4", [BloscCodec("lz4", 5, "shuffle")]),
    ("blosc-zstd-bit", [BloscCodec("zstd", 3, "bitshuffle")]),
    ("blosc-noshuffle", [BloscCodec("blosclz", 5, "noshuffle")]),
    ("crc32c", [Crc32cCodec()]),
    ("zstd+crc32c", [ZstdCodec(1), Crc32cCodec()]),
    ("lz4", [NumcodecsBytesCodec("lz4", {})]),
    ("zlib", [ZlibCodec(1)]),
    ("bz2", [NumcodecsBytesCodec("bz2", {"level": 1})]),
    ("lzma", [NumcodecsBytesCodec("lzma", {})]),
]


def _serializer(dtype: str, endian: str) -> BytesCodec:
    return BytesCodec(endian if np.dtype(dtype).itemsize > 1 else None)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", FIXED_DTYPES)
@pytest.mark.parametrize(("label", "compressors"), BYTES_BYTES, ids=[label for label, _ in BYTES_BYTES])
@pytest.mark.parametrize("endian", ["little", "big"])
def test_chain_round_trip(dtype: str, label: str, compressors: list[Codec], endian: str) -> None:
    shape = (6, 10)
    spec = spec_for(shape, dtype)
    data = sample(shape, dtype)
    chain = CodecChain([_serializer(dtype, endian), *compressors], spec)
    encoded = chain.encode(data)
    assert isinstance(encoded, (bytes, memoryview)) and memoryview(encoded).format == "B"
    decoded = chain.decode(encoded)
    assert decoded.shape == shape and decoded.dtype == spec.dtype
    np.testing.assert_array_equal(decoded, data)
    # decoding into a caller's buffer gives the same result, whichever path it takes
    out = np.full(shape, 1, dtype=spec.dtype)
    assert chain.decode(encoded, out=out) is out
    np.testing.assert_array_equal(out, data)
    # ... and works on a memoryview or ndarray of the stored bytes too
    np.testing.assert_array_equal(chain.decode(memoryview(encoded)), data)
    np.testing.assert_array_equal(chain.decode(np.frombuffer(encoded, dtype=np.uint8)), data)


@pytest.mark.parametrize("dtype", ["int16", "float32", "complex64", "uint8"])
@pytest.mark.parametrize("order", [(1, 0, 2), (2, 1, 0), (0, 1, 2)])
def test_transpose_round_trip(dtype: str, order: tuple[int, ...]) -> None:
    shape = (3, 4, 5)
    spec = spec_for(shape, dtype)
    data = sample(shape, dtype)
    chain = CodecChain([TransposeCodec(order), _serializer(dtype, "little"), ZstdCodec(1)], spec)
    assert not chain.can_decode_into
    encoded = chain.encode(data)
    raw = CodecChain([_serializer(dtype, "little")], spec_for(tuple(shape[i] for i in order), dtype))
    # the stored bytes are the transposed array in C order
    np.testing.assert_array_equal(raw.decode(ZstdCodec(1).cpu_decode(encoded, spec)), np.transpose(data, order))
    np.testing.assert_array_equal(chain.decode(encoded), data)
    out = np.empty(shape, dtype=dtype)
    chain.decode(encoded, out=out)
    np.testing.assert_array_equal(out, data)


NUMCODECS_FILTERS: list[tuple[str, Codec, str]] = [
    ("delta", NumcodecsArrayCodec("delta", {"dtype": "<i4"}), "int32"),
    ("delta-astype", NumcodecsArrayCodec("delta", {"dtype": "<i4", "astype": "<i8"}), "int32"),
    (
        "fixedscaleoffset",
        NumcodecsArrayCodec("fixedscaleoffset", {"offset": 0, "scale": 4, "dtype": "<f8", "astype": "<i4"}),
        "float64",
    ),
    ("astype", NumcodecsArrayCodec("astype", {"encode_dtype": "<i2", "decode_dtype": "<i4"}), "int32"),
    ("packbits", NumcodecsArrayCodec("packbits", {}), "bool"),
]


@pytest.mark.parametrize(("label", "codec", "dtype"), NUMCODECS_FILTERS, ids=[x[0] for x in NUMCODECS_FILTERS])
def test_numcodecs_filter_round_trip(label: str, codec: Codec, dtype: str) -> None:
    shape = (5, 7)
    spec = spec_for(shape, dtype)
    data = sample(shape, dtype)
    chain = CodecChain([codec, BytesCodec("little"), ZstdCodec(1)], spec)
    np.testing.assert_array_equal(chain.decode(chain.encode(data)), data)


def test_quantize_filter() -> None:
    spec = spec_for((50,), "float64")
    data = np.linspace(0, 1, 50)
    quantize = CodecChain([NumcodecsArrayCodec("quantize", {"digits": 3, "dtype": "<f8"}), BytesCodec("little")], spec)
    np.testing.assert_allclose(quantize.decode(quantize.encode(data)), data, atol=1e-3)


# numcodecs' BitRound hands back the rounded floats *viewed as integers*; they must be
# reinterpreted, not converted by value (which once stored garbage: [4.6e18, ...]).
def test_bitround_filter() -> None:
    spec = spec_for((50,), "float64")
    data = np.linspace(0, 1, 50)
    bitround = CodecChain([NumcodecsArrayCodec("bitround", {"keepbits": 12}), BytesCodec("little")], spec)
    np.testing.assert_allclose(bitround.decode(bitround.encode(data)), data, rtol=1e-3)


@pytest.mark.parametrize("compressors", [[], [ZstdCodec(1)], [GzipCodec(1)], [BloscCodec("lz4")]])
@pytest.mark.parametrize("kind", [str, bytes])
def test_vlen_round_trip(compressors: list[Codec], kind: type) -> None:
    shape = (4, 5)
    spec = spec_for(shape, kind)
    data = sample(shape, kind)
    data.flat[3] = "ü€ unicode" if kind is str else b"\x00\xff"
    serializer = VLenUTF8Codec() if kind is str else VLenBytesCodec()
    chain = CodecChain([serializer, *compressors], spec)
    assert not chain.can_decode_into
    decoded = chain.decode(chain.encode(data))
    assert decoded.shape == shape
    assert decoded.tolist() == data.tolist()


def test_vlen_matches_numcodecs() -> None:
    values = np.array(["a", "", "ü€", "long" * 20], dtype=object)
    spec = spec_for((4,), str)
    ours = VLenUTF8Codec().cpu_encode(values.astype(np.dtypes.StringDType()), spec)
    assert ours == numcodecs.VLenUTF8().encode(values)
    bad = bytes(ours)[:-3]
    with pytest.raises(CorruptChunkError, match="vlen-utf8"):
        VLenUTF8Codec().cpu_decode(bad, spec)
    with pytest.raises(CorruptChunkError, match="items"):
        VLenUTF8Codec().cpu_decode(numcodecs.VLenUTF8().encode(values[:3]), spec)


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", ["str", "bytes"])
def test_vlen_item_counts_are_checked_before_decoding(zarr_format: int, dtype: str) -> None:
    """A vlen chunk whose item count is off (a flipped bit can ask numcodecs for
    gigabytes) raises before numcodecs decodes it, as does one too short for it."""
    import gpuzarr

    store: dict[str, bytes] = {}
    values = ["a", "bb", "ccc"] if dtype == "str" else [b"a", b"bb", b"ccc"]
    a = gpuzarr.create_array(store, shape=(3,), chunks=(3,), dtype=dtype, compressors=None, zarr_format=zarr_format)
    a[...] = np.array(values, dtype=object)
    key = "0" if zarr_format == 2 else "c/0"
    good = store[key]
    assert int.from_bytes(good[:4], "little") == 3
    for bad, message in [
        ((385_000_000).to_bytes(4, "little") + good[4:], "holds 385000000 items, expected 3"),
        (good[:2], "no item count"),
        (good[:4] + good[4:8], "too short"),
    ]:
        store[key] = bad
        with pytest.raises(CorruptChunkError, match=message):
            gpuzarr.open_array(store)[...]
    store[key] = good
    assert gpuzarr.open_array(store)[...].tolist() == values


def test_deflate_fallbacks_agree_with_zlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """libdeflate (when installed) and the zlib fallback decode the same streams."""
    import gpuzarr.codecs._deflate as deflate_module

    payload = bytes(range(256)) * 40
    streams = {
        "gzip": (deflate_module.gzip_compress(payload, 5), deflate_module.gzip_decompress),
        "zlib": (deflate_module.zlib_compress(payload, 5), deflate_module.zlib_decompress),
    }
    for compressed, decompress in streams.values():
        assert decompress(compressed, len(payload)) == payload
        assert decompress(compressed, None) == payload
        assert decompress(compressed, len(payload) + 1) == payload  # wrong hint: zlib decides
    monkeypatch.setattr(deflate_module, "_libdeflate", None)
    for compressed, decompress in streams.values():
        assert decompress(compressed, len(payload)) == payload


def test_gzip_fast_path_takes_only_streams_ending_with_their_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """libdeflate (first member only, its buffer sized by the stream's last 4 bytes)
    is asked only for streams that end with the expected size, and its result kept
    only when they end with the member's trailer: junk after a member raises as with
    zlib (junk ending with the size too), and a truncated stream does not make it
    allocate what its last bytes say (up to 4 GiB)."""
    import gpuzarr.codecs._deflate as deflate_module

    spec = spec_for((100,), "uint8")
    payload = bytes(range(100))
    good = gzip.compress(payload)
    calls: list[int] = []
    real = deflate_module._libdeflate
    if real is not None:

        class Spy:
            crc32 = staticmethod(real.crc32)

            def gzip_decompress(self, view: memoryview) -> bytes:
                calls.append(len(view))
                return real.gzip_decompress(view)

        monkeypatch.setattr(deflate_module, "_libdeflate", Spy())
    codec = GzipCodec(6)
    assert bytes(codec.cpu_decode(good, spec)) == payload
    size = len(payload).to_bytes(4, "little")
    for bad in (good + b"\x32\x92junkjunk", good[:-3], good[:-8], good + b"JUNKJUNK" + size):
        with pytest.raises(CorruptChunkError, match="gzip"):
            codec.cpu_decode(bad, spec)
    assert len(calls) == (2 if real is not None else 0)  # (the good stream, and the junk ending with its size)


def test_gzip_interop_and_members() -> None:
    spec = spec_for((100,), "uint8")
    payload = bytes(range(100))
    codec = GzipCodec(6)
    assert gzip.decompress(codec.cpu_encode(payload, spec)) == payload
    assert bytes(codec.cpu_decode(gzip.compress(payload), spec)) == payload
    # several members concatenated, and zero padding after the last (both legal gzip)
    two = gzip.compress(payload[:40]) + gzip.compress(payload[40:]) + b"\0\0\0"
    assert bytes(codec.cpu_decode(two, spec)) == payload
    with pytest.raises(CorruptChunkError, match="gzip"):
        codec.cpu_decode(gzip.compress(payload)[:-10], spec)


def test_crc32c_value_and_layout() -> None:
    assert crc32c_checksum(b"123456789") == 0xE3069283  # the standard check value
    codec = Crc32cCodec()
    spec = spec_for((9,), "uint8")
    encoded = codec.cpu_encode(b"123456789", spec)
    assert encoded == b"123456789" + (0xE3069283).to_bytes(4, "little")
    assert codec.encoded_size(9, spec) == 13
    assert bytes(codec.cpu_decode(encoded, spec)) == b"123456789"
    with pytest.raises(ChecksumError, match="crc32c"):
        codec.cpu_decode(b"023456789" + encoded[-4:], spec)
    with pytest.raises(CorruptChunkError, match="crc32c"):
        codec.cpu_decode(b"abc", spec)


# --------------------------------------------------------------------------------------
# bytes codec, byte order


@pytest.mark.parametrize("dtype", ["int16", "uint32", "float64", "complex128", "int64"])
def test_big_endian_bytes_codec(dtype: str) -> None:
    spec = spec_for((3, 4), dtype)
    data = sample((3, 4), dtype)
    big = BytesCodec("big")
    encoded = CodecChain([big], spec).encode(data)
    assert encoded == data.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    assert encoded != CodecChain([BytesCodec("little")], spec).encode(data)
    assert big.stored_dtype(np.dtype(dtype)) == np.dtype(dtype).newbyteorder(">")
    decoded = CodecChain([big], spec).decode(encoded)
    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, data)
    out = np.zeros((3, 4), dtype=dtype)
    CodecChain([big, ZstdCodec(1)], spec).decode(CodecChain([big, ZstdCodec(1)], spec).encode(data), out=out)
    np.testing.assert_array_equal(out, data)


def test_bytes_codec_endian_free_types() -> None:
    for dtype in ("uint8", "int8", "bool", "S4"):
        chain = CodecChain([BytesCodec("big")], spec_for((2,), dtype))
        assert chain.array_bytes == BytesCodec(None)  # endian is dropped where meaningless
        assert chain.to_json() == [{"name": "bytes"}]
    assert BytesCodec(None).to_json() == {"name": "bytes"}
    assert BytesCodec.from_config({}) == BytesCodec(None)


def test_bytes_codec_wrong_length() -> None:
    spec = spec_for((4,), "int32")
    with pytest.raises(CorruptChunkError, match="16"):
        BytesCodec("little").cpu_decode(b"\0" * 15, spec)
    chain = CodecChain([BytesCodec("little"), ZstdCodec(1)], spec)
    short = ZstdCodec(1).cpu_encode(b"\0" * 12, spec)
    with pytest.raises(CorruptChunkError):
        chain.decode(short)
    with pytest.raises(CorruptChunkError):
        chain.decode(short, out=np.zeros(4, dtype="i4"))


# --------------------------------------------------------------------------------------
# decoding into caller buffers


@pytest.mark.parametrize(
    "compressors",
    [[], [ZstdCodec(1)], [ZstdCodec(1, True)], [BloscCodec("lz4")], [GzipCodec(1)], [Crc32cCodec()]],
    ids=repr,
)
@pytest.mark.parametrize("dtype", ["int32", "float64", "uint8"])
def test_decode_into_equals_plain_decode(compressors: list[Codec], dtype: str) -> None:
    shape = (16, 9)
    spec = spec_for(shape, dtype)
    data = sample(shape, dtype, seed=3)
    chain = CodecChain([_serializer(dtype, "little"), *compressors], spec)
    expected_direct = not compressors or compressors[0].decodes_into
    assert chain.can_decode_into == expected_direct
    encoded = chain.encode(data)
    plain = chain.decode(encoded)
    # a view into a bigger C-contiguous buffer, as the pipeline passes it
    big = np.full((3, *shape), 99, dtype=dtype)
    target = big[1]
    assert chain.decode(encoded, out=target) is target
    np.testing.assert_array_equal(target, plain)
    assert (big[0] == 99).all() and (big[2] == 99).all()


def test_decode_into_leaves_no_stale_bytes() -> None:
    """A valid frame of the wrong size must fail, not half-fill ``out``."""
    spec = spec_for((64,), "int32")
    chain = CodecChain([BytesCodec("little"), ZstdCodec(1)], spec)
    smaller = ZstdCodec(1).cpu_encode(np.arange(32, dtype="<i4").tobytes(), spec)
    out = np.full(64, -1, dtype="int32")
    with pytest.raises(CorruptChunkError):
        chain.decode(smaller, out=out)
    # a frame whose header lies about its size is caught by libzstd
    payload = np.arange(60, dtype="<i4").tobytes()
    lying = _zstd_raw_frame(payload, content_size=256)
    with pytest.raises(CorruptChunkError):
        chain.decode(lying, out=out)
    blosc_chain = CodecChain([BytesCodec("little"), BloscCodec("lz4")], spec)
    small_blosc = BloscCodec("lz4", typesize=4).cpu_encode(np.arange(32, dtype="<i4").tobytes(), spec)
    with pytest.raises(CorruptChunkError):
        blosc_chain.decode(small_blosc, out=out)


# --------------------------------------------------------------------------------------
# zstd frame content size


def _zstd_raw_frame(payload: bytes, content_size: int | None = None) -> bytes:
    """A zstd frame of one raw block (RFC 8878), with or without Frame_Content_Size."""
    assert len(payload) <= 1024
    if content_size is None:
        header = bytes([0x00, 0x00])  # no FCS, not single-segment; window descriptor: 1 KiB
    elif content_size < 256:
        header = bytes([0x20, content_size])  # single segment, 1-byte FCS
    else:
        header = bytes([0x60]) + (content_size - 256).to_bytes(2, "little")  # 2-byte FCS, +256
    block_header = (len(payload) << 3) | 1  # last block, raw
    return (0xFD2FB528).to_bytes(4, "little") + header + block_header.to_bytes(3, "little") + payload


@pytest.mark.parametrize("n", [0, 1, 100, 255, 256, 257, 4096, 65535, 65791, 65792, 300_000])
@pytest.mark.parametrize("checksum", [False, True])
def test_zstd_frame_content_size_matches_numcodecs(n: int, checksum: bool) -> None:
    payload = (np.arange(n) % 251).astype(np.uint8).tobytes()
    frame = numcodecs.Zstd(level=1, checksum=checksum).encode(payload)
    assert zstd_frame_content_size(memoryview(frame)) == n
    if n:  # (numcodecs refuses to decode an empty frame; chunks are never empty)
        assert len(numcodecs.Zstd().decode(frame)) == n
    assert ZstdCodec(1, checksum).decoded_size(frame) == n
    assert ZstdCodec().decoded_size(np.frombuffer(frame, dtype=np.uint8)) == n


def test_zstd_frame_content_size_field_widths() -> None:
    magic = (0xFD2FB528).to_bytes(4, "little")
    # FCS flag 2 (4 bytes), not single segment: window descriptor byte before it
    assert zstd_frame_content_size(memoryview(magic + bytes([0x80, 0x50]) + (70_000).to_bytes(4, "little"))) == 70_000
    # FCS flag 3 (8 bytes), single segment, 4-byte dictionary id
    big = magic + bytes([0xE3]) + (7).to_bytes(4, "little") + (2**33 + 5).to_bytes(8, "little")
    assert zstd_frame_content_size(memoryview(big)) == 2**33 + 5
    # 1-byte dictionary id before a 2-byte FCS
    assert zstd_frame_content_size(memoryview(magic + bytes([0x61, 9]) + (4).to_bytes(2, "little"))) == 260
    # header cut short: unknown, not a wrong number
    assert zstd_frame_content_size(memoryview(big[:10])) is None


def test_zstd_frames_without_content_size() -> None:
    payload = bytes(range(200))
    frame = _zstd_raw_frame(payload)
    assert zstd_frame_content_size(memoryview(frame)) is None
    assert numcodecs.Zstd().decode(frame) == payload
    spec = spec_for((50,), "int32")
    chain = CodecChain([BytesCodec("little"), ZstdCodec()], spec)
    expected = np.frombuffer(payload, dtype="<i4")
    np.testing.assert_array_equal(chain.decode(frame), expected)
    out = np.zeros(50, dtype="int32")
    chain.decode(frame, out=out)  # no size in the header: decoded, checked, then copied
    np.testing.assert_array_equal(out, expected)
    with_size = _zstd_raw_frame(payload, content_size=200)
    assert zstd_frame_content_size(memoryview(with_size)) == 200
    np.testing.assert_array_equal(chain.decode(with_size, out=out), expected)


@pytest.fixture(params=["libzstd-native-shared", "libzstd-native-loop", "libzstd", "python-zstandard"])
def zstd_decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs a test with each decoder that writes into caller buffers: libzstd called
    directly (from numcodecs' extension), its batches shared by 4 threads in gpuzarr's
    native loop, through that loop on the calling thread, or one ctypes call per chunk;
    and python-zstandard's stream reader, which decodes where the extension exports no
    libzstd API."""
    from gpuzarr import _native
    from gpuzarr.pipeline.pool import run_together

    if request.param.startswith("libzstd"):
        if zstd_module._libzstd() is None:
            pytest.skip("this numcodecs build exports no libzstd API")
        if request.param.startswith("libzstd-native") and _native.call_shared is None:
            pytest.skip("gpuzarr's native helper is not built here")
        if request.param == "libzstd":
            monkeypatch.setattr(_native, "call_shared", None)
        if request.param == "libzstd-native-shared":
            # Every batch decode spreads over 4 threads (the caller and 3 workers).
            unshared = ZstdCodec.cpu_decode_many

            def shared(self: ZstdCodec, datas: Any, outs: Any, spread: Any = None) -> None:
                unshared(self, datas, outs, lambda work: run_together(work, 4))

            monkeypatch.setattr(ZstdCodec, "cpu_decode_many", shared)
    else:
        monkeypatch.setattr(zstd_module, "_libzstd", lambda: None)
    with gpuzarr.config.set(threads=4):
        yield str(request.param)


def _decode_many(codec: ZstdCodec, frames: list[Any], nbytes: int, addressed: bool = False) -> list[bytes]:
    """Decode ``frames`` in one batch, into arrays or (``addressed``) into
    :class:`DecodeTargets` carved from one buffer, as the read pipeline gives them."""
    if not addressed:
        outs = [np.full(nbytes, 0xAA, dtype=np.uint8) for _ in frames]
        codec.cpu_decode_many(frames, outs)
        return [o.tobytes() for o in outs]
    buffer = np.full((len(frames), nbytes), 0xAA, dtype=np.uint8)
    addresses = buffer.ctypes.data + nbytes * np.arange(len(frames), dtype=np.uintp)
    codec.cpu_decode_many(frames, DecodeTargets(addresses, nbytes, (buffer,), buffer.__getitem__))
    return [row.tobytes() for row in buffer]


def test_zstd_refuses_a_decode_target_at_address_zero() -> None:
    """0 marks a unit the read pipeline stages in scratch: one left in a batch is a bug
    that must not reach the decoder as a null target."""
    if zstd_module._libzstd() is None:
        pytest.skip("this numcodecs build exports no libzstd API")
    buffer = np.zeros((2, 300), dtype=np.uint8)
    targets = DecodeTargets(np.array([buffer.ctypes.data, 0], dtype=np.uintp), 300, (buffer,), buffer.__getitem__)
    frame = numcodecs.Zstd().encode(bytes(300))
    with pytest.raises(ValueError, match="address 0"):
        ZstdCodec().cpu_decode_many([frame, frame], targets)


def test_decode_targets_index_like_a_sequence() -> None:
    buffer = np.arange(12, dtype=np.uint8).reshape(3, 4)
    targets = DecodeTargets(buffer.ctypes.data + 4 * np.arange(3, dtype=np.uintp), 4, (buffer,), buffer.__getitem__)
    assert len(targets) == 3
    assert targets[-1].tolist() == [8, 9, 10, 11]
    assert [t.tolist() for t in targets[1:]] == [[4, 5, 6, 7], [8, 9, 10, 11]]
    assert [t[0] for t in targets] == [0, 4, 8]  # (iteration stops at the IndexError)
    with pytest.raises(IndexError):
        targets[3]


@pytest.mark.usefixtures("zstd_decoder")
@pytest.mark.parametrize("addressed", [False, True])
def test_zstd_decode_many_matches_one_by_one(addressed: bool) -> None:
    assert ZstdCodec().decodes_batches
    rng = np.random.default_rng(5)
    payloads = [rng.integers(0, 50, 300, dtype=np.uint8).tobytes() for _ in range(9)]
    frames: list[Any] = [numcodecs.Zstd(level=i % 4, checksum=bool(i % 2)).encode(p) for i, p in enumerate(payloads)]
    frames[3] = _zstd_raw_frame(payloads[3])  # no content size in the header
    frames[4] = memoryview(b"pad" + frames[4])[3:]  # a view, as sliced out of a shard
    # Two concatenated frames that together make the chunk.
    frames[5] = numcodecs.Zstd().encode(payloads[5][:100]) + numcodecs.Zstd().encode(payloads[5][100:])
    assert _decode_many(ZstdCodec(), frames, 300, addressed) == payloads
    ZstdCodec().cpu_decode_many([], [])


@pytest.mark.usefixtures("zstd_decoder")
def test_zstd_decode_many_from_many_threads() -> None:
    """Each thread decodes with a context of its own."""
    from concurrent.futures import ThreadPoolExecutor

    payloads = [np.full(20_000, i, dtype=np.uint8).tobytes() for i in range(64)]
    frames = [numcodecs.Zstd().encode(p) for p in payloads]
    with ThreadPoolExecutor(8) as pool:  # batches of 4 (one frame alone takes another path)
        decoded = list(pool.map(lambda i: _decode_many(ZstdCodec(), frames[i : i + 4], 20_000), range(0, 64, 4)))
    assert [d for batch in decoded for d in batch] == payloads


@pytest.mark.parametrize("level", [0, 1, 3, -5, 19])
@pytest.mark.parametrize("checksum", [False, True])
@pytest.mark.parametrize("n", [1000, 300_000])  # a reused context (small chunks) and numcodecs (large)
def test_zstd_encode_frames(level: int, checksum: bool, n: int) -> None:
    payload = (np.arange(n) % 97).astype(np.uint8).tobytes()
    frame = ZstdCodec(level, checksum).cpu_encode(payload, spec_for((n,), "uint8"))
    assert zstd_frame_content_size(memoryview(frame)) == n  # decodable straight into a chunk buffer
    assert bool(frame[4] & 0x04) == checksum  # Content_Checksum_flag
    assert numcodecs.Zstd().decode(frame) == payload


def test_zstd_encode_from_many_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    codec, spec = ZstdCodec(1), spec_for((4096,), "uint8")
    payloads = [np.full(4096, i, dtype=np.uint8).tobytes() + bytes(range(i)) for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        frames = list(pool.map(lambda p: codec.cpu_encode(p, spec), payloads))
    assert [numcodecs.Zstd().decode(f) for f in frames] == payloads


@pytest.mark.usefixtures("zstd_decoder")
@pytest.mark.parametrize("addressed", [False, True])
def test_zstd_decode_many_rejects_bad_frames(addressed: bool) -> None:
    good = numcodecs.Zstd().encode(bytes(300))
    checked = numcodecs.Zstd(checksum=True).encode(bytes(range(256)) + bytes(44))
    bad_checksum = checked[:-1] + bytes([checked[-1] ^ 0xFF])
    cases: list[tuple[list[bytes], int, type[Exception]]] = [
        ([good, good[:-5]], 300, CorruptChunkError),  # truncated
        ([good], 200, CorruptChunkError),  # decodes to more than the chunk
        ([good], 400, CorruptChunkError),  # decodes to less than the chunk
        ([good + good], 300, CorruptChunkError),  # a second frame past the chunk
        ([good + b"tail"], 300, CorruptChunkError),  # garbage after the frame
        ([b"not a frame"], 300, CorruptChunkError),
        ([good, b""], 300, CorruptChunkError),
        ([bad_checksum], 300, ChecksumError),
    ]
    for frames, nbytes, error in cases:
        with pytest.raises(error, match="zstd"):
            _decode_many(ZstdCodec(), frames, nbytes, addressed)


@pytest.mark.parametrize("addressed", [False, True])
def test_zstd_decode_many_stops_at_a_bad_frame_amid_good_ones(zstd_decoder: str, addressed: bool) -> None:
    """A batch decodes in order up to its first bad chunk, which raises its typed error
    (the native loop reports which call failed, and with what). Threads sharing a batch
    may have taken chunks after the bad one: those may be decoded too. Targets given as
    arrays or by address (:class:`DecodeTargets`) behave alike."""
    payload = bytes(range(100)) * 3
    good = numcodecs.Zstd().encode(payload)
    checked = numcodecs.Zstd(checksum=True).encode(payload)
    bad_checksum = checked[:-1] + bytes([checked[-1] ^ 0xFF])
    for bad, error in (
        (good[:-5], CorruptChunkError),  # truncated
        (good + good, CorruptChunkError),  # more than the chunk
        (numcodecs.Zstd().encode(payload[:200]), CorruptChunkError),  # less than the chunk
        (b"not a frame", CorruptChunkError),
        (bad_checksum, ChecksumError),
    ):
        for position in (0, 2, 3):  # first, amid, last
            frames = [good] * 4
            frames[position] = bad
            buffer = np.zeros((4, 300), dtype=np.uint8)
            outs = list(buffer)
            targets: Any = outs
            if addressed:
                addresses = buffer.ctypes.data + 300 * np.arange(4, dtype=np.uintp)
                targets = DecodeTargets(addresses, 300, (buffer,), buffer.__getitem__)
            with pytest.raises(error, match="zstd"):
                ZstdCodec().cpu_decode_many(frames, targets)
            assert [o.tobytes() for o in outs[:position]] == [payload] * position  # decoded before the bad one
            if zstd_decoder != "libzstd-native-shared":
                assert [o.tobytes() for o in outs[position + 1 :]] == [bytes(300)] * (3 - position)  # not reached


@pytest.mark.usefixtures("zstd_decoder")
def test_zstd_decode_into_out_checks_the_size() -> None:
    """One-by-one decodes into ``out`` use the same reused context and checks."""
    spec = spec_for((300,), "uint8")
    good = numcodecs.Zstd().encode(bytes(range(100)) * 3)
    out = np.empty(300, dtype=np.uint8)
    assert ZstdCodec().cpu_decode(good, spec, out=out) is out
    assert out.tobytes() == bytes(range(100)) * 3
    with pytest.raises(CorruptChunkError, match="zstd"):
        ZstdCodec().cpu_decode(good + good, spec, out=out)
    with pytest.raises(CorruptChunkError, match="zstd"):
        ZstdCodec().cpu_decode(good[:-3], spec, out=out)


def test_chain_decode_many() -> None:
    spec = spec_for((10, 3), "float64")
    chain = CodecChain([BytesCodec("little"), ZstdCodec(1)], spec)
    assert chain.decodes_batches
    chunks = [np.full((10, 3), float(i)) for i in range(4)]
    decoded = [np.empty((10, 3)) for _ in chunks]
    chain.decode_many([chain.encode(c) for c in chunks], decoded)
    for got, want in zip(decoded, chunks, strict=True):
        np.testing.assert_array_equal(got, want)
    # Chunks stored big-endian, or with more codecs, decode one by one.
    assert not CodecChain([BytesCodec("big"), ZstdCodec()], spec).decodes_batches
    assert not CodecChain([BytesCodec("little"), GzipCodec()], spec).decodes_batches


@pytest.mark.parametrize("data", [b"", b"\x28\xb5\x2f", b"not zstd at all", b"\x28\xb5\x2f\xfd"], ids=repr)
def test_zstd_frame_content_size_non_frames(data: bytes) -> None:
    assert zstd_frame_content_size(memoryview(data)) is None


# --------------------------------------------------------------------------------------
# blosc decoded size


@pytest.mark.parametrize("cname", ["lz4", "lz4hc", "blosclz", "zstd", "zlib"])
@pytest.mark.parametrize("shuffle", ["noshuffle", "shuffle", "bitshuffle"])
def test_blosc_decoded_size(cname: str, shuffle: str) -> None:
    spec = spec_for((300,), "int32")
    codec = BloscCodec(cname, 5, shuffle).evolve(spec)  # type: ignore[arg-type]
    assert codec.typesize == 4
    data = sample((300,), "int32")
    encoded = codec.cpu_encode(data.tobytes(), spec)
    assert codec.decoded_size(encoded) == data.nbytes
    assert len(numcodecs.Blosc().decode(encoded)) == data.nbytes
    assert codec.decoded_size(encoded[:-1]) is None  # truncated
    assert codec.decoded_size(encoded + b"\0") is None  # padded
    assert codec.decoded_size(encoded[:15]) is None  # no full header
    assert codec.decoded_size(b"") is None
    np.testing.assert_array_equal(np.frombuffer(bytes(codec.cpu_decode(encoded, spec)), "<i4"), data)


@pytest.fixture
def blosc_context() -> None:
    if blosc_module._context_decompress() is None:
        pytest.skip("this numcodecs build does not export c-blosc 1.21+'s context API")


@pytest.mark.usefixtures("blosc_context")
@pytest.mark.parametrize("cname", ["lz4", "blosclz", "zstd", "zlib"])
@pytest.mark.parametrize("shuffle", ["noshuffle", "shuffle", "bitshuffle"])
def test_blosc_context_decode_matches_numcodecs(cname: str, shuffle: str) -> None:
    # The c-blosc context call decodes what numcodecs decodes, into `out` or a new buffer.
    spec = spec_for((300_000,), "float32")
    codec = BloscCodec(cname, 5, shuffle, blocksize=2**16).evolve(spec)  # type: ignore[arg-type]
    data = sample((300_000,), "float32")
    encoded = codec.cpu_encode(data.tobytes(), spec)
    expected = numcodecs.Blosc().decode(encoded)
    out = np.empty_like(data)
    assert codec.cpu_decode(encoded, spec, out=out) is out
    fresh = codec.cpu_decode(memoryview(encoded), spec)
    assert out.tobytes() == bytes(expected) == bytes(fresh)


@pytest.mark.usefixtures("blosc_context")
@pytest.mark.parametrize("helper", [True, False])
def test_blosc_context_decode_with_and_without_the_helpers_unshuffle(
    monkeypatch: pytest.MonkeyPatch, helper: bool
) -> None:
    # With gpuzarr's helper (AVX2 bit-unshuffle, where this CPU has it) and without it
    # (c-blosc's own), bit-shuffled int16 chunks decode to the same elements.
    from gpuzarr import _native

    if not helper:
        monkeypatch.setattr(_native, "blosc_decompress", None)
    blosc_module._context_decompress.cache_clear()
    try:
        spec = spec_for((512, 1024), "int16")
        codec = BloscCodec("zstd", 5, "bitshuffle").evolve(spec)
        data = np.cumsum(np.random.default_rng(5).integers(-3, 4, (512, 1024)), axis=1).astype("<i2")
        encoded = codec.cpu_encode(data.tobytes(), spec)
        out = np.empty_like(data)
        assert codec.cpu_decode(encoded, spec, out=out) is out
        np.testing.assert_array_equal(out, data)
    finally:
        monkeypatch.undo()
        blosc_module._context_decompress.cache_clear()


def test_blosc_out_it_cannot_write_in_place_is_refused() -> None:
    # A strided `out` would be decoded into a temporary copy: it takes numcodecs' path,
    # which refuses it, instead of returning `out` untouched. A Fortran-order `out` gets
    # the bytes in memory order, as numcodecs writes them.
    spec = spec_for((16, 8), "float32")
    codec = BloscCodec("lz4", 5, "shuffle").evolve(spec)
    data = sample((16, 8), "float32")
    encoded = codec.cpu_encode(data.tobytes(), spec)
    with pytest.raises(CorruptChunkError, match="blosc"):
        codec.cpu_decode(encoded, spec, out=np.zeros((32, 8), "f4")[::2])
    fortran = np.zeros((16, 8), "f4", order="F")
    assert codec.cpu_decode(encoded, spec, out=fortran) is fortran
    assert fortran.tobytes(order="A") == data.tobytes()


def test_blosc_corrupt_header_behind_padding_is_a_corrupt_chunk() -> None:
    # Padded buffers take numcodecs' path, whose extension raises SystemError for a
    # decoded size past c-blosc's limit (its C int wraps negative): refused first.
    spec = spec_for((1000,), "int32")
    codec = BloscCodec("lz4", 5, "shuffle").evolve(spec)
    encoded = bytearray(codec.cpu_encode(sample((1000,), "int32").tobytes(), spec))
    encoded[4:8] = (2**31).to_bytes(4, "little")
    with pytest.raises(CorruptChunkError, match="blosc"):
        codec.cpu_decode(bytes(encoded) + b"\0\0", spec)


@pytest.mark.parametrize("context_call", [True, False])
def test_blosc_truncated_chunk_is_a_corrupt_chunk(monkeypatch: pytest.MonkeyPatch, context_call: bool) -> None:
    # c-blosc and numcodecs trust the header's compressed size: a chunk cut short must
    # not be decoded from the memory after it (wrong data, or a crash).
    if not context_call:
        monkeypatch.setattr(blosc_module, "_context_decompress", lambda: None)
    spec = spec_for((65536,), "uint32")
    codec = BloscCodec("lz4", 5, "noshuffle").evolve(spec)
    data = np.random.default_rng(0).integers(0, 2**32, 65536, dtype=np.uint32)  # incompressible
    encoded = codec.cpu_encode(data.tobytes(), spec)
    for cut in (100, len(encoded) - 1, 16):
        with pytest.raises(CorruptChunkError, match=f"chunk is truncated: its header says {len(encoded)} bytes"):
            codec.cpu_decode(encoded[:cut], spec)
    for short in (b"", encoded[:1], encoded[:15]):  # shorter than the header itself
        with pytest.raises(CorruptChunkError, match="shorter than its 16-byte header"):
            codec.cpu_decode(short, spec)
    for small in (0, 15):  # a header that says the chunk is shorter than the header
        damaged = bytearray(encoded)
        damaged[12:16] = small.to_bytes(4, "little")
        with pytest.raises(CorruptChunkError, match="less than itself"):
            codec.cpu_decode(bytes(damaged), spec)
    decoded = codec.cpu_decode(encoded + b"padding", spec)  # bytes after the chunk are ignored
    np.testing.assert_array_equal(np.frombuffer(bytes(decoded), "<u4"), data)


def test_blosc_context_call_needs_cblosc_1_21(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    class FakeLibrary:
        def __init__(self, version: bytes) -> None:
            self.blosc_decompress_ctx = lambda *args: 0
            self.blosc_get_version_string = lambda: version

    for version, usable in ((b"1.21.6", True), (b"1.20.1", False), (b"2.15.1", False), (b"garbage", False)):
        monkeypatch.setattr(ctypes, "CDLL", lambda path, v=version: FakeLibrary(v))
        blosc_module._context_decompress.cache_clear()
        assert (blosc_module._context_decompress() is not None) == usable, version
    monkeypatch.undo()
    blosc_module._context_decompress.cache_clear()


@pytest.mark.usefixtures("blosc_context")
def test_blosc_context_decode_rejects_bad_buffers() -> None:
    spec = spec_for((4096,), "int32")
    codec = BloscCodec("lz4", 5, "shuffle").evolve(spec)
    encoded = bytearray(codec.cpu_encode(sample((4096,), "int32").tobytes(), spec))
    small = np.empty(100, dtype=np.int32)
    with pytest.raises(CorruptChunkError, match="blosc"):
        codec.cpu_decode(bytes(encoded), spec, out=small)  # the header promises more than `out` holds
    encoded[-40:] = bytes(40)  # a damaged compressed block, the header intact
    with pytest.raises(CorruptChunkError, match="blosc"):
        codec.cpu_decode(bytes(encoded), spec)


def test_blosc_decodes_through_numcodecs_without_the_context_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # A numcodecs build that does not export c-blosc's API still decodes, padded buffers too.
    monkeypatch.setattr(blosc_module, "_context_decompress", lambda: None)
    spec = spec_for((300,), "int32")
    codec = BloscCodec("zstd", 5, "bitshuffle").evolve(spec)
    data = sample((300,), "int32")
    encoded = codec.cpu_encode(data.tobytes(), spec)
    for stored in (encoded, encoded + b"\0\0"):
        np.testing.assert_array_equal(np.frombuffer(bytes(codec.cpu_decode(stored, spec)), "<i4"), data)


def test_blosc_typesize_follows_data_type() -> None:
    for dtype, size in (("int16", 2), ("float64", 8), ("complex64", 8), ("bool", 1), (str, 1)):
        assert BloscCodec().evolve(spec_for((4,), dtype)).typesize == size
    assert BloscCodec(typesize=2).evolve(spec_for((4,), "int64")).typesize == 2  # an explicit one is kept
    spec = spec_for((64,), "int32")
    encoded = BloscCodec("lz4", 5, "shuffle").evolve(spec).cpu_encode(np.arange(64, dtype="<i4").tobytes(), spec)
    assert encoded[3] == 4  # typesize byte of the blosc header


# --------------------------------------------------------------------------------------
# v2 layout codec


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("stored", ["<i4", ">i4", "<f8", "|u1"])
def test_v2_layout_codec(order: str, stored: str) -> None:
    shape = (3, 5)
    native = np.dtype(stored).newbyteorder("=")
    spec = spec_for(shape, native)
    data = sample(shape, native)
    codec = V2ArrayBytesCodec.create(stored, order, [])
    chain = CodecChain([codec, ZstdCodec(1)], spec)
    encoded = chain.encode(data)
    expected = np.asarray(data, dtype=stored).tobytes(order=order)
    assert bytes(ZstdCodec(1).cpu_decode(encoded, spec)) == expected
    np.testing.assert_array_equal(chain.decode(encoded), data)
    # A C-order chunk without filters is its plain elements: it decodes straight into
    # `out` (byte-swapped in place when stored big-endian), as a v3 `bytes` chunk does.
    assert chain.can_decode_into == (order == "C")
    out = np.zeros(shape, native)
    assert chain.decode(encoded, out=out) is out
    np.testing.assert_array_equal(out, data)
    plain = CodecChain([codec], spec)
    assert plain.stores_as_is == (order == "C" and np.dtype(stored) == native)
    np.testing.assert_array_equal(plain.decode(expected, out=np.zeros(shape, native)), data)
    with pytest.raises(CorruptChunkError, match="v2 chunk"):
        codec.cpu_decode(expected[:-1], spec)


def test_v2_layout_plain_elements() -> None:
    # Chunks stored as their C-order elements (what lets a chain decode into `out`).
    assert V2ArrayBytesCodec("<i4").plain_stored_dtype(spec_for((3, 5), "int32")) == np.dtype("<i4")
    assert V2ArrayBytesCodec(">f8", "F").plain_stored_dtype(spec_for((1, 7), "float64")) == np.dtype(">f8")
    assert V2ArrayBytesCodec("<i4", "F").plain_stored_dtype(spec_for((3, 5), "int32")) is None
    delta = V2ArrayBytesCodec.create("<i4", "C", [{"id": "delta", "dtype": "<i4"}])
    assert delta.plain_stored_dtype(spec_for((10,), "int32")) is None
    assert V2ArrayBytesCodec("|O").plain_stored_dtype(spec_for((3,), str)) is None
    assert not CodecChain([delta, ZstdCodec(1)], spec_for((10,), "int32")).can_decode_into


def test_v2_layout_codec_filters_and_objects() -> None:
    spec = spec_for((10,), "int32")
    codec = V2ArrayBytesCodec.create("<i4", "C", [{"id": "delta", "dtype": "<i4"}])
    data = np.arange(10, dtype="int32") * 3
    np.testing.assert_array_equal(codec.cpu_decode(codec.cpu_encode(data, spec), spec), data)
    sspec = spec_for((3,), str)
    scodec = V2ArrayBytesCodec.create("|O", "C", [{"id": "vlen-utf8"}])
    strings = np.array(["x", "", "yz"], dtype=np.dtypes.StringDType())
    assert scodec.cpu_decode(scodec.cpu_encode(strings, sspec), sspec).tolist() == ["x", "", "yz"]
    # an unknown filter is refused when the codec is built, naming it (the exact class is
    # pinned, as an xfail, in test_errors.test_unknown_v2_codec)
    with pytest.raises((UnsupportedCodecError, MetadataError), match="superzip"):
        V2ArrayBytesCodec.create("<i4", "C", [{"id": "superzip"}])


@pytest.mark.parametrize(
    "value",
    [b"x", np.array([b"a", b"b", b"c"], dtype=object), np.broadcast_to(np.array(b"y", dtype=object), (3,))],
    ids=["scalar", "object-array", "read-only-view"],
)
def test_v2_vlen_bytes_whole_chunk_writes(tmp_path: Path, value: Any) -> None:
    """Writes covering whole chunks hand the codec a view of the value, which numcodecs'
    VLenBytes refuses when it is read-only: every such write used to raise."""
    import zarr

    a = gpuzarr.create_array(tmp_path / "b", shape=(3,), chunks=(3,), dtype=bytes, zarr_format=2, compressors=None)
    a[:] = value
    expected = np.broadcast_to(np.asarray(value, dtype=object), (3,)).tolist()
    assert a[:].tolist() == expected
    assert zarr.open_array(tmp_path / "b", mode="r")[:].tolist() == expected


def test_v2_object_filters_need_the_object_dtype() -> None:
    with pytest.raises(MetadataError, match=r"'vlen-utf8' encodes Python objects, but dtype '<i4'"):
        V2ArrayBytesCodec.create("<i4", "C", [{"id": "vlen-utf8"}])


@pytest.mark.parametrize(("fill", "text"), [(0, "0"), (1.5, "1.5")])
def test_v2_string_arrays_with_a_numeric_fill_value(fill: Any, text: str) -> None:
    """zarr-python 2 wrote object arrays' fill values as given (0 by default); zarr-python
    3 reads a number as its text, and so does gpuzarr."""
    import json

    store = gpuzarr.stores.MemoryStore()
    zarray = {"zarr_format": 2, "shape": [3], "chunks": [2], "dtype": "|O", "compressor": None,
              "fill_value": fill, "order": "C", "filters": [{"id": "vlen-utf8"}]}
    store.set(".zarray", json.dumps(zarray).encode())
    store.set("0", numcodecs.VLenUTF8().encode(np.array(["ab", "c"], dtype=object)))
    assert gpuzarr.open_array(store).read().tolist() == ["ab", "c", text]


def test_v2_filter_errors_are_typed() -> None:
    a = gpuzarr.create_array({}, shape=(4,), chunks=(2,), dtype=">f4", zarr_format=2,
                             filters=[numcodecs.BitRound(keepbits=5)], compressors=None)
    with pytest.raises(MetadataError, match=r"bitround.*KeyError"):  # numcodecs has no table for '>f4'
        a[:] = np.arange(4, dtype=">f4")


# --------------------------------------------------------------------------------------
# golden fixtures: bytes numcodecs 0.16 wrote for GOLDEN_ARRAY; they must keep decoding

GOLDEN_ARRAY = ((np.arange(256) % 7) * 1000 - 3000).astype("<i4")
GOLDEN_STRINGS = ["a", "bb", "", "ü€"]

GOLDEN = {
    "zstd": "28b52ffd600003250100e048f4ffff30f8ffff18fcffff00000000e8030000d0070000b80b0000010084ff6a3a01",
    "zstd_checksum": "28b52ffd640003250100e048f4ffff30f8ffff18fcffff00000000e8030000d0070000b80b0000010084ff6a3a01"
    "19fe9d1c",
    "zstd_stream": "28b52ffd0458250100e048f4ffff30f8ffff18fcffff00000000e8030000d0070000b80b0000010084ff6a3a01"
    "19fe9d1c",  # zstd(1) CLI from stdin: no Frame_Content_Size
    "gzip": "1f8b0800f630016b04fff3f8f2ffbfc18fffff25fefcffcf00042f9819182eb03330ece06660f018951b0d97d13431acf3"
    "0300e8a1278900040000",
    "blosc_lz4_shuffle": "0201210400040000000400006800000014000000110000007f48301800e8d0b80700e150b84830180011000000"
    "7ff4f8fc0003070b0700e1500bf4f8fc00110000007fffffff000000000700e15000ffffff00110000007fffffff0000000007"
    "00e15000ffffff00",
    "blosc_zstd_bitshuffle": "02019404000400000004000070000000140000005800000028b52ffd600003750200d4020000d56ab55aad"
    "56ab66b3d96c369bcd52a9542a954aa5b1582c168bc56270381c0e87c3e1a546a3d168341a8d0c809088623e5d862ac0e20b8c6a"
    "519269ec5012588225588085ca829d400f",
    "lz4": "00040000ff0d48f4ffff30f8ffff18fcffff00000000e8030000d0070000b80b00001c00ffffffcf50ff00000000",
    "zlib": "7801f3f8f2ffbfc18fffff25fefcffcf00042f9819182eb03330ece06660f018951b0d97d13431acf30300556bb83e",
    "vlen_utf8": "0400000001000000610200000062620000000005000000c3bce282ac",
}

GOLDEN_CHAINS: dict[str, list[Codec]] = {
    "zstd": [BytesCodec("little"), ZstdCodec(1)],
    "zstd_checksum": [BytesCodec("little"), ZstdCodec(1, True)],
    "zstd_stream": [BytesCodec("little"), ZstdCodec(1)],
    "gzip": [BytesCodec("little"), GzipCodec(1)],
    "blosc_lz4_shuffle": [BytesCodec("little"), BloscCodec("lz4", 5, "shuffle")],
    "blosc_zstd_bitshuffle": [BytesCodec("little"), BloscCodec("zstd", 5, "bitshuffle")],
    "lz4": [BytesCodec("little"), NumcodecsBytesCodec("lz4", {})],
    "zlib": [BytesCodec("little"), ZlibCodec(1)],
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CHAINS))
def test_golden_fixtures_decode(name: str) -> None:
    encoded = bytes.fromhex(GOLDEN[name])
    chain = CodecChain(GOLDEN_CHAINS[name], spec_for((256,), "int32"))
    np.testing.assert_array_equal(chain.decode(encoded), GOLDEN_ARRAY)
    out = np.empty(256, dtype="int32")
    chain.decode(encoded, out=out)
    np.testing.assert_array_equal(out, GOLDEN_ARRAY)
    # what we write for the same settings decodes to the same values (bytes may differ
    # across library versions, so only the round trip is pinned)
    np.testing.assert_array_equal(chain.decode(chain.encode(GOLDEN_ARRAY)), GOLDEN_ARRAY)


def test_golden_header_facts() -> None:
    assert zstd_frame_content_size(memoryview(bytes.fromhex(GOLDEN["zstd"]))) == 1024
    assert zstd_frame_content_size(memoryview(bytes.fromhex(GOLDEN["zstd_stream"]))) is None
    assert BloscCodec().decoded_size(bytes.fromhex(GOLDEN["blosc_lz4_shuffle"])) == 1024
    assert BloscCodec().decoded_size(bytes.fromhex(GOLDEN["blosc_zstd_bitshuffle"])) == 1024


def test_golden_vlen_utf8() -> None:
    spec = spec_for((4,), str)
    decoded = CodecChain([VLenUTF8Codec()], spec).decode(bytes.fromhex(GOLDEN["vlen_utf8"]))
    assert decoded.tolist() == GOLDEN_STRINGS
    strings = np.array(GOLDEN_STRINGS, dtype=np.dtypes.StringDType())
    assert CodecChain([VLenUTF8Codec()], spec).encode(strings).hex() == GOLDEN["vlen_utf8"]


def test_golden_checksum_detects_flip() -> None:
    encoded = bytearray(bytes.fromhex(GOLDEN["zstd_checksum"]))
    encoded[-1] ^= 0x80
    chain = CodecChain(GOLDEN_CHAINS["zstd_checksum"], spec_for((256,), "int32"))
    with pytest.raises(ChecksumError):
        chain.decode(bytes(encoded))


def test_zstd_frames_end_walks_frames_and_blocks() -> None:
    from gpuzarr.codecs.zstd import zstd_frames_end

    rng = np.random.default_rng(1)
    for n in (0, 1, 1000, 200_000, (1 << 20) + 5):
        for checksum in (False, True):
            data = rng.integers(0, 4 if n % 2 else 255, n, dtype=np.uint8).tobytes()
            frame = numcodecs.Zstd(level=1, checksum=checksum).encode(data)
            assert zstd_frames_end(memoryview(frame)) == len(frame)
            assert zstd_frames_end(memoryview(frame + frame)) == 2 * len(frame)
            for cut in range(1, 6):  # cut anywhere near the end: checksum, block, header
                assert zstd_frames_end(memoryview(frame[:-cut])) is None
            assert zstd_frames_end(memoryview(frame + b"\x28\xb5")) is None  # a partial magic number
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 100_000)  # an RLE block
    assert zstd_frames_end(memoryview(skippable + frame)) == len(skippable) + len(frame)
    assert zstd_frames_end(memoryview(skippable[:-1])) is None
    assert zstd_frames_end(memoryview(b"not a frame")) is None


@pytest.mark.usefixtures("zstd_decoder")
def test_zstd_decode_into_rejects_frames_cut_after_their_content() -> None:
    """The stream decoder stops quietly at the end of its input: a frame missing its
    checksum (or with a flipped byte and no checksum left to catch it) must still fail."""
    payload = bytes(range(256)) * 4
    frame = numcodecs.Zstd(checksum=True).encode(payload)
    spec = spec_for((len(payload),), "uint8")
    out = np.empty(len(payload), dtype=np.uint8)
    for cut in (1, 2, 3, 4):
        with pytest.raises(CorruptChunkError, match="zstd"):
            ZstdCodec().cpu_decode(frame[:-cut], spec, out=out)
        with pytest.raises(CorruptChunkError, match="zstd"):
            _decode_many(ZstdCodec(), [frame[:-cut]], len(payload))
    with pytest.raises(CorruptChunkError, match="zstd"):
        ZstdCodec().cpu_decode(frame + b"\x28\xb5", spec, out=out)


def test_zstd_libzstd_needs_1_4(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    class FakeLibrary:
        def __init__(self, version: int) -> None:
            self.ZSTD_versionNumber = lambda: version
            names = ("decompressDCtx", "isError", "getErrorName", "createDCtx", "freeDCtx")
            names += ("compress2", "compressBound", "createCCtx", "freeCCtx", "CCtx_setParameter")
            for name in names:
                setattr(self, f"ZSTD_{name}", lambda *args: 0)

    for version, usable in ((10507, True), (10400, True), (10311, False)):
        monkeypatch.setattr(ctypes, "CDLL", lambda path, v=version: FakeLibrary(v))
        zstd_module._libzstd.cache_clear()
        assert (zstd_module._libzstd() is not None) == usable, version
    monkeypatch.setattr(ctypes, "CDLL", lambda path: (_ for _ in ()).throw(OSError("no such library")))
    zstd_module._libzstd.cache_clear()
    assert zstd_module._libzstd() is None
    monkeypatch.undo()
    zstd_module._libzstd.cache_clear()


def test_zstd_libzstd_context_per_thread_freed_with_it() -> None:
    from concurrent.futures import ThreadPoolExecutor

    library = zstd_module._libzstd()
    if library is None:
        pytest.skip("this numcodecs build exports no libzstd API")
    freed: list[int] = []
    real_free = library.free_context
    library.free_context = lambda pointer: freed.append(pointer) or real_free(pointer)
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(lambda: library.thread_context().pointer).result()
            again = pool.submit(lambda: library.thread_context().pointer).result()
        assert first == again != library.thread_context().pointer  # one per thread, reused
        assert first in freed  # freed when its thread ended
    finally:
        library.free_context = real_free


@pytest.mark.usefixtures("zstd_decoder")
def test_zstd_decodes_any_source_buffer_into_any_native_out() -> None:
    payload = np.arange(0, 4000, 4, dtype="M8[s]")
    frame = numcodecs.Zstd().encode(payload.tobytes())
    arena = np.zeros(len(frame) * 3, dtype=np.uint8)
    arena[len(frame) : 2 * len(frame)] = np.frombuffer(frame, np.uint8)
    strided = np.zeros(len(frame) * 2, dtype=np.uint8)
    strided[::2] = np.frombuffer(frame, np.uint8)
    sources = [
        frame,
        bytearray(frame),
        memoryview(arena)[len(frame) : 2 * len(frame)],  # a writable view, as fetched into an arena
        np.frombuffer(frame, np.uint8),
        strided[::2],  # decoded from a contiguous copy
    ]
    outs = [np.zeros_like(payload) for _ in sources]  # datetimes export no buffer
    ZstdCodec().cpu_decode_many(sources, outs)
    for out in outs:
        np.testing.assert_array_equal(out, payload)


def test_zstd_decode_many_refuses_an_out_it_cannot_fill_as_a_usage_error() -> None:
    # A read-only or strided `out` is the caller's mistake, not a corrupt chunk.
    frame = numcodecs.Zstd().encode(bytes(400))
    frozen = np.zeros(400, np.uint8)
    frozen.flags.writeable = False
    for out in (frozen, np.zeros(800, np.uint8)[::2]):
        with pytest.raises(ValueError, match=r"read-only|contiguous") as caught:
            ZstdCodec().cpu_decode_many([frame], [out])
        assert not isinstance(caught.value, CorruptChunkError)


def test_buffer_address() -> None:
    import ctypes

    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert buffer_address(array)[:2] == (array.ctypes.data, 48)
    assert buffer_address(array, writable=True)[:2] == (array.ctypes.data, 48)
    data = b"0123456789"
    address, nbytes, _ = buffer_address(memoryview(data)[2:7])
    assert nbytes == 5 and ctypes.string_at(address, nbytes) == b"23456"
    assert ctypes.string_at(*buffer_address(data)[:2]) == data
    assert buffer_address(b"")[1] == 0
    assert buffer_address(np.zeros(3, "M8[s]"))[1] == 24  # NumPy exports no buffer of datetimes
    # The holder keeps the buffer exported: a bytearray cannot be resized under a call.
    growing = bytearray(b"abc")
    _, _, holder = buffer_address(growing)
    with pytest.raises(BufferError):
        growing.extend(b"more")
    del holder
    growing.extend(b"more")
    # Never the address of a temporary copy, and never writable memory that is not.
    for strided in (array[:, ::2], memoryview(data)[::2]):
        with pytest.raises(ValueError, match="contiguous"):
            buffer_address(strided)
    frozen = array.copy()
    frozen.flags.writeable = False
    for read_only in (data, memoryview(data), frozen):
        with pytest.raises(ValueError, match="read-only"):
            buffer_address(read_only, writable=True)


# -- fill-value chunks ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<f4", ">f8", "u1", "c8", "V2", "M8[s]"])
def test_is_fill_chunk_compares_bits_where_the_chunk_lies(dtype: str) -> None:
    # A chunk cut from a larger array (strided, as a write's chunks are) is compared in
    # place, bit for bit: the same verdicts as on a contiguous copy.
    from gpuzarr.codecs.fill import is_fill_chunk

    base = np.zeros((64, 96), dtype=dtype)
    zero = base.flat[0]
    for chunk in (base[8:40, 16:80], base[::3, 5::7], base.T[3:9], base[5, ::2], base[5, 7]):
        assert chunk.flags.c_contiguous == (chunk.ndim == 0)
        assert is_fill_chunk(chunk, zero)
        assert is_fill_chunk(np.ascontiguousarray(chunk), zero)
    changed = base.copy()
    changed.view(np.uint8).reshape(64, -1)[39, -1] = 1  # one bit of one element, far from the first
    assert not is_fill_chunk(changed[8:40, 16:], zero)
    assert is_fill_chunk(changed[8:39, 16:], zero)
    assert is_fill_chunk(base[4:4, :], zero)  # nothing in it


def test_is_fill_chunk_tells_float_bit_patterns_apart() -> None:
    from gpuzarr.codecs.fill import is_fill_chunk

    zeros = np.zeros((40, 40), "f8")[::2, 1::3]
    assert is_fill_chunk(zeros, 0.0) and not is_fill_chunk(zeros, -0.0)
    nans = np.full((40, 40), np.nan, "f4")[::2, ::5]
    assert is_fill_chunk(nans, np.float32(np.nan))
    payload = nans.copy()
    payload.view(np.uint32)[-1, -1] |= 1  # another NaN: not the fill value's bits
    assert not is_fill_chunk(payload, np.float32(np.nan))
