"""Corrupt or invalid input gives typed errors that name the key, field, codec or type.

Chunks: garbled, truncated and bit-flipped chunks for every compressor raise
CorruptChunkError (ChecksumError where a checksum exists) naming the chunk key, and
never return wrong data where a checksum could tell. Metadata: malformed documents
raise MetadataError (or a subclass) naming the document and the field. Selections:
IndexError as NumPy raises it. Missing nodes: KeyError subclasses. Interrupted writes:
no half-written object is ever visible.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Callable
from typing import Any

import numcodecs
import numpy as np
import pytest

import gpuzarr
from gpuzarr.errors import (
    ArrayNotFoundError,
    ChecksumError,
    CorruptChunkError,
    GpuzarrError,
    GroupNotFoundError,
    MetadataError,
    NodeNotFoundError,
    StoreError,
    UnknownMetadataFieldError,
    UnsupportedCodecError,
    UnsupportedDataTypeError,
)
from gpuzarr.stores import LocalStore
from gpuzarr.stores import local as local_store_module

# --------------------------------------------------------------------------------------
# corrupt chunks

COMPRESSORS_V3: dict[str, Any] = {
    "zstd": {"name": "zstd", "configuration": {"level": 1, "checksum": False}},
    "gzip": {"name": "gzip", "configuration": {"level": 1}},
    "blosc": {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}},
    "lz4": {"name": "numcodecs.lz4", "configuration": {"acceleration": 1}},
    "zlib": {"name": "numcodecs.zlib", "configuration": {"level": 1}},
}
COMPRESSORS_V2: dict[str, Any] = {
    "zstd": {"id": "zstd", "level": 1},
    "gzip": {"id": "gzip", "level": 1},
    "blosc": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
    "lz4": {"id": "lz4", "acceleration": 1},
    "zlib": {"id": "zlib", "level": 1},
}

DATA = np.random.default_rng(7).integers(0, 1000, (32, 32)).astype("int32")


def _array_with_chunks(zarr_format: int, compressor: Any) -> tuple[gpuzarr.Array, dict[str, bytes], str]:
    store: dict[str, bytes] = {}
    a = gpuzarr.create_array(
        store, name="arr", shape=DATA.shape, chunks=(16, 16), dtype="int32", compressors=compressor,
        zarr_format=zarr_format,
    )
    a[...] = DATA
    key = "arr/c/0/0" if zarr_format == 3 else "arr/0.0"
    assert key in store
    return a, store, key


def _garble(raw: bytes, seed: int) -> bytes:
    """Same length, random content: no decoder may take it for its own format."""
    return np.random.default_rng(seed).integers(0, 256, len(raw), dtype=np.uint8).tobytes()


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "garbled": lambda raw: _garble(raw, 1),
    "truncated": lambda raw: raw[: len(raw) // 2],
    "empty": lambda raw: b"",
}


def _corruption_params() -> list[Any]:
    params = []
    for fmt in (2, 3):
        for name in COMPRESSORS_V3:
            for corruption in CORRUPTIONS:
                params.append(pytest.param(fmt, name, corruption, id=f"v{fmt}-{name}-{corruption}"))
    return params


@pytest.mark.parametrize(("zarr_format", "compressor", "corruption"), _corruption_params())
def test_corrupt_chunk_raises_naming_key(zarr_format: int, compressor: str, corruption: str) -> None:
    table = COMPRESSORS_V3 if zarr_format == 3 else COMPRESSORS_V2
    a, store, key = _array_with_chunks(zarr_format, table[compressor])
    store[key] = CORRUPTIONS[corruption](store[key])
    # whole-chunk read (decodes straight into the output where it can), partial read
    # (decodes into scratch), and a partial write (read-modify-write of the chunk)
    for action in (lambda: a[...], lambda: a[2:5, 3:9], lambda: a.__setitem__((0, 0), 5)):
        with pytest.raises((CorruptChunkError, ChecksumError)) as info:
            action()
        assert repr(key) in str(info.value) or key in str(info.value)
    # the other chunks are intact and readable
    np.testing.assert_array_equal(a[16:, :], DATA[16:, :])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_uncompressed_chunk_of_wrong_length(zarr_format: int) -> None:
    a, store, key = _array_with_chunks(zarr_format, None)
    raw = store[key]
    for bad in (raw[:-4], raw + b"\0\0\0\0", raw[:1], b""):
        store[key] = bad
        with pytest.raises(CorruptChunkError, match=re.escape(key)):
            a[...]
        with pytest.raises(CorruptChunkError, match=re.escape(key)):
            a[1, 1]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_crc32c_bit_flips_raise_checksum_error(zarr_format: int) -> None:
    compressor: Any = {"name": "crc32c"} if zarr_format == 3 else {"id": "crc32c"}
    a, store, key = _array_with_chunks(zarr_format, compressor)
    raw = store[key]
    # every byte once, payload and the checksum itself, each with a different bit
    for pos in range(0, len(raw), 7):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << (pos % 8)
        store[key] = bytes(flipped)
        with pytest.raises(ChecksumError, match=re.escape(key)):
            a[:16, :16]
    store[key] = raw[:3]  # too short to hold a checksum at all
    with pytest.raises((ChecksumError, CorruptChunkError), match=re.escape(key)):
        a[...]


def test_crc32c_after_compressor() -> None:
    a, store, key = _array_with_chunks(3, [COMPRESSORS_V3["zstd"], {"name": "crc32c"}])
    flipped = bytearray(store[key])
    flipped[len(flipped) // 2] ^= 0x01
    store[key] = bytes(flipped)
    with pytest.raises(ChecksumError, match=re.escape(key)):
        a[...]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zstd_checksum_never_returns_wrong_data(zarr_format: int) -> None:
    compressor: Any = (
        {"name": "zstd", "configuration": {"level": 3, "checksum": True}}
        if zarr_format == 3
        else {"id": "zstd", "level": 3, "checksum": True}
    )
    a, store, key = _array_with_chunks(zarr_format, compressor)
    raw = store[key]
    header = 6  # magic + frame header descriptor + at least one more header byte
    raised = 0
    for pos in range(len(raw)):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << (pos % 8)
        store[key] = bytes(flipped)
        try:
            got = a[:16, :16]
        except (ChecksumError, CorruptChunkError) as exc:
            assert key in str(exc)
            raised += 1
            continue
        # some header bits (e.g. the window size) do not change the content
        assert pos < header + 8, f"flip at byte {pos} was not detected"
        np.testing.assert_array_equal(got, DATA[:16, :16])
    assert raised >= len(raw) - header - 8


def test_zstd_checksum_mismatch_is_checksum_error() -> None:
    a, store, key = _array_with_chunks(3, {"name": "zstd", "configuration": {"level": 3, "checksum": True}})
    raw = bytearray(store[key])
    raw[-1] ^= 0xFF  # the checksum field itself: content decodes, the check fails
    store[key] = bytes(raw)
    with pytest.raises(ChecksumError, match=re.escape(key)):
        a[...]


def test_corrupt_variable_length_chunk() -> None:
    store: dict[str, bytes] = {}
    a = gpuzarr.create_array(store, shape=(4,), chunks=(4,), dtype=str, compressors=None)
    a[...] = ["a", "bb", "ccc", "dddd"]
    raw = store["c/0"]
    for bad in (raw[:-2], raw[:3], (999).to_bytes(4, "little") + raw[4:]):
        store["c/0"] = bad
        with pytest.raises(CorruptChunkError, match="c/0"):
            a[...]


def test_corrupt_errors_are_value_errors() -> None:
    # typed errors keep the built-in contracts zarr-python users rely on
    assert issubclass(CorruptChunkError, ValueError) and issubclass(ChecksumError, ValueError)
    assert issubclass(MetadataError, ValueError)
    assert issubclass(ArrayNotFoundError, KeyError) and issubclass(GroupNotFoundError, KeyError)
    for cls in (CorruptChunkError, ChecksumError, MetadataError, NodeNotFoundError, StoreError):
        assert issubclass(cls, GpuzarrError)
    assert str(ArrayNotFoundError("plain message")) == "plain message"  # not KeyError's quoting


# --------------------------------------------------------------------------------------
# metadata documents


def _v3_doc() -> dict[str, Any]:
    store: dict[str, bytes] = {}
    gpuzarr.create_array(store, name="arr", shape=(10, 6), chunks=(5, 3), dtype="int32")
    return json.loads(store["arr/zarr.json"])


def _v2_doc() -> dict[str, Any]:
    store: dict[str, bytes] = {}
    gpuzarr.create_array(store, name="arr", shape=(10, 6), chunks=(5, 3), dtype="int32", zarr_format=2)
    return json.loads(store["arr/.zarray"])


def _open_v3(doc: Any) -> gpuzarr.Array:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return gpuzarr.open_array({"arr/zarr.json": raw}, path="arr")


def _open_v2(doc: Any, attrs: bytes | None = None) -> gpuzarr.Array:
    store = {"arr/.zarray": doc if isinstance(doc, bytes) else json.dumps(doc).encode()}
    if attrs is not None:
        store["arr/.zattrs"] = attrs
    return gpuzarr.open_array(store, path="arr")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe\x00", b"[1, 2]", b'"text"', b"null"])
def test_malformed_json_names_document(raw: bytes) -> None:
    with pytest.raises(MetadataError, match=re.escape("arr/zarr.json")):
        _open_v3(raw)
    with pytest.raises(MetadataError, match=re.escape("arr/.zarray")):
        _open_v2(raw)
    with pytest.raises(MetadataError, match=re.escape("arr/.zattrs")):
        _open_v2(_v2_doc(), attrs=raw)
    with pytest.raises(MetadataError, match=re.escape("zarr.json")):
        gpuzarr.open_group({"zarr.json": raw}, mode="r")
    with pytest.raises(MetadataError, match=re.escape(".zgroup")):
        gpuzarr.open_group({".zgroup": raw}, mode="r")


@pytest.mark.parametrize("field", ["shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value", "codecs"])
def test_v3_missing_field(field: str) -> None:
    doc = _v3_doc()
    del doc[field]
    with pytest.raises(MetadataError, match=f"arr/zarr.json.*{field}"):
        _open_v3(doc)


@pytest.mark.parametrize("field", ["shape", "chunks", "dtype", "compressor", "fill_value", "order", "filters"])
def test_v2_missing_field(field: str) -> None:
    doc = _v2_doc()
    del doc[field]
    with pytest.raises(MetadataError, match=rf"arr/\.zarray.*{field}"):
        _open_v2(doc)


def test_missing_format_and_node_type() -> None:
    for field in ("zarr_format", "node_type"):
        doc = _v3_doc()
        del doc[field]
        with pytest.raises(MetadataError, match=f"arr/zarr.json.*{field}"):
            _open_v3(doc)
    doc2 = _v2_doc()
    del doc2["zarr_format"]
    with pytest.raises(MetadataError, match=r"arr/\.zarray.*zarr_format"):
        _open_v2(doc2)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A document edit: set the (dotted) field ``path`` to ``value``."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        target[leaf] = value

    return edit


V3_BAD_FIELDS = [
    ("shape", "shape", "10"),
    ("shape", "shape", [10.5, 6]),
    ("shape", "shape", [-1, 6]),
    ("shape", "shape", [True, 6]),
    ("shape", "shape", [10**20, 6]),
    ("shape", "shape", None),
    ("chunk_shape", "chunk_grid.configuration.chunk_shape", [0, 3]),
    ("chunk_shape", "chunk_grid.configuration.chunk_shape", [5]),
    ("chunk_shape", "chunk_grid.configuration.chunk_shape", "5,3"),
    ("chunk_shape", "chunk_grid.configuration.chunk_shape", [5, 3.0]),
    ("chunk_grid", "chunk_grid.name", "rectilinear"),
    ("chunk_grid", "chunk_grid", "regular"),
    ("chunk_grid.configuration", "chunk_grid.configuration", 5),
    ("chunk_grid.configuration", "chunk_grid.configuration", [5, 3]),
    ("chunk_grid.configuration", "chunk_grid.configuration", None),
    ("chunk_grid.configuration", "chunk_grid.configuration", {"chunk_shape": [5, 3], "zz": 1}),
    ("chunk_key_encoding", "chunk_key_encoding.configuration", False),
    ("chunk_key_encoding", "chunk_key_encoding.configuration", []),
    ("chunk_key_encoding", "chunk_key_encoding.configuration", {"separator": "/", "zz": 1}),
    ("storage_transformers", "storage_transformers", False),
    ("fill_value", "fill_value", "abc"),
    ("fill_value", "fill_value", 1.5),
    ("fill_value", "fill_value", 2**40),
    ("fill_value", "fill_value", None),
    ("fill_value", "fill_value", [1, 2]),
    ("fill_value", "fill_value", True),
    ("fill_value", "fill_value", "0x7fc0000"),  # 7 hex digits for a 4-byte type
    ("data_type", "data_type", 5),
    ("codecs", "codecs", []),
    ("codecs", "codecs", "bytes"),
    ("chunk_key_encoding", "chunk_key_encoding", {"name": "weird"}),
    ("chunk_key_encoding", "chunk_key_encoding.configuration.separator", "-"),
    ("attributes", "attributes", [1, 2]),
    ("dimension_names", "dimension_names", ["only-one"]),
    ("dimension_names", "dimension_names", [1, 2]),
    ("zarr_format", "zarr_format", 2),
    ("node_type", "node_type", "table"),
]


@pytest.mark.parametrize(("field", "path", "value"), V3_BAD_FIELDS, ids=[f"{p}={v!r}" for _, p, v in V3_BAD_FIELDS])
def test_v3_bad_field(field: str, path: str, value: Any) -> None:
    doc = _v3_doc()
    _set(path, value)(doc)
    with pytest.raises(MetadataError) as info:
        _open_v3(doc)
    message = str(info.value)
    assert "arr/zarr.json" in message
    assert field in message


V2_BAD_FIELDS = [
    ("shape", "shape", [-3, 6]),
    ("shape", "shape", "10"),
    ("chunks", "chunks", [0, 3]),
    ("chunks", "chunks", [5]),
    ("fill_value", "fill_value", "x"),
    ("fill_value", "fill_value", 1.5),
    ("fill_value", "fill_value", [0]),
    ("order", "order", "Z"),
    ("dimension_separator", "dimension_separator", "-"),
    ("compressor", "compressor", "zstd"),
    ("compressor", "compressor", {"level": 1}),
    ("filters", "filters", {"id": "delta"}),
    ("filters", "filters", [{"no": "id"}]),
    ("filters", "filters", False),
    ("filters", "filters", 0),
    ("zarr_format", "zarr_format", 3),
    ("shuffle", "compressor", {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": [1]}),
    ("shuffle", "compressor", {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": {"x": 1}}),
]


@pytest.mark.parametrize(("field", "path", "value"), V2_BAD_FIELDS, ids=[f"{p}={v!r}" for _, p, v in V2_BAD_FIELDS])
def test_v2_bad_field(field: str, path: str, value: Any) -> None:
    doc = _v2_doc()
    _set(path, value)(doc)
    with pytest.raises(MetadataError) as info:
        _open_v2(doc)
    message = str(info.value)
    assert "arr/.zarray" in message
    assert field in message


V3_BAD_DATA_TYPES = [
    ({"name": "null_terminated_bytes", "configuration": 5}, ""),
    ({"name": "null_terminated_bytes", "configuration": "x"}, ""),
    ({"name": "null_terminated_bytes", "configuration": {"length_bytes": True}}, ""),
    ({"name": "null_terminated_bytes", "configuration": {"length_bytes": 2**40}}, ""),
    ({"name": "fixed_length_utf32", "configuration": {"length_bytes": 2**63}}, ""),
    ({"name": "numpy.datetime64", "configuration": {"unit": "s", "scale_factor": 2**40}}, 0),
    ({"name": "numpy.datetime64", "configuration": {"unit": ["s"], "scale_factor": 1}}, 0),
    ({"name": "numpy.timedelta64", "configuration": {"unit": "s", "scale_factor": True}}, 0),
    ({"name": "numpy.timedelta64", "configuration": {"unit": "s"}}, 0),
    ({"name": "numpy.datetime64", "configuration": {"unit": "s", "scale_factor": 1}, "zz": 1}, 0),
]


@pytest.mark.parametrize(("data_type", "fill"), V3_BAD_DATA_TYPES, ids=[repr(d) for d, _ in V3_BAD_DATA_TYPES])
def test_v3_bad_data_type_configuration(data_type: dict[str, Any], fill: Any) -> None:
    """A data type configuration of the wrong kind or size is the typed error naming
    the field (not NumPy's TypeError from building the dtype)."""
    doc = _v3_doc()
    doc["data_type"], doc["fill_value"] = data_type, fill
    with pytest.raises(MetadataError, match=r"arr/zarr.json: data_type: .*(configuration|length_bytes|unknown fields)"):
        _open_v3(doc)


@pytest.mark.parametrize(
    "codecs",
    [
        [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "superzip"}],
        [{"name": "superzip"}],
        [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "numcodecs.superzip"}],
    ],
)
def test_unknown_v3_codec(codecs: list[dict[str, Any]]) -> None:
    doc = _v3_doc()
    doc["codecs"] = codecs
    with pytest.raises(UnsupportedCodecError, match="superzip") as info:
        _open_v3(doc)
    assert "arr/zarr.json" in str(info.value)


@pytest.mark.parametrize(
    ("codec", "word"),
    [
        ({"name": "bytes", "configuration": {"endian": "middle"}}, "endian"),
        ({"name": "zstd", "configuration": {"level": "x"}}, "zstd"),
        ({"name": "gzip", "configuration": {"level": 42}}, "level"),
        ({"name": "blosc", "configuration": {"cname": "zz"}}, "cname"),
        ({"name": "blosc", "configuration": {"shuffle": "sideways"}}, "shuffle"),
        ({"name": "blosc", "configuration": {"shuffle": [1]}}, "shuffle"),
        ({"name": "crc32c", "configuration": {"x": 1}}, "crc32c"),
    ],
)
def test_bad_v3_codec_configuration(codec: dict[str, Any], word: str) -> None:
    doc = _v3_doc()
    if codec["name"] == "bytes":
        doc["codecs"] = [codec]
    else:
        doc["codecs"] = [{"name": "bytes", "configuration": {"endian": "little"}}, codec]
    with pytest.raises(MetadataError, match=word) as info:
        _open_v3(doc)
    assert "arr/zarr.json" in str(info.value)


def test_bad_v3_codec_chain() -> None:
    doc = _v3_doc()
    doc["codecs"] = [{"name": "zstd", "configuration": {"level": 0, "checksum": False}}]
    with pytest.raises(MetadataError, match=re.escape("arr/zarr.json")):
        _open_v3(doc)
    doc["codecs"] = [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "transpose", "configuration": {"order": [1, 0]}},
    ]
    with pytest.raises(MetadataError, match="transpose"):
        _open_v3(doc)
    doc["codecs"] = [{"name": "transpose", "configuration": {"order": [0]}}, {"name": "bytes"}]
    with pytest.raises(MetadataError, match="transpose"):
        _open_v3(doc)


# Repro (codecs/numcodecs_codecs.py _make_impl, codecs/v2.py _filters): numcodecs >= 0.16
# raises ValueError("codec not available"), not KeyError, for an unknown id, so an unknown
# v2 compressor/filter becomes MetadataError instead of UnsupportedCodecError:
#   gpuzarr.open_array({".zarray": <doc with "compressor": {"id": "superzip"}>})
#   -> MetadataError: codec 'numcodecs.superzip': invalid configuration ...
@pytest.mark.parametrize("where", ["compressor", "filters"])
def test_unknown_v2_codec(where: str) -> None:
    doc = _v2_doc()
    doc[where] = {"id": "superzip"} if where == "compressor" else [{"id": "superzip"}]
    with pytest.raises(UnsupportedCodecError, match="superzip"):
        _open_v2(doc)


def test_unknown_v2_codec_is_at_least_a_metadata_error() -> None:
    doc = _v2_doc()
    doc["compressor"] = {"id": "superzip"}
    with pytest.raises((MetadataError, UnsupportedCodecError), match="superzip"):
        _open_v2(doc)


@pytest.mark.parametrize(
    "compressor",
    [{"id": "zstd", "level": "abc"}, {"id": "gzip", "level": 99}, {"id": "blosc", "cname": "nope"}],
)
def test_bad_v2_compressor_configuration(compressor: dict[str, Any]) -> None:
    doc = _v2_doc()
    doc["compressor"] = compressor
    with pytest.raises(MetadataError):
        _open_v2(doc)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"compressors": {"name": "numcodecs.bz2", "configuration": {"level": "x"}}}, "numcodecs.bz2"),
        (
            {
                "zarr_format": 2,
                "filters": [{"id": "fixedscaleoffset", "offset": 0, "scale": "a", "dtype": "<f4", "astype": "<i4"}],
            },
            "fixedscaleoffset",
        ),
    ],
)
def test_numcodecs_settings_it_cannot_encode_with_name_the_codec(kwargs: dict[str, Any], named: str) -> None:
    # numcodecs takes these settings unchecked and fails when it encodes, naming nothing.
    a = gpuzarr.create_array({}, shape=(4,), chunks=(2,), dtype="f4", **kwargs)
    with pytest.raises(MetadataError, match=f"codec '{named}' with configuration .* cannot encode"):
        a[:] = 1
    np.testing.assert_array_equal(a[:], np.zeros(4, "f4"))  # (nothing written)


def test_object_filter_rejecting_data_keeps_its_error() -> None:
    # (A vlen filter refusing a value is about the data, not its settings.)
    a = gpuzarr.create_array({}, shape=(2,), chunks=(2,), dtype=bytes, zarr_format=2)
    with pytest.raises(TypeError) as info:
        a[0] = 5
    assert not isinstance(info.value, MetadataError)


def test_attributes_that_are_not_json_name_the_field() -> None:
    with pytest.raises(TypeError, match=r"metadata field 'attributes\.a\.b\[1\]': object"):
        gpuzarr.create_array({}, shape=(4,), chunks=(2,), dtype="i4", attributes={"a": {"b": [1, object()]}})
    a = gpuzarr.create_array({}, shape=(4,), chunks=(2,), dtype="i4", zarr_format=2)
    with pytest.raises(TypeError, match="metadata field 'k': ndarray"):
        a.attrs["k"] = np.arange(3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunks": (2, 2)}, r"chunks \(2, 2\) has 2 dimensions, the array's shape \(4,\) has 1"),
        ({"chunks": (0,)}, r"chunks \(0,\) must be positive"),
        ({"chunks": (2,), "shards": (4, 4)}, r"shards \(4, 4\) has 2 dimensions"),
        ({"chunks": (2,), "filters": [{"name": "numcodecs.shuffle"}]}, "codec 'numcodecs.shuffle' is not an array"),
    ],
)
def test_create_array_argument_messages(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gpuzarr.create_array({}, shape=(4,), dtype="f4", **kwargs)


@pytest.mark.parametrize(
    ("data_type", "fill_value"),
    [
        ({"name": "null_terminated_bytes", "configuration": {"length_bytes": 3}}, "YWJjZA=="),  # 4 bytes
        ({"name": "fixed_length_utf32", "configuration": {"length_bytes": 8}}, "abcd"),  # 4 characters
        ("r16", [1]),  # a listed raw value has exactly the type's bytes
        ("r16", [1, 2, 3]),
    ],
)
def test_fill_values_longer_than_fixed_size_types_are_refused(data_type: Any, fill_value: Any) -> None:
    # (Kept as given, the fill value differed from what reads return: NumPy cut it.)
    doc = _v3_doc()
    doc["data_type"], doc["fill_value"] = data_type, fill_value
    doc["codecs"] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    with pytest.raises(MetadataError, match="fill_value"):
        _open_v3(doc)


def test_sharding_chunk_shape_of_another_rank_is_a_metadata_error() -> None:
    doc = _v3_doc()
    little = {"name": "bytes", "configuration": {"endian": "little"}}
    configuration = {"chunk_shape": [5], "codecs": [little], "index_codecs": [little]}
    doc["codecs"] = [{"name": "sharding_indexed", "configuration": configuration}]
    with pytest.raises(MetadataError, match=r"sharding_indexed': chunk_shape \[5\] does not match"):
        _open_v3(doc)


def test_create_array_names_its_unknown_arguments() -> None:
    group = gpuzarr.open_group({}, mode="w")
    with pytest.raises(TypeError, match=r"create_array\(\) got unexpected keyword arguments \['config'\]"):
        group.create_array("a", shape=(2,), dtype="i4", config={"order": "C"})


@pytest.mark.parametrize("name", ["int128", "float8", {"name": "quaternion"}, "r7", "r0"])
def test_unknown_v3_data_type(name: Any) -> None:
    doc = _v3_doc()
    doc["data_type"] = name
    shown = name["name"] if isinstance(name, dict) else name
    with pytest.raises(UnsupportedDataTypeError, match=re.escape(shown)) as info:
        _open_v3(doc)
    assert "arr/zarr.json" in str(info.value)


@pytest.mark.parametrize("dtype", ["<i16", "foo", "|O", "<i", "<f", "int"])
def test_unknown_v2_dtype(dtype: str) -> None:
    doc = _v2_doc()
    doc["dtype"] = dtype
    doc["fill_value"] = None
    with pytest.raises(UnsupportedDataTypeError, match=re.escape(dtype)) as info:
        _open_v2(doc)
    assert "arr/.zarray" in str(info.value)


def test_structured_v2_dtype_unsupported() -> None:
    doc = _v2_doc()
    doc["dtype"] = [["a", "<i4"], ["b", "<f8"]]
    with pytest.raises(UnsupportedDataTypeError, match="dtype"):
        _open_v2(doc)


def test_unknown_dtype_from_user() -> None:
    with pytest.raises(UnsupportedDataTypeError, match="nope"):
        gpuzarr.create_array({}, shape=(1,), dtype="nope")
    with pytest.raises(UnsupportedDataTypeError):
        gpuzarr.create_array({}, shape=(1,), dtype=object)


@pytest.mark.parametrize("value", [1, "text", [1, 2], {"must_understand": True}, {"x": 1}])
def test_unknown_v3_field_must_be_understood(value: Any) -> None:
    doc = _v3_doc()
    doc["future_feature"] = value
    with pytest.raises(UnknownMetadataFieldError, match="future_feature") as info:
        _open_v3(doc)
    assert "arr/zarr.json" in str(info.value)
    assert isinstance(info.value, MetadataError)
    group_doc = {"zarr_format": 3, "node_type": "group", "attributes": {}, "future_feature": value}
    with pytest.raises(UnknownMetadataFieldError, match="future_feature"):
        gpuzarr.open_group({"zarr.json": json.dumps(group_doc).encode()}, mode="r")


def test_unknown_v3_field_may_opt_out() -> None:
    doc = _v3_doc()
    doc["future_feature"] = {"must_understand": False, "payload": [1, 2]}
    a = _open_v3(doc)
    assert a.shape == (10, 6)
    group_doc = {"zarr_format": 3, "node_type": "group", "extra": {"must_understand": False}}
    g = gpuzarr.open_group({"zarr.json": json.dumps(group_doc).encode()}, mode="r")
    assert g.attrs.asdict() == {}


def test_unsupported_storage_transformers() -> None:
    doc = _v3_doc()
    doc["storage_transformers"] = [{"name": "sharding-legacy"}]
    with pytest.raises(UnsupportedCodecError, match="storage_transformers"):
        _open_v3(doc)


def test_bad_group_documents() -> None:
    bad_groups = [
        {"zarr_format": 3, "node_type": "group", "attributes": [1]},
        {"zarr_format": 3, "node_type": "group", "consolidated_metadata": {"kind": "offline"}},
        {"zarr_format": 3, "node_type": "group", "consolidated_metadata": {"kind": "inline", "metadata": 3}},
    ]
    for doc in bad_groups:
        with pytest.raises(MetadataError, match=re.escape("zarr.json")):
            gpuzarr.open_group({"zarr.json": json.dumps(doc).encode()}, mode="r")
    with pytest.raises(MetadataError, match=re.escape(".zgroup")):
        gpuzarr.open_group({".zgroup": b'{"zarr_format": 3}'}, mode="r")
    bad_zmeta = {".zgroup": b'{"zarr_format": 2}', ".zmetadata": b'{"zarr_consolidated_format": 1}'}
    with pytest.raises(MetadataError, match=re.escape(".zmetadata")):
        gpuzarr.open_group(bad_zmeta, mode="r")


def test_bad_member_metadata_names_member() -> None:
    store: dict[str, bytes] = {}
    g = gpuzarr.open_group(store, mode="w")
    g.create_array("good", shape=(1,), dtype="i1")
    g.create_array("bad", shape=(1,), dtype="i1")
    store["bad/zarr.json"] = b"{oops"
    with pytest.raises(MetadataError, match=re.escape("bad/zarr.json")):
        g["bad"]
    with pytest.raises(MetadataError, match=re.escape("bad/zarr.json")):
        list(g.members())
    assert isinstance(g["good"], gpuzarr.Array)


# --------------------------------------------------------------------------------------
# selections: IndexError (or ValueError) exactly where NumPy raises them

REF = np.arange(100).reshape(10, 10)


@pytest.mark.parametrize(
    "selection",
    [
        (10,),
        (-11,),
        (0, 10),
        (0, 0, 0),
        (1.5,),
        ("a",),
        (Ellipsis, Ellipsis),
        (np.array([True] * 3),),
        (slice(0, 2), 1.0),
        (None, 0, 0, 0),
    ],
    ids=repr,
)
def test_bad_basic_selection_like_numpy(selection: Any) -> None:
    a = gpuzarr.create_array({}, data=REF, chunks=(3, 3))
    with pytest.raises(IndexError):
        REF[selection]  # the oracle: NumPy refuses it with IndexError
    with pytest.raises(IndexError):
        a[selection]
    with pytest.raises(IndexError):
        a[selection] = 1


def test_zero_step_is_value_error_like_numpy() -> None:
    a = gpuzarr.create_array({}, data=REF, chunks=(3, 3))
    with pytest.raises(ValueError):
        REF[::0]
    with pytest.raises(ValueError):
        a[::0]


def test_bad_fancy_selections() -> None:
    a = gpuzarr.create_array({}, data=REF, chunks=(3, 3))
    with pytest.raises(IndexError, match="10"):
        a.oindex[[10], :]
    with pytest.raises(IndexError):
        a.oindex[[-11], :]
    with pytest.raises(IndexError):
        a.vindex[[10], [0]]
    with pytest.raises(IndexError):
        a.vindex[[1, 2], [1, 2, 3]]
    with pytest.raises(IndexError):
        a.vindex[np.ones((3, 3), dtype=bool)]
    with pytest.raises(IndexError):
        a.oindex[[0.5], :]
    with pytest.raises(IndexError):
        a.vindex[[[0]], [[0]], [[0]]]


def test_bad_values_for_assignment() -> None:
    a = gpuzarr.create_array({}, data=REF, chunks=(3, 3))
    with pytest.raises(ValueError):
        a[0:2] = np.ones(3)
    with pytest.raises(ValueError):
        a.vindex[[0, 1], [0, 1]] = [1, 2, 3]
    np.testing.assert_array_equal(a[...], REF)  # a refused write leaves the data alone


# --------------------------------------------------------------------------------------
# missing nodes


def test_missing_nodes(tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "absent.zarr")
    with pytest.raises(ArrayNotFoundError, match=re.escape("absent.zarr")):
        gpuzarr.open_array(missing)
    with pytest.raises(GroupNotFoundError):
        gpuzarr.open_group(missing, mode="r")
    with pytest.raises(NodeNotFoundError):
        gpuzarr.open(missing, mode="r")
    for exc in (ArrayNotFoundError, GroupNotFoundError):
        assert issubclass(exc, KeyError) and issubclass(exc, NodeNotFoundError)
    g = gpuzarr.open_group({}, mode="w")
    with pytest.raises(KeyError, match="nope"):
        g["nope"]
    with pytest.raises(ArrayNotFoundError, match="sub/arr"):
        gpuzarr.open_array(g.store, path="sub/arr")
    assert not os.path.exists(missing)  # reading never creates anything


# --------------------------------------------------------------------------------------
# interrupted writes


def _temp_like(name: str) -> bool:
    return name.endswith(".tmp") or ".tmp" in name


def _check_consistent(path: str, old: int, new: int) -> None:
    """Every stored chunk decodes and holds only the old or only the new value."""
    a = gpuzarr.open_array(path)
    for key in a.stored_chunk_keys():
        raw = a.store.get(key)
        assert raw is not None
        chunk = a._chain.decode(raw)
        values = set(np.unique(chunk).tolist())
        assert values in ({old}, {new}), f"chunk {key} mixes values {values}"
    assert all(not _temp_like(k) for k in a.store.list_prefix(""))
    for _dirpath, _dirs, files in os.walk(path):
        assert not [f for f in files if _temp_like(f)], "a temporary file was left behind"


@pytest.mark.parametrize("where", ["replace", "write"])
def test_interrupted_chunk_writes_leave_no_partial_objects(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    path = str(tmp_path / "atomic.zarr")
    # (The Python path's system calls, where failures can be injected; the native batched
    # writes are failed for real in test_native_writes.)
    monkeypatch.setattr(local_store_module._native, "file_writes", None)
    with gpuzarr.config.set(threads=4):
        a = gpuzarr.create_array(path, shape=(64, 64), chunks=(8, 8), dtype="int32", fill_value=-1)
        a[...] = 1
        calls = {"n": 0}
        if where == "replace":
            real_replace = os.replace

            def failing_replace(src: Any, dst: Any, **kwargs: Any) -> None:
                calls["n"] += 1
                if calls["n"] > 20:
                    raise OSError(28, "No space left on device (simulated)")
                real_replace(src, dst, **kwargs)

            monkeypatch.setattr(local_store_module.os, "replace", failing_replace)
        else:
            real_write = os.write

            def failing_write(fd: int, data: Any) -> int:
                calls["n"] += 1
                if calls["n"] > 20:
                    real_write(fd, bytes(memoryview(data)[: max(1, len(data) // 2)]))  # half lands on disk
                    raise OSError(5, "Input/output error (simulated)")
                return real_write(fd, data)

            monkeypatch.setattr(local_store_module.os, "write", failing_write)
        with pytest.raises(OSError):
            a[...] = 2
        monkeypatch.undo()  # (the native writes back too, where built)
        assert calls["n"] > 20  # the failure happened midway, after some chunks landed
        _check_consistent(path, 1, 2)
        # the array stays usable: a retried write completes
        a[...] = 2
        _check_consistent(path, 2, 2)
        np.testing.assert_array_equal(gpuzarr.open_array(path)[...], np.full((64, 64), 2))


def test_interrupted_metadata_write_keeps_old_document(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "meta.zarr")
    a = gpuzarr.create_array(path, shape=(4,), dtype="i2", attributes={"version": 1})

    def failing_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(local_store_module.os, "replace", failing_replace)
    with pytest.raises(OSError):
        a.attrs["version"] = 2
    with pytest.raises(OSError):
        a.resize((8,))
    monkeypatch.undo()
    b = gpuzarr.open_array(path)
    assert b.attrs["version"] == 1
    assert b.shape == (4,)
    assert sorted(os.listdir(path)) == ["zarr.json"]


def test_store_error_is_os_error(tmp_path: pathlib.Path) -> None:
    store = LocalStore(tmp_path / "s")
    with pytest.raises(StoreError):
        store.get("../escape")
    assert issubclass(StoreError, OSError)



@pytest.mark.parametrize("checksum", [False, True])
def test_batched_zstd_decode_names_the_bad_chunk(checksum: bool) -> None:
    """Reads small enough for one native batch decode still name the one bad chunk."""
    a, store, _ = _array_with_chunks(3, {"name": "zstd", "configuration": {"level": 1, "checksum": checksum}})
    assert a._layout.chain.decodes_batches  # type: ignore[attr-defined]
    key = "arr/c/1/0"
    raw = bytearray(store[key])
    if checksum:
        raw[-1] ^= 0xFF  # the content decodes; its checksum does not match
    else:
        del raw[len(raw) // 2 :]  # (without a checksum, a flipped literal byte goes unnoticed)
    store[key] = bytes(raw)
    windows = [(slice(r, r + 16), slice(c, c + 16)) for r in (0, 16) for c in (0, 16)]
    expected_error = ChecksumError if checksum else (ChecksumError, CorruptChunkError)
    with pytest.raises(expected_error, match=re.escape(key)):
        a.read_batch(windows)
    others = [w for w in windows if w != (slice(16, 32), slice(0, 16))]
    for sel, got in zip(others, a.read_batch(others), strict=True):  # the other chunks still read
        np.testing.assert_array_equal(got, DATA[sel])


def test_batched_zstd_decode_falls_back_for_multi_frame_chunks() -> None:
    """A chunk of two zstd frames is valid zstd: the batch call rejects it, one by one reads it."""
    a, store, key = _array_with_chunks(3, {"name": "zstd", "configuration": {"level": 1, "checksum": False}})
    chunk = np.ascontiguousarray(DATA[:16, :16]).astype("<i4").tobytes()
    half = len(chunk) // 2
    store[key] = numcodecs.Zstd(1).encode(chunk[:half]) + numcodecs.Zstd(1).encode(chunk[half:])
    np.testing.assert_array_equal(a[:32, :32], DATA[:32, :32])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_errors_in_consolidated_entries_name_where_they_are_stored(tmp_path: pathlib.Path, zarr_format: int) -> None:
    """A bad member entry in consolidated metadata is named where it is stored (the
    root's .zmetadata or zarr.json), not as the member's own document, which is fine."""
    root = gpuzarr.open_group(tmp_path / "g", mode="w", zarr_format=zarr_format)
    root.create_group("a").create_array("x", shape=(4,), chunks=(2,), dtype="i4")
    gpuzarr.consolidate_metadata(tmp_path / "g")
    if zarr_format == 2:
        document, expected = tmp_path / "g" / ".zmetadata", r"\.zmetadata: metadata\['a/x/\.zarray'\]: order"
        doc = json.loads(document.read_text())
        doc["metadata"]["a/x/.zarray"]["order"] = 0
    else:
        document, expected = tmp_path / "g" / "zarr.json", r"zarr\.json: consolidated_metadata\['a/x'\]: shape"
        doc = json.loads(document.read_text())
        doc["consolidated_metadata"]["metadata"]["a/x"]["shape"] = "x"
    document.write_text(json.dumps(doc))
    with pytest.raises(MetadataError, match=expected):
        gpuzarr.open_group(tmp_path / "g", mode="r")["a"]["x"]
    with pytest.raises(MetadataError, match=expected):
        gpuzarr.open_consolidated(tmp_path / "g", mode="r")["a/x"]
    assert gpuzarr.open_array(tmp_path / "g" / "a" / "x").shape == (4,)  # (its own document is fine)


@pytest.mark.parametrize("shards", [None, (64, 32)])
def test_partial_writes_decode_old_units_as_a_batch_and_name_a_corrupt_one(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, shards: tuple[int, int] | None
) -> None:
    """The old contents of a batch's partly covered units are decoded in one call; a
    corrupt one among them is then decoded alone, so the error names it."""
    from gpuzarr.codecs.chain import CodecChain

    batches: list[int] = []
    original = CodecChain.decode_many

    def counting(self: CodecChain, datas: Any, outs: Any, spread: Any = None) -> None:
        batches.append(len(datas))
        original(self, datas, outs, spread)

    monkeypatch.setattr(CodecChain, "decode_many", counting)
    data = np.arange(128 * 64, dtype="float32").reshape(128, 64)
    path = str(tmp_path / "a")
    a = gpuzarr.create_array(path, shape=data.shape, dtype="float32", chunks=(16, 16), shards=shards)
    a[:] = data
    with gpuzarr.config.set(threads=1):
        a[3:125, 5:60] = -1.0  # (every edge unit partly covered)
    data[3:125, 5:60] = -1.0
    np.testing.assert_array_equal(gpuzarr.open_array(path)[:], data)
    assert batches and max(batches) > 1
    corrupt = "c/1/0" if shards is None else "c/0/0"
    stored = (tmp_path / "a" / corrupt).read_bytes()
    if shards is None:
        (tmp_path / "a" / corrupt).write_bytes(stored[:8] + bytes(len(stored) - 8))
        expected = "chunk 'c/1/0'"
    else:  # the shard's first inner chunk, at offset 0 of the shard file
        (tmp_path / "a" / corrupt).write_bytes(bytes(8) + stored[8:])
        expected = "inner chunk (0, 0)"
    from gpuzarr.pipeline.layout import shard_index_cache

    shard_index_cache.clear()
    with gpuzarr.config.set(threads=1), pytest.raises((CorruptChunkError, ChecksumError), match=re.escape(expected)):
        gpuzarr.open_array(path, mode="r+")[3:40, 1:3] = 7.0  # (three units, one corrupt)
